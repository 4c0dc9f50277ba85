//! Consistent copies of the SQLite database taken while a server keeps writing to it (backups),
//! and what such a copy records about the blob store.

use std::path::Path;
use std::time::Duration;

use gantry_oci::Digest;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{Connection, Row, SqliteConnection};

use crate::{migrate, parse_digest, MetaError, Result};

/// What a database copy holds that a backup or a restore needs next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The newest migration applied to it.
    pub schema_version: i64,
    /// Every committed blob it records, (digest, size in bytes), in digest order: the bytes a
    /// backup must copy and a restore must bring back.
    pub blobs: Vec<(Digest, u64)>,
}

fn utf8(path: &Path) -> Result<&str> {
    path.to_str().ok_or_else(|| {
        MetaError::Db(sqlx::Error::Configuration(
            format!("{} is not a UTF-8 path", path.display()).into(),
        ))
    })
}

/// Copies the live database at `live` into the new file `into` (which must not exist), as of
/// one moment, while other processes go on writing to `live`; then drops the copy's upload
/// sessions (their bytes are not part of a backup) and reads what it records.
///
/// `VACUUM INTO` rather than SQLite's online backup API: it reads the whole database in one
/// read transaction, which in WAL mode never blocks writers (pushes go on; only checkpoints
/// wait for it to end). The backup API's step-by-step form restarts whenever another
/// connection writes, so under steady pushes it might never finish, and its all-at-once form
/// is the same single read transaction; it would also need a second SQLite binding next to
/// sqlx's (`links = "sqlite3"` allows one `libsqlite3-sys` in the build).
///
/// The copy is not fsynced here: the caller syncs it with the rest of the backup.
///
/// Errors: `SchemaTooNew` when a newer gantry migrated `live`; the database's errors (e.g. `live`
/// does not exist, `into` exists).
pub async fn take(live: &Path, into: &Path) -> Result<Snapshot> {
    let options = SqliteConnectOptions::new()
        .filename(live)
        .busy_timeout(Duration::from_secs(30));
    let mut source = SqliteConnection::connect_with(&options).await?;
    sqlx::query("VACUUM INTO $1")
        .bind(utf8(into)?)
        .execute(&mut source)
        .await?;
    source.close().await?;
    // The copy is a plain rollback-journal database: no -wal file appears beside it, and the
    // server turns WAL back on when it opens the restored file.
    let copy_options = SqliteConnectOptions::new()
        .filename(into)
        .journal_mode(SqliteJournalMode::Delete);
    let mut copy = SqliteConnection::connect_with(&copy_options).await?;
    let snapshot = read_open(&mut copy).await?;
    sqlx::query("DELETE FROM uploads")
        .execute(&mut copy)
        .await?;
    copy.close().await?;
    Ok(snapshot)
}

/// Reads what the database copy at `path` records, without changing it.
///
/// Errors: `SchemaTooNew` when a newer gantry migrated it; the database's errors.
pub async fn read(path: &Path) -> Result<Snapshot> {
    let options = SqliteConnectOptions::new().filename(path).read_only(true);
    let mut connection = SqliteConnection::connect_with(&options).await?;
    let snapshot = read_open(&mut connection).await?;
    connection.close().await?;
    Ok(snapshot)
}

async fn read_open(connection: &mut SqliteConnection) -> Result<Snapshot> {
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations")
        .fetch_all(&mut *connection)
        .await?;
    migrate::refuse_unknown_versions(&applied)?;
    let rows = sqlx::query("SELECT digest, size FROM blobs ORDER BY digest")
        .fetch_all(&mut *connection)
        .await?;
    let blobs = rows
        .into_iter()
        .map(|row| {
            let size: i64 = row.get(1);
            Ok((parse_digest(row.get(0))?, size.max(0) as u64))
        })
        .collect::<Result<_>>()?;
    Ok(Snapshot {
        schema_version: applied.into_iter().max().unwrap_or(0),
        blobs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::sqlite_store;

    #[tokio::test]
    async fn snapshot_holds_committed_blobs_and_no_upload_sessions() {
        let (dir, live) = sqlite_store().await;
        let blob = Digest::sha256_of(b"layer");
        live.link_blob("team/app", &blob, 5).await.unwrap();
        live.create_upload("0123-abcd", "team/app").await.unwrap();
        let copy = dir.path().join("copy.db");
        let snapshot = take(&dir.path().join("meta.db"), &copy).await.unwrap();
        assert_eq!(snapshot.blobs, vec![(blob, 5)]);
        assert_eq!(snapshot.schema_version, migrate::latest_known_version());
        assert_eq!(read(&copy).await.unwrap(), snapshot);
        let restored = crate::MetaStore::open_sqlite(&copy).await.unwrap();
        assert_eq!(
            restored.upload_repository("0123-abcd").await.unwrap(),
            None,
            "an upload session whose bytes are not in the backup is not restored"
        );
        assert_eq!(
            live.upload_repository("0123-abcd")
                .await
                .unwrap()
                .as_deref(),
            Some("team/app")
        );
    }
}
