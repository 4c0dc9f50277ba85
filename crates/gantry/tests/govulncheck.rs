//! Oracle 3 of the vulnerability scanner (issue 13): Debian's `govulncheck`
//! (0.0~git20230201.4c848ed, golang.org/x/vuln of February 2023) in binary mode, on the Go 1.19
//! fixture built with `-gcflags=all=-l`, against the same OSV snapshot the scanner reads, laid
//! out in that version's file format ([`gantry_osv::testdata::write_legacy_govulndb`]): the
//! advisories it reports as called are exactly those `gantry scan` marks `reachable: true`.
//!
//! What that govulncheck does, read in its code (vulncheck/binary.go, vulncheck/vulncheck.go,
//! internal/govulncheck/run.go at 4c848ed):
//! - binary mode reports only advisories with a vulnerable symbol in the function table, each
//!   with a one-frame call stack (`createBinaryResult`); module-level matches without a present
//!   symbol are not reported at all (no "imported" findings in binary mode), so the scanner's
//!   `reachable: false` findings are exactly the ones govulncheck leaves out;
//! - it cannot read a binary stripped with `-s -w`: it looks up the `go.func.*` symbol in the
//!   symbol table for every function and fails with `no symbol "go.func.*"` (fixed in later
//!   x/vuln, which reads the pclntab alone). The scanner reads the pclntab without the symbol
//!   table, so on the stripped build it must mark the same findings reachable as govulncheck
//!   does on the unstripped one.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use common::*;
use gantry_gofixtures::{Fixture, Options, Toolchain};
use gantry_osv::testdata::{go_snapshot, write_legacy_govulndb};
use serde_json::Value;

/// Debian's govulncheck, or `None` (after saying why on stderr) when it is not installed
/// outside CI; in CI (`CI` set) its absence fails the test, as a missing Go toolchain does.
fn govulncheck() -> Option<&'static str> {
    let found = Command::new("govulncheck").arg("-h").output().is_ok();
    if found {
        return Some("govulncheck");
    }
    let message =
        "govulncheck is not installed (apt package `govulncheck`; scripts/test-all.sh installs it)";
    if std::env::var_os("CI").is_some() {
        panic!("{message}; in CI a missing oracle is a failure");
    }
    eprintln!("SKIPPED: {message}");
    None
}

/// The Go 1.19 fixture without inlining, stripped or not.
fn fixture(stripped: bool) -> Option<std::sync::Arc<Fixture>> {
    gantry_gofixtures::build(Options {
        stripped,
        no_inlining: true,
        ..Options::new(Toolchain::Go119)
    })
}

/// `govulncheck -json BINARY` against the legacy database at `db` (its own cache under
/// `home`, so nothing outside the test is read or written): the output.
fn run_govulncheck(program: &str, db: &Path, home: &Path, binary: &Path) -> std::process::Output {
    Command::new(program)
        .arg("-json")
        .arg(binary)
        .env("GOVULNDB", format!("file://{}", db.display()))
        .env("HOME", home)
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("GOFLAGS", "-mod=vendor")
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"))
}

/// The IDs of govulncheck's `Vulns` (its JSON: `Vulns[].OSV.ID`), split into called (some
/// `Modules[].Packages[].CallStacks` non-empty) and only imported.
fn govulncheck_ids(report: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut called = BTreeSet::new();
    let mut imported = BTreeSet::new();
    for vuln in report["Vulns"].as_array().into_iter().flatten() {
        let id = vuln["OSV"]["id"].as_str().unwrap().to_string();
        let has_stack = vuln["Modules"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|m| m["Packages"].as_array().into_iter().flatten())
            .any(|p| p["CallStacks"].as_array().is_some_and(|s| !s.is_empty()));
        if has_stack {
            called.insert(id);
        } else {
            imported.insert(id);
        }
    }
    (called, imported)
}

/// The scanner's Go findings of the image holding `binary`: ID → (reachable, aliases).
fn scanner_findings(dir: &Path, binary: &[u8]) -> BTreeMap<String, (Value, BTreeSet<String>)> {
    make_layout(dir, "v1", &[("usr/bin/app", binary)]);
    let out = run(Command::new(env!("CARGO_BIN_EXE_gantry"))
        .arg("scan")
        .arg(format!("oci:{}:v1", dir.join("layout").display()))
        .arg("--db")
        .arg(go_snapshot())
        .args(["--format", "json"]));
    let report: Value = serde_json::from_str(&out).unwrap();
    report["images"][0]["vulnerabilities"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["type"] == "golang")
        .map(|f| {
            let aliases = f["aliases"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_string())
                .collect();
            (
                f["id"].as_str().unwrap().to_string(),
                (f["reachable"].clone(), aliases),
            )
        })
        .collect()
}

/// The scanner's finding for the govulncheck ID `id`: the one shown under it, or the one of
/// its alias group (the scanner shows one finding per vulnerability, under the record with
/// symbols first, then the smallest ID; see crates/scanner/src/assess.rs).
fn finding_for<'a>(
    findings: &'a BTreeMap<String, (Value, BTreeSet<String>)>,
    id: &str,
) -> Option<(&'a String, &'a Value)> {
    findings
        .iter()
        .find(|(shown, (_, aliases))| *shown == id || aliases.contains(id))
        .map(|(shown, (reachable, _))| (shown, reachable))
}

#[test]
fn findings_govulncheck_reports_as_called_are_exactly_those_the_scanner_marks_reachable() {
    let Some(program) = govulncheck() else {
        return;
    };
    let (Some(plain), Some(stripped)) = (fixture(false), fixture(true)) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let db = work.path().join("govulndb");
    write_legacy_govulndb(&go_snapshot(), &db).unwrap();

    let out = run_govulncheck(program, &db, work.path(), &plain.path);
    assert!(
        out.status.success(),
        "govulncheck -json on {} failed: {}",
        plain.path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (called, imported) = govulncheck_ids(&report);
    // Binary mode in this version reports symbols found, never imports alone.
    assert!(
        imported.is_empty(),
        "binary mode reported imports: {imported:?}"
    );
    // The fixture calls golang.org/x/text/language.Parse (GO-2021-0113): the comparison is
    // not between two empty sets.
    assert!(called.contains("GO-2021-0113"), "govulncheck: {called:?}");
    eprintln!("govulncheck reports as called: {called:?}");

    for (what, fixture) in [("unstripped", &plain), ("stripped", &stripped)] {
        let dir = tempfile::tempdir().unwrap();
        let findings = scanner_findings(dir.path(), &fixture.bytes);
        let reachable: BTreeSet<&String> = findings
            .iter()
            .filter(|(_, (reachable, _))| *reachable == true)
            .map(|(id, _)| id)
            .collect();
        // Every advisory govulncheck calls is a reachable finding of the scanner …
        for id in &called {
            let (shown, reachable) = finding_for(&findings, id)
                .unwrap_or_else(|| panic!("{what}: govulncheck's {id} is not a scanner finding"));
            assert_eq!(
                *reachable, true,
                "{what}: govulncheck calls {id}, the scanner's {shown} is not reachable"
            );
        }
        // … and every reachable finding is one govulncheck calls (by its ID or an alias's).
        for id in &reachable {
            let (_, aliases) = &findings[*id];
            assert!(
                called.contains(*id) || aliases.iter().any(|a| called.contains(a)),
                "{what}: the scanner marks {id} reachable, govulncheck does not report it"
            );
        }
        // The module-level findings govulncheck leaves out are the scanner's unreachable ones:
        // none is unknown (the function table was read).
        for (id, (reachable, _)) in &findings {
            assert!(
                reachable.is_boolean(),
                "{what}: {id} has reachability {reachable}"
            );
        }
    }

    // The stripped build: this govulncheck needs the symbol table and says so.
    let out = run_govulncheck(program, &db, work.path(), &stripped.path);
    assert!(!out.status.success(), "govulncheck read a stripped binary");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("go.func.*"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
