//! A record's severity on one five-step scale, from the best evidence it carries:
//!
//! 1. a CVSS v3.x vector (`severity[].type == "CVSS_V3"`), else a CVSS v4.0 one: the base
//!    score's qualitative rating (CVSS v3.1 spec §5, v4.0 §2: 0.1–3.9 LOW, 4.0–6.9 MEDIUM,
//!    7.0–8.9 HIGH, 9.0–10.0 CRITICAL; a score of 0.0, rated "None", reads as LOW), computed by
//!    the `cvss` crate; vectors of the record and of its affected entries count alike;
//! 2. else a severity word: `database_specific.severity` (GHSA: `LOW`, `MODERATE`, `HIGH`,
//!    `CRITICAL`), the affected entries' `database_specific.severity`, or a score of another
//!    type that is a word (`Ubuntu`: `medium`…);
//! 3. else UNKNOWN (the Go database gives none: merging by aliases, see [`crate::merge`],
//!    takes it from another database's record of the same vulnerability).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::schema::{Advisory, SeverityScore};

/// A vulnerability's severity, ordered from UNKNOWN (lowest) to CRITICAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    Unknown,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// `UNKNOWN`, `LOW`, `MEDIUM`, `HIGH`, `CRITICAL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "UNKNOWN",
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }

    /// A severity word as databases write them, any case: `critical`; `high`, `important`;
    /// `medium`, `moderate`; `low`, `negligible`, `unimportant`, `minor`. `None` for other
    /// words (`unknown`, `not yet assigned`).
    pub fn from_word(word: &str) -> Option<Severity> {
        match word.trim().to_ascii_lowercase().as_str() {
            "critical" => Some(Severity::Critical),
            "high" | "important" => Some(Severity::High),
            "medium" | "moderate" => Some(Severity::Medium),
            "low" | "negligible" | "unimportant" | "minor" => Some(Severity::Low),
            _ => None,
        }
    }

    /// The rating of a CVSS vector's base score (`CVSS:3.1/AV:N/…`, `CVSS:4.0/…`); `None`
    /// when the vector does not parse.
    pub fn from_cvss(vector: &str) -> Option<Severity> {
        let cvss: cvss::Cvss = vector.trim().parse().ok()?;
        Some(match cvss.severity() {
            cvss::Severity::None | cvss::Severity::Low => Severity::Low,
            cvss::Severity::Medium => Severity::Medium,
            cvss::Severity::High => Severity::High,
            cvss::Severity::Critical => Severity::Critical,
        })
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is none of the five severities.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a severity: use UNKNOWN, LOW, MEDIUM, HIGH or CRITICAL")]
pub struct SeverityParseError(pub String);

impl FromStr for Severity {
    type Err = SeverityParseError;

    /// The five names, any case (`high`, `HIGH`).
    fn from_str(text: &str) -> Result<Severity, SeverityParseError> {
        match text.to_ascii_uppercase().as_str() {
            "UNKNOWN" => Ok(Severity::Unknown),
            "LOW" => Ok(Severity::Low),
            "MEDIUM" => Ok(Severity::Medium),
            "HIGH" => Ok(Severity::High),
            "CRITICAL" => Ok(Severity::Critical),
            _ => Err(SeverityParseError(text.to_string())),
        }
    }
}

impl Advisory {
    /// This record's own severity (see the module documentation for the order of evidence).
    pub fn severity(&self) -> Severity {
        let scores = || {
            self.severity
                .iter()
                .chain(self.affected.iter().flat_map(|a| &a.severity))
        };
        let cvss_of = |kind: &str| {
            scores()
                .filter(|score| score.kind == kind)
                .find_map(|score: &SeverityScore| Severity::from_cvss(&score.score))
        };
        if let Some(severity) = cvss_of("CVSS_V3").or_else(|| cvss_of("CVSS_V4")) {
            return severity;
        }
        let word_of = |specific: &Option<Value>| {
            specific
                .as_ref()
                .and_then(|value| value.get("severity"))
                .and_then(Value::as_str)
                .and_then(Severity::from_word)
        };
        word_of(&self.database_specific)
            .or_else(|| {
                self.affected
                    .iter()
                    .find_map(|affected| word_of(&affected.database_specific))
            })
            .or_else(|| {
                scores()
                    .filter(|score| !score.kind.starts_with("CVSS"))
                    .find_map(|score| Severity::from_word(&score.score))
            })
            .unwrap_or(Severity::Unknown)
    }
}
