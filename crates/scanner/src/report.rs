//! A scan's report, and its renderings: the JSON the REST API and `gantry scan --json` give,
//! SARIF 2.1.0 for code-scanning dashboards, and a table for terminals.

use std::fmt::Write as _;

use gantry_osv::Severity;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::assess::Finding;
use crate::inventory::{Distribution, GoBinary, Inventory, Package};

/// Findings counted per severity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub critical: usize,
    pub high: usize,
    pub medium: usize,
    pub low: usize,
    pub unknown: usize,
    /// Findings whose vulnerable code is known to be in a binary.
    pub reachable: usize,
}

impl Summary {
    fn of(findings: &[Finding]) -> Summary {
        let mut summary = Summary::default();
        for finding in findings {
            *match finding.severity {
                Severity::Critical => &mut summary.critical,
                Severity::High => &mut summary.high,
                Severity::Medium => &mut summary.medium,
                Severity::Low => &mut summary.low,
                Severity::Unknown => &mut summary.unknown,
            } += 1;
            summary.reachable += usize::from(finding.reachable == Some(true));
        }
        summary
    }

    /// Adds `other`'s counts to these (an index's images added up).
    pub fn add(&mut self, other: &Summary) {
        self.critical += other.critical;
        self.high += other.high;
        self.medium += other.medium;
        self.low += other.low;
        self.unknown += other.unknown;
        self.reachable += other.reachable;
    }
}

/// One image's scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanReport {
    pub distribution: Option<Distribution>,
    pub summary: Summary,
    pub vulnerabilities: Vec<Finding>,
    pub packages: Vec<Package>,
    pub binaries: Vec<GoBinary>,
}

impl ScanReport {
    pub fn new(inventory: Inventory, vulnerabilities: Vec<Finding>) -> ScanReport {
        ScanReport {
            distribution: inventory.distribution,
            summary: Summary::of(&vulnerabilities),
            vulnerabilities,
            packages: inventory.packages,
            binaries: inventory.binaries,
        }
    }
}

/// SARIF's `level` for a severity.
fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Unknown => "note",
    }
}

/// GitHub code scanning's `security-severity` property (a CVSS-like score) for a severity.
fn security_severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "2.0",
        Severity::Unknown => "0.0",
    }
}

/// A SARIF 2.1.0 log of the scans of `artifact`'s images (one per platform: `(platform,
/// report)`): one rule per vulnerability ID, one result per finding, located at the file it
/// was found in.
pub fn sarif(artifact: &str, scans: &[(Option<String>, &ScanReport)]) -> Value {
    let mut rules: Vec<Value> = Vec::new();
    let mut rule_ids: Vec<String> = Vec::new();
    let mut results = Vec::new();
    for (platform, report) in scans {
        for finding in &report.vulnerabilities {
            if !rule_ids.contains(&finding.id) {
                rule_ids.push(finding.id.clone());
                rules.push(json!({
                    "id": finding.id,
                    "shortDescription": {"text": finding.summary.clone().unwrap_or_else(|| finding.id.clone())},
                    "helpUri": format!("https://osv.dev/vulnerability/{}", finding.id),
                    "properties": {
                        "security-severity": security_severity(finding.severity),
                        "tags": ["security", "vulnerability"],
                    },
                }));
            }
            let fix = match &finding.fixed_version {
                Some(fixed) => format!("fixed in {fixed}"),
                None => "no fix known".to_string(),
            };
            let on = platform
                .as_deref()
                .map(|p| format!(" ({p})"))
                .unwrap_or_default();
            results.push(json!({
                "ruleId": finding.id,
                "level": level(finding.severity),
                "message": {"text": format!(
                    "{} {} in {}{on} is affected by {} ({}): {fix}",
                    finding.package, finding.version, artifact, finding.id, finding.severity
                )},
                "locations": finding.locations.iter().map(|location| json!({
                    "physicalLocation": {"artifactLocation": {"uri": location.trim_start_matches('/')}},
                })).collect::<Vec<_>>(),
                "properties": {"reachable": finding.reachable, "aliases": finding.aliases},
            }));
        }
    }
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "gantry",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://gantry.dev",
                "rules": rules,
            }},
            "results": results,
        }],
    })
}

/// A terminal table of a report's findings, then its package counts.
pub fn table(report: &ScanReport) -> String {
    let mut out = String::new();
    let reachable = |r: Option<bool>| match r {
        Some(true) => "yes",
        Some(false) => "no",
        None => "-",
    };
    if report.vulnerabilities.is_empty() {
        out.push_str("No known vulnerabilities.\n");
    } else {
        let _ = writeln!(
            out,
            "{:<20} {:<9} {:<34} {:<22} {:<16} REACHABLE",
            "ID", "SEVERITY", "PACKAGE", "VERSION", "FIXED IN"
        );
        for f in &report.vulnerabilities {
            let _ = writeln!(
                out,
                "{:<20} {:<9} {:<34} {:<22} {:<16} {}",
                f.id,
                f.severity.as_str(),
                f.package,
                f.version,
                f.fixed_version.as_deref().unwrap_or("-"),
                reachable(f.reachable)
            );
        }
    }
    let s = &report.summary;
    let _ = writeln!(
        out,
        "\n{} vulnerabilities: {} critical, {} high, {} medium, {} low, {} unknown; {} reachable. {} packages, {} Go binaries.",
        report.vulnerabilities.len(),
        s.critical,
        s.high,
        s.medium,
        s.low,
        s.unknown,
        s.reachable,
        report.packages.len(),
        report.binaries.len()
    );
    out
}
