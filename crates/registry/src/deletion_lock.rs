//! The lock that keeps blob deletion and backups apart.
//!
//! A backup snapshots the database, then copies the bytes of every blob the snapshot records.
//! Garbage collection deletes a blob's row, then its bytes; were it to run in between, the
//! snapshot would name a blob whose bytes are gone. So garbage collection holds this lock while
//! it deletes blobs (rows and bytes), and a backup holds it from its snapshot until the last
//! byte is copied. It is a file lock (`flock`) in the data directory because `gantry backup`
//! is another process than the server; the kernel releases it when its holder dies.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

/// The lock file's name inside the data directory.
pub const BLOB_DELETION_LOCK_FILE: &str = "blob-deletion.lock";

/// Where the lock lives; [`BlobDeletionLock::acquire`] takes it.
#[derive(Debug, Clone)]
pub struct BlobDeletionLock {
    path: PathBuf,
}

/// Held while blobs are deleted or copied; dropping it releases the lock.
#[derive(Debug)]
pub struct BlobDeletionGuard {
    _file: File,
}

impl BlobDeletionLock {
    /// The lock of the data directory `data_dir`.
    pub fn in_data_dir(data_dir: &Path) -> BlobDeletionLock {
        BlobDeletionLock {
            path: data_dir.join(BLOB_DELETION_LOCK_FILE),
        }
    }

    /// Takes the lock, waiting for its holder to finish first (a backup, while garbage
    /// collection waits; a collection's sweep, while a backup waits). Blocks the calling
    /// thread: call from a blocking context.
    ///
    /// Errors: the lock file cannot be created or locked.
    pub fn acquire_blocking(&self) -> std::io::Result<BlobDeletionGuard> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                tracing::info!(
                    lock = %self.path.display(),
                    "waiting for a backup or a garbage collection to finish with the blobs"
                );
                file.lock()?;
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        Ok(BlobDeletionGuard { _file: file })
    }

    /// [`acquire_blocking`](Self::acquire_blocking) on the runtime's blocking pool.
    pub async fn acquire(&self) -> std::io::Result<BlobDeletionGuard> {
        let lock = self.clone();
        tokio::task::spawn_blocking(move || lock.acquire_blocking())
            .await
            .map_err(std::io::Error::other)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_holder_waits_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let lock = BlobDeletionLock::in_data_dir(dir.path());
        let first = lock.acquire().await.unwrap();
        let second = tokio::spawn({
            let lock = lock.clone();
            async move { lock.acquire().await.unwrap() }
        });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(!second.is_finished(), "taken twice at once");
        drop(first);
        tokio::time::timeout(std::time::Duration::from_secs(10), second)
            .await
            .expect("taken once released")
            .unwrap();
    }
}
