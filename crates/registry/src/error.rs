use gantry_meta::{MetaError, QuotaExceeded};
use gantry_oci::{Digest, DigestError, ManifestError, NameError};
use gantry_storage::StorageError;

/// What went wrong, in the registry's terms; the HTTP edge maps each to an OCI error code.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Name(NameError),
    #[error(transparent)]
    Tag(NameError),
    #[error(transparent)]
    Digest(#[from] DigestError),
    #[error(
        "the digest parameter is required to complete an upload: PUT …?digest=<algorithm>:<hex>"
    )]
    DigestMissing,
    #[error("content does not match digest {expected}: computed {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob {0} is not known in this repository")]
    BlobUnknown(Digest),
    #[error("upload session {0:?} is not known in this repository")]
    UploadUnknown(String),
    #[error(
        "chunk starts at byte {got} but the upload holds {expected} bytes; resume from {expected}"
    )]
    UploadOutOfOrder { expected: u64, got: u64 },
    #[error("malformed Content-Range {0:?}: expected <start>-<end>")]
    ContentRangeInvalid(String),
    #[error("requested range is not satisfiable for a blob of {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    #[error("repository {0} is not known")]
    NameUnknown(String),
    #[error("manifest {0} is not known in this repository")]
    ManifestUnknown(String),
    #[error("manifest is invalid: {0}")]
    ManifestInvalid(#[from] ManifestError),
    #[error("manifest is larger than the {limit} bytes allowed")]
    ManifestTooLarge { limit: usize },
    #[error("manifest references blob {0}, which has not been pushed to this repository")]
    ManifestBlobUnknown(Digest),
    #[error("manifest references manifest {0}, which has not been pushed to this repository")]
    ManifestChildUnknown(Digest),
    #[error("manifest media type {stored} is not among the types the client accepts")]
    NotAcceptable { stored: String },
    #[error("reading the request body failed: {0}")]
    Body(std::io::Error),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    TagRule(#[from] gantry_lifecycle::TagRuleViolation),
    #[error(transparent)]
    Quota(QuotaExceeded),
    #[error("archive {0} is not known in this project")]
    ArchiveUnknown(i64),
    #[error("archive cannot be used: {0}")]
    ArchiveInvalid(String),
    #[error(transparent)]
    Tar(#[from] crate::tarball::TarError),
    /// A listing's `page` token is not one it gave, or was given under another sort.
    #[error("{0}")]
    PageTokenInvalid(String),
    /// A request about an image of an index that does not say which (or names none it has).
    #[error("{0}")]
    PlatformInvalid(String),
    /// The image has no scan to answer from yet (or its scan failed).
    #[error("{0}")]
    NotScanned(String),
    /// One of the project's pull policies refuses the pull: `policy` is `vulnerability` or
    /// `signing`.
    #[error("pull refused by project {project}'s {policy} policy: {reason}")]
    PullBlocked {
        project: String,
        policy: &'static str,
        reason: String,
    },
    /// A vulnerability policy or allowlist that cannot be kept.
    #[error("{0}")]
    PolicyInvalid(String),
    #[error(transparent)]
    Meta(MetaError),
    #[error(transparent)]
    Metrics(#[from] gantry_metrics::MetricsError),
}

impl From<MetaError> for RegistryError {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::MissingBlob(d) => RegistryError::ManifestBlobUnknown(d),
            MetaError::MissingManifest(d) => RegistryError::ManifestChildUnknown(d),
            MetaError::QuotaExceeded(q) => RegistryError::Quota(q),
            other => RegistryError::Meta(other),
        }
    }
}

pub type Result<T> = std::result::Result<T, RegistryError>;
