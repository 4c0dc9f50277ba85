//! Registry metadata in SQL: repositories, blob links, manifests with their references,
//! tags and upload sessions. Manifests are stored here byte for byte, so a manifest, its
//! references and its tag are written in one transaction.
//!
//! Queries use `$n` placeholders and `ON CONFLICT`, which SQLite and PostgreSQL both accept,
//! so one query text serves both backends.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use gantry_metrics::PoolUse;
use gantry_oci::Digest;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Any, AnyPool, ConnectOptions, Executor, Row, Transaction};

mod archive;
mod blob_locks;
mod browse;
mod credentials;
mod events;
mod fetch_leases;
mod gc;
mod identity;
mod jobs;
mod lifecycle;
mod migrate;
mod quota;
mod removal;
mod replication;
mod scans;
pub mod snapshot;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
mod usage;
mod vulndb;
mod web_sessions;
mod webhooks;

pub use archive::ArchiveRecord;
pub use blob_locks::SharedBlobLock;
pub use browse::{
    ArtifactSummary, BrowsePage, BrowseSort, ProjectRepositories, ReferrerSummary,
    RepositorySummary,
};
pub use credentials::{AuditEvent, AuditQuery, Credential};
pub use events::{Event, NewEvent};
pub use gc::{DeadManifest, Reckoning};
pub use identity::{Project, ProjectAccessRow, User, PROJECT_ADMIN_ROLE};
pub use jobs::{now_ms, JobFilter, JobOutcome, JobRecord, JobState, JobTally, NewJob};
use lifecycle::ProjectDocument;
pub use lifecycle::{ArtifactRow, PullDelta, RetentionRun, TagRow};
pub use migrate::latest_known_version;
use quota::{Change, Held, UsageChanges};
pub use quota::{Quota, QuotaExceeded, QuotaResource, Recount, Usage};
pub use removal::ProjectRemoval;
pub use replication::{StoredRule, REPLICATION_RULES_COUNTER};
pub use scans::ScanRecord;
pub use usage::{ProjectUsage, RepositoryUsage, UsageFigures, UsageSnapshot, VersionSize};
pub use vulndb::{StoredAdvisory, VulnDbImport, VulnDbSource, VulnDbStatus};
pub use web_sessions::WebSession;
pub use webhooks::{NewWebhook, Webhook};

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("metadata database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("metadata database holds a malformed value: {0}")]
    Corrupt(String),
    #[error("manifest references blob {0} which is not in the repository")]
    MissingBlob(Digest),
    #[error("manifest references manifest {0} which is not in the repository")]
    MissingManifest(Digest),
    #[error("{0}")]
    Conflict(String),
    /// An immutable tag would move to another digest.
    #[error("tag {tag:?} already points at {current}")]
    TagImmutable { tag: String, current: String },
    #[error("{0}")]
    QuotaExceeded(QuotaExceeded),
    /// The database was migrated by a newer gantry (`database` is the newest schema version it
    /// holds, `binary` the newest this binary knows); migrations only go forward.
    #[error(
        "the metadata database has schema version {database}, but this gantry knows versions up \
         to {binary}: a newer gantry has run on this data directory. Run that newer gantry (or a \
         later one), or restore the backup taken before the upgrade (gantry restore-backup) to \
         go back to this version"
    )]
    SchemaTooNew { database: i64, binary: i64 },
    /// The store cannot serve (its file is gone or unreadable, or it does not answer).
    #[error("metadata store unavailable: {0}")]
    Unavailable(String),
}

/// Adds one to the change counter `$1` (creating it at 1).
const BUMP_CHANGE_COUNTER: &str = "INSERT INTO change_counters (name, version) VALUES ($1, 1) \
     ON CONFLICT (name) DO UPDATE SET version = change_counters.version + 1";

/// The actor scheduled runs (retention) are recorded as, in their history, events and audit.
pub const SCHEDULER_ACTOR: &str = "scheduler";

/// The tag a manifest is pushed under, and whether it may move once it exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagRef<'a> {
    pub name: &'a str,
    pub immutable: bool,
}

impl<'a> From<&'a str> for TagRef<'a> {
    fn from(name: &'a str) -> Self {
        TagRef {
            name,
            immutable: false,
        }
    }
}

pub type Result<T> = std::result::Result<T, MetaError>;

/// A manifest as stored: its exact bytes and what is needed to serve them.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub content: Vec<u8>,
}

/// What `put_manifest` records besides the bytes.
#[derive(Debug, Clone)]
pub struct NewManifest<'a> {
    pub digest: &'a Digest,
    pub media_type: &'a str,
    pub artifact_type: Option<&'a str>,
    pub subject: Option<&'a Digest>,
    /// The manifest's top-level annotations as JSON text.
    pub annotations: Option<String>,
    pub content: &'a [u8],
    pub blobs: Vec<&'a Digest>,
    pub children: Vec<&'a Digest>,
    /// Who pushed it, for the `artifact.pushed` event.
    pub pushed_by: &'a str,
}

/// A manifest that names another as its subject.
#[derive(Debug, Clone, PartialEq)]
pub struct Referrer {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub artifact_type: Option<String>,
    /// JSON text of the manifest's annotations.
    pub annotations: Option<String>,
}

/// How a page of a sorted listing is asked for.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    pub last: Option<&'a str>,
    pub limit: u32,
}

/// How one kind of manifest reference is checked and recorded.
struct ReferenceKind {
    /// Selects a row when the repository (`$1`) holds the referenced digest (`$2`).
    held: &'static str,
    /// Records that manifest `$2` of repository `$1` references digest `$3`.
    record: &'static str,
    missing: fn(Digest) -> MetaError,
}

/// Config and layers: blobs the repository must hold.
const BLOB_REFERENCES: ReferenceKind = ReferenceKind {
    held: "SELECT 1 FROM repository_blobs WHERE repository_id = $1 AND digest = $2",
    record: "INSERT INTO manifest_blobs (repository_id, manifest_digest, blob_digest) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
    missing: MetaError::MissingBlob,
};

/// Index entries: manifests the repository must hold.
const CHILD_REFERENCES: ReferenceKind = ReferenceKind {
    held: "SELECT 1 FROM manifests WHERE repository_id = $1 AND digest = $2",
    record: "INSERT INTO manifest_children (repository_id, manifest_digest, child_digest) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
    missing: MetaError::MissingManifest,
};

fn now() -> i64 {
    now_us() / 1_000_000
}

/// Unix time in microseconds: push times, so that pushes within one second keep their order.
fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Takes PostgreSQL's advisory lock `key` until `tx` ends; other transactions asking for it
/// wait.
async fn advisory_lock(tx: &mut Transaction<'_, Any>, key: i64) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(key)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Maps a unique-constraint violation to `Conflict(what)`, any other error to `Db`.
fn conflict(what: String) -> impl FnOnce(sqlx::Error) -> MetaError {
    move |e| match e {
        sqlx::Error::Database(d) if d.is_unique_violation() => MetaError::Conflict(what),
        other => MetaError::Db(other),
    }
}

/// A yes/no column: an integer 0 or 1 on both backends (SQLite has no boolean type, and
/// sqlx's Any driver reads its integers as integers).
fn flag(row: &sqlx::any::AnyRow, index: usize) -> bool {
    row.get::<i64, _>(index) != 0
}

fn parse_digest(s: &str) -> Result<Digest> {
    Digest::from_str(s).map_err(|e| MetaError::Corrupt(e.to_string()))
}

/// The SQL engine behind a store. Queries are written once, in the SQL both accept; the
/// few functions whose names differ come from [`Backend`]'s methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One file, one process: the embedded default.
    Sqlite,
    /// Shared by any number of replicas.
    Postgres,
}

impl Backend {
    /// SQL for the 1-based position of `needle` in `haystack` (0 when absent).
    fn position(self, needle: &str, haystack: &str) -> String {
        match self {
            Backend::Sqlite => format!("instr({haystack}, {needle})"),
            Backend::Postgres => format!("strpos({haystack}, {needle})"),
        }
    }

    /// SQL for a JSON array (as text) of `value` over the rows of `FROM …` (`from`); `[]`
    /// when there are none.
    fn json_array_of(self, value: &str, from: &str) -> String {
        match self {
            Backend::Sqlite => format!("(SELECT json_group_array({value}) {from})"),
            Backend::Postgres => {
                format!("(SELECT COALESCE(json_agg({value})::text, '[]') {from})")
            }
        }
    }

    /// SQL for a JSON array (as text, when outermost) of the given values.
    fn json_array(self, values: &str) -> String {
        match self {
            Backend::Sqlite => format!("json_array({values})"),
            Backend::Postgres => format!("json_build_array({values})"),
        }
    }
}

/// Where the metadata lives, as `--database` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseLocation {
    /// An SQLite file (created when missing).
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL (`postgres://user:password@host:port/database?…`).
    Postgres(String),
}

impl DatabaseLocation {
    /// Reads `postgres://…` / `postgresql://…` as PostgreSQL, `sqlite://PATH` or a plain path
    /// as an SQLite file.
    pub fn parse(location: &str) -> DatabaseLocation {
        if location.starts_with("postgres://") || location.starts_with("postgresql://") {
            DatabaseLocation::Postgres(location.to_string())
        } else {
            let path = location.strip_prefix("sqlite://").unwrap_or(location);
            DatabaseLocation::Sqlite(PathBuf::from(path))
        }
    }

    /// The location with any password replaced by `***`, for logs.
    pub fn redacted(&self) -> String {
        match self {
            DatabaseLocation::Sqlite(path) => path.display().to_string(),
            DatabaseLocation::Postgres(url) => match url::Url::parse(url) {
                Ok(mut parsed) if parsed.password().is_some() => {
                    let _ = parsed.set_password(Some("***"));
                    parsed.to_string()
                }
                Ok(parsed) => parsed.to_string(),
                Err(_) => "postgres://(unparsable URL)".to_string(),
            },
        }
    }
}

/// The metadata store: a pool for writes and one for reads.
///
/// Writes are serialized: on SQLite by its one writer connection (SQLite allows one writer
/// anyway, and this avoids busy errors on lock upgrades); on PostgreSQL by a
/// transaction-scoped advisory lock every write transaction takes first, across every
/// replica. So a check made inside a write transaction (a quota, an immutable tag, a
/// referenced blob) still holds when it commits, on either backend.
#[derive(Clone)]
pub struct MetaStore {
    writer: AnyPool,
    readers: AnyPool,
    backend: Backend,
    /// Connections that hold shared blob locks (PostgreSQL only; see `blob_locks`).
    blob_locks: Option<AnyPool>,
    /// The SQLite file and its identity when opened, for readiness checks: open
    /// connections keep working on a file that was moved, replaced or made unreadable, so
    /// only a look at the path tells. `None` on PostgreSQL.
    file: Option<Arc<DatabaseFile>>,
}

struct DatabaseFile {
    path: PathBuf,
    device: u64,
    inode: u64,
}

impl DatabaseFile {
    /// Whether the file at the path is still the one opened, and an SQLite database.
    async fn check(&self) -> std::result::Result<(), String> {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let path = self.path.clone();
        let (device, inode) = (self.device, self.inode);
        tokio::task::spawn_blocking(move || {
            let mut file =
                std::fs::File::open(&path).map_err(|e| format!("cannot open {name}: {e}"))?;
            let found = file
                .metadata()
                .map_err(|e| format!("cannot inspect {name}: {e}"))?;
            if (found.dev(), found.ino()) != (device, inode) {
                return Err(format!(
                    "{name} was replaced since the server opened it; restart the server"
                ));
            }
            let mut header = [0u8; 16];
            file.read_exact(&mut header)
                .map_err(|e| format!("cannot read {name}: {e}"))?;
            if &header != SQLITE_HEADER {
                return Err(format!("{name} is not an SQLite database any more"));
            }
            Ok(())
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

/// The first 16 bytes of every SQLite database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// The PostgreSQL advisory lock key that serializes write transactions (ASCII "gantryW").
const WRITE_LOCK: i64 = 0x67_616e_7472_7957;

/// Settings of every SQLite connection. FULL sync: a transaction acknowledged to a client
/// survives power loss, not only kill -9. 1 MiB of page cache per connection (SQLite's
/// default is 2 MiB): the OS page cache holds the rest, and five connections stay within a
/// small memory budget.
const SQLITE_SETTINGS: &str = "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; \
     PRAGMA synchronous = FULL; PRAGMA cache_size = -1024;";

impl MetaStore {
    /// Opens (creating and migrating when needed) the store at `location`.
    ///
    /// Errors: the database's own (cannot connect, cannot migrate), or `SchemaTooNew`.
    pub async fn open(location: &DatabaseLocation) -> Result<MetaStore> {
        match location {
            DatabaseLocation::Sqlite(path) => Self::open_sqlite(path).await,
            DatabaseLocation::Postgres(url) => Self::open_postgres(url).await,
        }
    }

    /// Opens (creating if needed) the SQLite database at `path` and migrates it.
    pub async fn open_sqlite(path: &Path) -> Result<MetaStore> {
        sqlx::any::install_default_drivers();
        let url = |read_only: bool| -> Result<AnyConnectOptions> {
            let options = SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(!read_only)
                .read_only(read_only);
            Ok(AnyConnectOptions::from_url(&options.to_url_lossy())?)
        };
        let writer = AnyPoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .after_connect(|connection, _| {
                Box::pin(async move {
                    connection
                        .execute(sqlx::raw_sql("PRAGMA journal_mode = WAL;"))
                        .await?;
                    connection.execute(sqlx::raw_sql(SQLITE_SETTINGS)).await?;
                    Ok(())
                })
            })
            .connect_with(url(false)?)
            .await?;
        migrate::run(&writer, Backend::Sqlite).await?;
        let readers = AnyPoolOptions::new()
            .max_connections(4)
            .min_connections(1)
            .after_connect(|connection, _| {
                Box::pin(async move {
                    connection.execute(sqlx::raw_sql(SQLITE_SETTINGS)).await?;
                    Ok(())
                })
            })
            .connect_with(url(true)?)
            .await?;
        let opened = std::fs::metadata(path).map_err(|e| {
            MetaError::Unavailable(format!("cannot inspect {}: {e}", path.display()))
        })?;
        let file = Arc::new(DatabaseFile {
            path: path.to_path_buf(),
            device: opened.dev(),
            inode: opened.ino(),
        });
        Ok(MetaStore {
            writer,
            readers,
            backend: Backend::Sqlite,
            blob_locks: None,
            file: Some(file),
        })
    }

    /// Connects to the PostgreSQL database at `url` and migrates it (the first replica to
    /// start does; the others wait for it on a lock).
    pub async fn open_postgres(url: &str) -> Result<MetaStore> {
        sqlx::any::install_default_drivers();
        let options = AnyConnectOptions::from_str(url)?;
        let writer = AnyPoolOptions::new()
            .max_connections(4)
            .min_connections(1)
            .connect_with(options.clone())
            .await?;
        migrate::run(&writer, Backend::Postgres).await?;
        let readers = AnyPoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            .connect_with(options.clone())
            .await?;
        // One connection per upload commit, mount or collection batch in progress.
        let blob_locks = AnyPoolOptions::new()
            .max_connections(16)
            .min_connections(0)
            .connect_with(options)
            .await?;
        Ok(MetaStore {
            writer,
            readers,
            blob_locks: Some(blob_locks),
            backend: Backend::Postgres,
            file: None,
        })
    }

    /// Which engine this store runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts a write transaction, serialized with every other write (see [`MetaStore`]).
    async fn begin_write(&self) -> Result<Transaction<'static, Any>> {
        let mut tx = self.writer.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(WRITE_LOCK)
                .execute(&mut *tx)
                .await?;
        }
        Ok(tx)
    }

    /// Whether the store can serve: the database file is still the one opened and readable,
    /// and both pools answer a query.
    ///
    /// Errors: `Unavailable` with the reason (the file's name, not its full path: the answer
    /// goes to unauthenticated probes).
    pub async fn check_ready(&self) -> Result<()> {
        if let Some(file) = &self.file {
            file.check().await.map_err(MetaError::Unavailable)?;
        }
        for pool in [&self.readers, &self.writer] {
            sqlx::query("SELECT 1").execute(pool).await.map_err(|e| {
                MetaError::Unavailable(format!("the database does not answer: {e}"))
            })?;
        }
        Ok(())
    }

    /// How the connection pools are used now (for metrics).
    pub fn pool_use(&self) -> [PoolUse; 2] {
        let usage = |pool: &'static str, p: &AnyPool| PoolUse {
            pool,
            open: p.size(),
            idle: p.num_idle() as u32,
            max: p.options().get_max_connections(),
        };
        [
            usage("writer", &self.writer),
            usage("readers", &self.readers),
        ]
    }

    pub async fn close(&self) {
        self.readers.close().await;
        self.writer.close().await;
    }

    async fn ensure_repository(tx: &mut Transaction<'_, Any>, name: &str) -> Result<i64> {
        sqlx::query(
            "INSERT INTO repositories (name, project, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(gantry_oci::RepositoryName::project_of(name))
        .bind(now())
            .execute(&mut **tx)
            .await?;
        let id: i64 = sqlx::query_scalar("SELECT id FROM repositories WHERE name = $1")
            .bind(name)
            .fetch_one(&mut **tx)
            .await?;
        Ok(id)
    }

    pub async fn repository_exists(&self, name: &str) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar("SELECT id FROM repositories WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.readers)
            .await?;
        Ok(found.is_some())
    }

    // ---- change counters ----------------------------------------------------------------

    /// Adds one to the change counter `name` (creating it at 1), for servers that cache what
    /// it counts to notice the change.
    pub async fn bump_change_counter(&self, name: &str) -> Result<()> {
        sqlx::query(BUMP_CHANGE_COUNTER)
            .bind(name)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Forgets the change counters whose names start with `prefix`; returns how many.
    pub async fn forget_change_counters(&self, prefix: &str) -> Result<u64> {
        let starts = self.backend.position("$1", "name");
        Ok(
            sqlx::query(&format!("DELETE FROM change_counters WHERE {starts} = 1"))
                .bind(prefix)
                .execute(&self.writer)
                .await?
                .rows_affected(),
        )
    }

    /// The change counter `name` (0 before its first bump).
    pub async fn change_counter(&self, name: &str) -> Result<i64> {
        let version: Option<i64> =
            sqlx::query_scalar("SELECT version FROM change_counters WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.readers)
                .await?;
        Ok(version.unwrap_or(0))
    }

    // ---- blobs ------------------------------------------------------------------------

    /// Size of `digest` if repository `name` holds it.
    pub async fn blob_in_repository(&self, name: &str, digest: &Digest) -> Result<Option<u64>> {
        let size: Option<i64> = sqlx::query_scalar(
            "SELECT b.size FROM repository_blobs rb \
             JOIN repositories r ON r.id = rb.repository_id \
             JOIN blobs b ON b.digest = rb.digest \
             WHERE r.name = $1 AND rb.digest = $2",
        )
        .bind(name)
        .bind(digest.to_string())
        .fetch_optional(&self.readers)
        .await?;
        Ok(size.map(|s| s as u64))
    }

    /// Size of `digest` if any repository holds it.
    pub async fn blob_anywhere(&self, digest: &Digest) -> Result<Option<u64>> {
        let size: Option<i64> = sqlx::query_scalar(
            "SELECT b.size FROM blobs b WHERE b.digest = $1 \
             AND EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = b.digest)",
        )
        .bind(digest.to_string())
        .fetch_optional(&self.readers)
        .await?;
        Ok(size.map(|s| s as u64))
    }

    /// Whether the blob store is known to hold `digest`'s bytes (linked or awaiting collection).
    pub async fn blob_recorded(&self, digest: &Digest) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM blobs WHERE digest = $1")
            .bind(digest.to_string())
            .fetch_optional(&self.readers)
            .await?;
        Ok(found.is_some())
    }

    /// Records that the durable blob `digest` is held by repository `name`.
    pub async fn link_blob(&self, name: &str, digest: &Digest, size: u64) -> Result<()> {
        let mut tx = self.begin_write().await?;
        Self::link_blob_in(&mut tx, name, digest, size).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Links the blob an upload session produced and ends the session, atomically.
    pub async fn complete_upload(
        &self,
        id: &str,
        name: &str,
        digest: &Digest,
        size: u64,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        Self::link_blob_in(&mut tx, name, digest, size).await?;
        sqlx::query("DELETE FROM uploads WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn link_blob_in(
        tx: &mut Transaction<'_, Any>,
        name: &str,
        digest: &Digest,
        size: u64,
    ) -> Result<()> {
        let repo = Self::ensure_repository(tx, name).await?;
        let digest = digest.to_string();
        let recorded = sqlx::query("INSERT INTO blobs (digest, size, created_at) VALUES ($1, $2, $3) ON CONFLICT (digest) DO NOTHING")
            .bind(&digest)
            .bind(size as i64)
            .bind(now())
            .execute(&mut **tx)
            .await?
            .rows_affected()
            > 0;
        if recorded {
            browse::count_blob_row(tx, Change::Added, &digest, size as i64).await?;
        }
        let linked = sqlx::query(
            "INSERT INTO repository_blobs (repository_id, digest, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (repository_id, digest) DO NOTHING",
        )
        .bind(repo)
        .bind(&digest)
        .bind(now())
        .execute(&mut **tx)
        .await?
        .rows_affected()
            > 0;
        if linked {
            let mut changes = UsageChanges::default();
            let repository = (repo, name);
            changes
                .record(
                    tx,
                    Held::Blob,
                    Change::Added,
                    repository,
                    &digest,
                    size as i64,
                )
                .await?;
            changes.charge(tx).await?;
        }
        Ok(())
    }

    /// Removes the repository's link to a blob; the bytes stay until garbage collection.
    pub async fn unlink_blob(&self, name: &str, digest: &Digest) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let digest = digest.to_string();
        let repo: Option<i64> = sqlx::query_scalar(
            "DELETE FROM repository_blobs WHERE digest = $1 \
             AND repository_id = (SELECT id FROM repositories WHERE name = $2) RETURNING repository_id",
        )
        .bind(&digest)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(repo) = repo {
            let mut changes = UsageChanges::default();
            changes
                .record_unlinked_blob(&mut tx, (repo, name), &digest)
                .await?;
            changes.charge(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(repo.is_some())
    }

    // ---- upload sessions ---------------------------------------------------------------

    pub async fn create_upload(&self, id: &str, name: &str) -> Result<()> {
        sqlx::query("INSERT INTO uploads (id, repository, created_at) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(name)
            .bind(now())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// The repository an upload session belongs to.
    pub async fn upload_repository(&self, id: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT repository FROM uploads WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.readers)
                .await?,
        )
    }

    /// Records that upload `id`'s first `hashed` bytes hash to the running state `state`
    /// (`Hasher::save`'s bytes).
    pub async fn save_upload_hash(&self, id: &str, hashed: u64, state: &[u8]) -> Result<()> {
        sqlx::query("UPDATE uploads SET hashed_bytes = $1, hash_state = $2 WHERE id = $3")
            .bind(hashed as i64)
            .bind(state)
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// The running hash upload `id` saved last: (bytes it covers, state), if any.
    pub async fn upload_hash(&self, id: &str) -> Result<Option<(u64, Vec<u8>)>> {
        let row: Option<(Option<i64>, Option<Vec<u8>>)> =
            sqlx::query_as("SELECT hashed_bytes, hash_state FROM uploads WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.readers)
                .await?;
        Ok(match row {
            Some((Some(hashed), Some(state))) => Some((hashed as u64, state)),
            _ => None,
        })
    }

    pub async fn delete_upload(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM uploads WHERE id = $1")
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    // ---- manifests and tags ------------------------------------------------------------

    pub async fn manifest_by_digest(
        &self,
        name: &str,
        digest: &Digest,
    ) -> Result<Option<StoredManifest>> {
        let row = sqlx::query(
            "SELECT m.media_type, m.content FROM manifests m JOIN repositories r ON r.id = m.repository_id \
             WHERE r.name = $1 AND m.digest = $2",
        )
        .bind(name)
        .bind(digest.to_string())
        .fetch_optional(&self.readers)
        .await?;
        Ok(row.map(|row| StoredManifest {
            digest: digest.clone(),
            media_type: row.get(0),
            content: row.get(1),
        }))
    }

    /// The indexes of repository `name` that list manifest `digest` as a child.
    pub async fn index_parents(&self, name: &str, digest: &Digest) -> Result<Vec<Digest>> {
        let parents: Vec<String> = sqlx::query_scalar(
            "SELECT c.manifest_digest FROM manifest_children c \
             JOIN repositories r ON r.id = c.repository_id \
             WHERE r.name = $1 AND c.child_digest = $2 ORDER BY c.manifest_digest",
        )
        .bind(name)
        .bind(digest.to_string())
        .fetch_all(&self.readers)
        .await?;
        parents
            .iter()
            .map(|p| {
                p.parse()
                    .map_err(|_| MetaError::Corrupt(format!("manifest digest {p}")))
            })
            .collect()
    }

    pub async fn manifest_by_tag(&self, name: &str, tag: &str) -> Result<Option<StoredManifest>> {
        let row = sqlx::query(
            "SELECT m.digest, m.media_type, m.content FROM tags t \
             JOIN repositories r ON r.id = t.repository_id \
             JOIN manifests m ON m.repository_id = t.repository_id AND m.digest = t.digest \
             WHERE r.name = $1 AND t.name = $2",
        )
        .bind(name)
        .bind(tag)
        .fetch_optional(&self.readers)
        .await?;
        row.map(|row| {
            Ok(StoredManifest {
                digest: parse_digest(row.get(0))?,
                media_type: row.get(1),
                content: row.get(2),
            })
        })
        .transpose()
    }

    /// Writes a manifest, its references and (optionally) a tag in one transaction, after
    /// checking inside that transaction that everything it references is in the repository.
    pub async fn put_manifest(
        &self,
        name: &str,
        manifest: &NewManifest<'_>,
        tag: Option<TagRef<'_>>,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let repo = Self::ensure_repository(&mut tx, name).await?;
        let references = [
            (&BLOB_REFERENCES, &manifest.blobs),
            (&CHILD_REFERENCES, &manifest.children),
        ];
        for (kind, digests) in references {
            for referenced in digests.iter() {
                let held: Option<i64> = sqlx::query_scalar(kind.held)
                    .bind(repo)
                    .bind(referenced.to_string())
                    .fetch_optional(&mut *tx)
                    .await?;
                if held.is_none() {
                    return Err((kind.missing)((*referenced).clone()));
                }
            }
        }
        let digest = manifest.digest.to_string();
        let pushed_us = now_us();
        let inserted = sqlx::query(
            "INSERT INTO manifests (repository_id, digest, media_type, artifact_type, subject, annotations, size, content, created_at, created_at_us) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (repository_id, digest) DO NOTHING",
        )
        .bind(repo)
        .bind(&digest)
        .bind(manifest.media_type)
        .bind(manifest.artifact_type)
        .bind(manifest.subject.map(|s| s.to_string()))
        .bind(manifest.annotations.as_deref())
        .bind(manifest.content.len() as i64)
        .bind(manifest.content)
        .bind(pushed_us / 1_000_000)
        .bind(pushed_us)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if inserted {
            let mut changes = UsageChanges::default();
            let size = manifest.content.len() as i64;
            changes
                .record(
                    &mut tx,
                    Held::Manifest,
                    Change::Added,
                    (repo, name),
                    &digest,
                    size,
                )
                .await?;
            changes.charge(&mut tx).await?;
            for (kind, digests) in references {
                for referenced in digests.iter() {
                    sqlx::query(kind.record)
                        .bind(repo)
                        .bind(&digest)
                        .bind(referenced.to_string())
                        .execute(&mut *tx)
                        .await?;
                }
            }
            browse::count_manifest_bytes(&mut tx, Change::Added, repo, &digest, size).await?;
            browse::refresh_artifact_sizes(&mut tx, repo, &digest).await?;
        }
        if let Some(tag) = tag {
            // Read inside the transaction: two racing first pushes of an immutable tag cannot
            // both win, and a moved tag's event names the digest it left.
            let current: Option<String> = sqlx::query_scalar(
                "SELECT digest FROM tags WHERE repository_id = $1 AND name = $2",
            )
            .bind(repo)
            .bind(tag.name)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(current) = current.filter(|c| *c != digest) {
                if tag.immutable {
                    return Err(MetaError::TagImmutable {
                        tag: tag.name.to_string(),
                        current,
                    });
                }
                events::record_in(
                    &mut tx,
                    &NewEvent::in_repository(
                        "tag.moved",
                        name,
                        serde_json::json!({
                            "repository": name,
                            "tag": tag.name,
                            "from_digest": current,
                            "digest": digest,
                            "actor": manifest.pushed_by,
                        }),
                    ),
                )
                .await?;
            }
            sqlx::query(
                "INSERT INTO tags (repository_id, name, digest, updated_at, updated_at_us) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (repository_id, name) DO UPDATE SET digest = excluded.digest, \
                 updated_at = excluded.updated_at, updated_at_us = excluded.updated_at_us",
            )
            .bind(repo)
            .bind(tag.name)
            .bind(&digest)
            .bind(pushed_us / 1_000_000)
            .bind(pushed_us)
            .execute(&mut *tx)
            .await?;
        }
        usage::count_push(&mut tx, name).await?;
        let size: i64 = sqlx::query_scalar(
            "SELECT artifact_size FROM manifests WHERE repository_id = $1 AND digest = $2",
        )
        .bind(repo)
        .bind(&digest)
        .fetch_one(&mut *tx)
        .await?;
        events::record_in(
            &mut tx,
            &NewEvent::in_repository(
                "artifact.pushed",
                name,
                serde_json::json!({
                    "repository": name,
                    "digest": digest,
                    "tag": tag.map(|t| t.name),
                    "media_type": manifest.media_type,
                    "artifact_type": manifest.artifact_type,
                    "size": size,
                    "actor": manifest.pushed_by,
                }),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The tags of repository `name` that point at `digest`.
    pub async fn tags_of(&self, name: &str, digest: &Digest) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT t.name FROM tags t JOIN repositories r ON r.id = t.repository_id \
             WHERE r.name = $1 AND t.digest = $2 ORDER BY t.name",
        )
        .bind(name)
        .bind(digest.to_string())
        .fetch_all(&self.readers)
        .await?)
    }

    /// A project's tag rules (the lifecycle crate's JSON), if any were set.
    pub async fn tag_rules(&self, project: &str) -> Result<Option<String>> {
        self.project_document(ProjectDocument::TagRules, project)
            .await
    }

    pub async fn set_tag_rules(&self, project: &str, rules: &str) -> Result<()> {
        self.set_project_document(ProjectDocument::TagRules, project, rules)
            .await
    }

    /// Removes a tag (and its pull statistics) only; the manifest stays reachable by digest.
    pub async fn delete_tag(&self, name: &str, tag: &str, actor: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "DELETE FROM tag_pulls WHERE tag = $1 AND repository_id = (SELECT id FROM repositories WHERE name = $2)",
        )
        .bind(tag)
        .bind(name)
        .execute(&mut *tx)
        .await?;
        let digest: Option<String> = sqlx::query_scalar(
            "DELETE FROM tags WHERE name = $1 AND repository_id = (SELECT id FROM repositories WHERE name = $2) \
             RETURNING digest",
        )
        .bind(tag)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(digest) = &digest {
            events::record_in(
                &mut tx,
                &NewEvent::in_repository(
                    "tag.deleted",
                    name,
                    serde_json::json!({
                        "repository": name, "tag": tag, "digest": digest, "actor": actor,
                    }),
                ),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(digest.is_some())
    }

    /// Removes a manifest, every tag pointing at it and its reference rows.
    pub async fn delete_manifest(&self, name: &str, digest: &Digest, actor: &str) -> Result<bool> {
        self.delete_manifests(&[(name.to_string(), digest.to_string())], actor)
            .await
            .map(|deleted| deleted > 0)
    }

    /// Deletes manifests (repository, digest) in one transaction, for `actor`; returns how
    /// many existed.
    pub async fn delete_manifests(
        &self,
        manifests: &[(String, String)],
        actor: &str,
    ) -> Result<usize> {
        let mut tx = self.begin_write().await?;
        let mut changes = UsageChanges::default();
        let mut deleted = 0;
        for (name, digest) in manifests {
            if Self::delete_manifest_in(&mut tx, &mut changes, name, digest, actor).await? {
                deleted += 1;
            }
        }
        changes.charge(&mut tx).await?;
        tx.commit().await?;
        Ok(deleted)
    }

    /// Removes a manifest, every tag pointing at it, its reference rows and pull statistics.
    async fn delete_manifest_in(
        tx: &mut Transaction<'_, Any>,
        changes: &mut UsageChanges,
        name: &str,
        digest: &str,
        actor: &str,
    ) -> Result<bool> {
        let repo: Option<i64> = sqlx::query_scalar("SELECT id FROM repositories WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut **tx)
            .await?;
        let Some(repo) = repo else { return Ok(false) };
        let tags: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM tags WHERE repository_id = $1 AND digest = $2 ORDER BY name",
        )
        .bind(repo)
        .bind(digest)
        .fetch_all(&mut **tx)
        .await?;
        let gone = sqlx::query(
            "DELETE FROM manifests WHERE repository_id = $1 AND digest = $2 \
             RETURNING size, media_type, artifact_size",
        )
        .bind(repo)
        .bind(digest)
        .fetch_optional(&mut **tx)
        .await?;
        let deleted = gone.is_some();
        if let Some(gone) = gone {
            let size: i64 = gone.get(0);
            events::record_in(
                tx,
                &NewEvent::in_repository(
                    "artifact.deleted",
                    name,
                    serde_json::json!({
                        "repository": name,
                        "digest": digest,
                        "tags": tags,
                        "media_type": gone.get::<String, _>(1),
                        "size": gone.get::<i64, _>(2),
                        "actor": actor,
                    }),
                ),
            )
            .await?;
            changes
                .record(
                    tx,
                    Held::Manifest,
                    Change::Removed,
                    (repo, name),
                    digest,
                    size,
                )
                .await?;
            browse::count_manifest_bytes(tx, Change::Removed, repo, digest, size).await?;
            for table in [
                "DELETE FROM tag_pulls WHERE repository_id = $1 AND tag IN \
                 (SELECT name FROM tags WHERE repository_id = $1 AND digest = $2)",
                "DELETE FROM manifest_pulls WHERE repository_id = $1 AND digest = $2",
                "DELETE FROM tags WHERE repository_id = $1 AND digest = $2",
                "DELETE FROM manifest_blobs WHERE repository_id = $1 AND manifest_digest = $2",
                "DELETE FROM manifest_children WHERE repository_id = $1 AND manifest_digest = $2",
            ] {
                sqlx::query(table)
                    .bind(repo)
                    .bind(digest)
                    .execute(&mut **tx)
                    .await?;
            }
            browse::refresh_artifact_sizes(tx, repo, digest).await?;
        }
        Ok(deleted)
    }

    /// A page of the repository's tags in lexical order, or `None` if the repository is unknown.
    pub async fn tags(&self, name: &str, page: Page<'_>) -> Result<Option<Vec<String>>> {
        if !self.repository_exists(name).await? {
            return Ok(None);
        }
        let tags = sqlx::query_scalar(
            "SELECT t.name FROM tags t JOIN repositories r ON r.id = t.repository_id \
             WHERE r.name = $1 AND t.name > $2 ORDER BY t.name LIMIT $3",
        )
        .bind(name)
        .bind(page.last.unwrap_or(""))
        .bind(page.limit as i64)
        .fetch_all(&self.readers)
        .await?;
        Ok(Some(tags))
    }

    /// A page of the names of repositories holding at least one manifest, in lexical order.
    pub async fn catalog(&self, page: Page<'_>) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT r.name FROM repositories r WHERE r.name > $1 \
             AND EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = r.id) \
             ORDER BY r.name LIMIT $2",
        )
        .bind(page.last.unwrap_or(""))
        .bind(page.limit as i64)
        .fetch_all(&self.readers)
        .await?)
    }

    /// Manifests of repository `name` whose subject is `subject`, optionally of one artifact type.
    pub async fn referrers(
        &self,
        name: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>> {
        let rows = sqlx::query(
            "SELECT m.digest, m.media_type, m.size, m.artifact_type, m.annotations FROM manifests m \
             JOIN repositories r ON r.id = m.repository_id \
             WHERE r.name = $1 AND m.subject = $2 AND ($3 IS NULL OR m.artifact_type = $3) \
             ORDER BY m.created_at, m.digest",
        )
        .bind(name)
        .bind(subject.to_string())
        .bind(artifact_type)
        .fetch_all(&self.readers)
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok(Referrer {
                    digest: parse_digest(row.get(0))?,
                    media_type: row.get(1),
                    size: row.get::<i64, _>(2) as u64,
                    artifact_type: row.get(3),
                    annotations: row.get(4),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
