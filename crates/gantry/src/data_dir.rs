//! The embedded default's data directory: private to the server's user, and held by one
//! `gantry serve` process at a time.
//!
//! Privacy: the directory holds password hashes, secret digests and the token signing key, so
//! the server creates everything with umask 077 (files 0600, directories 0700) and tightens a
//! directory an older version left open. Exclusivity: two processes on one SQLite file and one
//! blob tree would both run the schedulers (GC, retention) and race each other's uploads, so the
//! server holds an exclusive lock on `<data-dir>/gantry.lock` for its whole life; the kernel
//! drops the lock when the process ends, kill -9 included, so a crash never leaves it stale.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The lock file's name inside the data directory. It names the process holding it.
pub const LOCK_FILE: &str = "gantry.lock";

/// Files in the data directory from before it was kept private, tightened at start-up.
const SECRET_FILES: &[&str] = &["gantry.db", "gantry.db-wal", "gantry.db-shm"];

/// Makes every file and directory this process creates from now on private to its user
/// (umask 077): data directories and backups hold secrets.
pub fn create_privately() {
    // SAFETY: umask only changes the mode of files this process creates from now on; it is set
    // before the runtime starts work that creates files.
    unsafe {
        libc::umask(0o077);
    }
}

/// Who holds the lock of data directory `dir` now ("pid N, started T"), or `None` when no
/// process does (no lock file, or nobody holds it).
pub fn holder(dir: &Path) -> Option<String> {
    let mut file = File::open(dir.join(LOCK_FILE)).ok()?;
    match file.try_lock_shared() {
        Ok(()) => None,
        Err(std::fs::TryLockError::WouldBlock) => Some(describe_holder(&mut file)),
        Err(std::fs::TryLockError::Error(_)) => None,
    }
}

/// The holder a locked lock file names.
fn describe_holder(file: &mut File) -> String {
    let mut holder = String::new();
    let _ = file.read_to_string(&mut holder);
    let holder = holder.trim();
    if holder.is_empty() {
        "a process that is just starting".to_string()
    } else {
        holder.replace('\n', ", ")
    }
}

/// Held while the server runs; dropping it (or the process ending) releases the directory.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// Makes `dir` (created if missing) private to this user and takes its exclusive lock.
///
/// Errors: the directory cannot be created or its mode set; another process holds the lock
/// (the message names the directory and that process's pid and start time).
pub fn claim(dir: &Path) -> anyhow::Result<DataDirLock> {
    create_privately();
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    let private = |path: PathBuf, mode: u32| {
        std::fs::set_permissions(&path, Permissions::from_mode(mode)).with_context(|| {
            format!(
                "cannot make {} private (mode {mode:o}): run gantry as the directory's owner",
                path.display()
            )
        })
    };
    private(dir.to_path_buf(), 0o700)?;
    for name in SECRET_FILES {
        let path = dir.join(name);
        if path.exists() {
            private(path, 0o600)?;
        }
    }
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = describe_holder(&mut file);
            anyhow::bail!(
                "data directory {} is in use by another gantry process ({holder}): stop that \
                 process, or give this one another --data-dir",
                dir.display()
            );
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", path.display()));
        }
    }
    let started = crate::admin::time_of(time::OffsetDateTime::now_utc().unix_timestamp());
    let holder = format!("pid {}\nstarted {started}\n", std::process::id());
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(holder.as_bytes()))
        .and_then(|()| file.sync_data())
        .with_context(|| format!("cannot write the lock file {}", path.display()))?;
    Ok(DataDirLock { _file: file })
}
