//! Removing repositories and projects. A repository row exists while it *holds* something:
//! a manifest, a tag, a blob link or an upload session in progress. One that holds nothing is
//! forgotten (with its pull statistics) by garbage collection, by a repository delete and by a
//! project delete, so an emptied repository never keeps its project from being deleted and a
//! name used again starts empty.

use crate::{MetaError, MetaStore, Result};

/// The condition "repository row `repositories` holds nothing" (manifests, tags, blob links,
/// upload sessions), for statements over the `repositories` table.
const HOLDS_NOTHING: &str =
    "NOT EXISTS (SELECT 1 FROM manifests x WHERE x.repository_id = repositories.id) \
     AND NOT EXISTS (SELECT 1 FROM tags x WHERE x.repository_id = repositories.id) \
     AND NOT EXISTS (SELECT 1 FROM repository_blobs x WHERE x.repository_id = repositories.id) \
     AND NOT EXISTS (SELECT 1 FROM uploads x WHERE x.repository = repositories.name)";

/// The names of the repositories of project `$1` that hold something (an upload session
/// counts before its repository has a row).
fn holding_query() -> String {
    format!(
        "SELECT name FROM repositories WHERE project = $1 AND NOT ({HOLDS_NOTHING}) \
         UNION SELECT repository FROM uploads \
         WHERE substr(repository, 1, length($1) + 1) = $1 || '/' OR repository = $1 \
         ORDER BY 1"
    )
}

/// What deleting a project removed besides the project row and its members.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectRemoval {
    /// Robot accounts and CI tokens of the project (deleted: a caller caching them must
    /// forget them).
    pub credentials: Vec<String>,
}

impl MetaStore {
    /// Forgets the rows of repositories `filter` selects (a condition on `repositories` whose
    /// parameters are `$1`, `$2`) that hold nothing, with their pull statistics, inside `tx`;
    /// returns how many went. The emptiness is re-checked in the deleting statement.
    async fn forget_empty_in(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        filter: &str,
        first: &str,
        second: i64,
    ) -> Result<u64> {
        let chosen = format!("SELECT id FROM repositories WHERE {filter} AND {HOLDS_NOTHING}");
        for table in ["manifest_pulls", "tag_pulls"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE repository_id IN ({chosen})"
            ))
            .bind(first)
            .bind(second)
            .execute(&mut **tx)
            .await?;
        }
        let done = sqlx::query(&format!(
            "DELETE FROM repositories WHERE {filter} AND {HOLDS_NOTHING}"
        ))
        .bind(first)
        .bind(second)
        .execute(&mut **tx)
        .await?;
        Ok(done.rows_affected())
    }

    /// Forgets repositories created before `cutoff` (Unix seconds) that hold nothing, as
    /// garbage collection's last step; returns how many.
    pub async fn forget_empty_repositories(&self, cutoff: i64) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let forgotten =
            Self::forget_empty_in(&mut tx, "($1 = $1) AND created_at < $2", "", cutoff).await?;
        tx.commit().await?;
        Ok(forgotten)
    }

    /// Forgets repository `name` if it holds nothing; whether it did.
    pub async fn forget_repository_if_empty(&self, name: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let forgotten = Self::forget_empty_in(&mut tx, "name = $1 AND ($2 = $2)", name, 0).await?;
        tx.commit().await?;
        Ok(forgotten > 0)
    }

    /// The digests repository `name` links, in digest order.
    pub async fn repository_links(&self, name: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT rb.digest FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id \
             WHERE r.name = $1 ORDER BY rb.digest",
        )
        .bind(name)
        .fetch_all(&self.readers)
        .await?)
    }

    /// The ids of the upload sessions in progress into repository `name`.
    pub async fn repository_uploads(&self, name: &str) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT id FROM uploads WHERE repository = $1 ORDER BY id")
                .bind(name)
                .fetch_all(&self.readers)
                .await?,
        )
    }

    /// The repositories of `project` that hold something, by name.
    pub async fn holding_repositories(&self, project: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(&holding_query())
            .bind(project)
            .fetch_all(&self.readers)
            .await?)
    }

    /// Deletes a project that holds nothing, with everything kept for it: members, robot
    /// accounts and CI tokens, tag rules, the retention policy and its runs, usage and limits,
    /// records of restored archives and its empty repository rows. The audit log stays.
    /// `None`: no such project.
    ///
    /// Errors: `Conflict` while a repository of the project holds a manifest, a tag, a blob
    /// link or an upload in progress, or an archive of it is not restored (deleting a project
    /// never orphans images); nothing is deleted then.
    pub async fn delete_project(&self, name: &str) -> Result<Option<ProjectRemoval>> {
        let mut tx = self.begin_write().await?;
        let holding: Vec<String> = sqlx::query_scalar(&holding_query())
            .bind(name)
            .fetch_all(&mut *tx)
            .await?;
        if !holding.is_empty() {
            return Err(MetaError::Conflict(format!(
                "project {name:?} still holds {} repositories ({}); delete them first, or delete the project with force",
                holding.len(),
                holding.join(", ")
            )));
        }
        let archived: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM archives WHERE project = $1 AND restored_at IS NULL",
        )
        .bind(name)
        .fetch_one(&mut *tx)
        .await?;
        if archived > 0 {
            return Err(MetaError::Conflict(format!(
                "project {name:?} still has {archived} archived artifacts; delete them first, or delete the project with force"
            )));
        }
        Self::forget_empty_in(&mut tx, "project = $1 AND ($2 = $2)", name, 0).await?;
        let credentials: Vec<String> =
            sqlx::query_scalar("DELETE FROM credentials WHERE project = $1 RETURNING name")
                .bind(name)
                .fetch_all(&mut *tx)
                .await?;
        for table in [
            "archives",
            "tag_rules",
            "retention_policies",
            "retention_runs",
            "project_usage",
            "vulnerability_policies",
            "signing_policies",
            "replication_rules",
        ] {
            sqlx::query(&format!("DELETE FROM {table} WHERE project = $1"))
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        let done = sqlx::query("DELETE FROM projects WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        tx.commit().await?;
        Ok(Some(ProjectRemoval { credentials }))
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::store;
    use crate::MetaError;
    use gantry_oci::Digest;

    #[tokio::test]
    async fn a_repository_that_holds_nothing_does_not_hold_its_project_back() {
        let (_dir, store) = store().await;
        store.create_project("team", false, None).await.unwrap();
        let digest = Digest::sha256_of(b"x");
        store.link_blob("team/app", &digest, 1).await.unwrap();
        store.create_upload("u1", "team/web").await.unwrap();
        let refused = store.delete_project("team").await;
        assert!(
            matches!(&refused, Err(MetaError::Conflict(m)) if m.contains("2 repositories (team/app, team/web)")),
            "{refused:?}"
        );
        // Emptied: the row of team/app stays, holding nothing.
        assert!(store.unlink_blob("team/app", &digest).await.unwrap());
        store.delete_upload("u1").await.unwrap();
        assert!(store.repository_exists("team/app").await.unwrap());
        assert!(store.holding_repositories("team").await.unwrap().is_empty());
        assert!(store.delete_project("team").await.unwrap().is_some());
        assert!(!store.repository_exists("team/app").await.unwrap());
    }

    #[tokio::test]
    async fn garbage_collection_forgets_only_repositories_that_hold_nothing() {
        let (_dir, store) = store().await;
        let digest = Digest::sha256_of(b"x");
        store.link_blob("team/app", &digest, 1).await.unwrap();
        store.link_blob("team/web", &digest, 1).await.unwrap();
        store.unlink_blob("team/web", &digest).await.unwrap();
        // Younger than the cutoff: kept (a push may be about to fill it).
        assert_eq!(store.forget_empty_repositories(0).await.unwrap(), 0);
        let later = crate::now() + 10;
        assert_eq!(store.forget_empty_repositories(later).await.unwrap(), 1);
        assert!(store.repository_exists("team/app").await.unwrap());
        assert!(!store.repository_exists("team/web").await.unwrap());
    }
}
