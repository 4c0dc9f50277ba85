//! Where blob bytes live. A backend stores committed blobs by digest and the bytes of
//! upload sessions by id; it knows nothing of repositories or manifests (that is `meta`).
//!
//! Contract every backend keeps (checked by [`suite`]):
//! - a committed blob is complete and durable before `commit_upload` returns, and is never
//!   visible half-written;
//! - reads stream in bounded chunks whatever the blob size.

use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use gantry_oci::Digest;

mod archive;
mod fs;
mod location;
mod s3;
#[cfg(any(test, feature = "test-suite"))]
pub mod suite;

pub use archive::{ArchiveLocation, ArchiveWriter};
pub use fs::FsBlobStore;
pub use s3::{S3BlobStore, DEFAULT_PART_SIZE, MAX_PART_SIZE, MIN_PART_SIZE};

/// A stream of blob bytes.
pub type ByteStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("blob or upload not found in storage")]
    NotFound,
    #[error("invalid upload id {0:?}")]
    InvalidUploadId(String),
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("archive storage: {0}")]
    Archive(String),
    /// A storage or archive location that cannot be used as given (no bucket, a bad setting).
    #[error("{0}")]
    InvalidLocation(String),
    /// An object storage request failed (the message names the operation, never credentials).
    #[error("object storage: {0}")]
    ObjectStore(String),
    /// The backend cannot serve (a directory is missing, a bucket does not answer).
    #[error("blob store unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Size of a committed blob, or `None` when it is absent.
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StorageError>;
    /// Streams `range` of a committed blob; the caller has checked the range against its size.
    async fn read(&self, digest: &Digest, range: Range<u64>) -> Result<ByteStream, StorageError>;
    async fn delete(&self, digest: &Digest) -> Result<(), StorageError>;

    async fn create_upload(&self, id: &str) -> Result<(), StorageError>;
    /// Bytes received so far, or `None` when no such upload exists.
    async fn upload_size(&self, id: &str) -> Result<Option<u64>, StorageError>;
    /// Opens the upload for appending at its current end.
    async fn append_upload(&self, id: &str) -> Result<Box<dyn UploadWriter>, StorageError>;
    /// Streams everything received so far (to rebuild a hash state after a restart).
    async fn read_upload(&self, id: &str) -> Result<ByteStream, StorageError>;
    /// Durably makes the upload's bytes the blob `digest` and removes the upload. The caller
    /// has verified the digest. If the blob already exists the upload is simply dropped.
    async fn commit_upload(&self, id: &str, digest: &Digest) -> Result<(), StorageError>;
    async fn delete_upload(&self, id: &str) -> Result<(), StorageError>;
    /// A URL from which a client may GET the committed blob `digest` itself for `valid_for`
    /// (an S3 presigned URL), or `None` when the backend has none and the registry streams the
    /// blob. The URL is made without asking the backend whether the blob exists.
    async fn direct_read_url(
        &self,
        _digest: &Digest,
        _valid_for: std::time::Duration,
    ) -> Result<Option<String>, StorageError> {
        Ok(None)
    }
    /// Whether the backend can serve now (for readiness probes): cheap, no blob is read.
    ///
    /// Errors: `Unavailable` with a reason fit for an unauthenticated caller (no full paths
    /// or credentials).
    async fn check_ready(&self) -> Result<(), StorageError>;
}

#[async_trait]
pub trait UploadWriter: Send {
    /// Appends `chunks` in order. Taking the received buffers as they are avoids copying
    /// them into a batch first.
    async fn write(&mut self, chunks: Vec<Bytes>) -> Result<(), StorageError>;
    /// Makes everything written durable; returns the upload's total size.
    async fn finish(self: Box<Self>) -> Result<u64, StorageError>;
}

/// Upload ids become file or object names: allow only what a UUID uses.
pub(crate) fn check_upload_id(id: &str) -> Result<(), StorageError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(StorageError::InvalidUploadId(id.chars().take(80).collect()))
    }
}
