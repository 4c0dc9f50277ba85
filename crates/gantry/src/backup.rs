//! `gantry backup DIR` and `gantry restore-backup DIR`: a consistent copy of the embedded
//! default's data directory, taken while the server runs and pushes go on, and its way back.
//!
//! A backup directory holds:
//! ```text
//! DIR/gantry.db                        the database as of one moment (VACUUM INTO), without
//!                                      upload sessions (their bytes are not copied)
//! DIR/token-signing-key.pem            so that tokens issued before stay valid after a restore
//! DIR/initial-admin-password           when the data directory has one
//! DIR/storage/blobs/<alg>/<xx>/<hex>   every blob the database records, digests verified
//! DIR/gantry-backup.json               written last: what the backup holds, with checksums
//! ```
//! Only a directory with `gantry-backup.json` is a backup: one interrupted before the end has
//! none, and `restore-backup` refuses it. The archive location is not included (it is a copy of
//! what left the registry already, and may be an S3 bucket); nor are upload sessions in flight.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use gantry_client::{Progress, Silent};
use gantry_oci::{size, Algorithm, Digest, Hasher};
use gantry_registry::BlobDeletionLock;
use gantry_storage::FsBlobStore;
use serde::{Deserialize, Serialize};

use crate::progress::Bars;

/// The file a backup writes last; its presence is what makes a directory a complete backup.
pub const MANIFEST_FILE: &str = "gantry-backup.json";
/// The database's file name, in a data directory and in a backup.
use crate::config::DATABASE_FILE;
/// The blob store's directory, in a data directory and in a backup.
const STORAGE_DIR: &str = "storage";
/// Files of the data directory a backup carries besides the database, when they exist.
const KEPT_FILES: &[&str] = &[
    crate::serve::TOKEN_KEY_FILE,
    crate::bootstrap::PASSWORD_FILE,
];
/// The layout of `gantry-backup.json`; a restore refuses layouts it does not know.
const FORMAT: u32 = 1;

/// Where the data directory is, as `gantry serve` finds it.
#[derive(Args)]
pub struct DataDirArgs {
    /// The data directory: the server's (backup), or the new one to fill (restore-backup)
    /// [default: data_dir from --config, else ./gantry-data].
    #[arg(long, env = "GANTRY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The server's TOML configuration file (for its data_dir).
    #[arg(long, env = "GANTRY_CONFIG")]
    config: Option<PathBuf>,
    /// Do not draw a progress bar.
    #[arg(long, short)]
    quiet: bool,
}

impl DataDirArgs {
    /// Where the server keeps its metadata, as `gantry serve` finds it: GANTRY_DATABASE, else
    /// the config's `[database] url`, else the data directory's SQLite file.
    pub(crate) fn database(&self) -> anyhow::Result<gantry_meta::DatabaseLocation> {
        let given = match std::env::var("GANTRY_DATABASE") {
            Ok(url) => Some(url),
            Err(_) => match &self.config {
                Some(path) => crate::config::load_file(path)?.database.url,
                None => None,
            },
        };
        Ok(crate::config::database_location(given, &self.data_dir()?))
    }

    /// Whether to draw progress bars.
    pub(crate) fn quiet(&self) -> bool {
        self.quiet
    }

    /// Refuses a server whose metadata is on PostgreSQL (GANTRY_DATABASE or the config's
    /// `[database] url`): a backup here is a copy of the embedded default's files.
    fn refuse_postgres(&self) -> anyhow::Result<()> {
        if let gantry_meta::DatabaseLocation::Postgres(_) = self.database()? {
            anyhow::bail!(
                "this server keeps its metadata in PostgreSQL, and gantry backup copies the \
                 embedded default (SQLite and local blobs) only: back up PostgreSQL with pg_dump \
                 and the object storage with its own tools (versioning or replication)"
            );
        }
        Ok(())
    }

    pub(crate) fn data_dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(dir) = &self.data_dir {
            return Ok(dir.clone());
        }
        let from_file = match &self.config {
            Some(path) => crate::config::load_file(path)?.data_dir,
            None => None,
        };
        Ok(from_file.unwrap_or_else(|| crate::config::DEFAULT_DATA_DIR.into()))
    }
}

/// A file of the backup and what its bytes must be.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct FileRecord {
    /// Relative to the backup directory.
    path: String,
    size: u64,
    sha256: String,
}

/// `gantry-backup.json`.
#[derive(Debug, Serialize, Deserialize)]
struct BackupManifest {
    format: u32,
    /// The gantry version that took the backup.
    gantry_version: String,
    /// RFC 3339, UTC: when the database snapshot was taken.
    taken_at: String,
    /// The newest migration applied to the database.
    schema_version: i64,
    database: FileRecord,
    /// Other files of the data directory (token signing key, initial admin password).
    files: Vec<FileRecord>,
    blobs: u64,
    blob_bytes: u64,
}

/// Reads `source` to its end, hashing it with `algorithm`, writing it to `target` when given
/// and reporting bytes to `progress`; returns the size and digest.
fn stream_hashed(
    source: &mut File,
    mut target: Option<&mut File>,
    algorithm: Algorithm,
    progress: &dyn Progress,
) -> std::io::Result<(u64, Digest)> {
    let mut hasher = Hasher::new(algorithm);
    let mut buffer = vec![0u8; 1024 * 1024];
    let mut size = 0u64;
    loop {
        let n = source.read(&mut buffer)?;
        if n == 0 {
            return Ok((size, hasher.finish()));
        }
        hasher.update(&buffer[..n]);
        if let Some(target) = target.as_deref_mut() {
            target.write_all(&buffer[..n])?;
        }
        size += n as u64;
        progress.bytes(n as u64);
    }
}

/// Copies `from` to the new file `to` while hashing it with `algorithm`, reporting bytes to
/// `progress`, and makes the copy durable; returns its size and digest.
fn copy_hashed(
    from: &Path,
    to: &Path,
    algorithm: Algorithm,
    progress: &dyn Progress,
) -> anyhow::Result<(u64, Digest)> {
    let mut source = File::open(from).with_context(|| format!("cannot read {}", from.display()))?;
    let mut target = File::options()
        .write(true)
        .create_new(true)
        .open(to)
        .with_context(|| format!("cannot create {}", to.display()))?;
    let copied = stream_hashed(&mut source, Some(&mut target), algorithm, progress)
        .and_then(|copied| target.sync_all().map(|()| copied))
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    Ok(copied)
}

/// What a file's record says: its name, size and SHA-256.
fn record(name: &str, (size, digest): (u64, Digest)) -> FileRecord {
    FileRecord {
        path: name.to_string(),
        size,
        sha256: digest.hex().to_string(),
    }
}

/// Copies the plain file `name` of `from_dir` into `to_dir`, checking it against `expected`
/// when given; returns its record.
fn copy_file(
    from_dir: &Path,
    to_dir: &Path,
    name: &str,
    expected: Option<&FileRecord>,
    progress: &dyn Progress,
) -> anyhow::Result<FileRecord> {
    let record = record(
        name,
        copy_hashed(
            &from_dir.join(name),
            &to_dir.join(name),
            Algorithm::Sha256,
            progress,
        )?,
    );
    if let Some(expected) = expected {
        anyhow::ensure!(
            &record == expected,
            "{} in the backup is damaged: {} bytes with SHA-256 {}, but the backup recorded {} \
             bytes with SHA-256 {}; restore another backup",
            name,
            record.size,
            record.sha256,
            expected.size,
            expected.sha256
        );
    }
    Ok(record)
}

/// Copies every blob in `blobs` from one blob store to the other, verifying each one's size
/// and digest as it is read, and syncs the directories they land in. `whose` names the source
/// in error messages.
fn copy_blobs(
    from: &FsBlobStore,
    to: &FsBlobStore,
    blobs: &[(Digest, u64)],
    whose: &str,
    progress: &dyn Progress,
) -> anyhow::Result<()> {
    let mut directories = BTreeSet::new();
    for (digest, expected_size) in blobs {
        let (source, target) = (from.blob_path(digest), to.blob_path(digest));
        let directory = target.parent().expect("blob paths have a directory");
        if directories.insert(directory.to_path_buf()) {
            std::fs::create_dir_all(directory)
                .with_context(|| format!("cannot create {}", directory.display()))?;
        }
        anyhow::ensure!(
            source.exists(),
            "blob {digest} is missing from {whose} ({}), though its database records it",
            source.display()
        );
        let (size, actual) = copy_hashed(&source, &target, digest.algorithm(), progress)?;
        anyhow::ensure!(
            &actual == digest && size == *expected_size,
            "blob {digest} in {whose} is damaged ({}: {size} bytes hashing to {actual}, \
             expected {expected_size} bytes)",
            source.display()
        );
    }
    // The new directories and the levels above them, up to the blob store's `blobs/`.
    let levels: BTreeSet<&Path> = directories
        .iter()
        .flat_map(|directory| directory.ancestors().take(3))
        .collect();
    for directory in levels {
        sync_dir(directory)?;
    }
    Ok(())
}

/// Whether `dir` does not exist or holds nothing: a place to fill without overwriting.
fn missing_or_empty(dir: &Path) -> anyhow::Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", dir.display())),
    }
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync directory {}", dir.display()))
}

/// The names of the files besides the database, for a summary line.
fn file_names(files: &[FileRecord]) -> String {
    if files.is_empty() {
        return "no other files".to_string();
    }
    files
        .iter()
        .map(|f| f.path.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn total_bytes(blobs: &[(Digest, u64)]) -> u64 {
    blobs.iter().map(|(_, size)| size).sum()
}

/// `gantry backup DIR`: takes the blob deletion lock (garbage collection waits meanwhile),
/// snapshots the database, copies the other files and every blob the snapshot records, then
/// writes the manifest.
pub async fn backup(dir: &Path, args: &DataDirArgs) -> anyhow::Result<()> {
    crate::data_dir::create_privately();
    args.refuse_postgres()?;
    let data_dir = args.data_dir()?;
    let database = data_dir.join(DATABASE_FILE);
    anyhow::ensure!(
        database.is_file(),
        "{} is not a gantry data directory (it has no {DATABASE_FILE}): give the server's \
         directory with --data-dir, GANTRY_DATA_DIR or --config",
        data_dir.display()
    );
    anyhow::ensure!(
        missing_or_empty(dir)?,
        "{} is not empty: give a new directory for each backup, e.g. one named after the date",
        dir.display()
    );
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;

    // Held from the snapshot until the last blob is copied: no blob the snapshot records is
    // deleted meanwhile (see BlobDeletionLock).
    let lock = BlobDeletionLock::in_data_dir(&data_dir)
        .acquire()
        .await
        .with_context(|| {
            format!(
                "cannot take the blob deletion lock in {}",
                data_dir.display()
            )
        })?;
    let snapshot = gantry_meta::snapshot::take(&database, &dir.join(DATABASE_FILE))
        .await
        .with_context(|| format!("cannot snapshot the database {}", database.display()))?;
    let taken_at = crate::admin::time_of(time::OffsetDateTime::now_utc().unix_timestamp());
    let blob_bytes = total_bytes(&snapshot.blobs);
    eprintln!(
        "database snapshot taken; copying {} blobs ({})",
        snapshot.blobs.len(),
        size::format(blob_bytes)
    );
    let bar = Bars::new(args.quiet);
    bar.expect_bytes(blob_bytes, "copying blobs");
    let (dir, data_dir_copy) = (dir.to_path_buf(), data_dir.clone());
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let database = sync_and_record(&dir, DATABASE_FILE)?;
        let mut files = Vec::new();
        for name in KEPT_FILES {
            if data_dir_copy.join(name).exists() {
                files.push(copy_file(&data_dir_copy, &dir, name, None, &Silent)?);
            }
        }
        let from = FsBlobStore::open(data_dir_copy.join(STORAGE_DIR))?;
        let to = FsBlobStore::open(dir.join(STORAGE_DIR))?;
        copy_blobs(
            &from,
            &to,
            &snapshot.blobs,
            "the data directory",
            &*bar.clone(),
        )?;
        let manifest = BackupManifest {
            format: FORMAT,
            gantry_version: env!("CARGO_PKG_VERSION").to_string(),
            taken_at,
            schema_version: snapshot.schema_version,
            database,
            files,
            blobs: snapshot.blobs.len() as u64,
            blob_bytes,
        };
        // The manifest last, made durable by rename: a backup is complete once it is there.
        let temporary = dir.join(format!("{MANIFEST_FILE}.partial"));
        let mut file = File::create(&temporary)
            .with_context(|| format!("cannot create {}", temporary.display()))?;
        let mut text = serde_json::to_vec_pretty(&manifest)?;
        text.push(b'\n');
        file.write_all(&text)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write {}", temporary.display()))?;
        std::fs::rename(&temporary, dir.join(MANIFEST_FILE))
            .with_context(|| format!("cannot write {}", dir.join(MANIFEST_FILE).display()))?;
        sync_dir(&dir)?;
        drop(lock);
        bar.finish(&format!(
            "backed up {} into {}: database (schema version {}, {}), {} blobs ({}), {}",
            data_dir_copy.display(),
            dir.display(),
            manifest.schema_version,
            size::format(manifest.database.size),
            manifest.blobs,
            size::format(manifest.blob_bytes),
            file_names(&manifest.files)
        ));
        Ok(())
    })
    .await?
}

/// Syncs the database copy `name` in `dir` (VACUUM INTO does not) and records it.
fn sync_and_record(dir: &Path, name: &str) -> anyhow::Result<FileRecord> {
    let path = dir.join(name);
    let mut file = File::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let hashed = file
        .sync_all()
        .and_then(|()| stream_hashed(&mut file, None, Algorithm::Sha256, &Silent))
        .with_context(|| format!("cannot sync {}", path.display()))?;
    Ok(record(name, hashed))
}

/// `gantry restore-backup DIR`: checks that DIR is a complete backup and that the data
/// directory is new (or empty) and unused, copies everything into a hidden sibling directory
/// verifying every checksum and digest, then renames it into place: a restore that fails
/// half-way never leaves a data directory a server would start on.
pub async fn restore(dir: &Path, args: &DataDirArgs) -> anyhow::Result<()> {
    crate::data_dir::create_privately();
    let data_dir = args.data_dir()?;
    let manifest_path = dir.join(MANIFEST_FILE);
    let text = match std::fs::read(&manifest_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
            "{} is not a complete gantry backup: it has no {MANIFEST_FILE}, which a backup \
             writes last (the backup was interrupted, or this is not a backup directory); \
             restore another backup",
            dir.display()
        ),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read {}", manifest_path.display()))
        }
    };
    let manifest: BackupManifest = serde_json::from_slice(&text).with_context(|| {
        format!(
            "{} is not a gantry backup manifest",
            manifest_path.display()
        )
    })?;
    anyhow::ensure!(
        manifest.format == FORMAT,
        "{} has backup format {}, which this gantry ({}) does not know: restore it with the \
         gantry that took it ({}) or a newer one",
        manifest_path.display(),
        manifest.format,
        env!("CARGO_PKG_VERSION"),
        manifest.gantry_version
    );
    if let Some(holder) = crate::data_dir::holder(&data_dir) {
        anyhow::bail!(
            "{} is in use by a running gantry ({holder}): stop it, and restore into a new \
             data directory",
            data_dir.display()
        );
    }
    anyhow::ensure!(
        missing_or_empty(&data_dir)?,
        "{} is not empty: restore into a new or empty data directory (move the old one aside \
         first, if it is to be replaced)",
        data_dir.display()
    );
    let name = data_dir
        .file_name()
        .with_context(|| format!("{} does not name a directory", data_dir.display()))?;
    let parent = match data_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let staging = parent.join(format!(
        ".{}.restoring-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let outcome = restore_into(dir, &staging, &data_dir, manifest, args.quiet).await;
    if outcome.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    outcome
}

async fn restore_into(
    dir: &Path,
    staging: &Path,
    data_dir: &Path,
    manifest: BackupManifest,
    quiet: bool,
) -> anyhow::Result<()> {
    // Held until the rename: no server starts on the directory being filled.
    let _lock = crate::data_dir::claim(staging)?;
    copy_file(
        dir,
        staging,
        DATABASE_FILE,
        Some(&manifest.database),
        &Silent,
    )?;
    let snapshot = gantry_meta::snapshot::read(&staging.join(DATABASE_FILE))
        .await
        .with_context(|| format!("cannot read the database of the backup {}", dir.display()))?;
    for record in &manifest.files {
        anyhow::ensure!(
            KEPT_FILES.contains(&record.path.as_str()),
            "the backup names a file gantry does not keep: {}",
            record.path
        );
        copy_file(dir, staging, &record.path, Some(record), &Silent)?;
    }
    let blob_bytes = total_bytes(&snapshot.blobs);
    anyhow::ensure!(
        snapshot.blobs.len() as u64 == manifest.blobs && blob_bytes == manifest.blob_bytes,
        "the backup's database records {} blobs ({} bytes) but its manifest {} ({} bytes): \
         restore another backup",
        snapshot.blobs.len(),
        blob_bytes,
        manifest.blobs,
        manifest.blob_bytes
    );
    let bar = Bars::new(quiet);
    bar.expect_bytes(blob_bytes, "restoring blobs");
    let blobs = snapshot.blobs.clone();
    let (from, to) = (dir.join(STORAGE_DIR), staging.join(STORAGE_DIR));
    let copying = bar.clone();
    tokio::task::spawn_blocking(move || {
        copy_blobs(
            &FsBlobStore::open(from)?,
            &FsBlobStore::open(to)?,
            &blobs,
            "the backup",
            &*copying,
        )
    })
    .await??;
    sync_dir(staging)?;
    std::fs::rename(staging, data_dir).with_context(|| {
        format!(
            "cannot move the restored data into {} (did something write there meanwhile?)",
            data_dir.display()
        )
    })?;
    sync_dir(
        data_dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    )?;
    bar.finish(&format!(
        "restored the backup taken at {} (gantry {}, schema version {}) into {}: database, {} \
         blobs ({}), {}; every checksum and digest verified. Tokens issued before the backup \
         stay valid; start the server with --data-dir {}",
        manifest.taken_at,
        manifest.gantry_version,
        snapshot.schema_version,
        data_dir.display(),
        snapshot.blobs.len(),
        size::format(blob_bytes),
        file_names(&manifest.files),
        data_dir.display()
    ));
    Ok(())
}
