//! The OSV vulnerability format (<https://ossf.github.io/osv-schema/>, schema 1.x) for the
//! scanner: pure, bytes in and answers out (the only I/O is reading a source handed to it).
//!
//! - [`schema`]: records as serde types ([`Advisory`]); unknown fields are ignored.
//! - [`source`]: records as published: a per-ecosystem `all.zip`, a directory of JSON files,
//!   one JSON file; a malformed record is reported with its file name and skipped.
//! - [`version`]: each supported ecosystem's version ordering: `Go` (Go's semver, and the Go
//!   toolchain's tags through [`go_toolchain_version`]), `Debian:N` (dpkg), `Alpine:vX.Y`
//!   (apk). Records of any other ecosystem are kept but never match.
//! - [`matching`]: [`Advisory::affects`], the schema's range evaluation.
//! - [`severity`]: [`Advisory::severity`], from CVSS vectors or severity words.
//! - [`merge`]: records of one vulnerability from several databases grouped by aliases.

pub mod matching;
pub mod merge;
pub mod schema;
pub mod severity;
pub mod source;
pub mod version;

pub use matching::Match;
pub use merge::{merge_by_aliases, AliasRecord, Merged};
pub use schema::{
    Advisory, Affected, EcosystemSpecific, Event, GoImport, Package, Range, RangeKind, Reference,
    SeverityScore,
};
pub use severity::Severity;
pub use source::{Item, Malformed, Record, SourceError, SourceReader};
pub use version::{
    go_toolchain_version, AlpineVersion, DebianVersion, Ecosystem, GoVersion, Version,
};

#[cfg(any(test, feature = "test-support"))]
pub mod testdata;
#[cfg(test)]
mod tests;
