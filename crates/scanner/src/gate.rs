//! The pull gate's decision: which findings of an image block its pull under a project's
//! policy. Pure: a policy, the allowlists and a scan's findings in, the blocking findings out.
//!
//! A finding blocks when its severity is at or above the policy's, when (with
//! `reachable_only`) its vulnerable code is known to be in the binary, and when neither the
//! project's nor the system-wide allowlist names it (by its ID or any alias) with an expiry
//! still ahead. An image whose findings are all allowlisted pulls.

use gantry_osv::Severity;
use serde::{Deserialize, Serialize};

use crate::assess::Finding;

/// What the gate does with an image that has no scan yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unscanned {
    /// Wait for its scan (up to `wait_secs`), then decide; refuse when none comes.
    #[default]
    Wait,
    /// Refuse until it is scanned.
    Refuse,
}

/// The longest a pull waits for a scan, in seconds.
pub const MAX_WAIT_SECS: u64 = 300;

/// A vulnerability the gate lets through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allowed {
    /// An ID or alias: `CVE-2023-45288`, `GO-2024-2687`, `GHSA-…`.
    pub id: String,
    /// Unix seconds after which the entry no longer applies; `None`: never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// Why it is allowed (shown to whoever reads the policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A project's vulnerability policy: scanning on push, and the pull gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatePolicy {
    /// Scan every image pushed to the project (Harbor's "automatically scan images on push").
    #[serde(default = "yes")]
    pub scan_on_push: bool,
    /// Attach each scanned image's SPDX and CycloneDX SBOMs to it as referrers (Harbor's
    /// "automatically generate SBOM on push"; off by default, as there, since the documents
    /// are pushed into the project: they count against its quota and raise `artifact.pushed`).
    #[serde(default)]
    pub sbom_on_push: bool,
    /// Refuse pulls of images with findings at or above this severity; `None`: the gate is off.
    #[serde(default)]
    pub block_severity: Option<Severity>,
    /// Count only findings whose vulnerable code is known to be in a binary.
    #[serde(default)]
    pub reachable_only: bool,
    /// What an image not scanned yet gets.
    #[serde(default)]
    pub unscanned: Unscanned,
    /// With `unscanned: wait`, how long a pull waits for the scan, in seconds (at most
    /// [`MAX_WAIT_SECS`]).
    #[serde(default = "default_wait_secs")]
    pub wait_secs: u64,
    /// The project's allowlist.
    #[serde(default)]
    pub allowlist: Vec<Allowed>,
}

fn default_wait_secs() -> u64 {
    60
}

fn yes() -> bool {
    true
}

impl Default for GatePolicy {
    /// Scan on push, no SBOMs attached; the gate off.
    fn default() -> Self {
        GatePolicy {
            scan_on_push: true,
            sbom_on_push: false,
            block_severity: None,
            reachable_only: false,
            unscanned: Unscanned::Wait,
            wait_secs: default_wait_secs(),
            allowlist: Vec::new(),
        }
    }
}

/// A policy that cannot be kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatePolicyError {
    #[error("wait_secs {0} is longer than a pull can wait: at most {MAX_WAIT_SECS}")]
    WaitTooLong(u64),
    #[error("allowlist id {0:?} is not a vulnerability ID: give one such as CVE-2023-45288 or GO-2024-2687, letters, digits and - _ . : only")]
    BadId(String),
}

impl GatePolicy {
    /// Checks what serde cannot: the wait's bound and the allowlist's IDs.
    pub fn validate(&self) -> Result<(), GatePolicyError> {
        if self.wait_secs > MAX_WAIT_SECS {
            return Err(GatePolicyError::WaitTooLong(self.wait_secs));
        }
        validate_allowlist(&self.allowlist)
    }
}

/// Whether `id` is shaped like an OSV ID or alias (`CVE-2023-45288`, `GHSA-…`,
/// `GO-2024-2687`, `DSA-5000-1`): ASCII letters, digits, `-`, `_`, `.`, `:`, starting with a
/// letter or digit (the API document's pattern `^[A-Za-z0-9][A-Za-z0-9._:-]*$`).
fn is_vulnerability_id(id: &str) -> bool {
    id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

/// Checks an allowlist's entries.
pub fn validate_allowlist(allowlist: &[Allowed]) -> Result<(), GatePolicyError> {
    match allowlist.iter().find(|a| !is_vulnerability_id(&a.id)) {
        Some(bad) => Err(GatePolicyError::BadId(bad.id.clone())),
        None => Ok(()),
    }
}

/// Whether `allowed` lets `finding` through at `now` (Unix seconds).
fn lets_through(allowed: &Allowed, finding: &Finding, now: i64) -> bool {
    allowed.expires_at.is_none_or(|at| at > now)
        && (allowed.id == finding.id || finding.aliases.contains(&allowed.id))
}

/// The findings that block a pull under `policy` and the system-wide allowlist at `now`
/// (Unix seconds); empty when the gate is off or nothing blocks.
pub fn blocking<'a>(
    policy: &GatePolicy,
    system_allowlist: &[Allowed],
    findings: &'a [Finding],
    now: i64,
) -> Vec<&'a Finding> {
    let Some(threshold) = policy.block_severity else {
        return Vec::new();
    };
    findings
        .iter()
        .filter(|f| f.severity >= threshold)
        .filter(|f| !policy.reachable_only || f.reachable == Some(true))
        .filter(|f| {
            !policy
                .allowlist
                .iter()
                .chain(system_allowlist)
                .any(|allowed| lets_through(allowed, f, now))
        })
        .collect()
}

/// The refusal's text: each blocking finding with its package and fixed version.
pub fn describe(blocking: &[&Finding]) -> String {
    blocking
        .iter()
        .map(|f| {
            let fix = match &f.fixed_version {
                Some(fixed) => format!("fixed in {fixed}"),
                None => "no fix yet".to_string(),
            };
            format!(
                "{} ({}, {} {}, {fix})",
                f.id, f.severity, f.package, f.version
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::PackageType;

    fn finding(id: &str, severity: Severity, reachable: Option<bool>) -> Finding {
        Finding {
            id: id.into(),
            aliases: vec![format!("CVE-{id}")],
            summary: None,
            package_type: PackageType::Golang,
            package: "golang.org/x/net".into(),
            version: "v0.1.0".into(),
            fixed_version: Some("v0.7.0".into()),
            severity,
            reachable,
            symbols: Vec::new(),
            locations: vec!["/app".into()],
        }
    }

    fn policy(severity: Severity) -> GatePolicy {
        GatePolicy {
            block_severity: Some(severity),
            ..GatePolicy::default()
        }
    }

    #[test]
    fn findings_at_or_above_the_severity_block_unless_allowlisted_and_unexpired() {
        let findings = [
            finding("A", Severity::Critical, Some(true)),
            finding("B", Severity::High, Some(false)),
            finding("C", Severity::Medium, None),
        ];
        let ids = |blocked: Vec<&Finding>| blocked.iter().map(|f| f.id.clone()).collect::<Vec<_>>();
        assert_eq!(
            ids(blocking(&policy(Severity::High), &[], &findings, 100)),
            ["A", "B"]
        );
        let reachable = GatePolicy {
            reachable_only: true,
            ..policy(Severity::Low)
        };
        assert_eq!(ids(blocking(&reachable, &[], &findings, 100)), ["A"]);
        // Allowlisted by alias in the project, by ID system-wide: nothing blocks.
        let mut allowing = policy(Severity::High);
        allowing.allowlist.push(Allowed {
            id: "CVE-A".into(),
            expires_at: Some(200),
            reason: None,
        });
        let system = [Allowed {
            id: "B".into(),
            expires_at: None,
            reason: Some("not exploitable here".into()),
        }];
        assert!(blocking(&allowing, &system, &findings, 100).is_empty());
        // Once the project's entry expires, A blocks again.
        assert_eq!(ids(blocking(&allowing, &system, &findings, 200)), ["A"]);
        assert!(blocking(&GatePolicy::default(), &[], &findings, 100).is_empty());
    }

    #[test]
    fn policies_parse_with_defaults_and_refuse_what_cannot_be_kept() {
        let parsed: GatePolicy = serde_json::from_str(r#"{"block_severity": "HIGH"}"#).unwrap();
        assert_eq!(parsed.unscanned, Unscanned::Wait);
        assert_eq!(parsed.wait_secs, 60);
        assert!(parsed.scan_on_push);
        assert!(!parsed.sbom_on_push);
        assert!(serde_json::from_str::<GatePolicy>(r#"{"block": "HIGH"}"#).is_err());
        let long = GatePolicy {
            wait_secs: 301,
            ..parsed.clone()
        };
        assert_eq!(long.validate(), Err(GatePolicyError::WaitTooLong(301)));
        let blank = GatePolicy {
            allowlist: vec![Allowed {
                id: " ".into(),
                expires_at: None,
                reason: None,
            }],
            ..parsed
        };
        assert_eq!(blank.validate(), Err(GatePolicyError::BadId(" ".into())));
    }

    #[test]
    fn the_refusal_names_each_blocking_id_with_its_fix() {
        let findings = [finding("GO-2023-1", Severity::High, None)];
        let blocked: Vec<&Finding> = findings.iter().collect();
        assert_eq!(
            describe(&blocked),
            "GO-2023-1 (HIGH, golang.org/x/net v0.1.0, fixed in v0.7.0)"
        );
    }
}
