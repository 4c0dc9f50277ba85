//! Local filesystem backend: `blobs/<alg>/<2 hex>/<hex>` and `uploads/<id>`.
//!
//! A blob file only ever appears by `rename` of a fully written, fsynced upload file, and the
//! directory is fsynced after the rename, so a crash never exposes a partial blob.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use gantry_oci::Digest;
use tokio::task::spawn_blocking;

use crate::{check_upload_id, BlobStore, ByteStream, StorageError, UploadWriter};

/// Writeback of an upload is started every this many bytes, so that the fsync at the end of a
/// request finds little left to flush: a durable write then runs near disk speed instead of
/// paying for the whole flush after the last byte arrives.
const WRITEBACK_EVERY: u64 = 8 * 1024 * 1024;

/// Size of each read from disk while streaming a blob: large enough to stay near the
/// loopback ceiling, small enough that many concurrent pulls stay within a bounded memory.
const READ_CHUNK: usize = 256 * 1024;

pub struct FsBlobStore {
    root: PathBuf,
}

impl FsBlobStore {
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root = root.into();
        std::fs::create_dir_all(root.join("blobs"))?;
        std::fs::create_dir_all(root.join("uploads"))?;
        Ok(FsBlobStore { root })
    }

    /// Where the committed blob `digest` lives: `<root>/blobs/<alg>/<2 hex>/<hex>` (backups
    /// copy the files directly).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(&hex[..2])
            .join(hex)
    }

    fn upload_path(&self, id: &str) -> Result<PathBuf, StorageError> {
        check_upload_id(id)?;
        Ok(self.root.join("uploads").join(id))
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Io(std::io::Error::other(e)))?
}

fn not_found_as_none<T>(r: std::io::Result<T>) -> Result<Option<T>, StorageError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Streams `len` bytes of `file` from its current position on a blocking thread; the
/// channel of one chunk keeps memory bounded per reader.
fn stream_file(mut file: File, len: u64) -> ByteStream {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    spawn_blocking(move || {
        let mut remaining = len;
        while remaining > 0 {
            let n = remaining.min(READ_CHUNK as u64) as usize;
            let mut buf = BytesMut::zeroed(n);
            let result = file.read_exact(&mut buf).map(|_| buf.freeze());
            let failed = result.is_err();
            if tx.blocking_send(result).is_err() || failed {
                return;
            }
            remaining -= n as u64;
        }
    });
    Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn check_ready(&self) -> Result<(), StorageError> {
        for directory in ["blobs", "uploads"] {
            let path = self.root.join(directory);
            let listed = tokio::fs::read_dir(&path).await;
            if let Err(e) = listed {
                tracing::warn!(path = %path.display(), error = %e, "blob store is not ready");
                return Err(StorageError::Unavailable(format!(
                    "the {directory} directory cannot be read: {}",
                    e.kind()
                )));
            }
        }
        Ok(())
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StorageError> {
        let path = self.blob_path(digest);
        Ok(not_found_as_none(tokio::fs::metadata(path).await)?.map(|m| m.len()))
    }

    async fn read(&self, digest: &Digest, range: Range<u64>) -> Result<ByteStream, StorageError> {
        let path = self.blob_path(digest);
        let file = blocking(move || {
            let mut file = not_found_as_none(File::open(path))?.ok_or(StorageError::NotFound)?;
            file.seek(SeekFrom::Start(range.start))?;
            Ok(file)
        })
        .await?;
        Ok(stream_file(file, range.end - range.start))
    }

    async fn delete(&self, digest: &Digest) -> Result<(), StorageError> {
        let path = self.blob_path(digest);
        not_found_as_none(tokio::fs::remove_file(path).await)?;
        Ok(())
    }

    async fn create_upload(&self, id: &str) -> Result<(), StorageError> {
        let path = self.upload_path(id)?;
        blocking(move || {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)?;
            Ok(())
        })
        .await
    }

    async fn upload_size(&self, id: &str) -> Result<Option<u64>, StorageError> {
        let path = self.upload_path(id)?;
        Ok(not_found_as_none(tokio::fs::metadata(path).await)?.map(|m| m.len()))
    }

    async fn append_upload(&self, id: &str) -> Result<Box<dyn UploadWriter>, StorageError> {
        let path = self.upload_path(id)?;
        let writer = blocking(move || {
            let file = not_found_as_none(OpenOptions::new().append(true).open(path))?
                .ok_or(StorageError::NotFound)?;
            Ok(FsUploadWriter::new(file)?)
        })
        .await?;
        Ok(Box::new(writer))
    }

    async fn read_upload(&self, id: &str) -> Result<ByteStream, StorageError> {
        let path = self.upload_path(id)?;
        let (file, len) = blocking(move || {
            let file = not_found_as_none(File::open(path))?.ok_or(StorageError::NotFound)?;
            let len = file.metadata()?.len();
            Ok((file, len))
        })
        .await?;
        Ok(stream_file(file, len))
    }

    async fn commit_upload(&self, id: &str, digest: &Digest) -> Result<(), StorageError> {
        let upload = self.upload_path(id)?;
        let target = self.blob_path(digest);
        blocking(move || {
            let file = not_found_as_none(File::open(&upload))?.ok_or(StorageError::NotFound)?;
            file.sync_all()?;
            let dir = target.parent().expect("blob path has a parent");
            if target.exists() {
                std::fs::remove_file(&upload)?;
                return Ok(());
            }
            std::fs::create_dir_all(dir)?;
            std::fs::rename(&upload, &target)?;
            // Syncing the target directory makes the new name durable; a crash that loses the
            // old name's removal leaves at most a stray upload file, never a partial blob.
            sync_dir(dir)?;
            Ok(())
        })
        .await
    }

    async fn delete_upload(&self, id: &str) -> Result<(), StorageError> {
        let path = self.upload_path(id)?;
        not_found_as_none(tokio::fs::remove_file(path).await)?;
        Ok(())
    }
}

struct FsUploadWriter {
    /// Moved into the blocking pool for each write and back; `None` only while a write runs.
    file: Option<File>,
    /// End of the file as written so far, where writeback was last started, and the start
    /// of the window before that one.
    written: u64,
    flushed: u64,
    previous: u64,
}

impl FsUploadWriter {
    fn new(file: File) -> std::io::Result<Self> {
        let end = file.metadata()?.len();
        Ok(FsUploadWriter {
            file: Some(file),
            written: end,
            flushed: end,
            previous: end,
        })
    }
}

/// Starts writing `[from, to)` of the file to disk, then waits for the range before it
/// (`[previous, from)`) and drops it from the page cache. Dirty pages per upload stay bounded
/// by two windows instead of growing until the kernel throttles every writer.
fn stream_writeback(file: &File, previous: u64, from: u64, to: u64) {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // Advisory calls: on any failure the closing fdatasync still makes everything durable.
    unsafe {
        libc::sync_file_range(
            fd,
            from as libc::off64_t,
            (to - from) as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
        if from > previous {
            let (start, len) = (
                previous as libc::off64_t,
                (from - previous) as libc::off64_t,
            );
            libc::sync_file_range(
                fd,
                start,
                len,
                libc::SYNC_FILE_RANGE_WAIT_BEFORE
                    | libc::SYNC_FILE_RANGE_WRITE
                    | libc::SYNC_FILE_RANGE_WAIT_AFTER,
            );
            libc::posix_fadvise(fd, start, len, libc::POSIX_FADV_DONTNEED);
        }
    }
}

#[async_trait]
impl UploadWriter for FsUploadWriter {
    async fn write(&mut self, chunks: Vec<Bytes>) -> Result<(), StorageError> {
        let mut file = self
            .file
            .take()
            .expect("no concurrent writes on one upload writer");
        let size: u64 = chunks.iter().map(|c| c.len() as u64).sum();
        let (written, mut flushed, mut previous) =
            (self.written + size, self.flushed, self.previous);
        let (file, result, flushed, previous) = spawn_blocking(move || {
            let r = chunks.iter().try_for_each(|c| file.write_all(c));
            if r.is_ok() && written - flushed >= WRITEBACK_EVERY {
                stream_writeback(&file, previous, flushed, written);
                (previous, flushed) = (flushed, written);
            }
            (file, r, flushed, previous)
        })
        .await
        .map_err(|e| StorageError::Io(std::io::Error::other(e)))?;
        self.file = Some(file);
        result?;
        self.written = written;
        self.flushed = flushed;
        self.previous = previous;
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<u64, StorageError> {
        let file = self.file.take().expect("writer not in use");
        blocking(move || {
            file.sync_data()?;
            Ok(file.metadata()?.len())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fs_backend_passes_the_suite() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).unwrap();
        crate::suite::run(&store).await;
    }

    #[tokio::test]
    async fn an_upload_continues_through_another_store_on_the_same_directory() {
        let dir = tempfile::tempdir().unwrap();
        let first = FsBlobStore::open(dir.path()).unwrap();
        let second = FsBlobStore::open(dir.path()).unwrap();
        crate::suite::run_replicas(&first, &second).await;
    }

    #[tokio::test]
    async fn store_is_not_ready_while_its_blob_directory_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).unwrap();
        std::fs::rename(dir.path().join("blobs"), dir.path().join("moved")).unwrap();
        let refused = store.check_ready().await.unwrap_err();
        assert!(
            matches!(&refused, StorageError::Unavailable(why) if why.contains("blobs directory")),
            "{refused}"
        );
        assert!(!refused.to_string().contains(&*dir.path().to_string_lossy()));
        std::fs::rename(dir.path().join("moved"), dir.path().join("blobs")).unwrap();
        store.check_ready().await.unwrap();
    }

    #[tokio::test]
    async fn upload_ids_cannot_escape_the_uploads_directory() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).unwrap();
        for bad in ["../x", "a/b", "", ".."] {
            assert!(matches!(
                store.create_upload(bad).await,
                Err(StorageError::InvalidUploadId(_))
            ));
        }
    }
}
