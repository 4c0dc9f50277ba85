//! Usage and growth over time: cumulative activity counters per repository, and daily
//! snapshots of what each repository and project holds (with the size of the newest artifact
//! of each version line), kept so that growth stays visible after the artifacts are gone.
//!
//! Counters are added to in the transactions that do the counted thing (a manifest PUT, a
//! pull flush) and never lowered, so deleting manifests or repositories does not make past
//! activity vanish. A snapshot is one transaction that replaces its day's rows, so taking it
//! again the same day is idempotent.

use sqlx::{Any, Row, Transaction};

use crate::{MetaStore, Result};

/// What a repository or project holds and its activity at one moment. `bytes`: blobs and
/// manifests, each digest counted once (per repository for a repository, per project for a
/// project, as its quota counts it); `artifacts`: manifests; `pushes` and `pulls`: cumulative
/// accepted manifest PUTs and manifest GETs since counting started (migration 11).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageFigures {
    pub bytes: i64,
    pub artifacts: i64,
    pub pushes: i64,
    pub pulls: i64,
}

/// A repository's figures on a day (`YYYY-MM-DD`, UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryUsage {
    pub day: String,
    pub project: String,
    pub repository: String,
    pub figures: UsageFigures,
}

/// A project's figures on a day (`YYYY-MM-DD`, UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectUsage {
    pub day: String,
    pub project: String,
    pub figures: UsageFigures,
}

/// The newest artifact of a version line (`v1.4`) of a repository on a day: its tag
/// (`v1.4.2`), digest and size in bytes (manifest, config, layers and, for an index, its
/// platform images, each digest once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionSize {
    pub day: String,
    pub project: String,
    pub repository: String,
    pub line: String,
    pub tag: String,
    pub digest: String,
    pub bytes: i64,
    /// When the artifact was pushed (Unix microseconds).
    pub pushed_at_us: i64,
}

/// One day's snapshot, as written (every row's `day` is `day`) or read back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageSnapshot {
    pub projects: Vec<ProjectUsage>,
    pub repositories: Vec<RepositoryUsage>,
    pub versions: Vec<VersionSize>,
}

/// Counts one accepted manifest PUT of `repository`, inside the transaction that stored it.
pub(crate) async fn count_push(tx: &mut Transaction<'_, Any>, repository: &str) -> Result<()> {
    count_activity(tx, repository, "pushes", 1).await
}

/// Adds `pulls` manifest GETs of `repository`, inside the transaction that flushes them.
pub(crate) async fn count_pulls(
    tx: &mut Transaction<'_, Any>,
    repository: &str,
    pulls: i64,
) -> Result<()> {
    count_activity(tx, repository, "pulls", pulls).await
}

async fn count_activity(
    tx: &mut Transaction<'_, Any>,
    repository: &str,
    column: &'static str,
    count: i64,
) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO repository_activity (repository, project, {column}) VALUES ($1, $2, $3) \
         ON CONFLICT (repository) DO UPDATE SET {column} = repository_activity.{column} + excluded.{column}"
    ))
    .bind(repository)
    .bind(gantry_oci::RepositoryName::project_of(repository))
    .bind(count)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn figures(row: &sqlx::any::AnyRow, first: usize) -> UsageFigures {
    UsageFigures {
        bytes: row.get(first),
        artifacts: row.get(first + 1),
        pushes: row.get(first + 2),
        pulls: row.get(first + 3),
    }
}

impl MetaStore {
    /// Every repository's figures now (repositories known by their rows or their counters),
    /// with `day` left empty, by repository name.
    pub async fn repository_usage_now(&self) -> Result<Vec<RepositoryUsage>> {
        let rows = sqlx::query(
            "WITH known AS (SELECT name AS repository, project FROM repositories \
                            UNION SELECT repository, project FROM repository_activity) \
             SELECT k.repository, k.project, \
                COALESCE((SELECT CAST(SUM(b.size) AS BIGINT) FROM repositories r \
                          JOIN repository_blobs rb ON rb.repository_id = r.id \
                          JOIN blobs b ON b.digest = rb.digest WHERE r.name = k.repository), 0) \
                + COALESCE((SELECT CAST(SUM(m.size) AS BIGINT) FROM repositories r \
                          JOIN manifests m ON m.repository_id = r.id WHERE r.name = k.repository), 0), \
                (SELECT COUNT(*) FROM repositories r JOIN manifests m ON m.repository_id = r.id \
                 WHERE r.name = k.repository), \
                COALESCE(a.pushes, 0), COALESCE(a.pulls, 0) \
             FROM known k LEFT JOIN repository_activity a ON a.repository = k.repository \
             ORDER BY k.repository",
        )
        .fetch_all(&self.readers)
        .await?;
        Ok(rows
            .iter()
            .map(|row| RepositoryUsage {
                day: String::new(),
                repository: row.get(0),
                project: row.get(1),
                figures: figures(row, 2),
            })
            .collect())
    }

    /// Writes `day`'s snapshot (`YYYY-MM-DD`) taken at `taken_at` (Unix seconds), replacing
    /// whatever that day held, in one transaction. The rows' own `day` fields are ignored.
    pub async fn replace_usage_snapshot(
        &self,
        day: &str,
        taken_at: i64,
        snapshot: &UsageSnapshot,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for table in [
            "usage_snapshots",
            "usage_project_snapshots",
            "usage_version_snapshots",
        ] {
            sqlx::query(&format!("DELETE FROM {table} WHERE day = $1"))
                .bind(day)
                .execute(&mut *tx)
                .await?;
        }
        let rows = snapshot
            .projects
            .iter()
            .map(|p| (&p.project, None, p.figures))
            .chain(
                snapshot
                    .repositories
                    .iter()
                    .map(|r| (&r.project, Some(&r.repository), r.figures)),
            );
        for (project, repository, f) in rows {
            // A project's row, or (with a repository) a repository's.
            let (table, key) = match repository {
                None => ("usage_project_snapshots", ""),
                Some(_) => ("usage_snapshots", ", repository"),
            };
            let sql = format!(
                "INSERT INTO {table} (day, taken_at, bytes, artifacts, pushes, pulls, project{key}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7{})",
                if repository.is_some() { ", $8" } else { "" }
            );
            let mut query = sqlx::query(&sql)
                .bind(day)
                .bind(taken_at)
                .bind(f.bytes)
                .bind(f.artifacts)
                .bind(f.pushes)
                .bind(f.pulls)
                .bind(project);
            if let Some(repository) = repository {
                query = query.bind(repository);
            }
            query.execute(&mut *tx).await?;
        }
        for v in &snapshot.versions {
            sqlx::query(
                "INSERT INTO usage_version_snapshots (day, project, repository, line, tag, digest, bytes, pushed_at_us) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(day)
            .bind(&v.project)
            .bind(&v.repository)
            .bind(&v.line)
            .bind(&v.tag)
            .bind(&v.digest)
            .bind(v.bytes)
            .bind(v.pushed_at_us)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO usage_snapshot_days (day, taken_at) VALUES ($1, $2) \
             ON CONFLICT (day) DO UPDATE SET taken_at = excluded.taken_at",
        )
        .bind(day)
        .bind(taken_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Whether `day` (`YYYY-MM-DD`) has a snapshot.
    pub async fn has_usage_snapshot(&self, day: &str) -> Result<bool> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM usage_snapshot_days WHERE day = $1")
                .bind(day)
                .fetch_optional(&self.readers)
                .await?;
        Ok(found.is_some())
    }

    /// The snapshots from `since_day` (`YYYY-MM-DD`, inclusive) on, of `project` or (`None`)
    /// of every project, each list ordered by day then name.
    pub async fn usage_history(
        &self,
        project: Option<&str>,
        since_day: &str,
    ) -> Result<UsageSnapshot> {
        const WHERE: &str = "WHERE day >= $1 AND ($2 IS NULL OR project = $2)";
        let projects = sqlx::query(&format!(
            "SELECT day, project, bytes, artifacts, pushes, pulls FROM usage_project_snapshots \
             {WHERE} ORDER BY day, project"
        ))
        .bind(since_day)
        .bind(project)
        .fetch_all(&self.readers)
        .await?;
        let repositories = sqlx::query(&format!(
            "SELECT day, project, repository, bytes, artifacts, pushes, pulls FROM usage_snapshots \
             {WHERE} ORDER BY day, repository"
        ))
        .bind(since_day)
        .bind(project)
        .fetch_all(&self.readers)
        .await?;
        let versions = sqlx::query(&format!(
            "SELECT day, project, repository, line, tag, digest, bytes, pushed_at_us \
             FROM usage_version_snapshots {WHERE} ORDER BY day, repository, line"
        ))
        .bind(since_day)
        .bind(project)
        .fetch_all(&self.readers)
        .await?;
        Ok(UsageSnapshot {
            projects: projects
                .iter()
                .map(|row| ProjectUsage {
                    day: row.get(0),
                    project: row.get(1),
                    figures: figures(row, 2),
                })
                .collect(),
            repositories: repositories
                .iter()
                .map(|row| RepositoryUsage {
                    day: row.get(0),
                    project: row.get(1),
                    repository: row.get(2),
                    figures: figures(row, 3),
                })
                .collect(),
            versions: versions
                .iter()
                .map(|row| VersionSize {
                    day: row.get(0),
                    project: row.get(1),
                    repository: row.get(2),
                    line: row.get(3),
                    tag: row.get(4),
                    digest: row.get(5),
                    bytes: row.get(6),
                    pushed_at_us: row.get(7),
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{manifest, store};
    use crate::PullDelta;
    use gantry_oci::Digest;

    #[tokio::test]
    async fn deleting_a_manifest_does_not_lower_cumulative_pushes_or_pulls() {
        let (_dir, store) = store().await;
        let blob = Digest::sha256_of(b"layer");
        store.link_blob("team/api", &blob, 5).await.unwrap();
        let digest = Digest::sha256_of(b"{}");
        let m = manifest(&digest, vec![&blob], None);
        store
            .put_manifest("team/api", &m, Some("v1".into()))
            .await
            .unwrap();
        store
            .put_manifest("team/api", &m, Some("v2".into()))
            .await
            .unwrap();
        let pull = PullDelta {
            repository: "team/api".into(),
            digest: Some(digest.to_string()),
            tag: None,
            count: 3,
            last_pulled_at: 1,
        };
        let by_tag_only = PullDelta {
            digest: None,
            tag: Some("v1".into()),
            ..pull.clone()
        };
        store.record_pulls(&[pull, by_tag_only]).await.unwrap();
        let now = store.repository_usage_now().await.unwrap();
        assert_eq!(
            now[0].figures,
            UsageFigures {
                bytes: 5 + 2,
                artifacts: 1,
                pushes: 2,
                pulls: 3
            }
        );
        assert!(store
            .delete_manifest("team/api", &digest, "tester")
            .await
            .unwrap());
        let after = store.repository_usage_now().await.unwrap();
        assert_eq!(
            after[0].figures,
            UsageFigures {
                bytes: 5,
                artifacts: 0,
                pushes: 2,
                pulls: 3
            }
        );
    }

    #[tokio::test]
    async fn taking_a_days_snapshot_again_replaces_its_rows() {
        let (_dir, store) = store().await;
        let row = |bytes| RepositoryUsage {
            day: String::new(),
            project: "team".into(),
            repository: "team/api".into(),
            figures: UsageFigures {
                bytes,
                ..Default::default()
            },
        };
        for (day, bytes) in [("2026-01-01", 1), ("2026-01-02", 2), ("2026-01-02", 3)] {
            let snapshot = UsageSnapshot {
                repositories: vec![row(bytes)],
                ..Default::default()
            };
            store
                .replace_usage_snapshot(day, 0, &snapshot)
                .await
                .unwrap();
        }
        let history = store
            .usage_history(Some("team"), "2026-01-01")
            .await
            .unwrap();
        let days: Vec<(&str, i64)> = history
            .repositories
            .iter()
            .map(|r| (r.day.as_str(), r.figures.bytes))
            .collect();
        assert_eq!(days, [("2026-01-01", 1), ("2026-01-02", 3)]);
        assert!(store.has_usage_snapshot("2026-01-02").await.unwrap());
        assert!(!store.has_usage_snapshot("2026-01-03").await.unwrap());
        let later = store.usage_history(None, "2026-01-02").await.unwrap();
        assert_eq!(later.repositories.len(), 1);
        let other = store
            .usage_history(Some("ops"), "2026-01-01")
            .await
            .unwrap();
        assert!(other.repositories.is_empty());
    }
}
