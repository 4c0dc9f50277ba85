//! Records of archived artifacts.

use sqlx::Row;

use crate::{MetaStore, NewEvent, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveRecord {
    pub id: i64,
    pub project: String,
    pub repository: String,
    pub digest: String,
    pub tags: Vec<String>,
    pub object_key: String,
    pub bytes: i64,
    pub archived_at: i64,
    pub archived_by: String,
    pub restored_at: Option<i64>,
}

const COLUMNS: &str = "id, project, repository, digest, tags, object_key, bytes, archived_at, \
                       archived_by, restored_at";

fn record(row: &sqlx::any::AnyRow) -> Result<ArchiveRecord> {
    let tags: String = row.get(4);
    Ok(ArchiveRecord {
        id: row.get(0),
        project: row.get(1),
        repository: row.get(2),
        digest: row.get(3),
        tags: tags
            .split('\n')
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
        object_key: row.get(5),
        bytes: row.get(6),
        archived_at: row.get(7),
        archived_by: row.get(8),
        restored_at: row.get(9),
    })
}

/// The event of archive `id` (`artifact.archived` or `artifact.restored`).
fn archive_event(event_type: &'static str, archive: &ArchiveRecord, id: i64) -> NewEvent {
    NewEvent::in_repository(
        event_type,
        &archive.repository,
        serde_json::json!({
            "repository": archive.repository,
            "digest": archive.digest,
            "tags": archive.tags,
            "size": archive.bytes,
            "archive_id": id,
            "actor": archive.archived_by,
        }),
    )
}

impl MetaStore {
    /// Records an archived artifact, and its `artifact.archived` event; returns its id.
    pub async fn record_archive(&self, archive: &ArchiveRecord) -> Result<i64> {
        let mut tx = self.begin_write().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO archives (project, repository, digest, tags, object_key, bytes, archived_at, archived_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(&archive.project)
        .bind(&archive.repository)
        .bind(&archive.digest)
        .bind(archive.tags.join("\n"))
        .bind(&archive.object_key)
        .bind(archive.bytes)
        .bind(archive.archived_at)
        .bind(&archive.archived_by)
        .fetch_one(&mut *tx)
        .await?;
        crate::events::record_in(&mut tx, &archive_event("artifact.archived", archive, id)).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// A project's archives, newest first.
    pub async fn archives(&self, project: &str) -> Result<Vec<ArchiveRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM archives WHERE project = $1 ORDER BY archived_at DESC, id DESC"
        ))
        .bind(project)
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(record).collect()
    }

    pub async fn archive(&self, id: i64) -> Result<Option<ArchiveRecord>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM archives WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.readers)
            .await?;
        row.as_ref().map(record).transpose()
    }

    /// Forgets an archive; whether it existed.
    pub async fn delete_archive(&self, id: i64) -> Result<bool> {
        let done = sqlx::query("DELETE FROM archives WHERE id = $1")
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Marks archive `id` restored at `at` (Unix seconds), with its `artifact.restored` event.
    pub async fn mark_restored(&self, id: i64, at: i64, actor: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(&format!(
            "UPDATE archives SET restored_at = $2 WHERE id = $1 RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(at)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = row {
            let mut restored = archive_event("artifact.restored", &record(&row)?, id);
            restored.data["actor"] = actor.into();
            crate::events::record_in(&mut tx, &restored).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The newest archive, not restored since, that took tag `tag` of `repository` away.
    pub async fn archived_tag(&self, repository: &str, tag: &str) -> Result<Option<ArchiveRecord>> {
        // Tags are newline-separated: a whole line equal to the tag is a match.
        let found = self
            .backend
            .position("'\n' || $2 || '\n'", "'\n' || tags || '\n'");
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM archives WHERE repository = $1 AND restored_at IS NULL \
             AND {found} > 0 ORDER BY archived_at DESC, id DESC LIMIT 1"
        ))
        .bind(repository)
        .bind(tag)
        .fetch_optional(&self.readers)
        .await?;
        rows.as_ref().map(record).transpose()
    }
}
