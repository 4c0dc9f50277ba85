//! Pure OCI types shared by every other Gantry crate. Nothing here performs I/O, so
//! everything here can be unit-tested and fuzzed in isolation.

pub mod digest;
pub mod error_code;
pub mod manifest;
pub mod media_type;
pub mod name;
pub mod reference;
pub mod sha256_state;
pub mod size;

pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use error_code::ErrorCode;
pub use manifest::{Descriptor, ManifestError, ManifestKind, ParsedManifest};
pub use name::{NameError, RepositoryName, Tag, MAX_NAME_LEN};
pub use reference::{Reference, ReferenceError};
pub use sha256_state::{BadSavedState, Sha256State};
