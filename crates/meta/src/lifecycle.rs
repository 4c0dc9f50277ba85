//! What lifecycle policies need from the store: pull statistics (written in batches),
//! a project's artifacts with their tags, pulls and blobs, retention policies and run history.

use std::collections::HashMap;

use sqlx::Row;

use crate::{flag, now, MetaStore, NewEvent, Result};

/// Pulls counted in memory since the last flush, for one manifest (and the tag it was
/// pulled by, if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullDelta {
    pub repository: String,
    pub digest: Option<String>,
    pub tag: Option<String>,
    pub count: i64,
    pub last_pulled_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRow {
    pub name: String,
    /// When the tag was last pointed at its digest (Unix microseconds).
    pub pushed_at_us: i64,
    pub last_pulled_at: Option<i64>,
    pub pull_count: i64,
}

/// A manifest of a project with everything retention and listings need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactRow {
    pub repository: String,
    pub digest: String,
    pub media_type: String,
    /// `artifactType`, or an image manifest's config type (BuildKit's cache is
    /// `application/vnd.buildkit.cacheconfig.v0`).
    pub artifact_type: Option<String>,
    /// When the manifest was first pushed (Unix microseconds).
    pub pushed_at_us: i64,
    pub size: i64,
    pub subject: Option<String>,
    pub last_pulled_at: Option<i64>,
    pub pull_count: i64,
    pub tags: Vec<TagRow>,
    /// Config and layers (digest, size).
    pub blobs: Vec<(String, i64)>,
    /// The manifests an index lists (digests), sorted.
    pub children: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionRun {
    pub at: i64,
    pub actor: String,
    pub dry_run: bool,
    pub deleted_tags: i64,
    pub deleted_manifests: i64,
    pub freed_bytes: i64,
}

/// The per-project policy documents, each in a table of its own.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ProjectDocument {
    TagRules,
    RetentionPolicy,
    VulnerabilityPolicy,
    SigningPolicy,
}

impl ProjectDocument {
    fn table_and_column(self) -> (&'static str, &'static str) {
        match self {
            ProjectDocument::TagRules => ("tag_rules", "rules"),
            ProjectDocument::RetentionPolicy => ("retention_policies", "policy"),
            ProjectDocument::VulnerabilityPolicy => ("vulnerability_policies", "policy"),
            ProjectDocument::SigningPolicy => ("signing_policies", "policy"),
        }
    }
}

/// The repository `r` belongs to project `$1`.
const IN_PROJECT: &str = "r.project = $1";

impl MetaStore {
    /// Adds batched pull counts in one transaction (counts add up, the latest time wins).
    pub async fn record_pulls(&self, pulls: &[PullDelta]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for pull in pulls {
            let (table, key_column, key) = match (&pull.digest, &pull.tag) {
                (Some(digest), _) => ("manifest_pulls", "digest", digest),
                (None, Some(tag)) => ("tag_pulls", "tag", tag),
                (None, None) => continue,
            };
            sqlx::query(&format!(
                "INSERT INTO {table} (repository_id, {key_column}, last_pulled_at, pull_count) \
                 SELECT id, $2, $3, $4 FROM repositories WHERE name = $1 \
                 ON CONFLICT (repository_id, {key_column}) DO UPDATE SET \
                 pull_count = {table}.pull_count + excluded.pull_count, \
                 last_pulled_at = CASE WHEN excluded.last_pulled_at > {table}.last_pulled_at \
                 THEN excluded.last_pulled_at ELSE {table}.last_pulled_at END"
            ))
            .bind(&pull.repository)
            .bind(key)
            .bind(pull.last_pulled_at)
            .bind(pull.count)
            .execute(&mut *tx)
            .await?;
            if let Some(digest) = &pull.digest {
                // Only GETs by digest count as pulls (tag rows also count HEADs by tag).
                crate::usage::count_pulls(&mut tx, &pull.repository, pull.count).await?;
                crate::events::record_in(
                    &mut tx,
                    &NewEvent::in_repository(
                        "artifact.pulled",
                        &pull.repository,
                        serde_json::json!({
                            "repository": pull.repository,
                            "digest": digest,
                            "count": pull.count,
                            "last_pulled_at": pull.last_pulled_at,
                        }),
                    ),
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every manifest of `project`'s repositories, with tags, pulls, blobs and index children.
    pub async fn artifacts(&self, project: &str) -> Result<Vec<ArtifactRow>> {
        let manifests = sqlx::query(&format!(
            "SELECT r.name, m.digest, m.media_type, COALESCE(m.created_at_us, m.created_at * 1000000), m.size, m.subject, p.last_pulled_at, p.pull_count, m.artifact_type \
             FROM manifests m JOIN repositories r ON r.id = m.repository_id \
             LEFT JOIN manifest_pulls p ON p.repository_id = m.repository_id AND p.digest = m.digest \
             WHERE {IN_PROJECT} ORDER BY r.name, m.created_at_us, m.digest"
        ))
        .bind(project)
        .fetch_all(&self.readers)
        .await?;
        let tags = sqlx::query(&format!(
            "SELECT r.name, t.digest, t.name, COALESCE(t.updated_at_us, t.updated_at * 1000000), p.last_pulled_at, p.pull_count \
             FROM tags t JOIN repositories r ON r.id = t.repository_id \
             LEFT JOIN tag_pulls p ON p.repository_id = t.repository_id AND p.tag = t.name \
             WHERE {IN_PROJECT} ORDER BY t.name"
        ))
        .bind(project)
        .fetch_all(&self.readers)
        .await?;
        let blobs = sqlx::query(&format!(
            "SELECT r.name, mb.manifest_digest, mb.blob_digest, b.size \
             FROM manifest_blobs mb JOIN repositories r ON r.id = mb.repository_id \
             JOIN blobs b ON b.digest = mb.blob_digest WHERE {IN_PROJECT}"
        ))
        .bind(project)
        .fetch_all(&self.readers)
        .await?;
        let children = sqlx::query(&format!(
            "SELECT r.name, mc.manifest_digest, mc.child_digest \
             FROM manifest_children mc JOIN repositories r ON r.id = mc.repository_id \
             WHERE {IN_PROJECT} ORDER BY mc.child_digest"
        ))
        .bind(project)
        .fetch_all(&self.readers)
        .await?;
        let mut children_of: HashMap<(String, String), Vec<String>> = HashMap::new();
        for row in children {
            children_of
                .entry((row.get(0), row.get(1)))
                .or_default()
                .push(row.get(2));
        }
        let mut tags_of: HashMap<(String, String), Vec<TagRow>> = HashMap::new();
        for row in tags {
            tags_of
                .entry((row.get(0), row.get(1)))
                .or_default()
                .push(TagRow {
                    name: row.get(2),
                    pushed_at_us: row.get(3),
                    last_pulled_at: row.get(4),
                    pull_count: row.get::<Option<i64>, _>(5).unwrap_or(0),
                });
        }
        let mut blobs_of: HashMap<(String, String), Vec<(String, i64)>> = HashMap::new();
        for row in blobs {
            blobs_of
                .entry((row.get(0), row.get(1)))
                .or_default()
                .push((row.get(2), row.get(3)));
        }
        Ok(manifests
            .into_iter()
            .map(|row| {
                let key: (String, String) = (row.get(0), row.get(1));
                ArtifactRow {
                    tags: tags_of.remove(&key).unwrap_or_default(),
                    blobs: blobs_of.remove(&key).unwrap_or_default(),
                    children: children_of.remove(&key).unwrap_or_default(),
                    repository: key.0,
                    digest: key.1,
                    media_type: row.get(2),
                    pushed_at_us: row.get(3),
                    size: row.get(4),
                    subject: row.get(5),
                    last_pulled_at: row.get(6),
                    pull_count: row.get::<Option<i64>, _>(7).unwrap_or(0),
                    artifact_type: row.get(8),
                }
            })
            .collect())
    }

    pub async fn retention_policy(&self, project: &str) -> Result<Option<String>> {
        self.project_document(ProjectDocument::RetentionPolicy, project)
            .await
    }

    /// Every project's retention policy: (project, policy JSON), by project.
    pub async fn retention_policies(&self) -> Result<Vec<(String, String)>> {
        Ok(
            sqlx::query_as("SELECT project, policy FROM retention_policies ORDER BY project")
                .fetch_all(&self.readers)
                .await?,
        )
    }

    pub async fn set_retention_policy(&self, project: &str, policy: &str) -> Result<()> {
        self.set_project_document(ProjectDocument::RetentionPolicy, project, policy)
            .await
    }

    /// The project's vulnerability policy for pulls (the scanner's JSON), if one was set.
    pub async fn vulnerability_policy(&self, project: &str) -> Result<Option<String>> {
        self.project_document(ProjectDocument::VulnerabilityPolicy, project)
            .await
    }

    pub async fn set_vulnerability_policy(&self, project: &str, policy: &str) -> Result<()> {
        self.set_project_document(ProjectDocument::VulnerabilityPolicy, project, policy)
            .await
    }

    /// The project's signing policy (the signing crate's JSON), if one was set.
    pub async fn signing_policy(&self, project: &str) -> Result<Option<String>> {
        self.project_document(ProjectDocument::SigningPolicy, project)
            .await
    }

    pub async fn set_signing_policy(&self, project: &str, policy: &str) -> Result<()> {
        self.set_project_document(ProjectDocument::SigningPolicy, project, policy)
            .await
    }

    /// A system-wide setting's JSON document (`vulnerability-allowlist`), if one was set.
    pub async fn system_setting(&self, name: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM system_settings WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.readers)
                .await?,
        )
    }

    pub async fn set_system_setting(&self, name: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO system_settings (name, value, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(value)
        .bind(now())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// A per-project JSON document (the lifecycle crate's), if one was set.
    pub(crate) async fn project_document(
        &self,
        document: ProjectDocument,
        project: &str,
    ) -> Result<Option<String>> {
        let (table, column) = document.table_and_column();
        Ok(
            sqlx::query_scalar(&format!("SELECT {column} FROM {table} WHERE project = $1"))
                .bind(project)
                .fetch_optional(&self.readers)
                .await?,
        )
    }

    pub(crate) async fn set_project_document(
        &self,
        document: ProjectDocument,
        project: &str,
        text: &str,
    ) -> Result<()> {
        let (table, column) = document.table_and_column();
        sqlx::query(&format!(
            "INSERT INTO {table} (project, {column}, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (project) DO UPDATE SET {column} = excluded.{column}, updated_at = excluded.updated_at"
        ))
        .bind(project)
        .bind(text)
        .bind(now())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Adds a run to `project`'s retention history; a real run (not a dry run) is also a
    /// `retention.completed` event.
    pub async fn record_retention_run(&self, project: &str, run: &RetentionRun) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO retention_runs (project, at, actor, dry_run, deleted_tags, deleted_manifests, freed_bytes) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(project)
        .bind(run.at)
        .bind(&run.actor)
        .bind(i64::from(run.dry_run))
        .bind(run.deleted_tags)
        .bind(run.deleted_manifests)
        .bind(run.freed_bytes)
        .execute(&mut *tx)
        .await?;
        if !run.dry_run {
            let event = NewEvent {
                event_type: "retention.completed",
                project: Some(project.to_string()),
                repository: None,
                data: serde_json::json!({
                    "project": project,
                    "actor": run.actor,
                    "deleted_tags": run.deleted_tags,
                    "deleted_manifests": run.deleted_manifests,
                    "freed_bytes": run.freed_bytes,
                }),
            };
            crate::events::record_in(&mut tx, &event).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A project's retention runs, newest first.
    pub async fn retention_runs(&self, project: &str, limit: u32) -> Result<Vec<RetentionRun>> {
        let rows = sqlx::query(
            "SELECT at, actor, dry_run, deleted_tags, deleted_manifests, freed_bytes FROM retention_runs \
             WHERE project = $1 ORDER BY at DESC, id DESC LIMIT $2",
        )
        .bind(project)
        .bind(limit as i64)
        .fetch_all(&self.readers)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| RetentionRun {
                at: r.get(0),
                actor: r.get(1),
                dry_run: flag(&r, 2),
                deleted_tags: r.get(3),
                deleted_manifests: r.get(4),
                freed_bytes: r.get(5),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::store;
    use crate::NewManifest;
    use gantry_oci::Digest;

    #[tokio::test]
    async fn pulls_add_up_and_artifacts_carry_tags_pulls_and_blobs() {
        let (_dir, store) = store().await;
        let blob = Digest::sha256_of(b"layer");
        store.link_blob("team/app", &blob, 5).await.unwrap();
        let digest = put(&store, b"manifest", vec![&blob], vec![], "v1").await;
        let pull = |digest: Option<&str>, tag: Option<&str>, count, at| PullDelta {
            repository: "team/app".into(),
            digest: digest.map(str::to_string),
            tag: tag.map(str::to_string),
            count,
            last_pulled_at: at,
        };
        let d = digest.to_string();
        store
            .record_pulls(&[pull(Some(&d), None, 2, 100), pull(None, Some("v1"), 3, 90)])
            .await
            .unwrap();
        store
            .record_pulls(&[pull(Some(&d), None, 1, 50), pull(None, Some("v1"), 1, 120)])
            .await
            .unwrap();
        // Pulls of repositories that do not exist are dropped, not errors.
        store
            .record_pulls(&[PullDelta {
                repository: "ghost/x".into(),
                ..pull(Some(&d), None, 1, 1)
            }])
            .await
            .unwrap();
        let artifacts = store.artifacts("team").await.unwrap();
        assert_eq!(artifacts.len(), 1);
        let a = &artifacts[0];
        assert_eq!((a.pull_count, a.last_pulled_at), (3, Some(100)));
        assert_eq!(a.tags.len(), 1);
        assert_eq!(
            (a.tags[0].pull_count, a.tags[0].last_pulled_at),
            (4, Some(120))
        );
        assert_eq!(a.blobs, [(blob.to_string(), 5)]);
        assert_eq!(a.size, 8);
        assert!(
            store.artifacts("tea").await.unwrap().is_empty(),
            "a prefix is not the project"
        );

        assert_eq!(store.retention_policy("team").await.unwrap(), None);
        store
            .set_retention_policy("team", r#"{"rules":[]}"#)
            .await
            .unwrap();
        assert_eq!(
            store.retention_policy("team").await.unwrap().as_deref(),
            Some(r#"{"rules":[]}"#)
        );
        let run = RetentionRun {
            at: 10,
            actor: "mia".into(),
            dry_run: true,
            deleted_tags: 2,
            deleted_manifests: 1,
            freed_bytes: 99,
        };
        store.record_retention_run("team", &run).await.unwrap();
        store
            .record_retention_run(
                "team",
                &RetentionRun {
                    at: 20,
                    dry_run: false,
                    ..run.clone()
                },
            )
            .await
            .unwrap();
        let runs = store.retention_runs("team", 10).await.unwrap();
        assert_eq!(
            runs.iter().map(|r| (r.at, r.dry_run)).collect::<Vec<_>>(),
            [(20, false), (10, true)]
        );
    }

    /// Puts manifest `content` (using `blobs`, listing `children`) into team/app, tagged `tag`.
    async fn put(
        store: &MetaStore,
        content: &[u8],
        blobs: Vec<&Digest>,
        children: Vec<&Digest>,
        tag: &str,
    ) -> Digest {
        let digest = Digest::sha256_of(content);
        let manifest = NewManifest {
            content,
            children,
            pushed_by: "tester",
            ..crate::tests::manifest(&digest, blobs, None)
        };
        store
            .put_manifest("team/app", &manifest, Some(tag.into()))
            .await
            .unwrap();
        digest
    }

    #[tokio::test]
    async fn artifacts_carry_index_children_and_push_times_that_order_pushes_within_a_second() {
        let (_dir, store) = store().await;
        let child = put(&store, b"child", vec![], vec![], "a").await;
        let index = put(&store, b"index", vec![], vec![&child], "b").await;
        let artifacts = store.artifacts("team").await.unwrap();
        let of = |d: &Digest| {
            artifacts
                .iter()
                .find(|a| a.digest == d.to_string())
                .unwrap()
        };
        assert_eq!(of(&index).children, [child.to_string()]);
        assert!(of(&child).children.is_empty());
        // Two pushes in a row, well within one second, still have an order.
        assert!(of(&index).pushed_at_us > of(&child).pushed_at_us);
        assert!(of(&index).tags[0].pushed_at_us > of(&child).tags[0].pushed_at_us);
    }
}
