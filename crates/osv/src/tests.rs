use std::cmp::Ordering;
use std::path::Path;

use proptest::prelude::*;

use crate::source::{self, Item};
use crate::testdata::{go_snapshot as snapshot, GO_SNAPSHOT_RECORDS};
use crate::*;

fn read_all(path: &Path) -> (Vec<Record>, Vec<Malformed>) {
    let mut records = Vec::new();
    let mut malformed = Vec::new();
    for item in source::open(path).unwrap() {
        match item.unwrap() {
            Item::Record(record) => records.push(*record),
            Item::Malformed(m) => malformed.push(m),
        }
    }
    (records, malformed)
}

fn advisory(json: serde_json::Value) -> Advisory {
    serde_json::from_value(json).unwrap()
}

fn go(a: &str, b: &str) -> Ordering {
    Ecosystem::Go.compare(a, b).unwrap()
}
fn deb(a: &str, b: &str) -> Ordering {
    Ecosystem::Debian.compare(a, b).unwrap()
}
fn apk(a: &str, b: &str) -> Ordering {
    Ecosystem::Alpine.compare(a, b).unwrap()
}

// --- the snapshot -----------------------------------------------------------------------------

#[test]
fn the_go_snapshot_imports_every_record() {
    let (records, malformed) = read_all(&snapshot());
    assert_eq!(malformed, vec![]);
    assert_eq!(records.len(), GO_SNAPSHOT_RECORDS);
    assert!(records.iter().all(|r| r.advisory.id.starts_with("GO-")));
    let with_symbols = records
        .iter()
        .flat_map(|r| &r.advisory.affected)
        .filter(|a| {
            a.ecosystem_specific
                .as_ref()
                .is_some_and(|s| s.imports.iter().any(|i| !i.symbols.is_empty()))
        })
        .count();
    assert!(with_symbols > 1000, "{with_symbols} entries with symbols");
}

fn snapshot_record(id: &str) -> Advisory {
    let (records, _) = read_all(&snapshot());
    records
        .into_iter()
        .find(|r| r.advisory.id == id)
        .unwrap_or_else(|| panic!("{id} not in the snapshot"))
        .advisory
}

#[test]
fn x_text_language_parse_is_affected_below_0_3_7() {
    let record = snapshot_record("GO-2021-0113");
    assert_eq!(record.aliases, ["CVE-2021-38561", "GHSA-ppp9-7jff-5vj2"]);
    let hit = record
        .affects("Go", "golang.org/x/text", "v0.3.5")
        .expect("v0.3.5 is affected");
    assert_eq!(hit.fixed_version, Some("0.3.7"));
    assert_eq!(hit.imports[0].path, "golang.org/x/text/language");
    assert!(hit.imports[0].symbols.iter().any(|s| s == "Parse"));
    // A pseudo-version before any release is a prerelease of v0.0.0: affected.
    assert!(record
        .affects(
            "Go",
            "golang.org/x/text",
            "v0.0.0-20210101000000-abcdef123456"
        )
        .is_some());
    assert!(record
        .affects("Go", "golang.org/x/text", "v0.3.6")
        .is_some());
    assert!(record
        .affects("Go", "golang.org/x/text", "v0.3.7")
        .is_none());
    assert!(record.affects("Go", "golang.org/x/text", "0.3.8").is_none());
    assert!(record.affects("Go", "golang.org/x/net", "v0.3.5").is_none());
    assert!(record
        .affects("Debian:12", "golang.org/x/text", "0.3.5")
        .is_none());
    // Versions Go would not accept (a main module built from a checkout) match nothing.
    assert!(record
        .affects("Go", "golang.org/x/text", "(devel)")
        .is_none());
}

#[test]
fn stdlib_netip_is_affected_per_release_branch() {
    // Two branches: introduced 0, fixed 1.21.11; introduced 1.22.0-0, fixed 1.22.4.
    let record = snapshot_record("GO-2024-2887");
    let stdlib = |tag: &str| {
        let version = go_toolchain_version(tag).unwrap();
        record
            .affects("Go", "stdlib", &version)
            .map(|hit| hit.fixed_version.unwrap().to_string())
    };
    assert_eq!(stdlib("go1.21.10").as_deref(), Some("1.21.11"));
    assert_eq!(stdlib("go1.21.11"), None);
    assert_eq!(stdlib("go1.22.3 X:boringcrypto").as_deref(), Some("1.22.4"));
    assert_eq!(stdlib("go1.22rc1").as_deref(), Some("1.22.4"));
    assert_eq!(stdlib("go1.22").as_deref(), Some("1.22.4"));
    assert_eq!(stdlib("go1.22.4"), None);
    assert_eq!(stdlib("go1.23.0"), None);
    let hit = record.affects("Go", "stdlib", "v1.22.3").unwrap();
    assert_eq!(hit.imports[0].path, "net/netip");
}

#[test]
fn the_go_database_has_no_severity() {
    assert_eq!(
        snapshot_record("GO-2022-1059").severity(),
        Severity::Unknown
    );
}

// --- version ordering -------------------------------------------------------------------------

#[test]
fn go_versions_order_as_x_mod_semver() {
    use Ordering::*;
    assert_eq!(go("v0.0.0-20210101000000-abcdef123456", "v0.0.1"), Less);
    assert_eq!(go("v0.0.0-20210101000000-abcdef123456", "v0.0.0"), Less);
    // A pseudo-version after v1.2.3 (v1.2.4-0.…) is above v1.2.3 and below v1.2.4.
    assert_eq!(
        go("v1.2.4-0.20210101000000-abcdef123456", "v1.2.3"),
        Greater
    );
    assert_eq!(go("v1.2.4-0.20210101000000-abcdef123456", "v1.2.4"), Less);
    assert_eq!(go("v2.0.0+incompatible", "v2.0.0"), Equal);
    assert_eq!(go("v2.0.0+incompatible", "2.0.0"), Equal);
    assert_eq!(go("v2.1.0+incompatible", "v2.0.0"), Greater);
    assert_eq!(go("v1.10.0", "v1.9.0"), Greater);
    assert_eq!(go("v1", "v1.0.0"), Equal);
    assert_eq!(go("v1.2", "v1.2.0"), Equal);
    assert_eq!(go("v1.0.0-alpha", "v1.0.0-alpha.1"), Less);
    assert_eq!(go("v1.0.0-alpha.1", "v1.0.0-alpha.beta"), Less);
    assert_eq!(go("v1.0.0-beta.2", "v1.0.0-beta.11"), Less);
    assert_eq!(go("v1.0.0-rc.1", "v1.0.0"), Less);
    assert_eq!(go("1.22.0-0", "1.22.0-rc.1"), Less);
    // Invalid strings: below every valid version, equal to each other.
    assert_eq!(go("v01.0.0", "v0.0.0"), Less);
    assert_eq!(go("(devel)", "garbage"), Equal);
    assert!(GoVersion::parse("v1.2-pre").is_none());
    assert!(GoVersion::parse("v1.0.0-01").is_none());
    assert!(GoVersion::parse("v1.0.0+").is_none());
    assert!(GoVersion::parse("1.0.0").is_some());
}

#[test]
fn go_toolchain_tags_map_as_x_vuln_does() {
    let cases = [
        ("go1.22.3", Some("v1.22.3")),
        ("go1.22", Some("v1.22.0")),
        ("go1.21rc2", Some("v1.21.0-rc.2")),
        ("go1.9beta1", Some("v1.9.0-beta.1")),
        ("go1.22.3 X:boringcrypto", Some("v1.22.3")),
        ("go1", Some("v1.0.0")),
        ("go1.0", None),
        ("devel go1.23-abcdef", None),
        ("go1.22.", None),
        ("go1.21rc", None),
        ("1.22.3", None),
        ("", None),
    ];
    for (tag, expected) in cases {
        assert_eq!(go_toolchain_version(tag).as_deref(), expected, "{tag:?}");
    }
}

#[test]
fn debian_versions_order_as_dpkg() {
    use Ordering::*;
    assert_eq!(deb("1:1.0", "2.0"), Greater);
    assert_eq!(deb("1.0~rc1", "1.0"), Less);
    assert_eq!(deb("1.0~~", "1.0~"), Less);
    assert_eq!(deb("1.0-1", "1.0-2"), Less);
    assert_eq!(deb("1.0-10", "1.0-9"), Greater);
    assert_eq!(deb("1.0-1+deb12u1", "1.0-1"), Greater);
    assert_eq!(deb("2.36-9+deb12u4", "2.36-9+deb12u10"), Less);
    assert_eq!(deb("0:1.0", "1.0"), Equal);
    assert_eq!(deb("1.0a", "1.0"), Greater);
    assert!(DebianVersion::parse("1.0 beta").is_none());
    assert_eq!(deb("not a version!", "0"), Less);
}

#[test]
fn alpine_versions_order_as_apk() {
    use Ordering::*;
    assert_eq!(apk("1.2.3-r1", "1.2.3-r10"), Less);
    assert_eq!(apk("1.2.3-r2", "1.2.3-r10"), Less);
    assert_eq!(apk("1.2.3", "1.2.3-r0"), Less);
    assert_eq!(apk("1.0_rc1", "1.0"), Less);
    assert_eq!(apk("1.0_alpha", "1.0_beta"), Less);
    assert_eq!(apk("1.0_beta2", "1.0_pre1"), Less);
    assert_eq!(apk("1.0_pre1", "1.0_rc1"), Less);
    assert_eq!(apk("1.0_p1", "1.0"), Greater);
    assert_eq!(apk("1.0_p1", "1.0-r5"), Greater);
    assert_eq!(apk("1.0_git20230101", "1.0_p1"), Less);
    assert_eq!(apk("1.0a", "1.0"), Greater);
    assert_eq!(apk("1.0a", "1.0b"), Less);
    assert_eq!(apk("1.0a", "1.0.1"), Less);
    assert_eq!(apk("1.10", "1.9"), Greater);
    assert_eq!(apk("1.01", "1.1"), Less);
    assert_eq!(apk("1.2.3-r0", "1.2.3-r0"), Equal);
    assert_eq!(apk("3.0.13-r0", "3.0.8-r0"), Greater);
    assert_eq!(apk("1.0~abc1", "1.0~abc2"), Less);
    assert_eq!(apk("1.0~abc1-r1", "1.0-r1"), Greater);
    assert_eq!(
        apk("1.0-foo", "1.0"),
        Less,
        "an invalid token sorts below the end"
    );
    assert_eq!(
        apk("1.0-foo", "1.0-bar"),
        Equal,
        "equal up to where both stop"
    );
    assert!(AlpineVersion::parse("1.0-foo").is_none());
    assert!(AlpineVersion::parse("1a2").is_none());
    assert!(AlpineVersion::parse("1.0_foo").is_none());
    assert!(AlpineVersion::parse("").is_none());
    assert!(AlpineVersion::parse("1.36.1-r29").is_some());
}

#[test]
fn unsupported_ecosystems_never_match() {
    assert_eq!(Ecosystem::of("npm"), Ecosystem::Unsupported);
    assert_eq!(Ecosystem::of("Debian:12"), Ecosystem::Debian);
    assert_eq!(Ecosystem::of("Alpine:v3.19"), Ecosystem::Alpine);
    assert_eq!(Ecosystem::Unsupported.compare("1", "2"), None);
    let record = advisory(serde_json::json!({
        "id": "GHSA-x", "modified": "2024-01-01T00:00:00Z",
        "affected": [{"package": {"ecosystem": "npm", "name": "left-pad"},
                      "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}]}]}]
    }));
    assert!(record.affects("npm", "left-pad", "1.0.0").is_none());
}

// --- range evaluation -------------------------------------------------------------------------

fn ranged(ecosystem: &str, events: serde_json::Value, versions: serde_json::Value) -> Advisory {
    advisory(serde_json::json!({
        "id": "TEST-1", "modified": "2024-01-01T00:00:00Z",
        "affected": [{"package": {"ecosystem": ecosystem, "name": "pkg"},
                      "ranges": [{"type": "ECOSYSTEM", "events": events}],
                      "versions": versions}]
    }))
}

#[test]
fn events_are_evaluated_sorted_whatever_their_order_in_the_record() {
    // Written out of order: the spec sorts them first.
    let record = ranged(
        "Debian:12",
        serde_json::json!([{"fixed": "2.0-1"}, {"introduced": "1.5-1"}, {"fixed": "1.2-1"}, {"introduced": "0"}]),
        serde_json::json!([]),
    );
    let fixed = |v: &str| {
        record
            .affects("Debian:12", "pkg", v)
            .map(|m| m.fixed_version)
    };
    assert_eq!(fixed("1.0-1"), Some(Some("1.2-1")));
    assert_eq!(fixed("1.2-1"), None);
    assert_eq!(fixed("1.4-9"), None);
    assert_eq!(fixed("1.5-1"), Some(Some("2.0-1")));
    assert_eq!(
        fixed("1:1.0-1"),
        None,
        "the epoch puts it above every bound"
    );
    assert_eq!(fixed("2.0~rc1-1"), Some(Some("2.0-1")));
    assert_eq!(fixed("2.0-1"), None);
    // The ecosystem must match with its release.
    assert!(record.affects("Debian:11", "pkg", "1.0-1").is_none());
}

#[test]
fn last_affected_includes_its_version_and_limit_excludes_its_own() {
    let record = ranged(
        "Alpine:v3.19",
        serde_json::json!([{"introduced": "1.0-r0"}, {"last_affected": "1.2-r3"}]),
        serde_json::json!([]),
    );
    let hit = |v: &str| record.affects("Alpine:v3.19", "pkg", v).is_some();
    assert!(!hit("0.9-r0"));
    assert!(hit("1.0-r0"));
    assert!(hit("1.2-r3"));
    assert!(!hit("1.2-r4"));
    assert_eq!(
        record
            .affects("Alpine:v3.19", "pkg", "1.1-r0")
            .unwrap()
            .fixed_version,
        None
    );
    let limited = ranged(
        "Alpine:v3.19",
        serde_json::json!([{"introduced": "0"}, {"limit": "2.0-r0"}]),
        serde_json::json!([]),
    );
    assert!(limited.affects("Alpine:v3.19", "pkg", "1.9-r0").is_some());
    assert!(limited.affects("Alpine:v3.19", "pkg", "2.0-r0").is_none());
}

#[test]
fn listed_versions_are_affected_and_withdrawn_records_never() {
    let record = ranged(
        "Go",
        serde_json::json!([]),
        serde_json::json!(["1.4.0", "v1.6.0"]),
    );
    assert!(record.affects("Go", "pkg", "v1.4.0").is_some());
    assert!(record.affects("Go", "pkg", "1.6.0+incompatible").is_some());
    assert!(record.affects("Go", "pkg", "v1.5.0").is_none());
    let mut withdrawn = record.clone();
    withdrawn.withdrawn = Some("2024-02-01T00:00:00Z".to_string());
    assert!(withdrawn.affects("Go", "pkg", "v1.4.0").is_none());
}

#[test]
fn git_ranges_are_never_evaluated() {
    let record = advisory(serde_json::json!({
        "id": "TEST-2", "modified": "2024-01-01T00:00:00Z",
        "affected": [{"package": {"ecosystem": "Go", "name": "pkg"},
                      "ranges": [{"type": "GIT", "repo": "https://example.com/r",
                                  "events": [{"introduced": "0"}]}]}]
    }));
    assert!(record.affects("Go", "pkg", "v1.0.0").is_none());
}

// --- severity ---------------------------------------------------------------------------------

#[test]
fn severity_comes_from_cvss_then_words() {
    let with = |json: serde_json::Value| {
        let mut base = serde_json::json!({"id": "X", "modified": "2024-01-01T00:00:00Z"});
        base.as_object_mut()
            .unwrap()
            .extend(json.as_object().unwrap().clone());
        advisory(base).severity()
    };
    // CVE-2021-44228's vector: 10.0.
    assert_eq!(
        with(serde_json::json!({"severity": [{"type": "CVSS_V3",
            "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H"}]})),
        Severity::Critical
    );
    assert_eq!(
        with(serde_json::json!({"severity": [{"type": "CVSS_V3",
            "score": "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:L/I:N/A:N"}]})),
        Severity::Low
    );
    assert_eq!(
        with(serde_json::json!({"severity": [{"type": "CVSS_V4",
            "score": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"}]})),
        Severity::Critical
    );
    // A vector beats the word; an unreadable vector falls back to it.
    assert_eq!(
        with(serde_json::json!({"severity": [{"type": "CVSS_V3",
            "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"}],
            "database_specific": {"severity": "LOW"}})),
        Severity::High
    );
    assert_eq!(
        with(
            serde_json::json!({"severity": [{"type": "CVSS_V3", "score": "nonsense"}],
            "database_specific": {"severity": "MODERATE"}})
        ),
        Severity::Medium
    );
    assert_eq!(
        with(serde_json::json!({"severity": [{"type": "Ubuntu", "score": "high"}]})),
        Severity::High
    );
    assert_eq!(with(serde_json::json!({})), Severity::Unknown);
    assert_eq!("critical".parse::<Severity>(), Ok(Severity::Critical));
    assert!("severe".parse::<Severity>().is_err());
}

// --- merging ----------------------------------------------------------------------------------

#[test]
fn records_linked_by_aliases_share_a_severity_and_keep_their_ids() {
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let go_aliases = strings(&["CVE-2022-32149", "GHSA-69ch-w2m2-3vjp"]);
    let ghsa_aliases = strings(&["CVE-2022-32149"]);
    let debian_aliases = strings(&["CVE-2022-32149"]);
    let other_aliases = strings(&["CVE-2099-0001"]);
    let records = [
        AliasRecord {
            id: "GO-2022-1059",
            aliases: &go_aliases,
            severity: Severity::Unknown,
        },
        AliasRecord {
            id: "GHSA-69ch-w2m2-3vjp",
            aliases: &ghsa_aliases,
            severity: Severity::High,
        },
        AliasRecord {
            id: "DEBIAN-CVE-2022-32149",
            aliases: &debian_aliases,
            severity: Severity::Low,
        },
        AliasRecord {
            id: "GO-2099-0001",
            aliases: &other_aliases,
            severity: Severity::Unknown,
        },
    ];
    let merged = merge_by_aliases(&records);
    assert_eq!(merged[0].severity, Severity::High);
    assert_eq!(
        merged[0].severity_from.as_deref(),
        Some("GHSA-69ch-w2m2-3vjp")
    );
    assert_eq!(
        merged[0].aliases,
        [
            "CVE-2022-32149",
            "DEBIAN-CVE-2022-32149",
            "GHSA-69ch-w2m2-3vjp"
        ]
    );
    // A record with its own severity keeps it.
    assert_eq!(merged[2].severity, Severity::Low);
    assert_eq!(merged[3].severity, Severity::Unknown);
    assert_eq!(merged[3].severity_from, None);
    assert_eq!(merged[3].aliases, ["CVE-2099-0001"]);
}

// --- sources ----------------------------------------------------------------------------------

#[test]
fn a_directory_is_read_recursively_and_a_malformed_record_is_reported_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let good = r#"{"id": "GO-1", "modified": "2024-01-01T00:00:00Z", "new_field": {"x": 1}}"#;
    std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
    std::fs::write(dir.path().join("a/b/GO-1.json"), good).unwrap();
    std::fs::write(
        dir.path().join("bad.json"),
        r#"{"id": "GO-2", "affected": 7}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("empty-id.json"),
        r#"{"id": "", "modified": "x"}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("README.md"), "not a record").unwrap();
    std::fs::write(
        dir.path().join("list.json"),
        r#"[{"id": "GO-3", "modified": "2024-01-01T00:00:00Z"}, {"id": 4}]"#,
    )
    .unwrap();
    let (records, malformed) = read_all(dir.path());
    let ids: Vec<&str> = records.iter().map(|r| r.advisory.id.as_str()).collect();
    assert_eq!(ids, ["GO-1", "GO-3"]);
    assert_eq!(records[0].file, "a/b/GO-1.json");
    assert_eq!(
        records[0].json, good,
        "the record's text is kept as published"
    );
    let files: Vec<&str> = malformed.iter().map(|m| m.file.as_str()).collect();
    assert_eq!(files, ["bad.json", "empty-id.json", "list.json[1]"]);
    assert!(
        malformed[0].error.contains("affected"),
        "{}",
        malformed[0].error
    );
}

#[test]
fn one_json_file_is_a_source() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("GO-9.json");
    std::fs::write(
        &path,
        r#"{"id": "GO-9", "modified": "2024-01-01T00:00:00Z"}"#,
    )
    .unwrap();
    let (records, malformed) = read_all(&path);
    assert_eq!((records.len(), malformed.len()), (1, 0));
    assert_eq!(records[0].file, "GO-9.json");
    assert!(matches!(
        source::open(&dir.path().join("missing.zip")),
        Err(SourceError::Io { .. })
    ));
}

#[test]
fn a_broken_zip_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("all.zip");
    std::fs::write(&path, b"PK\x03\x04 truncated").unwrap();
    assert!(matches!(source::open(&path), Err(SourceError::Zip { .. })));
}

// --- properties -------------------------------------------------------------------------------

/// Version-like strings: the characters versions are made of, so comparisons reach deep.
fn version_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9v.:~+_a-z-]{0,16}",
        "v?[0-9]{1,3}(\\.[0-9]{1,3}){0,2}(-[0-9a-z.]{1,8})?(\\+incompatible)?",
        "([0-9]:)?[0-9]{1,2}(\\.[0-9]{1,2}){0,2}(~rc[0-9])?(-[0-9](\\+deb[0-9]u[0-9])?)?",
        "[0-9]{1,2}(\\.0?[0-9]{1,2}){0,2}[a-c]?(_(alpha|beta|pre|rc|p|git)[0-9]?)?(-r[0-9]{1,2})?",
        any::<String>(),
    ]
}

fn assert_total_order(ecosystem: Ecosystem, a: &str, b: &str, c: &str) {
    let (a, b, c) = (
        ecosystem.parse_any(a).unwrap(),
        ecosystem.parse_any(b).unwrap(),
        ecosystem.parse_any(c).unwrap(),
    );
    assert_eq!(a.cmp(&a), Ordering::Equal);
    assert_eq!(a.cmp(&b), b.cmp(&a).reverse(), "antisymmetric");
    assert_eq!(a == b, a.cmp(&b) == Ordering::Equal, "consistent with ==");
    if a <= b && b <= c {
        assert!(a <= c, "transitive: {a:?} <= {b:?} <= {c:?}");
    }
    if a == b && b == c {
        assert!(a == c);
    }
}

proptest! {
    #[test]
    fn each_ordering_is_a_total_order(a in version_text(), b in version_text(), c in version_text()) {
        for ecosystem in [Ecosystem::Go, Ecosystem::Debian, Ecosystem::Alpine] {
            // Sorting three, every permutation: the order found must be transitive.
            let mut sorted = [a.as_str(), b.as_str(), c.as_str()];
            sorted.sort_by(|x, y| ecosystem.compare(x, y).unwrap());
            assert_total_order(ecosystem, sorted[0], sorted[1], sorted[2]);
            assert_total_order(ecosystem, &a, &b, &c);
        }
    }

    #[test]
    fn parsing_anything_never_panics(text in any::<String>(), bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        for ecosystem in [Ecosystem::Go, Ecosystem::Debian, Ecosystem::Alpine, Ecosystem::Unsupported] {
            let _ = ecosystem.parse(&text);
        }
        let _ = go_toolchain_version(&text);
        let mut out = std::collections::VecDeque::new();
        source::parse_records("fuzz.json", &bytes, &mut out);
        source::parse_records("fuzz.json", text.as_bytes(), &mut out);
        prop_assert!(!out.is_empty());
    }

    #[test]
    fn go_build_metadata_never_changes_the_order(a in "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}", b in "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}") {
        prop_assert_eq!(go(&format!("v{a}+incompatible"), &b), go(&a, &b));
    }
}
