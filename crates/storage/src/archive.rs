//! Archive locations: where archived artifacts go, a local directory or an S3-compatible
//! bucket, behind one object API. An archive object becomes visible only once it is complete
//! (a renamed temporary file, a completed multipart upload), and a local one is fsynced
//! before the registry deletes what it holds.

use std::path::PathBuf;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, WriteMultipart};

use crate::location::open_s3;
use crate::{ByteStream, StorageError};

/// Parts in flight per archive upload: bounds memory to about this many 5 MiB parts.
const PARTS_IN_FLIGHT: usize = 2;

pub struct ArchiveLocation {
    store: Arc<dyn ObjectStore>,
    /// The directory, for local locations (fsynced after each write).
    local_root: Option<PathBuf>,
    description: String,
}

impl std::fmt::Debug for ArchiveLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

fn archive_error(e: object_store::Error) -> StorageError {
    match e {
        object_store::Error::NotFound { .. } => StorageError::NotFound,
        other => StorageError::Archive(other.to_string()),
    }
}

impl ArchiveLocation {
    /// `s3://BUCKET[/PREFIX]` (credentials, region and endpoint from the usual `AWS_*`
    /// variables: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL) or a
    /// directory, created if missing.
    pub fn open(location: &str) -> Result<ArchiveLocation, StorageError> {
        if let Some(bucket) = open_s3(location, "archive location", &[])? {
            let store: Arc<dyn ObjectStore> = if bucket.prefix.is_empty() {
                Arc::new(bucket.client)
            } else {
                Arc::new(PrefixStore::new(bucket.client, bucket.prefix))
            };
            return Ok(ArchiveLocation {
                store,
                local_root: None,
                description: location.to_string(),
            });
        }
        let root = PathBuf::from(location);
        std::fs::create_dir_all(&root)?;
        let root = root.canonicalize()?;
        let store = LocalFileSystem::new_with_prefix(&root).map_err(archive_error)?;
        Ok(ArchiveLocation {
            store: Arc::new(store),
            description: root.display().to_string(),
            local_root: Some(root),
        })
    }

    pub fn describe(&self) -> &str {
        &self.description
    }

    /// Starts writing the object `key`; nothing is visible under it until `finish`.
    pub async fn create(&self, key: &str) -> Result<ArchiveWriter, StorageError> {
        let path = ObjectPath::parse(key).map_err(|e| StorageError::Archive(e.to_string()))?;
        let upload = self
            .store
            .put_multipart(&path)
            .await
            .map_err(archive_error)?;
        Ok(ArchiveWriter {
            upload: WriteMultipart::new(upload),
            written: 0,
            local_file: self
                .local_root
                .as_ref()
                .map(|root| root.join(path.as_ref())),
        })
    }

    /// Streams the object `key`.
    pub async fn read(&self, key: &str) -> Result<ByteStream, StorageError> {
        let path = ObjectPath::parse(key).map_err(|e| StorageError::Archive(e.to_string()))?;
        let got = self.store.get(&path).await.map_err(archive_error)?;
        Ok(got
            .into_stream()
            .map_err(|e| std::io::Error::other(e.to_string()))
            .boxed())
    }

    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = ObjectPath::parse(key).map_err(|e| StorageError::Archive(e.to_string()))?;
        self.store.delete(&path).await.map_err(archive_error)
    }
}

pub struct ArchiveWriter {
    upload: WriteMultipart,
    written: u64,
    local_file: Option<PathBuf>,
}

impl ArchiveWriter {
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.upload
            .wait_for_capacity(PARTS_IN_FLIGHT)
            .await
            .map_err(archive_error)?;
        self.upload.write(bytes);
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Completes the object and makes it durable; returns its size.
    pub async fn finish(self) -> Result<u64, StorageError> {
        self.upload.finish().await.map_err(archive_error)?;
        if let Some(file) = self.local_file {
            tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                std::fs::File::open(&file)?.sync_all()?;
                if let Some(dir) = file.parent() {
                    std::fs::File::open(dir)?.sync_all()?;
                }
                Ok(())
            })
            .await
            .map_err(std::io::Error::other)??;
        }
        Ok(self.written)
    }

    /// Gives the object up: nothing stays visible.
    pub async fn abort(self) {
        if let Err(e) = self.upload.abort().await {
            tracing::warn!(error = %e, "cannot abort an archive upload");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn objects_appear_complete_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let location = ArchiveLocation::open(dir.path().join("archive").to_str().unwrap()).unwrap();
        let mut writer = location.create("team/app/a.tar").await.unwrap();
        let big = vec![7u8; 6 * 1024 * 1024 + 3];
        writer.write(&big).await.unwrap();
        assert!(matches!(
            location.read("team/app/a.tar").await,
            Err(StorageError::NotFound)
        ));
        assert_eq!(writer.finish().await.unwrap(), big.len() as u64);
        let read: Vec<u8> = location
            .read("team/app/a.tar")
            .await
            .unwrap()
            .try_fold(Vec::new(), |mut all, chunk| async move {
                all.extend_from_slice(&chunk);
                Ok(all)
            })
            .await
            .unwrap();
        assert!(read == big);

        let mut aborted = location.create("team/app/b.tar").await.unwrap();
        aborted.write(b"partial").await.unwrap();
        aborted.abort().await;
        assert!(matches!(
            location.read("team/app/b.tar").await,
            Err(StorageError::NotFound)
        ));
        location.delete("team/app/a.tar").await.unwrap();
        assert!(matches!(
            location.read("team/app/a.tar").await,
            Err(StorageError::NotFound)
        ));
    }

    #[test]
    fn an_s3_archive_location_needs_a_bucket() {
        assert!(matches!(
            ArchiveLocation::open("s3://"),
            Err(StorageError::InvalidLocation(why)) if why.contains("archive location")
        ));
    }
}
