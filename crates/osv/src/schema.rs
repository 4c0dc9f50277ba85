//! The OSV record (schema 1.x, <https://ossf.github.io/osv-schema/>) as serde types.
//!
//! Only the fields the scanner uses are typed; every other field of a record is ignored on
//! reading (callers that need the whole record keep its JSON text, as
//! [`crate::source::Record::json`] does). Timestamps stay RFC 3339 strings as published: some
//! sources carry placeholders (the Go database's `modified` is `0001-01-01T00:00:00Z`).

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// One OSV record: a vulnerability as one database describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Advisory {
    /// The record's ID in its database (`GO-2022-1059`, `DSA-5000-1`, `GHSA-…`, `CVE-…`).
    pub id: String,
    /// When the record last changed (RFC 3339).
    pub modified: String,
    /// When the record was first published (RFC 3339), if said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<String>,
    /// When the record was withdrawn (RFC 3339): a withdrawn record affects nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn: Option<String>,
    /// IDs of the same vulnerability in other databases.
    #[serde(default, deserialize_with = "null_as_default")]
    pub aliases: Vec<String>,
    /// IDs of related but different vulnerabilities (not merged).
    #[serde(default, deserialize_with = "null_as_default")]
    pub related: Vec<String>,
    /// One line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Free text (CommonMark).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    /// Scores of the whole vulnerability.
    #[serde(default, deserialize_with = "null_as_default")]
    pub severity: Vec<SeverityScore>,
    /// The packages and versions affected.
    #[serde(default, deserialize_with = "null_as_default")]
    pub affected: Vec<Affected>,
    /// Links (advisory, fix, report…).
    #[serde(default, deserialize_with = "null_as_default")]
    pub references: Vec<Reference>,
    /// The database's own extra facts (GHSA puts its severity word here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_specific: Option<Value>,
}

/// A score of a given type: `CVSS_V2`, `CVSS_V3`, `CVSS_V4` (a vector string), or a
/// database's own (`Ubuntu`: a word).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeverityScore {
    #[serde(rename = "type")]
    pub kind: String,
    pub score: String,
}

/// A link about the vulnerability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    /// `ADVISORY`, `FIX`, `REPORT`, `WEB`…
    #[serde(rename = "type")]
    pub kind: String,
    pub url: String,
}

/// One affected package and its affected versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Affected {
    /// Absent only in records that describe a GIT range alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<Package>,
    /// Per-package scores (schema 1.4+).
    #[serde(default, deserialize_with = "null_as_default")]
    pub severity: Vec<SeverityScore>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub ranges: Vec<Range>,
    /// Affected versions listed one by one, besides the ranges.
    #[serde(default, deserialize_with = "null_as_default")]
    pub versions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecosystem_specific: Option<EcosystemSpecific>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_specific: Option<Value>,
}

/// A package in an ecosystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// `Go`, `Debian:12`, `Alpine:v3.19`, `npm`… (see [`crate::Ecosystem`]).
    pub ecosystem: String,
    /// The module path (`golang.org/x/text`; `stdlib` and `toolchain` for Go itself), the
    /// source package (Debian), the origin package (Alpine).
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
}

/// A range of affected versions, as a sorted list of events (see [`crate::affects`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    #[serde(rename = "type")]
    pub kind: RangeKind,
    /// The repository of a GIT range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub events: Vec<Event>,
}

/// How a range's versions are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RangeKind {
    /// Semantic versions (for the `Go` ecosystem: Go's semver).
    Semver,
    /// The ecosystem's own ordering (Debian's dpkg, Alpine's apk).
    Ecosystem,
    /// Commit hashes: never evaluated here (an image has no commits).
    Git,
    /// A type of a later schema.
    #[serde(other)]
    Unknown,
}

/// One event of a range: from `introduced` on, up to `fixed` (excluded) or `last_affected`
/// (included); `limit` bounds the range from above (excluded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// `"0"`: from the first version.
    Introduced(String),
    Fixed(String),
    LastAffected(String),
    Limit(String),
}

impl Event {
    /// The version the event names.
    pub fn version(&self) -> &str {
        match self {
            Event::Introduced(v) | Event::Fixed(v) | Event::LastAffected(v) | Event::Limit(v) => v,
        }
    }
}

/// An affected package's `ecosystem_specific`: the Go database's `imports` typed (the
/// symbols the scanner's reachability looks for), everything else kept as JSON.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EcosystemSpecific {
    /// Go: the vulnerable packages and their functions. Left empty when another ecosystem
    /// uses the name with another shape.
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub imports: Vec<GoImport>,
    /// The other fields, as published.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A Go package with vulnerable code.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GoImport {
    /// The package's import path (`golang.org/x/text/language`, `net/http`).
    pub path: String,
    /// Operating systems the vulnerability is limited to (empty: all).
    #[serde(default, deserialize_with = "null_as_default")]
    pub goos: Vec<String>,
    /// Architectures the vulnerability is limited to (empty: all).
    #[serde(default, deserialize_with = "null_as_default")]
    pub goarch: Vec<String>,
    /// Vulnerable functions and methods (`Parse`, `Tag.String`); empty: the whole package.
    #[serde(default, deserialize_with = "null_as_default")]
    pub symbols: Vec<String>,
}

/// `null` reads as the field's default (some exporters write `"aliases": null`).
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A field whose shape belongs to another ecosystem reads as its default instead of failing
/// the whole record.
fn lenient<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned + Default,
{
    let value = Value::deserialize(deserializer)?;
    Ok(serde_json::from_value(value).unwrap_or_default())
}
