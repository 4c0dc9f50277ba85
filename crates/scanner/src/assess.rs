//! Matching an image's packages against OSV advisories, and reachability.
//!
//! Each package is matched in its ecosystem under the name OSV keys it by (Debian's source
//! package, Alpine's origin, the Go module path; a replaced Go module under both its own and
//! the replaced path) with the ecosystem's own version ordering ([`gantry_osv::Advisory::affects`]).
//! Records of one vulnerability from several databases (linked by aliases) give one finding
//! per package: the record with Go symbols first (its reachability is the precise one), then
//! the smallest ID.
//!
//! **Reachability** of a Go finding follows govulncheck's binary mode
//! (golang.org/x/vuln `internal/vulncheck/binary.go`): the record's
//! `ecosystem_specific.imports` that apply to the binary's GOOS/GOARCH are looked up in the
//! binary's function table: `true` when a listed symbol (or, for an import listing none, any
//! function of the package) is present in some binary holding the module; `false` when the
//! table was read in every such binary and none is; `null` when a table could not be read or
//! the record names no vulnerable packages (nothing to look for).

use std::collections::{BTreeMap, BTreeSet};

use gantry_osv::{Advisory, GoImport, Severity};
use serde::{Deserialize, Serialize};

use crate::inventory::{GoBinary, Inventory, Package, PackageType};

/// One advisory as the database gives it: the record, and what merging by aliases says of it.
#[derive(Debug, Clone)]
pub struct KnownAdvisory {
    pub advisory: Advisory,
    /// Every other ID of the vulnerability (merged by aliases), sorted.
    pub aliases: Vec<String>,
    /// The record's own severity, else its alias group's highest, else UNKNOWN.
    pub severity: Severity,
}

/// A vulnerability found in a package of the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The matching record's ID (`GO-2022-1059`, `DSA-5000-1`, `ALPINE-CVE-…`).
    pub id: String,
    /// Its other IDs (CVE, GHSA, …).
    pub aliases: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub summary: Option<String>,
    /// The package's type (`golang`, `apk`, `deb`).
    #[serde(rename = "type")]
    pub package_type: PackageType,
    /// The package as the image names it (module path, `stdlib`, OS package).
    pub package: String,
    /// The version found.
    pub version: String,
    /// The first version that fixes it, in the package's own notation (`v0.3.7` for Go);
    /// `None` when no fix is known.
    pub fixed_version: Option<String>,
    pub severity: Severity,
    /// Whether the vulnerable code is in the binary; `None` when that cannot be told.
    pub reachable: Option<bool>,
    /// Go: the vulnerable symbols present, as `package.Symbol`.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub symbols: Vec<String>,
    /// Where the package was found.
    pub locations: Vec<String>,
}

/// The names a package is matched under in OSV.
fn osv_names(package: &Package) -> impl Iterator<Item = &str> {
    std::iter::once(package.source_name.as_str()).chain(package.replaces.as_deref())
}

/// Go versions appear with a `v` in build info and without one in OSV records.
fn in_package_notation(package: &Package, fixed: &str) -> String {
    if package.kind == PackageType::Golang && !fixed.starts_with('v') {
        format!("v{fixed}")
    } else {
        fixed.to_string()
    }
}

/// Whether an import applies to a binary built for `goos`/`goarch` (an empty list: all).
fn applies(import: &GoImport, binary: &GoBinary) -> bool {
    let fits = |list: &[String], value: &Option<String>| {
        list.is_empty() || value.as_ref().is_some_and(|v| list.contains(v))
    };
    fits(&import.goos, &binary.goos) && fits(&import.goarch, &binary.goarch)
}

/// Reachability over the binaries holding the package, and the vulnerable symbols present.
fn reachability(imports: &[GoImport], binaries: &[&GoBinary]) -> (Option<bool>, BTreeSet<String>) {
    if imports.is_empty() || binaries.is_empty() {
        return (None, BTreeSet::new());
    }
    let mut present = BTreeSet::new();
    let mut unknown = false;
    for binary in binaries {
        let applicable: Vec<&GoImport> = imports.iter().filter(|i| applies(i, binary)).collect();
        if applicable.is_empty() {
            continue;
        }
        let Some(symbols) = &binary.symbols else {
            unknown = true;
            continue;
        };
        // A function not found may have been inlined where the inline trees were not read.
        unknown |= !binary.inlined_read;
        for import in applicable {
            let Some(functions) = symbols.get(&import.path) else {
                continue;
            };
            if import.symbols.is_empty() {
                present.extend(functions.iter().map(|f| format!("{}.{f}", import.path)));
            } else {
                present.extend(
                    import
                        .symbols
                        .iter()
                        .filter(|s| functions.contains(*s))
                        .map(|s| format!("{}.{s}", import.path)),
                );
            }
        }
    }
    let reachable = if !present.is_empty() {
        Some(true)
    } else if unknown {
        None
    } else {
        Some(false)
    };
    (reachable, present)
}

/// The findings of `inventory` against `advisories` (those the database holds for the
/// inventory's packages; others are ignored), sorted by severity (highest first), package
/// and ID.
pub fn assess(inventory: &Inventory, advisories: &[KnownAdvisory]) -> Vec<Finding> {
    let binaries: BTreeMap<&str, &GoBinary> = inventory
        .binaries
        .iter()
        .map(|b| (b.path.as_str(), b))
        .collect();
    let mut findings = Vec::new();
    for package in &inventory.packages {
        let Some(ecosystem) = package.ecosystem.as_deref() else {
            continue;
        };
        // The record preferred within an alias group comes first: with symbols, then by ID.
        let mut candidates: Vec<(&KnownAdvisory, gantry_osv::Match<'_>)> = advisories
            .iter()
            .filter_map(|known| {
                osv_names(package).find_map(|name| {
                    known
                        .advisory
                        .affects(ecosystem, name, &package.source_version)
                        .map(|m| (known, m))
                })
            })
            .collect();
        candidates.sort_by_key(|(known, matched)| (matched.imports.is_empty(), &known.advisory.id));
        let mut reported: BTreeSet<&str> = BTreeSet::new();
        let holders: Vec<&GoBinary> = package
            .locations
            .iter()
            .filter_map(|l| binaries.get(l.as_str()).copied())
            .collect();
        for (known, matched) in candidates {
            let id = known.advisory.id.as_str();
            if reported.contains(id) {
                continue;
            }
            reported.insert(id);
            reported.extend(known.aliases.iter().map(String::as_str));
            let (reachable, symbols) = if package.kind == PackageType::Golang {
                reachability(matched.imports, &holders)
            } else {
                (None, BTreeSet::new())
            };
            findings.push(Finding {
                id: id.to_string(),
                aliases: known.aliases.clone(),
                summary: known.advisory.summary.clone(),
                package_type: package.kind,
                package: package.name.clone(),
                version: package.version.clone(),
                fixed_version: matched
                    .fixed_version
                    .map(|fixed| in_package_notation(package, fixed)),
                severity: known.severity,
                reachable,
                symbols: symbols.into_iter().collect(),
                locations: package.locations.clone(),
            });
        }
    }
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.package.cmp(&b.package))
            .then_with(|| a.id.cmp(&b.id))
    });
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Distribution;
    use gantry_osv::{merge_by_aliases, AliasRecord};
    use serde_json::json;

    fn known(records: Vec<serde_json::Value>) -> Vec<KnownAdvisory> {
        let advisories: Vec<Advisory> = records
            .into_iter()
            .map(|r| serde_json::from_value(r).unwrap())
            .collect();
        let merged = merge_by_aliases(
            &advisories
                .iter()
                .map(|a| AliasRecord {
                    id: &a.id,
                    aliases: &a.aliases,
                    severity: a.severity(),
                })
                .collect::<Vec<_>>(),
        );
        advisories
            .into_iter()
            .zip(merged)
            .map(|(advisory, merged)| KnownAdvisory {
                advisory,
                aliases: merged.aliases,
                severity: merged.severity,
            })
            .collect()
    }

    fn go_record(
        id: &str,
        module: &str,
        fixed: &str,
        imports: serde_json::Value,
    ) -> serde_json::Value {
        json!({
            "id": id, "modified": "2024-01-01T00:00:00Z", "aliases": [],
            "affected": [{
                "package": {"ecosystem": "Go", "name": module},
                "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": fixed}]}],
                "ecosystem_specific": {"imports": imports},
            }],
        })
    }

    fn go_package(name: &str, version: &str, replaces: Option<&str>) -> Package {
        Package {
            kind: PackageType::Golang,
            name: name.into(),
            version: version.into(),
            architecture: None,
            ecosystem: Some("Go".into()),
            source_name: name.into(),
            source_version: version.into(),
            replaces: replaces.map(str::to_string),
            locations: vec!["/app".into()],
        }
    }

    fn binary(symbols: Option<&[(&str, &str)]>) -> GoBinary {
        GoBinary {
            path: "/app".into(),
            go_version: "go1.22.3".into(),
            main_module: None,
            goos: Some("linux".into()),
            goarch: Some("amd64".into()),
            symbols: symbols.map(|list| {
                let mut map: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
                for (package, symbol) in list {
                    map.entry(package.to_string())
                        .or_default()
                        .insert(symbol.to_string());
                }
                map
            }),
            inlined_read: true,
        }
    }

    fn go_inventory(packages: Vec<Package>, symbols: Option<&[(&str, &str)]>) -> Inventory {
        Inventory {
            distribution: None,
            packages,
            binaries: vec![binary(symbols)],
        }
    }

    /// Two golang.org/x/text records: `Parse` is vulnerable in one, not in the other.
    fn text_advisories() -> Vec<KnownAdvisory> {
        known(vec![
            go_record(
                "GO-2021-0113",
                "golang.org/x/text",
                "0.3.7",
                json!([{"path": "golang.org/x/text/language", "symbols": ["Parse", "MatchStrings"]}]),
            ),
            go_record(
                "GO-2022-1059",
                "golang.org/x/text",
                "0.3.8",
                json!([{"path": "golang.org/x/text/language", "symbols": ["ParseAcceptLanguage"]}]),
            ),
        ])
    }

    #[test]
    fn a_go_finding_is_reachable_when_a_vulnerable_symbol_is_in_the_function_table() {
        let advisories = text_advisories();
        let packages = vec![go_package("golang.org/x/text", "v0.3.5", None)];
        let called = [("golang.org/x/text/language", "Parse")];
        let findings = assess(&go_inventory(packages.clone(), Some(&called)), &advisories);
        let seen: Vec<String> = findings
            .iter()
            .map(|f| {
                format!(
                    "{} fixed in {:?} reachable {:?} via {:?}",
                    f.id, f.fixed_version, f.reachable, f.symbols
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                "GO-2021-0113 fixed in Some(\"v0.3.7\") reachable Some(true) via [\"golang.org/x/text/language.Parse\"]",
                "GO-2022-1059 fixed in Some(\"v0.3.8\") reachable Some(false) via []",
            ]
        );
        // The function table could not be read: reachability unknown, the findings stay.
        let unknown = assess(&go_inventory(packages, None), &advisories);
        assert!(unknown.iter().all(|f| f.reachable.is_none()), "{unknown:?}");
        assert_eq!(unknown.len(), 2);
    }

    #[test]
    fn a_function_missing_where_inline_trees_were_not_read_is_unknown_not_unreachable() {
        let advisories = text_advisories();
        let packages = vec![go_package("golang.org/x/text", "v0.3.5", None)];
        let called = [("golang.org/x/text/language", "Parse")];
        let mut inventory = go_inventory(packages, Some(&called));
        inventory.binaries[0].inlined_read = false;
        let reachable: Vec<(String, Option<bool>)> = assess(&inventory, &advisories)
            .into_iter()
            .map(|f| (f.id, f.reachable))
            .collect();
        // Found is found; not found may be inlined (e.g. a Go 1.17 binary's trees).
        assert_eq!(
            reachable,
            [
                ("GO-2021-0113".to_string(), Some(true)),
                ("GO-2022-1059".to_string(), None)
            ]
        );
    }

    #[test]
    fn a_replaced_module_is_matched_under_both_names_and_reported_under_the_replacement() {
        let advisories = known(vec![go_record(
            "GO-2023-0001",
            "golang.org/x/net",
            "0.7.0",
            json!([]),
        )]);
        let packages = vec![go_package(
            "example.com/net-fork",
            "v0.1.0",
            Some("golang.org/x/net"),
        )];
        let findings = assess(&go_inventory(packages, Some(&[])), &advisories);
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].package, "example.com/net-fork");
        // No vulnerable packages named: nothing to look for in the binary.
        assert_eq!(findings[0].reachable, None);
    }

    #[test]
    fn records_of_one_vulnerability_give_one_finding_with_the_severity_of_the_record_that_has_one()
    {
        let mut ghsa = go_record(
            "GHSA-69ch-w2m2-3vjp",
            "golang.org/x/text",
            "0.3.7",
            json!([]),
        );
        ghsa["aliases"] = json!(["CVE-2021-38561", "GO-2021-0113"]);
        ghsa["severity"] =
            json!([{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"}]);
        let mut go = go_record(
            "GO-2021-0113",
            "golang.org/x/text",
            "0.3.7",
            json!([{"path": "golang.org/x/text/language", "symbols": ["Parse"]}]),
        );
        go["aliases"] = json!(["CVE-2021-38561", "GHSA-69ch-w2m2-3vjp"]);
        let advisories = known(vec![ghsa, go]);
        let packages = vec![go_package("golang.org/x/text", "v0.3.5", None)];
        let findings = assess(&go_inventory(packages, Some(&[])), &advisories);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].id, "GO-2021-0113");
        assert_eq!(findings[0].severity, Severity::High);
        assert_eq!(
            findings[0].aliases,
            ["CVE-2021-38561", "GHSA-69ch-w2m2-3vjp"]
        );
        assert_eq!(findings[0].reachable, Some(false));
    }

    #[test]
    fn imports_for_other_platforms_are_not_reachable() {
        let advisories = known(vec![go_record(
            "GO-2022-0001",
            "stdlib",
            "1.22.4",
            json!([{"path": "os", "goos": ["windows"], "symbols": ["Open"]}]),
        )]);
        let packages = vec![go_package("stdlib", "v1.22.3", None)];
        let findings = assess(
            &go_inventory(packages, Some(&[("os", "Open")])),
            &advisories,
        );
        assert_eq!(findings[0].reachable, Some(false));
    }

    #[test]
    fn os_packages_match_by_source_package_in_their_distribution() {
        let advisories = known(vec![json!({
            "id": "DSA-5532-1", "modified": "2024-01-01T00:00:00Z",
            "affected": [{
                "package": {"ecosystem": "Debian:12", "name": "openssl"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.11-1~deb12u2"}]}],
            }],
        })]);
        let deb = |version: &str, ecosystem: &str| Package {
            kind: PackageType::Deb,
            name: "libssl3".into(),
            version: version.into(),
            architecture: Some("amd64".into()),
            ecosystem: Some(ecosystem.into()),
            source_name: "openssl".into(),
            source_version: version.into(),
            replaces: None,
            locations: vec!["/var/lib/dpkg/status".into()],
        };
        let inventory = |package| Inventory {
            distribution: Some(Distribution {
                id: "debian".into(),
                version_id: "12".into(),
                pretty_name: None,
                ecosystem: Some("Debian:12".into()),
            }),
            packages: vec![package],
            binaries: Vec::new(),
        };
        let found = assess(
            &inventory(deb("3.0.11-1~deb12u1", "Debian:12")),
            &advisories,
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].package, "libssl3");
        assert_eq!(found[0].fixed_version.as_deref(), Some("3.0.11-1~deb12u2"));
        assert_eq!(found[0].reachable, None);
        assert!(assess(
            &inventory(deb("3.0.11-1~deb12u2", "Debian:12")),
            &advisories
        )
        .is_empty());
        assert!(assess(
            &inventory(deb("3.0.11-1~deb12u1", "Debian:11")),
            &advisories
        )
        .is_empty());
    }
}
