//! Per-project usage and quotas. Usage is kept live: every transaction that links or unlinks
//! a blob, or adds or removes a manifest, adjusts its project's row in the same transaction,
//! and refuses (rolling everything back) when an increase would pass a limit. Because the
//! writes are serialized, concurrent pushes cannot both slip under a limit, and the live
//! figure always equals a recount from the rows themselves.

use std::collections::BTreeMap;
use std::fmt;

use gantry_oci::{size, RepositoryName};
use sqlx::{Any, Row, Transaction};

use crate::{MetaError, MetaStore, Result};

/// What a project holds: bytes (each blob and manifest digest once per project) and
/// artifacts (distinct manifest digests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub bytes: i64,
    pub artifacts: i64,
}

/// A project's usage and limits (`None`: unlimited).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    pub project: String,
    pub used: Usage,
    pub bytes_limit: Option<i64>,
    pub artifacts_limit: Option<i64>,
}

impl Quota {
    /// A project that has used nothing and has no limits (one never written to).
    pub fn unused(project: &str) -> Quota {
        Quota {
            project: project.to_string(),
            used: Usage::default(),
            bytes_limit: None,
            artifacts_limit: None,
        }
    }
}

/// The live figures before a recount and what the rows add up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recount {
    pub live: Usage,
    pub counted: Usage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaResource {
    Storage,
    Artifacts,
}

impl QuotaResource {
    const ALL: [QuotaResource; 2] = [QuotaResource::Storage, QuotaResource::Artifacts];
}

impl Usage {
    fn of(&self, resource: QuotaResource) -> i64 {
        match resource {
            QuotaResource::Storage => self.bytes,
            QuotaResource::Artifacts => self.artifacts,
        }
    }
}

impl Quota {
    fn limit(&self, resource: QuotaResource) -> Option<i64> {
        match resource {
            QuotaResource::Storage => self.bytes_limit,
            QuotaResource::Artifacts => self.artifacts_limit,
        }
    }
}

/// A write refused because it would take a project past a limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaExceeded {
    pub project: String,
    pub resource: QuotaResource,
    /// How much the refused write adds; `None` when refused up front because the project is full.
    pub needed: Option<i64>,
    pub used: i64,
    pub limit: i64,
}

impl fmt::Display for QuotaExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let project = &self.project;
        let show = |n: i64| match self.resource {
            QuotaResource::Storage => size::format(n.max(0) as u64),
            QuotaResource::Artifacts => n.to_string(),
        };
        let unit = match self.resource {
            QuotaResource::Storage => "",
            QuotaResource::Artifacts => " artifacts",
        };
        let (what, flag) = match self.resource {
            QuotaResource::Storage => ("storage", "--storage SIZE"),
            QuotaResource::Artifacts => ("artifact", "--artifacts N"),
        };
        write!(f, "project {project:?} {what} quota exceeded: ")?;
        if let Some(needed) = self.needed {
            write!(f, "this push adds {}{unit}, ", show(needed))?;
        }
        write!(
            f,
            "{} of {}{unit} are in use; delete images (then `gantry gc` frees their layers) or \
             ask a system admin to raise it (`gantry quota set {project} {flag}`)",
            show(self.used),
            show(self.limit)
        )
    }
}

impl std::error::Error for QuotaExceeded {}

/// Adds up a project's usage from its rows (`$1`: the project, or NULL for every project).
/// The migration fills `project_usage` with it and `recount_usage` checks the live figures.
const COUNT_USAGE: &str = "\
    SELECT project, CAST(SUM(bytes) AS BIGINT), CAST(SUM(artifacts) AS BIGINT) FROM ( \
        SELECT l.project AS project, CAST(SUM(b.size) AS BIGINT) AS bytes, 0 AS artifacts FROM \
            (SELECT DISTINCT r.project, rb.digest FROM repository_blobs rb \
             JOIN repositories r ON r.id = rb.repository_id WHERE $1 IS NULL OR r.project = $1) l \
            JOIN blobs b ON b.digest = l.digest GROUP BY l.project \
        UNION ALL \
        SELECT m.project, CAST(SUM(m.size) AS BIGINT), COUNT(*) FROM \
            (SELECT r.project, mf.digest, MAX(mf.size) AS size FROM manifests mf \
             JOIN repositories r ON r.id = mf.repository_id WHERE $1 IS NULL OR r.project = $1 \
             GROUP BY r.project, mf.digest) m GROUP BY m.project \
    ) counted GROUP BY project";

/// What a repository holds that counts towards its project's usage.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Held {
    Blob,
    Manifest,
}

impl Held {
    /// Selects a row when another repository (not `$3`) of project `$2` holds digest `$1`.
    fn elsewhere_in_project(self) -> &'static str {
        match self {
            Held::Blob => {
                "SELECT 1 FROM repository_blobs x JOIN repositories r ON r.id = x.repository_id \
                 WHERE x.digest = $1 AND r.project = $2 AND x.repository_id <> $3 LIMIT 1"
            }
            Held::Manifest => {
                "SELECT 1 FROM manifests x JOIN repositories r ON r.id = x.repository_id \
                 WHERE x.digest = $1 AND r.project = $2 AND x.repository_id <> $3 LIMIT 1"
            }
        }
    }

    fn usage(self, bytes: i64) -> Usage {
        match self {
            Held::Blob => Usage {
                bytes,
                artifacts: 0,
            },
            Held::Manifest => Usage {
                bytes,
                artifacts: 1,
            },
        }
    }
}

/// Direction of a change in what a repository holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    Added,
    Removed,
}

fn usage_row(row: &sqlx::any::AnyRow) -> Quota {
    Quota {
        project: row.get(0),
        used: Usage {
            bytes: row.get(1),
            artifacts: row.get(2),
        },
        bytes_limit: row.get(3),
        artifacts_limit: row.get(4),
    }
}

const QUOTA_COLUMNS: &str = "project, bytes, artifacts, bytes_limit, artifacts_limit";

/// The usage changes of one transaction, summed per project and charged at its end: one
/// usage row update per project however many rows a batch changes.
#[derive(Debug, Default)]
pub(crate) struct UsageChanges(BTreeMap<String, Usage>);

impl UsageChanges {
    fn add(&mut self, project: &str, delta: Usage) {
        let sum = self.0.entry(project.to_string()).or_default();
        sum.bytes += delta.bytes;
        sum.artifacts += delta.artifacts;
    }

    /// Records that repository `(id, name)` gained or lost digest `digest` of `bytes` bytes:
    /// its project's usage changes only when no other repository of the project holds it.
    /// Call inside the changing transaction, after the change.
    pub async fn record(
        &mut self,
        tx: &mut Transaction<'_, Any>,
        held: Held,
        change: Change,
        (repository_id, name): (i64, &str),
        digest: &str,
        bytes: i64,
    ) -> Result<()> {
        let project = RepositoryName::project_of(name);
        let elsewhere: Option<i64> = sqlx::query_scalar(held.elsewhere_in_project())
            .bind(digest)
            .bind(project)
            .bind(repository_id)
            .fetch_optional(&mut **tx)
            .await?;
        if elsewhere.is_none() {
            let delta = held.usage(bytes);
            self.add(
                project,
                match change {
                    Change::Added => delta,
                    Change::Removed => Usage {
                        bytes: -delta.bytes,
                        artifacts: -delta.artifacts,
                    },
                },
            );
        }
        Ok(())
    }

    /// Records that repository `(id, name)` lost its link to blob `digest` (its size is looked
    /// up in the same statement that asks whether the project holds it elsewhere).
    pub async fn record_unlinked_blob(
        &mut self,
        tx: &mut Transaction<'_, Any>,
        (repository_id, name): (i64, &str),
        digest: &str,
    ) -> Result<()> {
        let project = RepositoryName::project_of(name);
        let size: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT size FROM blobs WHERE digest = $1 AND NOT EXISTS ({})",
            Held::Blob.elsewhere_in_project()
        ))
        .bind(digest)
        .bind(project)
        .bind(repository_id)
        .fetch_optional(&mut **tx)
        .await?;
        if let Some(size) = size {
            self.add(project, Held::Blob.usage(-size));
        }
        Ok(())
    }

    /// Applies the changes. An increase past a limit is an error, after which the caller
    /// must drop the transaction (rolling back the change and the charge together).
    pub async fn charge(self, tx: &mut Transaction<'_, Any>) -> Result<()> {
        for (project, delta) in self.0 {
            if delta == Usage::default() {
                continue;
            }
            let row = sqlx::query(&format!(
                "INSERT INTO project_usage (project, bytes, artifacts) VALUES ($1, $2, $3) \
                 ON CONFLICT (project) DO UPDATE SET bytes = project_usage.bytes + excluded.bytes, \
                 artifacts = project_usage.artifacts + excluded.artifacts RETURNING {QUOTA_COLUMNS}"
            ))
            .bind(&project)
            .bind(delta.bytes)
            .bind(delta.artifacts)
            .fetch_one(&mut **tx)
            .await?;
            let quota = usage_row(&row);
            // Only growth is refused: removing things always succeeds, even past a lowered
            // limit.
            for resource in QuotaResource::ALL {
                let (added, used) = (delta.of(resource), quota.used.of(resource));
                if let Some(limit) = quota
                    .limit(resource)
                    .filter(|limit| added > 0 && used > *limit)
                {
                    return Err(MetaError::QuotaExceeded(QuotaExceeded {
                        project,
                        resource,
                        needed: Some(added),
                        used: used - added,
                        limit,
                    }));
                }
            }
        }
        Ok(())
    }
}

impl MetaStore {
    /// A project's usage and limits (zero and unlimited for a project never written to).
    pub async fn quota(&self, project: &str) -> Result<Quota> {
        let row = sqlx::query(&format!(
            "SELECT {QUOTA_COLUMNS} FROM project_usage WHERE project = $1"
        ))
        .bind(project)
        .fetch_optional(&self.readers)
        .await?;
        Ok(row
            .as_ref()
            .map(usage_row)
            .unwrap_or_else(|| Quota::unused(project)))
    }

    /// Every project that holds something or has a limit, by name.
    pub async fn quotas(&self) -> Result<Vec<Quota>> {
        let rows = sqlx::query(&format!(
            "SELECT {QUOTA_COLUMNS} FROM project_usage ORDER BY project"
        ))
        .fetch_all(&self.readers)
        .await?;
        Ok(rows.iter().map(usage_row).collect())
    }

    /// Sets a project's limits (`None`: unlimited). Usage may already exceed a new limit; then
    /// nothing is deleted, further growth is refused.
    pub async fn set_quota_limits(
        &self,
        project: &str,
        bytes_limit: Option<i64>,
        artifacts_limit: Option<i64>,
    ) -> Result<Quota> {
        let row = sqlx::query(&format!(
            "INSERT INTO project_usage (project, bytes_limit, artifacts_limit) VALUES ($1, $2, $3) \
             ON CONFLICT (project) DO UPDATE SET bytes_limit = excluded.bytes_limit, \
             artifacts_limit = excluded.artifacts_limit RETURNING {QUOTA_COLUMNS}"
        ))
        .bind(project)
        .bind(bytes_limit)
        .bind(artifacts_limit)
        .fetch_one(&self.writer)
        .await?;
        Ok(usage_row(&row))
    }

    /// The reason a new upload into `project` would be refused now, if the project is full.
    pub async fn quota_full(&self, project: &str) -> Result<Option<QuotaExceeded>> {
        let quota = self.quota(project).await?;
        Ok(QuotaResource::ALL.into_iter().find_map(|resource| {
            let used = quota.used.of(resource);
            quota
                .limit(resource)
                .filter(|limit| used >= *limit)
                .map(|limit| QuotaExceeded {
                    project: project.to_string(),
                    resource,
                    needed: None,
                    used,
                    limit,
                })
        }))
    }

    /// Adds up `project`'s usage from its rows and compares it with the live figures, with
    /// writes held off meanwhile. Should they differ (they never have), the counted figures
    /// replace the live ones and the difference is logged.
    pub async fn recount_usage(&self, project: &str) -> Result<Recount> {
        let mut tx = self.begin_write().await?;
        let live: Option<(i64, i64)> =
            sqlx::query_as("SELECT bytes, artifacts FROM project_usage WHERE project = $1")
                .bind(project)
                .fetch_optional(&mut *tx)
                .await?;
        let counted: Option<(String, i64, i64)> = sqlx::query_as(COUNT_USAGE)
            .bind(project)
            .fetch_optional(&mut *tx)
            .await?;
        let as_usage = |(bytes, artifacts): (i64, i64)| Usage { bytes, artifacts };
        let live = live.map(as_usage).unwrap_or_default();
        let counted = counted
            .map(|(_, b, a)| as_usage((b, a)))
            .unwrap_or_default();
        if live != counted {
            tracing::warn!(project, ?live, ?counted, "project usage drifted; corrected");
            sqlx::query(
                "INSERT INTO project_usage (project, bytes, artifacts) VALUES ($1, $2, $3) \
                 ON CONFLICT (project) DO UPDATE SET bytes = excluded.bytes, artifacts = excluded.artifacts",
            )
            .bind(project)
            .bind(counted.bytes)
            .bind(counted.artifacts)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Recount { live, counted })
    }

    /// Fills `project_usage` for data stored before quotas existed (run by the migration).
    pub(crate) async fn count_all_usage(tx: &mut Transaction<'_, Any>) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO project_usage (project, bytes, artifacts) \
             SELECT * FROM ({COUNT_USAGE}) counted_usage WHERE true \
             ON CONFLICT (project) DO UPDATE SET bytes = excluded.bytes, artifacts = excluded.artifacts"
        ))
        .bind(None::<String>)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use gantry_oci::Digest;

    use super::*;
    use crate::tests::store;
    use crate::NewManifest;

    fn d(n: u8) -> Digest {
        Digest::sha256_of(&[n])
    }

    fn image<'a>(digest: &'a Digest, blobs: Vec<&'a Digest>, content: &'a [u8]) -> NewManifest<'a> {
        NewManifest {
            digest,
            media_type: gantry_oci::media_type::OCI_MANIFEST,
            artifact_type: None,
            subject: None,
            annotations: None,
            content,
            blobs,
            children: vec![],
            pushed_by: "tester",
        }
    }

    async fn used(store: &MetaStore, project: &str) -> Usage {
        let quota = store.quota(project).await.unwrap();
        let recount = store.recount_usage(project).await.unwrap();
        assert_eq!(
            recount.live, recount.counted,
            "live usage drifted in {project}"
        );
        assert_eq!(quota.used, recount.live);
        quota.used
    }

    fn usage(bytes: i64, artifacts: i64) -> Usage {
        Usage { bytes, artifacts }
    }

    #[tokio::test]
    async fn usage_counts_each_digest_once_per_project() {
        let (_dir, store) = store().await;
        store.link_blob("team/a", &d(1), 100).await.unwrap();
        store.link_blob("team/b", &d(1), 100).await.unwrap();
        store.link_blob("team/b", &d(2), 20).await.unwrap();
        store.link_blob("other/a", &d(1), 100).await.unwrap();
        assert_eq!(used(&store, "team").await, usage(120, 0));
        assert_eq!(used(&store, "other").await, usage(100, 0));

        let (m, one) = (d(9), d(1));
        for repository in ["team/a", "team/b"] {
            store
                .put_manifest(
                    repository,
                    &image(&m, vec![&one], b"{\"x\":1}"),
                    Some("v1".into()),
                )
                .await
                .unwrap();
        }
        assert_eq!(used(&store, "team").await, usage(127, 1));

        // Removing one of two holders changes nothing; removing the last one does.
        assert!(!store.unlink_blob("team/a", &d(2)).await.unwrap());
        store.delete_manifest("team/a", &m, "tester").await.unwrap();
        assert_eq!(used(&store, "team").await, usage(127, 1));
        store.delete_manifest("team/b", &m, "tester").await.unwrap();
        assert_eq!(used(&store, "team").await, usage(120, 0));
        store.unlink_blob("team/b", &d(2)).await.unwrap();
        assert_eq!(used(&store, "team").await, usage(100, 0));
    }

    #[tokio::test]
    async fn growth_past_a_limit_is_refused_and_leaves_nothing_behind() {
        let (_dir, store) = store().await;
        store
            .set_quota_limits("team", Some(150), Some(1))
            .await
            .unwrap();
        store.link_blob("team/a", &d(1), 100).await.unwrap();
        let refused = store.link_blob("team/a", &d(2), 51).await;
        match refused {
            Err(MetaError::QuotaExceeded(e)) => {
                assert_eq!(e.resource, QuotaResource::Storage);
                assert_eq!((e.needed, e.used, e.limit), (Some(51), 100, 150));
                assert!(
                    e.to_string().contains("gantry quota set team --storage"),
                    "{e}"
                );
            }
            other => panic!("expected a quota refusal, got {other:?}"),
        }
        assert_eq!(
            store.blob_in_repository("team/a", &d(2)).await.unwrap(),
            None
        );
        // Exactly at the limit is allowed; a blob the project already holds costs nothing.
        store.link_blob("team/a", &d(3), 50).await.unwrap();
        store.link_blob("team/b", &d(1), 100).await.unwrap();
        assert_eq!(used(&store, "team").await, usage(150, 0));
        assert!(matches!(
            store.quota_full("team").await.unwrap(),
            Some(QuotaExceeded {
                resource: QuotaResource::Storage,
                needed: None,
                ..
            })
        ));

        store
            .set_quota_limits("team", Some(1000), Some(1))
            .await
            .unwrap();
        assert_eq!(store.quota_full("team").await.unwrap(), None);
        let one = d(1);
        let (m1, m2) = (d(10), d(11));
        store
            .put_manifest("team/a", &image(&m1, vec![&one], b"{}"), Some("v1".into()))
            .await
            .unwrap();
        let refused = store
            .put_manifest("team/a", &image(&m2, vec![&one], b"{ }"), Some("v2".into()))
            .await;
        assert!(matches!(
            refused,
            Err(MetaError::QuotaExceeded(QuotaExceeded {
                resource: QuotaResource::Artifacts,
                ..
            }))
        ));
        assert!(store
            .manifest_by_tag("team/a", "v2")
            .await
            .unwrap()
            .is_none());
        // Re-tagging an existing manifest adds no artifact.
        store
            .put_manifest(
                "team/a",
                &image(&m1, vec![&one], b"{}"),
                Some("again".into()),
            )
            .await
            .unwrap();
        assert_eq!(used(&store, "team").await, usage(152, 1));
        // Shrinking always works, even under a limit lowered below usage.
        store
            .set_quota_limits("team", Some(10), None)
            .await
            .unwrap();
        store
            .delete_manifest("team/a", &m1, "tester")
            .await
            .unwrap();
        assert!(store.unlink_blob("team/a", &d(3)).await.unwrap());
        assert_eq!(used(&store, "team").await, usage(100, 0));
    }

    #[tokio::test]
    async fn a_drifted_figure_is_corrected_by_recount_and_the_migration_counts_old_data() {
        let (_dir, store) = store().await;
        store.link_blob("team/a", &d(1), 100).await.unwrap();
        store.link_blob("solo", &d(2), 7).await.unwrap();
        sqlx::query("UPDATE project_usage SET bytes = 5")
            .execute(&store.writer)
            .await
            .unwrap();
        let recount = store.recount_usage("team").await.unwrap();
        assert_eq!((recount.live.bytes, recount.counted.bytes), (5, 100));
        assert_eq!(store.quota("team").await.unwrap().used, usage(100, 0));

        // What the migration does for data that predates usage tracking.
        sqlx::query("DELETE FROM project_usage")
            .execute(&store.writer)
            .await
            .unwrap();
        let mut tx = store.writer.begin().await.unwrap();
        MetaStore::count_all_usage(&mut tx).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(used(&store, "team").await, usage(100, 0));
        assert_eq!(used(&store, "solo").await, usage(7, 0));
    }
}
