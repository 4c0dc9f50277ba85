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
//!
//! The same holds on a binary of 200 stand-in modules at vulnerable versions taken from the
//! snapshot (gantry_gofixtures::many, the benchmarks' large binary).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use common::*;
use gantry_gofixtures::many::{build_many_modules_program, vulnerable_stand_ins};
use gantry_gofixtures::{write_many_modules_program, Fixture, Options, Toolchain};
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

/// The Go 1.19 fixture built with inlining or without: unstripped, then stripped.
fn fixtures(no_inlining: bool) -> Option<(Arc<Fixture>, Arc<Fixture>)> {
    let build = |stripped| {
        gantry_gofixtures::build(Options {
            stripped,
            no_inlining,
            ..Options::new(Toolchain::Go119)
        })
    };
    Some((build(false)?, build(true)?))
}

/// The snapshot in govulncheck's legacy file layout, written under `dir`: its path.
fn legacy_govulndb(dir: &Path) -> std::path::PathBuf {
    let db = dir.join("govulndb");
    write_legacy_govulndb(&go_snapshot(), &db).unwrap();
    db
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

/// govulncheck's called findings on `binary` (see [`govulncheck_findings`]), asserting that
/// it succeeded and, as binary mode in this version does, reported no module as only imported.
fn govulncheck_called(program: &str, db: &Path, home: &Path, binary: &Path) -> BTreeSet<Key> {
    let out = run_govulncheck(program, db, home, binary);
    assert!(
        out.status.success(),
        "govulncheck -json on {} failed: {}",
        binary.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let (called, imported) = govulncheck_findings(&serde_json::from_slice(&out.stdout).unwrap());
    // Binary mode in this version reports symbols found, never imports alone.
    assert!(
        imported.is_empty(),
        "binary mode reported imports: {imported:?}"
    );
    called
}

/// A finding's key: the advisory's ID and the module it is found in (govulncheck's
/// `Modules[].Path`, the scanner's `package`).
type Key = (String, String);

/// govulncheck's findings (its JSON: `Vulns[].OSV.id` with `Modules[].Path`), split into
/// called (some `Packages[].CallStacks` of the module non-empty) and only imported.
fn govulncheck_findings(report: &Value) -> (BTreeSet<Key>, BTreeSet<Key>) {
    let mut called = BTreeSet::new();
    let mut imported = BTreeSet::new();
    for vuln in report["Vulns"].as_array().into_iter().flatten() {
        let id = vuln["OSV"]["id"].as_str().unwrap();
        for module in vuln["Modules"].as_array().into_iter().flatten() {
            let key = (id.to_string(), module["Path"].as_str().unwrap().to_string());
            let has_stack = module["Packages"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["CallStacks"].as_array().is_some_and(|s| !s.is_empty()));
            if has_stack {
                called.insert(key);
            } else {
                imported.insert(key);
            }
        }
    }
    (called, imported)
}

/// The scanner's Go findings of the image holding `binary`: (ID, module) → (reachable,
/// aliases).
fn scanner_findings(dir: &Path, binary: &[u8]) -> BTreeMap<Key, (Value, BTreeSet<String>)> {
    make_layout(dir, "v1", &[("usr/bin/app", binary)]);
    let out = run(gantry_scan()
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
            let key = (
                f["id"].as_str().unwrap().to_string(),
                f["package"].as_str().unwrap().to_string(),
            );
            (key, (f["reachable"].clone(), aliases))
        })
        .collect()
}

/// The scanner's finding for govulncheck's `(id, module)`: the one shown under that ID in
/// that module, or the one of its alias group (the scanner shows one finding per
/// vulnerability and package, under the record with symbols first, then the smallest ID; see
/// crates/scanner/src/assess.rs).
fn finding_for<'a>(
    findings: &'a BTreeMap<Key, (Value, BTreeSet<String>)>,
    (id, module): &Key,
) -> Option<(&'a String, &'a Value)> {
    findings
        .iter()
        .find(|((shown, package), (_, aliases))| {
            package == module && (shown == id || aliases.contains(id))
        })
        .map(|((shown, _), (reachable, _))| (shown, reachable))
}

/// Asserts that the scanner's reachable findings on an image holding `binary` are exactly
/// govulncheck's `called` ones (by ID or alias, and module), and that every other finding's
/// reachability is known (the function table was read) unless its record names no
/// vulnerable package (govulncheck has nothing to look for then, and reports nothing).
fn assert_reachable_equals_called(what: &str, binary: &[u8], called: &BTreeSet<Key>, db: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let findings = scanner_findings(dir.path(), binary);
    // Every advisory govulncheck calls is a reachable finding of the scanner …
    for key in called {
        let (shown, reachable) = finding_for(&findings, key)
            .unwrap_or_else(|| panic!("{what}: govulncheck's {key:?} is not a scanner finding"));
        assert_eq!(
            *reachable, true,
            "{what}: govulncheck calls {key:?}, the scanner's {shown} is not reachable"
        );
    }
    // … and every reachable finding is one govulncheck calls (by its ID or an alias's).
    for ((id, package), (reachable, aliases)) in &findings {
        if *reachable != true {
            continue;
        }
        let calls = |id: &String| called.contains(&(id.clone(), package.clone()));
        assert!(
            calls(id) || aliases.iter().any(calls),
            "{what}: the scanner marks {id} in {package} reachable, govulncheck does not report it"
        );
    }
    // The module-level findings govulncheck leaves out are the scanner's unreachable ones;
    // unknown only where the record names no vulnerable package of the module (the table
    // was read).
    for ((id, module), (reachable, _)) in &findings {
        if reachable.is_boolean() {
            continue;
        }
        let record: Value =
            serde_json::from_slice(&std::fs::read(db.join(format!("ID/{id}.json"))).unwrap())
                .unwrap();
        let names_packages = record["affected"].as_array().unwrap().iter().any(|a| {
            a["package"]["name"] == module.as_str()
                && a["ecosystem_specific"]["imports"]
                    .as_array()
                    .is_some_and(|i| !i.is_empty())
        });
        assert!(
            !names_packages,
            "{what}: {id} in {module} has reachability {reachable}"
        );
    }
}

#[test]
fn findings_govulncheck_reports_as_called_are_exactly_those_the_scanner_marks_reachable() {
    let Some(program) = govulncheck() else {
        return;
    };
    let Some((plain, stripped)) = fixtures(true) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let db = legacy_govulndb(work.path());

    let called = govulncheck_called(program, &db, work.path(), &plain.path);
    // The fixture calls golang.org/x/text/language.Parse (GO-2021-0113): the comparison is
    // not between two empty sets.
    let text = ("GO-2021-0113".to_string(), "golang.org/x/text".to_string());
    assert!(called.contains(&text), "govulncheck: {called:?}");
    eprintln!("govulncheck reports as called: {called:?}");

    for (what, fixture) in [("unstripped", &plain), ("stripped", &stripped)] {
        assert_reachable_equals_called(what, &fixture.bytes, &called, &db);
    }

    // The stripped build: this govulncheck needs the symbol table and says so.
    let out = run_govulncheck(program, &db, work.path(), &stripped.path);
    assert!(!out.status.success(), "govulncheck read a stripped binary");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("go.func.*"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Many modules: 200 stand-ins at vulnerable versions from the snapshot, each calling a
    // vulnerable symbol (the benchmarks' large binary), built by the same Go 1.19.
    let records: Vec<Value> = gantry_osv::source::open(&go_snapshot())
        .unwrap()
        .filter_map(|item| match item.unwrap() {
            gantry_osv::Item::Record(record) => Some(serde_json::from_str(&record.json).unwrap()),
            gantry_osv::Item::Malformed(_) => None,
        })
        .collect();
    let stand_ins = vulnerable_stand_ins(&records, 200);
    assert_eq!(stand_ins.len(), 200);
    let src = work.path().join("many-modules");
    std::fs::create_dir_all(&src).unwrap();
    write_many_modules_program(&src, &stand_ins).unwrap();
    let many = work.path().join("many-modules.bin");
    build_many_modules_program(&plain.go, &src, &many);
    let called = govulncheck_called(program, &db, work.path(), &many);
    // Most stand-ins call a vulnerable symbol; not all: a pseudo-version dated 2020 is past a
    // fix that is an older pseudo-version, and some imports are for other platforms.
    let modules: BTreeSet<&String> = called.iter().map(|(_, module)| module).collect();
    assert!(modules.len() >= 180, "govulncheck calls {called:?}");
    eprintln!(
        "200 modules: govulncheck calls {} advisories in {} modules",
        called.len(),
        modules.len()
    );
    assert_reachable_equals_called("200 modules", &std::fs::read(&many).unwrap(), &called, &db);
}

/// The fixture built with inlining: `html.Render` (GO-2023-1988) is inlined into `main.main`
/// and has no function of its own; govulncheck reads `main.main`'s inline tree and reports the
/// advisory as called, so the scanner must mark it reachable too (a `reachable_only` gate
/// would otherwise pass a binary that runs the vulnerable code), stripped or not.
#[test]
fn a_vulnerable_function_inlined_everywhere_is_reachable() {
    let Some(program) = govulncheck() else {
        return;
    };
    let Some((plain, stripped)) = fixtures(false) else {
        return;
    };
    let (package, symbol) = gantry_gofixtures::INLINED_EVERYWHERE;
    let listing = plain.go_on_binary(&["tool", "nm"]);
    assert!(
        !listing.contains(&format!(" {package}.{symbol}\n")),
        "{package}.{symbol} has a symbol of its own: the fixture does not pin inlining"
    );
    let work = tempfile::tempdir().unwrap();
    let db = legacy_govulndb(work.path());
    let called = govulncheck_called(program, &db, work.path(), &plain.path);
    let render = ("GO-2023-1988".to_string(), "golang.org/x/net".to_string());
    assert!(called.contains(&render), "govulncheck: {called:?}");
    for (what, fixture) in [
        ("inlined, unstripped", &plain),
        ("inlined, stripped", &stripped),
    ] {
        assert_reachable_equals_called(what, &fixture.bytes, &called, &db);
    }
}
