//! S3-compatible object storage backend (AWS S3, Garage, …) through `object_store`.
//!
//! Layout under the location's prefix:
//! - `blobs/<alg>/<2 hex>/<hex>`: committed blobs. One only ever appears whole, by a single
//!   PUT or a server-side copy of a completed multipart upload, both atomic in S3.
//! - `_uploads/<id>/state`: the upload's state (JSON: the multipart upload's id, its parts'
//!   ETags and sizes, the current tail). Writing it is what moves an upload forward, so every
//!   replica sees the same upload, and a PATCH landing on any process continues it.
//! - `_uploads/<id>/part-<n>`: a readable copy of multipart part `n`. S3 cannot read the parts
//!   of an unfinished multipart upload; these copies let `read_upload` rebuild a hash state
//!   after a restart or on another replica.
//! - `_uploads/<id>/tail-<generation>`: bytes after the last full part (less than one part).
//! - `_uploads/<id>/assembled`: the multipart upload's key; a complete object only while a
//!   commit copies it to its digest's key.
//!
//! Memory per active upload is bounded by one part plus the chunk being received.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use gantry_oci::Digest;
use object_store::aws::AmazonS3;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{GetOptions, GetRange, ObjectStore, PutPayload};
use serde::{Deserialize, Serialize};

use crate::location::open_s3;
use crate::{check_upload_id, BlobStore, ByteStream, StorageError, UploadWriter};

/// S3's smallest part (all parts of a multipart upload but the last): 5 MiB.
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// The largest part size accepted: bounds the memory of each active upload.
pub const MAX_PART_SIZE: usize = 16 * 1024 * 1024;
/// The largest object S3's CopyObject copies (AWS's limit); larger blobs are copied as a
/// multipart upload streamed from the source.
pub const MAX_COPY_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// Part size when none is configured.
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;

/// How long a readiness check waits for the bucket (the client retries failed requests for
/// minutes, longer than a load balancer's probe waits).
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Blobs in an S3 bucket (see the module documentation for the layout).
pub struct S3BlobStore {
    bucket: Arc<Bucket>,
    description: String,
}

/// What the store and its upload writers share.
struct Bucket {
    client: AmazonS3,
    /// Key prefix with a trailing `/`, or empty.
    prefix: String,
    /// Bytes buffered before a part is sent; at least [`MIN_PART_SIZE`].
    part_size: usize,
    /// Objects up to this size are copied by CopyObject, larger ones streamed
    /// ([`MAX_COPY_SIZE`]; smaller in tests).
    copy_limit: u64,
}

impl std::fmt::Debug for S3BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

/// One full part of the multipart upload, as the state object records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredPart {
    /// The ETag S3 answered for the part (completing the upload names it).
    etag: String,
    size: u64,
}

/// The upload's state object (`_uploads/<id>/state`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct UploadState {
    /// The S3 multipart upload, created when the first full part is sent.
    multipart: Option<String>,
    /// Full parts sent, in order.
    parts: Vec<StoredPart>,
    /// The tail object's generation (`tail-<generation>`) and size; no object when 0 bytes.
    tail_generation: u64,
    tail_size: u64,
}

impl UploadState {
    fn size(&self) -> u64 {
        self.parts.iter().map(|p| p.size).sum::<u64>() + self.tail_size
    }
}

fn object_error(operation: &str, e: object_store::Error) -> StorageError {
    match e {
        object_store::Error::NotFound { .. } => StorageError::NotFound,
        other => StorageError::ObjectStore(format!("{operation}: {other}")),
    }
}

/// `Ok(None)` for a missing object.
fn absent_as_none<T>(r: Result<T, StorageError>) -> Result<Option<T>, StorageError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(StorageError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

impl S3BlobStore {
    /// Opens `s3://BUCKET[/PREFIX]` with credentials, region and endpoint from the `AWS_*`
    /// variables (as archive locations do), sending parts of `part_size` bytes.
    ///
    /// Errors: `InvalidLocation` for a location without a bucket, a malformed setting or a
    /// part size outside [`MIN_PART_SIZE`]..=[`MAX_PART_SIZE`].
    pub fn open(location: &str, part_size: usize) -> Result<S3BlobStore, StorageError> {
        S3BlobStore::open_with(location, part_size, &[])
    }

    /// [`S3BlobStore::open`] with settings (named as the `AWS_*` variables) that take
    /// precedence over the environment's: for tests and tools that must not change it.
    pub fn open_with(
        location: &str,
        part_size: usize,
        settings: &[(&str, &str)],
    ) -> Result<S3BlobStore, StorageError> {
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part_size) {
            return Err(StorageError::InvalidLocation(format!(
                "part size {part_size} bytes is outside 5 MiB to 16 MiB"
            )));
        }
        let bucket = open_s3(location, "storage location", settings)?.ok_or_else(|| {
            StorageError::InvalidLocation(format!(
                "storage location {location:?} is not s3://BUCKET[/PREFIX]"
            ))
        })?;
        let prefix = if bucket.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", bucket.prefix)
        };
        Ok(S3BlobStore {
            bucket: Arc::new(Bucket {
                client: bucket.client,
                prefix,
                part_size,
                copy_limit: MAX_COPY_SIZE,
            }),
            description: location.to_string(),
        })
    }

    /// The location this store was opened with (`s3://…`).
    pub fn describe(&self) -> &str {
        &self.description
    }

    /// The keys of every object under `relative` (e.g. `blobs`, `_uploads`) in this store's
    /// prefix, for tests that look at what the bucket holds.
    #[cfg(any(test, feature = "test-suite"))]
    pub async fn keys_under(&self, relative: &str) -> Result<Vec<String>, StorageError> {
        self.bucket
            .client
            .list(Some(&self.bucket.key(relative)))
            .map_ok(|meta| meta.location.to_string())
            .map_err(|e| object_error("list", e))
            .try_collect()
            .await
    }
}

impl Bucket {
    /// Copies `size` bytes at `from` to `to`: by CopyObject up to [`Bucket::copy_limit`],
    /// else as a multipart upload of the source streamed part by part (the destination
    /// appears whole when it completes, as a copy's does).
    async fn copy(&self, from: &Path, to: &Path, size: u64) -> Result<(), StorageError> {
        if size <= self.copy_limit {
            return self
                .client
                .copy(from, to)
                .await
                .map_err(|e| object_error("copy upload to blob", e));
        }
        let upload = self
            .client
            .put_multipart(to)
            .await
            .map_err(|e| object_error("start copying upload to blob", e))?;
        let mut writer = object_store::WriteMultipart::new_with_chunk_size(upload, self.part_size);
        let mut source = self
            .client
            .get(from)
            .await
            .map_err(|e| object_error("read upload to copy", e))?
            .into_stream();
        while let Some(bytes) = source.next().await {
            let bytes = bytes.map_err(|e| object_error("read upload to copy", e))?;
            // At most two parts in flight: memory stays within a few parts.
            writer
                .wait_for_capacity(2)
                .await
                .map_err(|e| object_error("copy upload to blob", e))?;
            writer.write(&bytes);
        }
        writer
            .finish()
            .await
            .map_err(|e| object_error("copy upload to blob", e))?;
        Ok(())
    }

    fn key(&self, relative: &str) -> Path {
        Path::from(format!("{}{relative}", self.prefix))
    }

    fn blob_key(&self, digest: &Digest) -> Path {
        let hex = digest.hex();
        self.key(&format!(
            "blobs/{}/{}/{hex}",
            digest.algorithm().as_str(),
            &hex[..2]
        ))
    }

    fn upload_dir(&self, id: &str) -> Result<String, StorageError> {
        check_upload_id(id)?;
        Ok(format!("_uploads/{id}"))
    }

    fn state_key(&self, id: &str) -> Result<Path, StorageError> {
        Ok(self.key(&format!("{}/state", self.upload_dir(id)?)))
    }

    fn part_key(&self, id: &str, index: usize) -> Result<Path, StorageError> {
        Ok(self.key(&format!("{}/part-{index}", self.upload_dir(id)?)))
    }

    fn tail_key(&self, id: &str, generation: u64) -> Result<Path, StorageError> {
        Ok(self.key(&format!("{}/tail-{generation}", self.upload_dir(id)?)))
    }

    fn assembled_key(&self, id: &str) -> Result<Path, StorageError> {
        Ok(self.key(&format!("{}/assembled", self.upload_dir(id)?)))
    }

    async fn get_bytes(&self, key: &Path) -> Result<Bytes, StorageError> {
        let got = self
            .client
            .get(key)
            .await
            .map_err(|e| object_error("get", e))?;
        got.bytes().await.map_err(|e| object_error("get", e))
    }

    async fn size_of(&self, key: &Path) -> Result<Option<u64>, StorageError> {
        absent_as_none(
            self.client
                .head(key)
                .await
                .map(|meta| meta.size)
                .map_err(|e| object_error("head", e)),
        )
    }

    async fn load_state(&self, id: &str) -> Result<Option<UploadState>, StorageError> {
        let Some(bytes) = absent_as_none(self.get_bytes(&self.state_key(id)?).await)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            StorageError::ObjectStore(format!("the state of upload {id} is unreadable: {e}"))
        })
    }

    async fn save_state(&self, id: &str, state: &UploadState) -> Result<(), StorageError> {
        let json = serde_json::to_vec(state).expect("upload state serializes");
        self.client
            .put(&self.state_key(id)?, PutPayload::from(json))
            .await
            .map_err(|e| object_error("put upload state", e))?;
        Ok(())
    }

    /// Deletes everything stored for the upload: the state first, so that a crash halfway
    /// leaves only unreferenced objects, never an upload whose bytes are partly gone.
    async fn remove_upload(&self, id: &str, state: &UploadState) -> Result<(), StorageError> {
        absent_as_none(
            self.client
                .delete(&self.state_key(id)?)
                .await
                .map_err(|e| object_error("delete upload state", e)),
        )?;
        if let Some(multipart) = &state.multipart {
            let assembled = self.assembled_key(id)?;
            // Already completed (by a commit) or aborted: S3 answers NoSuchUpload; nothing to do.
            if let Err(e) = self
                .client
                .abort_multipart(&assembled, &multipart.clone())
                .await
            {
                tracing::debug!(upload = id, error = %e, "multipart upload not aborted");
            }
        }
        let prefix = self.key(&format!("{}/", self.upload_dir(id)?));
        let leftovers: Vec<Path> = self
            .client
            .list(Some(&prefix))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(|e| object_error("list upload objects", e))?;
        for key in leftovers {
            absent_as_none(
                self.client
                    .delete(&key)
                    .await
                    .map_err(|e| object_error("delete upload object", e)),
            )?;
        }
        Ok(())
    }

    /// Streams the objects `keys` one after another, each in the chunks the connection
    /// delivers.
    fn stream_objects(self: &Arc<Self>, keys: Vec<Path>) -> ByteStream {
        let bucket = self.clone();
        futures::stream::iter(keys)
            .then(move |key| {
                let bucket = bucket.clone();
                async move {
                    let got = bucket
                        .client
                        .get(&key)
                        .await
                        .map_err(|e| std::io::Error::other(object_error("get", e)))?;
                    Ok::<_, std::io::Error>(got.into_stream().map_err(std::io::Error::other))
                }
            })
            .try_flatten()
            .boxed()
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StorageError> {
        self.bucket.size_of(&self.bucket.blob_key(digest)).await
    }

    async fn read(&self, digest: &Digest, range: Range<u64>) -> Result<ByteStream, StorageError> {
        let key = self.bucket.blob_key(digest);
        if range.is_empty() {
            // S3 has no empty ranges; still say whether the blob exists.
            self.bucket
                .size_of(&key)
                .await?
                .ok_or(StorageError::NotFound)?;
            return Ok(futures::stream::empty().boxed());
        }
        let options = GetOptions {
            range: Some(GetRange::Bounded(range)),
            ..GetOptions::default()
        };
        let got = self
            .bucket
            .client
            .get_opts(&key, options)
            .await
            .map_err(|e| object_error("get", e))?;
        Ok(got.into_stream().map_err(std::io::Error::other).boxed())
    }

    async fn delete(&self, digest: &Digest) -> Result<(), StorageError> {
        absent_as_none(
            self.bucket
                .client
                .delete(&self.bucket.blob_key(digest))
                .await
                .map_err(|e| object_error("delete", e)),
        )?;
        Ok(())
    }

    async fn create_upload(&self, id: &str) -> Result<(), StorageError> {
        self.bucket.save_state(id, &UploadState::default()).await
    }

    async fn upload_size(&self, id: &str) -> Result<Option<u64>, StorageError> {
        Ok(self.bucket.load_state(id).await?.map(|s| s.size()))
    }

    async fn append_upload(&self, id: &str) -> Result<Box<dyn UploadWriter>, StorageError> {
        let state = self
            .bucket
            .load_state(id)
            .await?
            .ok_or(StorageError::NotFound)?;
        let mut buffer = BytesMut::new();
        if state.tail_size > 0 {
            let tail_key = self.bucket.tail_key(id, state.tail_generation)?;
            buffer.extend_from_slice(&self.bucket.get_bytes(&tail_key).await?);
        }
        Ok(Box::new(S3UploadWriter {
            bucket: self.bucket.clone(),
            id: id.to_string(),
            state,
            buffer,
        }))
    }

    async fn read_upload(&self, id: &str) -> Result<ByteStream, StorageError> {
        let state = self
            .bucket
            .load_state(id)
            .await?
            .ok_or(StorageError::NotFound)?;
        let mut keys = (0..state.parts.len())
            .map(|index| self.bucket.part_key(id, index))
            .collect::<Result<Vec<_>, _>>()?;
        if state.tail_size > 0 {
            keys.push(self.bucket.tail_key(id, state.tail_generation)?);
        }
        Ok(self.bucket.stream_objects(keys))
    }

    async fn commit_upload(&self, id: &str, digest: &Digest) -> Result<(), StorageError> {
        let bucket = &self.bucket;
        let state = bucket.load_state(id).await?.ok_or(StorageError::NotFound)?;
        let blob = bucket.blob_key(digest);
        if bucket.size_of(&blob).await?.is_none() {
            match &state.multipart {
                None if state.tail_size == 0 => {
                    bucket
                        .client
                        .put(&blob, PutPayload::new())
                        .await
                        .map_err(|e| object_error("put blob", e))?;
                }
                None => {
                    let tail = bucket.tail_key(id, state.tail_generation)?;
                    bucket.copy(&tail, &blob, state.tail_size).await?;
                }
                Some(multipart) => {
                    let assembled = bucket.assembled_key(id)?;
                    // A commit that stopped after completing the multipart upload is retried
                    // from the copy: S3 no longer knows the upload.
                    if bucket.size_of(&assembled).await? != Some(state.size()) {
                        let mut parts: Vec<PartId> = state
                            .parts
                            .iter()
                            .map(|p| PartId {
                                content_id: p.etag.clone(),
                            })
                            .collect();
                        if state.tail_size > 0 {
                            // The last part may be smaller than S3's minimum.
                            let tail = bucket
                                .get_bytes(&bucket.tail_key(id, state.tail_generation)?)
                                .await?;
                            let part = bucket
                                .client
                                .put_part(&assembled, multipart, parts.len(), tail.into())
                                .await
                                .map_err(|e| object_error("put last part", e))?;
                            parts.push(part);
                        }
                        bucket
                            .client
                            .complete_multipart(&assembled, multipart, parts)
                            .await
                            .map_err(|e| object_error("complete multipart upload", e))?;
                    }
                    bucket.copy(&assembled, &blob, state.size()).await?;
                }
            }
        }
        bucket.remove_upload(id, &state).await
    }

    async fn delete_upload(&self, id: &str) -> Result<(), StorageError> {
        let state = self.bucket.load_state(id).await?.unwrap_or_default();
        self.bucket.remove_upload(id, &state).await
    }

    async fn direct_read_url(
        &self,
        digest: &Digest,
        valid_for: std::time::Duration,
    ) -> Result<Option<String>, StorageError> {
        let url = self
            .bucket
            .client
            .signed_url(http::Method::GET, &self.bucket.blob_key(digest), valid_for)
            .await
            .map_err(|e| object_error("presign", e))?;
        Ok(Some(url.to_string()))
    }

    async fn check_ready(&self) -> Result<(), StorageError> {
        let probe = self.bucket.key("blobs");
        let listed = tokio::time::timeout(
            READY_TIMEOUT,
            self.bucket.client.list_with_delimiter(Some(&probe)),
        )
        .await;
        let why = match listed {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(object_store::Error::NotFound { .. })) => "the bucket does not exist",
            Ok(Err(_)) | Err(_) => "the bucket does not answer",
        };
        match listed {
            Ok(Err(e)) => {
                tracing::warn!(location = %self.description, error = %e, "blob store is not ready")
            }
            _ => {
                tracing::warn!(location = %self.description, "blob store is not ready: no answer in time")
            }
        }
        Err(StorageError::Unavailable(why.to_string()))
    }
}

/// Appends to an upload: full parts go to S3 as they fill (as a multipart part and as a
/// readable copy), and `finish` records the rest as the new tail and saves the state.
struct S3UploadWriter {
    bucket: Arc<Bucket>,
    id: String,
    /// The state as loaded, plus the parts sent since; saved by `finish`.
    state: UploadState,
    /// Bytes after the last full part: the old tail, then what was written since.
    buffer: BytesMut,
}

impl S3UploadWriter {
    /// Sends the buffer's first `part_size` bytes as the next part.
    async fn send_part(&mut self) -> Result<(), StorageError> {
        let bucket = self.bucket.clone();
        let assembled = bucket.assembled_key(&self.id)?;
        let multipart = match &self.state.multipart {
            Some(m) => m.clone(),
            None => {
                let created = bucket
                    .client
                    .create_multipart(&assembled)
                    .await
                    .map_err(|e| object_error("create multipart upload", e))?;
                self.state.multipart = Some(created.clone());
                // Recorded at once, so that deleting the upload can abort it even if this
                // writer never finishes. No part was sent before the multipart upload
                // existed, so the state still describes the stored tail exactly.
                bucket.save_state(&self.id, &self.state).await?;
                created
            }
        };
        let bytes = self.buffer.split_to(bucket.part_size).freeze();
        let size = bytes.len() as u64;
        let index = self.state.parts.len();
        let payload = PutPayload::from(bytes);
        let part_key = bucket.part_key(&self.id, index)?;
        let (part, _) = futures::try_join!(
            async {
                bucket
                    .client
                    .put_part(&assembled, &multipart, index, payload.clone())
                    .await
                    .map_err(|e| object_error("put part", e))
            },
            async {
                bucket
                    .client
                    .put(&part_key, payload.clone())
                    .await
                    .map_err(|e| object_error("put readable part", e))
            },
        )?;
        self.state.parts.push(StoredPart {
            etag: part.content_id,
            size,
        });
        Ok(())
    }
}

#[async_trait]
impl UploadWriter for S3UploadWriter {
    async fn write(&mut self, chunks: Vec<Bytes>) -> Result<(), StorageError> {
        for chunk in chunks {
            self.buffer.extend_from_slice(&chunk);
            while self.buffer.len() >= self.bucket.part_size {
                self.send_part().await?;
            }
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<u64, StorageError> {
        let bucket = &self.bucket;
        let old_tail = (self.state.tail_size > 0)
            .then(|| bucket.tail_key(&self.id, self.state.tail_generation))
            .transpose()?;
        self.state.tail_generation += 1;
        self.state.tail_size = self.buffer.len() as u64;
        if !self.buffer.is_empty() {
            let tail = std::mem::take(&mut self.buffer).freeze();
            bucket
                .client
                .put(
                    &bucket.tail_key(&self.id, self.state.tail_generation)?,
                    tail.into(),
                )
                .await
                .map_err(|e| object_error("put upload tail", e))?;
        }
        // The state names the new tail: until it is saved, the old state and tail stand.
        bucket.save_state(&self.id, &self.state).await?;
        if let Some(old_tail) = old_tail {
            if let Err(e) = bucket.client.delete(&old_tail).await {
                tracing::debug!(upload = %self.id, error = %e, "old upload tail not deleted");
            }
        }
        Ok(self.state.size())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::{self, test_bucket};

    fn open(bucket: &suite::TestBucket) -> S3BlobStore {
        S3BlobStore::open_with(&bucket.location, MIN_PART_SIZE, &bucket.settings()).unwrap()
    }

    async fn keys_under(store: &S3BlobStore, relative: &str) -> Vec<String> {
        store.keys_under(relative).await.unwrap()
    }

    /// Every byte of committed blob `digest`.
    async fn read_whole(store: &S3BlobStore, digest: &Digest) -> Vec<u8> {
        let size = store.stat(digest).await.unwrap().expect("the blob exists");
        let read: Vec<Bytes> = store
            .read(digest, 0..size)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        read.concat()
    }

    #[tokio::test]
    async fn s3_backend_passes_the_suite_on_garage() {
        let bucket = test_bucket();
        suite::run(&open(&bucket)).await;
    }

    #[tokio::test]
    async fn an_upload_started_on_one_replica_continues_on_another() {
        let bucket = test_bucket();
        let (first, second) = (open(&bucket), open(&bucket));
        suite::run_replicas(&first, &second).await;
        assert_eq!(keys_under(&first, "_uploads").await, Vec::<String>::new());
    }

    #[tokio::test]
    async fn a_writer_that_never_finishes_leaves_the_upload_as_it_was() {
        let bucket = test_bucket();
        let (first, second) = (open(&bucket), open(&bucket));
        let id = "66666666-6666-6666-6666-666666666666";
        let content: Vec<u8> = (0..7 * 1024 * 1024u32).map(|i| (i % 241) as u8).collect();
        first.create_upload(id).await.unwrap();
        let mut writer = first.append_upload(id).await.unwrap();
        writer
            .write(vec![Bytes::copy_from_slice(&content[..1000])])
            .await
            .unwrap();
        assert_eq!(writer.finish().await.unwrap(), 1000);

        // A request that dies after sending a whole part: nothing it sent counts.
        let mut dying = first.append_upload(id).await.unwrap();
        dying
            .write(vec![Bytes::copy_from_slice(&content[1000..6_000_000])])
            .await
            .unwrap();
        drop(dying);
        assert_eq!(second.upload_size(id).await.unwrap(), Some(1000));

        // The retry, on the other replica, sends the same part again and completes.
        let mut retry = second.append_upload(id).await.unwrap();
        retry
            .write(vec![Bytes::copy_from_slice(&content[1000..])])
            .await
            .unwrap();
        assert_eq!(retry.finish().await.unwrap(), content.len() as u64);
        let digest = Digest::sha256_of(&content);
        first.commit_upload(id, &digest).await.unwrap();
        assert!(read_whole(&second, &digest).await == content);
    }

    /// AWS copies at most 5 GiB with CopyObject, so committing a larger blob failed there. A
    /// blob above the copy limit (lowered here to 1 MiB) is copied as a streamed multipart
    /// upload, and reads back byte for byte.
    #[tokio::test]
    async fn a_blob_above_the_copy_limit_is_committed_by_a_streamed_multipart_copy() {
        let bucket = test_bucket();
        let mut store = open(&bucket);
        Arc::get_mut(&mut store.bucket).unwrap().copy_limit = 1024 * 1024;
        let id = "88888888-8888-8888-8888-888888888888";
        let content: Vec<u8> = (0..12 * 1024 * 1024u32).map(|i| (i % 239) as u8).collect();
        store.create_upload(id).await.unwrap();
        let mut writer = store.append_upload(id).await.unwrap();
        writer
            .write(vec![Bytes::from(content.clone())])
            .await
            .unwrap();
        writer.finish().await.unwrap();
        let digest = Digest::sha256_of(&content);
        store.commit_upload(id, &digest).await.unwrap();
        assert_eq!(
            store.stat(&digest).await.unwrap(),
            Some(content.len() as u64)
        );
        assert!(read_whole(&store, &digest).await == content);
        assert_eq!(keys_under(&store, "_uploads").await, Vec::<String>::new());
    }

    #[tokio::test]
    async fn a_deleted_upload_leaves_nothing_in_the_bucket() {
        let bucket = test_bucket();
        let store = open(&bucket);
        let id = "77777777-7777-7777-7777-777777777777";
        store.create_upload(id).await.unwrap();
        let mut writer = store.append_upload(id).await.unwrap();
        writer
            .write(vec![Bytes::from(vec![1u8; MIN_PART_SIZE + 17])])
            .await
            .unwrap();
        writer.finish().await.unwrap();
        assert!(!keys_under(&store, "_uploads").await.is_empty());
        store.delete_upload(id).await.unwrap();
        assert_eq!(keys_under(&store, "_uploads").await, Vec::<String>::new());
        assert_eq!(store.upload_size(id).await.unwrap(), None);
    }

    #[tokio::test]
    async fn store_is_not_ready_while_its_bucket_does_not_exist() {
        let bucket = test_bucket();
        let missing = bucket
            .location
            .replacen("s3://", "s3://gantry-no-such-bucket-", 1);
        let store = S3BlobStore::open_with(&missing, MIN_PART_SIZE, &bucket.settings()).unwrap();
        let refused = store.check_ready().await.unwrap_err();
        assert!(
            matches!(&refused, StorageError::Unavailable(why) if why.starts_with("the bucket")),
            "{refused}"
        );
        let secret = bucket.setting("AWS_SECRET_ACCESS_KEY");
        assert!(!refused.to_string().contains(secret));
        open(&bucket).check_ready().await.unwrap();
    }

    #[test]
    fn part_sizes_outside_s3_limits_and_the_memory_bound_are_refused() {
        for size in [MIN_PART_SIZE - 1, MAX_PART_SIZE + 1] {
            assert!(matches!(
                S3BlobStore::open_with("s3://b", size, &[("AWS_REGION", "garage")]),
                Err(StorageError::InvalidLocation(why)) if why.contains("part size")
            ));
        }
        assert!(
            S3BlobStore::open_with("s3://b", DEFAULT_PART_SIZE, &[("AWS_REGION", "garage")])
                .is_ok()
        );
    }
}
