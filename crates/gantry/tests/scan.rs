//! The vulnerability scanner on the real binary, with fixture Go binaries built offline by
//! Go 1.19 and Go 1.27 (crates/gofixtures) and the Go vulnerability database snapshot
//! (shared test data, CC-BY-4.0, attribution in its NOTICES):
//!
//! - `gantry scan oci:… --db` finds exactly the modules `go version -m` lists (oracle 1) and
//!   exactly the advisories an independent evaluation of the same OSV data, written here,
//!   finds for them (oracle 2);
//! - Debian (status, status.d) and Alpine packages are matched in their ecosystems' version
//!   order (dpkg itself the oracle for Debian), and `--db` is prepared once into a cache;
//! - an image pushed with skopeo is scanned on push, its findings are those of the standalone
//!   scan, its SBOMs validate with the SPDX and CycloneDX projects' own tools, and an import
//!   that affects it is noticed by a rescan;
//! - with `sbom_on_push`, its SBOMs are attached as referrers once, never scanned nor gated;
//! - the pull gate refuses skopeo and podman with the blocking IDs and their fixes, lets HEAD,
//!   referrers and allowlisted findings through, and handles unscanned images both ways.

mod common;

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use gantry_gofixtures::{Fixture, Options, Toolchain};
use gantry_osv::testdata::go_snapshot;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// The fixture built with `toolchain`, without inlining (so every called function has a
/// symbol, as govulncheck's binary mode needs), stripped or not.
fn fixture(toolchain: Toolchain, stripped: bool) -> Option<std::sync::Arc<Fixture>> {
    gantry_gofixtures::build(Options {
        stripped,
        no_inlining: true,
        ..Options::new(toolchain)
    })
}

/// An OCI layout (tag v1) under `dir` holding the fixture as /usr/bin/app on an Alpine 3.19
/// base with musl 1.2.4-r2 installed.
fn fixture_layout(dir: &Path, binary: &[u8]) -> std::path::PathBuf {
    make_layout(
        dir,
        "v1",
        &[
            ("usr/bin/app", binary),
            (
                "etc/os-release",
                b"ID=alpine\nVERSION_ID=3.19.1\nPRETTY_NAME=\"Alpine Linux v3.19\"\n",
            ),
            (
                "lib/apk/db/installed",
                b"P:musl\nV:1.2.4-r2\nA:x86_64\no:musl\n\n",
            ),
        ],
    );
    dir.join("layout")
}

/// `gantry scan ARGS --format json`, parsed.
fn scan_json(args: &[&str]) -> Value {
    let out = run(gantry_scan().args(args).args(["--format", "json"]));
    serde_json::from_str(&out).unwrap()
}

// ---- an independent evaluation of the OSV data -----------------------------------------

/// Go's semantic version order (golang.org/x/mod/semver), written here apart from the
/// scanner's: `v` optional, build metadata ignored, prereleases before their release,
/// numeric identifiers compared as numbers and before alphanumeric ones.
fn go_semver_cmp(a: &str, b: &str) -> Ordering {
    fn split(v: &str) -> (Vec<u64>, Option<Vec<String>>) {
        let v = v.trim_start_matches('v');
        let v = v.split('+').next().unwrap();
        let (core, pre) = match v.split_once('-') {
            Some((core, pre)) => (core, Some(pre.split('.').map(str::to_string).collect())),
            None => (v, None),
        };
        let mut numbers: Vec<u64> = core.split('.').map(|n| n.parse().unwrap()).collect();
        numbers.resize(3, 0);
        (numbers, pre)
    }
    let (an, ap) = split(a);
    let (bn, bp) = split(b);
    an.cmp(&bn).then_with(|| match (ap, bp) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(a), Some(b)) => {
            for (x, y) in a.iter().zip(&b) {
                let order = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    (Ok(_), Err(_)) => Ordering::Less,
                    (Err(_), Ok(_)) => Ordering::Greater,
                    (Err(_), Err(_)) => x.cmp(y),
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
            a.len().cmp(&b.len())
        }
    })
}

/// Whether an OSV `affected` entry's SEMVER ranges or version list take `version` (the OSV
/// schema's evaluation: events in version order, `introduced` opens, `fixed` closes at,
/// `last_affected` closes after).
fn takes(affected: &Value, version: &str) -> bool {
    let listed = affected["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|v| {
            v.as_str()
                .is_some_and(|v| go_semver_cmp(v, version) == Ordering::Equal)
        });
    let ranged = affected["ranges"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|range| {
            let mut events: Vec<(&str, &str)> = range["events"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|e| e.as_object().unwrap().iter())
                .map(|(kind, v)| (kind.as_str(), v.as_str().unwrap()))
                .collect();
            fn at(v: &str) -> &str {
                if v == "0" {
                    "0.0.0-0"
                } else {
                    v
                }
            }
            events.sort_by(|a, b| go_semver_cmp(at(a.1), at(b.1)));
            let mut affected = false;
            for (kind, at_version) in events {
                let order = go_semver_cmp(version, at(at_version));
                match kind {
                    "introduced" if order != Ordering::Less => affected = true,
                    "fixed" if order != Ordering::Less => affected = false,
                    "last_affected" if order == Ordering::Greater => affected = false,
                    _ => {}
                }
            }
            affected
        });
    listed || ranged
}

/// The IDs of the snapshot's records that affect each `(module, version)` (a module path as
/// OSV names it), read from the zip here.
fn expected_ids(packages: &[(String, String)]) -> BTreeSet<(String, String)> {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(go_snapshot()).unwrap()).unwrap();
    let mut found = BTreeSet::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).unwrap();
        if !entry.name().unwrap().ends_with(".json") {
            continue;
        }
        let mut text = String::new();
        entry.read_to_string(&mut text).unwrap();
        let record: Value = serde_json::from_str(&text).unwrap();
        if record["withdrawn"].is_string() {
            continue;
        }
        for affected in record["affected"].as_array().into_iter().flatten() {
            let name = affected["package"]["name"].as_str().unwrap_or_default();
            for (module, version) in packages {
                if name == module && takes(affected, version) {
                    found.insert((record["id"].as_str().unwrap().to_string(), module.clone()));
                }
            }
        }
    }
    found
}

/// The modules `go version -m` lists for a binary: (path as matched, path as reported,
/// version), a replaced module under its replacement and its own path.
fn go_version_m(fixture: &Fixture) -> (String, Vec<(String, String, String)>) {
    let out = fixture.go_on_binary(&["version", "-m"]);
    let mut go_version = String::new();
    let mut modules = Vec::new();
    let mut lines = out.lines().peekable();
    while let Some(line) = lines.next() {
        if !line.starts_with('\t') {
            // `PATH: go1.19.8`
            go_version = line.rsplit(": ").next().unwrap().trim().to_string();
            continue;
        }
        let fields: Vec<&str> = line.split('\t').map(str::trim).collect();
        let ["", "dep", path, version, ..] = fields.as_slice() else {
            continue;
        };
        let replaced = lines
            .peek()
            .map(|next| next.split('\t').map(str::trim).collect::<Vec<_>>())
            .filter(|next| next.get(1) == Some(&"=>"));
        match replaced {
            Some(next) => {
                lines.next();
                modules.push((path.to_string(), next[2].to_string(), next[3].to_string()));
            }
            None => modules.push((path.to_string(), path.to_string(), version.to_string())),
        }
    }
    (go_version, modules)
}

#[test]
fn fixture_findings_equal_go_version_m_and_an_independent_evaluation_of_the_osv_data() {
    let zip = go_snapshot();
    for (toolchain, stripped) in [
        (Toolchain::Go119, false),
        (Toolchain::Go119, true),
        (Toolchain::Go127, true),
    ] {
        let Some(fixture) = fixture(toolchain, stripped) else {
            continue;
        };
        let dir = tempfile::tempdir().unwrap();
        let layout = fixture_layout(dir.path(), &fixture.bytes);
        let report = scan_json(&[
            &format!("oci:{}:v1", layout.display()),
            "--db",
            zip.to_str().unwrap(),
        ]);
        let image = &report["images"][0];
        let what = format!("{toolchain:?} stripped={stripped}");

        // Oracle 1: the Go modules are exactly those `go version -m` lists.
        let (go_version, modules) = go_version_m(&fixture);
        let scanned: BTreeSet<(String, String)> = image["packages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["type"] == "golang" && p["name"] != "stdlib")
            .map(|p| {
                (
                    p["name"].as_str().unwrap().into(),
                    p["version"].as_str().unwrap().into(),
                )
            })
            .collect();
        let listed: BTreeSet<(String, String)> = modules
            .iter()
            .map(|(_, path, version)| (path.clone(), version.clone()))
            .collect();
        assert_eq!(scanned, listed, "{what}");
        let stdlib = image["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "stdlib")
            .unwrap();
        assert_eq!(
            stdlib["version"].as_str().unwrap(),
            go_version.replacen("go", "v", 1).split(' ').next().unwrap(),
            "{what}"
        );

        // Oracle 2: the findings are exactly what the OSV data says of those modules, each
        // module matched under its own path (a replaced one under both).
        let mut asked: Vec<(String, String)> = vec![(
            "stdlib".into(),
            stdlib["version"].as_str().unwrap().to_string(),
        )];
        let mut reported_as = BTreeMap::new();
        for (own, path, version) in &modules {
            for name in [own, path] {
                asked.push((name.clone(), version.clone()));
                reported_as.insert(name.clone(), path.clone());
            }
        }
        reported_as.insert("stdlib".to_string(), "stdlib".to_string());
        let expected: BTreeSet<(String, String)> = expected_ids(&asked)
            .into_iter()
            .map(|(id, module)| (id, reported_as[&module].clone()))
            .collect();
        let found: BTreeSet<(String, String)> = image["vulnerabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["id"].as_str().unwrap().into(),
                    f["package"].as_str().unwrap().into(),
                )
            })
            .collect();
        assert_eq!(found, expected, "{what}");
        // The fixture calls golang.org/x/text/language.Parse: GO-2021-0113 is reachable.
        let parse = image["vulnerabilities"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == "GO-2021-0113")
            .unwrap_or_else(|| panic!("{what}: GO-2021-0113 not found"));
        assert_eq!(parse["reachable"], true, "{what}: {parse}");
        assert_eq!(parse["fixed_version"], "v0.3.7", "{what}");
    }
}

/// The entries of a scan cache directory, by name, each with its store's modification time.
fn cache_entries(cache: &Path) -> BTreeMap<String, std::time::SystemTime> {
    let Ok(listing) = std::fs::read_dir(cache.join("vulndb")) else {
        return BTreeMap::new();
    };
    listing
        .map(|entry| entry.unwrap())
        .filter(|entry| !entry.file_name().to_string_lossy().starts_with('.'))
        .map(|entry| {
            let store = entry.path().join("meta.db");
            let modified = std::fs::metadata(&store).unwrap().modified().unwrap();
            (entry.file_name().to_string_lossy().into_owned(), modified)
        })
        .collect()
}

#[test]
fn a_standalone_scan_prepares_its_database_once_and_again_when_the_source_changes() {
    let Some(fixture) = fixture(Toolchain::Go119, false) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let layout = fixture_layout(dir.path(), &fixture.bytes);
    let image = format!("oci:{}:v1", layout.display());
    let cache = dir.path().join("cache");
    let source = osv_dir(
        dir.path(),
        "GO-2099-0001",
        "Go",
        "golang.org/x/text",
        "0.3.7",
        &[],
        None,
    );
    let scan = || {
        let out = run(gantry_scan()
            .arg(&image)
            .arg("--db")
            .arg(&source)
            .arg("--cache-dir")
            .arg(&cache)
            .args(["--format", "json"]));
        ids(&serde_json::from_str::<Value>(&out).unwrap()["images"][0])
    };
    assert_eq!(scan(), BTreeSet::from(["GO-2099-0001".to_string()]));
    let prepared = cache_entries(&cache);
    assert_eq!(prepared.len(), 1, "{prepared:?}");
    // Unchanged: the same entry serves, not rebuilt.
    assert_eq!(scan(), BTreeSet::from(["GO-2099-0001".to_string()]));
    assert_eq!(cache_entries(&cache), prepared);

    // A record added to the directory: prepared again, and the old entry goes.
    let second = osv_dir(
        dir.path(),
        "GO-2099-0002",
        "Go",
        "golang.org/x/text",
        "0.3.6",
        &[],
        None,
    );
    std::fs::rename(
        second.join("GO-2099-0002.json"),
        source.join("GO-2099-0002.json"),
    )
    .unwrap();
    assert_eq!(
        scan(),
        BTreeSet::from(["GO-2099-0001".to_string(), "GO-2099-0002".to_string()])
    );
    let rebuilt = cache_entries(&cache);
    assert_eq!(rebuilt.len(), 1, "{rebuilt:?}");
    assert_ne!(rebuilt.keys().next(), prepared.keys().next());

    // --no-cache keeps nothing, not even in the default cache directory.
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let out = run(gantry_scan()
        .env_remove("GANTRY_CACHE_DIR")
        .env_remove("XDG_CACHE_HOME")
        .env("HOME", &home)
        .arg(&image)
        .arg("--db")
        .arg(&source)
        .args(["--no-cache", "--format", "json"]));
    assert_eq!(
        ids(&serde_json::from_str::<Value>(&out).unwrap()["images"][0]).len(),
        2
    );
    assert_eq!(std::fs::read_dir(&home).unwrap().count(), 0);
}

/// Whether `dpkg --compare-versions a lt b`: Debian's own ordering, the oracle for the
/// scanner's.
fn dpkg_less(a: &str, b: &str) -> bool {
    Command::new("dpkg")
        .args(["--compare-versions", a, "lt", b])
        .status()
        .unwrap()
        .success()
}

/// The IDs a standalone scan of an image holding `files` finds against the OSV records
/// `records` (one JSON file each).
fn os_scan(dir: &Path, files: &[(&str, &[u8])], records: &[Value]) -> BTreeSet<String> {
    make_layout(dir, "v1", files);
    let osv = dir.join("osv");
    std::fs::create_dir(&osv).unwrap();
    for record in records {
        let id = record["id"].as_str().unwrap();
        std::fs::write(osv.join(format!("{id}.json")), record.to_string()).unwrap();
    }
    let out = run(gantry_scan()
        .arg(format!("oci:{}:v1", dir.join("layout").display()))
        .arg("--db")
        .arg(&osv)
        .args(["--format", "json"]));
    ids(&serde_json::from_str::<Value>(&out).unwrap()["images"][0])
}

fn os_record(id: &str, ecosystem: &str, package: &str, fixed: &str) -> Value {
    json!({
        "id": id, "modified": "2026-11-01T00:00:00Z",
        "affected": [{
            "package": {"ecosystem": ecosystem, "name": package},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}],
        }],
    })
}

#[test]
fn debian_findings_follow_dpkg_version_order_in_status_and_status_d() {
    // (installed source version, fixed version): epochs, `~` before a release, numeric
    // revision parts, equal versions, a binary NMU (`+b1`) of an older source.
    let cases = [
        ("1:9.0.1378-2", "9.1.0-1"),
        ("1:9.0.1378-2", "1:9.0.1378-3"),
        ("1.0~rc1-1", "1.0-1"),
        ("1.0-1", "1.0~rc1-1"),
        ("3.0.11-1~deb12u2", "3.0.11-1~deb12u2"),
        ("3.0.11-1~deb12u1", "3.0.11-1~deb12u2"),
        ("2.36-9+deb12u4", "2.36-9+deb12u10"),
        ("2.36-9+deb12u4", "2.36-9"),
        ("0:2.4.57-2", "2.4.57-2"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut status = String::new();
    let mut status_d = Vec::new();
    let mut records = Vec::new();
    let mut expected = BTreeSet::new();
    for (n, (installed, fixed)) in cases.iter().enumerate() {
        // Half in dpkg's status file, half as distroless status.d files; the binary
        // package is an NMU whose own version differs from its source's.
        let stanza = format!(
            "Package: bin{n}\nArchitecture: amd64\nSource: src{n} ({installed})\n\
             Version: {installed}+b1\n"
        );
        if n % 2 == 0 {
            status.push_str(&format!("{stanza}Status: install ok installed\n\n"));
        } else {
            status_d.push((format!("var/lib/dpkg/status.d/bin{n}"), stanza));
        }
        let id = format!("DEBIAN-CVE-2026-{n:04}");
        records.push(os_record(&id, "Debian:12", &format!("src{n}"), fixed));
        if dpkg_less(installed, fixed) {
            expected.insert(id);
        }
    }
    // Removed, its configuration kept: not installed, not reported.
    status.push_str(
        "Package: gone\nStatus: deinstall ok config-files\nVersion: 1.0-1\nSource: gone\n\n",
    );
    records.push(os_record(
        "DEBIAN-CVE-2026-9999",
        "Debian:12",
        "gone",
        "2.0-1",
    ));
    // Another release's record does not apply.
    records.push(os_record(
        "DEBIAN-CVE-2026-9998",
        "Debian:11",
        "src1",
        "9:0",
    ));
    let mut files: Vec<(&str, &[u8])> = vec![
        ("etc/os-release", b"ID=debian\nVERSION_ID=\"12\"\n"),
        ("var/lib/dpkg/status", status.as_bytes()),
    ];
    files.extend(status_d.iter().map(|(p, s)| (p.as_str(), s.as_bytes())));
    let found = os_scan(dir.path(), &files, &records);
    assert!(
        expected.len() > 2 && expected.len() < cases.len(),
        "the cases cover both outcomes: {expected:?}"
    );
    assert_eq!(found, expected);
}

#[test]
fn alpine_findings_follow_apk_version_order() {
    // (installed, fixed, affected as apk-tools orders them): `-r` revisions compared as
    // numbers, `_rc` before and `_p` after a release, a letter after its number.
    let cases = [
        ("1.2.4-r2", "1.2.4-r10", true),
        ("1.2.4-r10", "1.2.4-r9", false),
        ("3.1.4_rc1-r0", "3.1.4-r0", true),
        ("3.1.4_p1-r0", "3.1.4-r0", false),
        ("1.36.1-r15", "1.36.1-r15", false),
        ("2.0a-r0", "2.0-r0", false),
        ("2.0-r0", "2.0a-r0", true),
        ("1.9.10-r0", "1.10.0-r0", true),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut installed_db = String::new();
    let mut records = Vec::new();
    let mut expected = BTreeSet::new();
    for (n, (installed, fixed, affected)) in cases.iter().enumerate() {
        installed_db.push_str(&format!(
            "P:pkg{n}\nV:{installed}\nA:x86_64\no:origin{n}\n\n"
        ));
        let id = format!("ALPINE-CVE-2026-{n:04}");
        records.push(os_record(&id, "Alpine:v3.19", &format!("origin{n}"), fixed));
        if *affected {
            expected.insert(id);
        }
    }
    let found = os_scan(
        dir.path(),
        &[
            ("etc/os-release", b"ID=alpine\nVERSION_ID=3.19.1\n"),
            ("lib/apk/db/installed", installed_db.as_bytes()),
        ],
        &records,
    );
    assert_eq!(found, expected);
}

// ---- scanning in the registry ----------------------------------------------------------

fn artifact_path(repository: &str, reference: &str) -> String {
    format!(
        "/api/v1/repositories/{}/artifacts/{reference}",
        repository.replace('/', "%2F")
    )
}

/// The registry's scan of `repository:reference` once every image of it is scanned.
async fn scanned(server: &Server, repository: &str, reference: &str) -> Value {
    let path = format!("{}/vulnerabilities", artifact_path(repository, reference));
    eventually(Duration::from_secs(60), "the scan", || async {
        let scan = get_json(server, &path).await;
        scan["images"]
            .as_array()
            .is_some_and(|images| images.iter().all(|i| i["status"] == "scanned"))
            .then_some(scan)
    })
    .await
}

fn ids(image: &Value) -> BTreeSet<String> {
    image["vulnerabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect()
}

fn push_layout(server: &Server, dir: &Path, layout: &Path, reference: &str) {
    login(dir, server, "admin", ADMIN_PASSWORD);
    run(skopeo(dir)
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker://{}/{reference}", server.addr)));
}

/// A started server, a scratch directory and the Go 1.19 fixture's OCI layout in it; `None`
/// when the toolchain is missing outside CI.
struct Setup {
    fixture: std::sync::Arc<Fixture>,
    server: Server,
    dir: tempfile::TempDir,
    layout: std::path::PathBuf,
}

fn setup(stripped: bool) -> Option<Setup> {
    let fixture = fixture(Toolchain::Go119, stripped)?;
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let layout = fixture_layout(dir.path(), &fixture.bytes);
    Some(Setup {
        fixture,
        server,
        dir,
        layout,
    })
}

/// `gantry vulndb import <source> --quiet <extra…>` on the server's store.
fn import(server: &Server, source: &Path, extra: &[&str]) {
    let source = source.to_str().unwrap();
    gantry_on_store(
        server,
        &[&["vulndb", "import", source, "--quiet"], extra].concat(),
    );
}

/// An OSV directory with one record: `id` affecting `package` in `ecosystem` before
/// `fixed`, aliasing `aliases`, with a CVSS vector when given.
fn osv_dir(
    dir: &Path,
    id: &str,
    ecosystem: &str,
    package: &str,
    fixed: &str,
    aliases: &[&str],
    cvss: Option<&str>,
) -> std::path::PathBuf {
    let osv = dir.join(format!("osv-{id}"));
    std::fs::create_dir_all(&osv).unwrap();
    let mut record = json!({
        "id": id,
        "modified": "2026-11-01T00:00:00Z",
        "aliases": aliases,
        "summary": format!("{package} test advisory"),
        "affected": [{
            "package": {"ecosystem": ecosystem, "name": package},
            "ranges": [{
                "type": if ecosystem == "Go" { "SEMVER" } else { "ECOSYSTEM" },
                "events": [{"introduced": "0"}, {"fixed": fixed}],
            }],
        }],
    });
    if let Some(vector) = cvss {
        record["severity"] = json!([{"type": "CVSS_V3", "score": vector}]);
    }
    std::fs::write(osv.join(format!("{id}.json")), record.to_string()).unwrap();
    osv
}

/// Checks an SBOM with the SPDX or CycloneDX project's own validator.
fn validate_sbom(dir: &Path, format: &str, document: &Value) {
    let file = dir.join(format!("sbom.{format}.json"));
    std::fs::write(&file, document.to_string()).unwrap();
    match format {
        "spdx" => {
            let out = run(Command::new("pyspdxtools").arg("-i").arg(&file));
            assert!(!out.contains("ERROR"), "{out}");
        }
        _ => {
            run(Command::new("python3").arg("-c").arg(
                "import sys\n\
                 from cyclonedx.schema import SchemaVersion\n\
                 from cyclonedx.validation.json import JsonStrictValidator\n\
                 errors = JsonStrictValidator(SchemaVersion.V1_5).validate_str(open(sys.argv[1]).read())\n\
                 sys.exit(str(errors) if errors else 0)",
            ).arg(&file));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pushed_image_is_scanned_as_the_standalone_scan_finds_and_rescanned_after_an_import() {
    let Some(Setup {
        server,
        dir,
        layout,
        ..
    }) = setup(false)
    else {
        return;
    };
    let zip = go_snapshot();
    import(&server, &zip, &[]);
    push_layout(&server, dir.path(), &layout, "team/app:v1");

    let scan = scanned(&server, "team/app", "v1").await;
    let image = &scan["images"][0];
    let standalone = scan_json(&[
        &format!("oci:{}:v1", layout.display()),
        "--db",
        zip.to_str().unwrap(),
    ]);
    assert_eq!(ids(image), ids(&standalone["images"][0]));
    assert!(ids(image).contains("GO-2021-0113"));
    assert_eq!(image["distribution"]["ecosystem"], "Alpine:v3.19");
    // musl has no advisory yet.
    assert!(!image["vulnerabilities"].to_string().contains("musl"));

    // The CLI reads the same scan from the registry.
    let from_registry = run(gantry_scan()
        .args([&format!("{}/team/app:v1", server.addr), "--format", "json"])
        .args(["--username", "admin", "--password", ADMIN_PASSWORD]));
    let from_registry: Value = serde_json::from_str(&from_registry).unwrap();
    assert_eq!(ids(&from_registry["images"][0]), ids(image));

    // SBOMs of the same packages, valid by the formats' own tools.
    for format in ["spdx", "cyclonedx"] {
        let sbom = get_json(
            &server,
            &format!("{}/sbom?format={format}", artifact_path("team/app", "v1")),
        )
        .await;
        validate_sbom(dir.path(), format, &sbom);
        assert!(
            sbom.to_string()
                .contains("pkg:golang/golang.org/x/text@v0.3.5"),
            "{format}"
        );
        assert!(
            sbom.to_string().contains("pkg:apk/alpine/musl@1.2.4-r2"),
            "{format}"
        );
    }

    // An import that affects musl: the clean package is flagged by the rescan.
    let alpine = osv_dir(
        dir.path(),
        "ALPINE-CVE-2026-0001",
        "Alpine:v3.19",
        "musl",
        "1.2.4-r3",
        &[],
        None,
    );
    import(&server, &alpine, &[]);
    let path = format!("{}/vulnerabilities", artifact_path("team/app", "v1"));
    let rescanned = eventually(Duration::from_secs(60), "the rescan", || async {
        let scan = get_json(&server, &path).await;
        ids(&scan["images"][0])
            .contains("ALPINE-CVE-2026-0001")
            .then_some(scan)
    })
    .await;
    let musl = rescanned["images"][0]["vulnerabilities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "ALPINE-CVE-2026-0001")
        .unwrap()
        .clone();
    assert_eq!(musl["fixed_version"], "1.2.4-r3");
    assert_eq!(musl["type"], "apk");

    // The artifact listing counts the same findings by severity, without the report.
    let summary = &rescanned["images"][0]["summary"];
    let listed = get_json(&server, "/api/v1/repositories/team%2Fapp/artifacts").await;
    let counts = &listed["artifacts"][0]["vulnerabilities"];
    assert_eq!(
        (&counts["images"], &counts["scanned"]),
        (&json!(1), &json!(1))
    );
    for severity in ["critical", "high", "medium", "low", "unknown", "reachable"] {
        assert_eq!(counts[severity], summary[severity], "{severity}: {counts}");
    }
    let total: u64 = ["critical", "high", "medium", "low", "unknown"]
        .iter()
        .map(|s| counts[s].as_u64().unwrap())
        .sum();
    assert_eq!(
        total,
        rescanned["images"][0]["vulnerabilities"]
            .as_array()
            .unwrap()
            .len() as u64
    );
}

// ---- the pull gate -------------------------------------------------------------------

async fn set_policy(server: &Server, project: &str, policy: Value) {
    let response = http()
        .put(server.url(&format!("/api/v1/projects/{project}/vulnerability-policy")))
        .json(&policy)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{}",
        response.text().await.unwrap()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pull_gate_refuses_blocking_findings_with_their_fixes_and_lets_head_referrers_and_allowlisted_through(
) {
    let Some(Setup {
        server,
        dir,
        layout,
        ..
    }) = setup(false)
    else {
        return;
    };
    import(&server, &go_snapshot(), &[]);
    // A second database rates GO-2021-0113 (the Go database rates nothing): HIGH.
    let ghsa = osv_dir(
        dir.path(),
        "GHSA-ppp9-7jff-5vj2",
        "Go",
        "golang.org/x/text",
        "0.3.7",
        &["GO-2021-0113", "CVE-2021-38561"],
        Some("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"),
    );
    import(&server, &ghsa, &["--source", "ghsa"]);
    push_layout(&server, dir.path(), &layout, "team/app:v1");
    let scan = scanned(&server, "team/app", "v1").await;
    let digest = scan["images"][0]["digest"].as_str().unwrap().to_string();
    set_policy(&server, "team", json!({"block_severity": "HIGH"})).await;

    // skopeo and podman are refused, told which vulnerability and its fix.
    let refused = skopeo_pull(&server, dir.path(), "team/app:v1").unwrap_err();
    assert!(
        refused.contains("GO-2021-0113") && refused.contains("v0.3.7"),
        "{refused}"
    );
    let podman_err = podman_pull(&server, dir.path(), "team/app:v1").unwrap_err();
    assert!(podman_err.contains("GO-2021-0113"), "{podman_err}");

    // The refusal is OCI error JSON; HEAD is never refused.
    let manifest_url = server.url("/v2/team/app/manifests/v1");
    let accept =
        "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";
    let get = http()
        .get(&manifest_url)
        .header("accept", accept)
        .send()
        .await
        .unwrap();
    let error = assert_error(get, StatusCode::FORBIDDEN, "DENIED").await;
    assert!(error.to_string().contains("GO-2021-0113"), "{error}");
    let head = http()
        .head(&manifest_url)
        .header("accept", accept)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);

    // A referrer of the image (a signature, an SBOM) is never refused.
    let empty = b"{}";
    push_blob(&server, "team/app", empty).await;
    let payload = b"signature";
    push_blob(&server, "team/app", payload).await;
    let image_size = http()
        .head(&manifest_url)
        .header("accept", accept)
        .send()
        .await
        .unwrap()
        .headers()["content-length"]
        .to_str()
        .unwrap()
        .parse::<u64>()
        .unwrap();
    let referrer = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.dev.cosign.simplesigning.v1+json",
        "config": descriptor("application/vnd.oci.empty.v1+json", empty),
        "layers": [descriptor("application/vnd.dev.cosign.simplesigning.v1+json", payload)],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": image_size},
    });
    let referrer = serde_json::to_vec(&referrer).unwrap();
    let put = put_manifest(
        &server,
        "team/app",
        "sig",
        "application/vnd.oci.image.manifest.v1+json",
        &referrer,
    )
    .await;
    assert_eq!(put.status(), StatusCode::CREATED);
    let got = http()
        .get(server.url("/v2/team/app/manifests/sig"))
        .header("accept", accept)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), StatusCode::OK);

    // The refusal is audited.
    let audit = get_json(&server, "/api/v1/audit?project=team").await;
    assert!(
        audit.to_string().contains("vulnerability policy"),
        "no refused pull in {audit}"
    );

    // Allowlisted (by its alias, system-wide): the image pulls.
    let response = http()
        .put(server.url("/api/v1/vulnerability-allowlist"))
        .json(&json!({"allowlist": [{"id": "CVE-2021-38561", "reason": "not exploitable here"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    eventually(Duration::from_secs(10), "the allowlist applies", || async {
        skopeo_pull(&server, dir.path(), "team/app:v1").ok()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unscanned_image_is_refused_until_scanned_or_waited_for_as_the_policy_says() {
    let Some(Setup {
        fixture,
        server,
        dir,
        layout,
    }) = setup(true)
    else {
        return;
    };
    import(&server, &go_snapshot(), &[]);
    api_create_project(&server, "team", false).await;
    // Not scanned on push, and refused until scanned.
    set_policy(
        &server,
        "team",
        json!({"scan_on_push": false, "block_severity": "CRITICAL", "unscanned": "refuse"}),
    )
    .await;
    push_layout(&server, dir.path(), &layout, "team/app:v1");
    let refused = skopeo_pull(&server, dir.path(), "team/app:v1").unwrap_err();
    assert!(refused.contains("not been scanned yet"), "{refused}");
    let asked = http()
        .post(server.url(&format!("{}/scan", artifact_path("team/app", "v1"))))
        .send()
        .await
        .unwrap();
    assert_eq!(asked.status(), StatusCode::ACCEPTED);
    scanned(&server, "team/app", "v1").await;
    skopeo_pull(&server, dir.path(), "team/app:v1").unwrap();

    // Waited for: the pull itself gets the image scanned, then goes through.
    set_policy(
        &server,
        "team",
        json!({"scan_on_push": false, "block_severity": "CRITICAL", "unscanned": "wait", "wait_secs": 60}),
    )
    .await;
    let other = tempfile::tempdir().unwrap();
    let layout = fixture_layout(
        other.path(),
        &[fixture.bytes.as_slice(), b"another image"].concat(),
    );
    push_layout(&server, other.path(), &layout, "team/app:v2");
    let pending = get_json(
        &server,
        &format!("{}/vulnerabilities", artifact_path("team/app", "v2")),
    )
    .await;
    assert_eq!(pending["images"][0]["status"], "pending");
    skopeo_pull(&server, other.path(), "team/app:v2").unwrap();
    let after = get_json(
        &server,
        &format!("{}/vulnerabilities", artifact_path("team/app", "v2")),
    )
    .await;
    assert_eq!(after["images"][0]["status"], "scanned");
}

// ---- SBOMs attached on push ----------------------------------------------------------

/// The referrers of `digest` in `repository`, by artifact type: (referrer digest, document).
async fn attached_sboms(
    server: &Server,
    repository: &str,
    digest: &str,
) -> BTreeMap<String, (String, Value)> {
    let index = get_json(server, &format!("/v2/{repository}/referrers/{digest}")).await;
    let mut sboms = BTreeMap::new();
    for referrer in index["manifests"].as_array().unwrap() {
        let referrer_digest = referrer["digest"].as_str().unwrap();
        let manifest = get_json(
            server,
            &format!("/v2/{repository}/manifests/{referrer_digest}"),
        )
        .await;
        assert_eq!(manifest["subject"]["digest"], digest);
        assert_eq!(
            manifest["config"]["mediaType"],
            "application/vnd.oci.empty.v1+json"
        );
        let layer = &manifest["layers"][0];
        assert_eq!(layer["mediaType"], referrer["artifactType"]);
        let document = get_bytes(
            server,
            &format!(
                "/v2/{repository}/blobs/{}",
                layer["digest"].as_str().unwrap()
            ),
        )
        .await;
        let previous = sboms.insert(
            referrer["artifactType"].as_str().unwrap().to_string(),
            (
                referrer_digest.to_string(),
                serde_json::from_slice(&document).unwrap(),
            ),
        );
        assert!(previous.is_none(), "two referrers of one type in {index}");
    }
    sboms
}

#[tokio::test(flavor = "multi_thread")]
async fn with_sbom_on_push_a_scanned_image_gets_its_spdx_and_cyclonedx_sboms_as_referrers_once() {
    let Some(Setup {
        server,
        dir,
        layout,
        ..
    }) = setup(false)
    else {
        return;
    };
    // musl rated HIGH, so the gate can refuse the image below.
    let alpine = osv_dir(
        dir.path(),
        "ALPINE-CVE-2026-0002",
        "Alpine:v3.19",
        "musl",
        "1.2.4-r3",
        &[],
        Some("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"),
    );
    import(&server, &alpine, &[]);
    api_create_project(&server, "team", false).await;
    set_policy(&server, "team", json!({"sbom_on_push": true})).await;
    push_layout(&server, dir.path(), &layout, "team/app:v1");
    let scan = scanned(&server, "team/app", "v1").await;
    let digest = scan["images"][0]["digest"].as_str().unwrap().to_string();

    let sboms = eventually(Duration::from_secs(30), "the SBOMs", || async {
        let sboms = attached_sboms(&server, "team/app", &digest).await;
        (sboms.len() == 2).then_some(sboms)
    })
    .await;
    for (artifact_type, format) in [
        ("application/spdx+json", "spdx"),
        ("application/vnd.cyclonedx+json", "cyclonedx"),
    ] {
        let (_, attached) = &sboms[artifact_type];
        let served = get_json(
            &server,
            &format!("{}/sbom?format={format}", artifact_path("team/app", "v1")),
        )
        .await;
        assert_eq!(attached, &served, "{format}");
        validate_sbom(dir.path(), format, attached);
    }

    // The SBOMs are not themselves scanned as pushed images, and a rescan attaches no twins.
    let asked = http()
        .post(server.url(&format!("{}/scan", artifact_path("team/app", "v1"))))
        .send()
        .await
        .unwrap();
    assert_eq!(asked.status(), StatusCode::ACCEPTED);
    let path = format!("{}/vulnerabilities", artifact_path("team/app", "v1"));
    let first = scan["images"][0]["scanned_ms"].clone();
    eventually(Duration::from_secs(60), "the rescan", || async {
        let scan = get_json(&server, &path).await;
        (scan["images"][0]["status"] == "scanned" && scan["images"][0]["scanned_ms"] != first)
            .then_some(())
    })
    .await;
    assert_eq!(attached_sboms(&server, "team/app", &digest).await, sboms);
    for (referrer, _) in sboms.values() {
        let scan = get_json(
            &server,
            &format!("{}/vulnerabilities", artifact_path("team/app", referrer)),
        )
        .await;
        assert_eq!(scan["images"][0]["status"], "pending", "{referrer}");
    }

    // Pulling an SBOM is never gated, even when the image is refused.
    set_policy(
        &server,
        "team",
        json!({"sbom_on_push": true, "block_severity": "LOW", "unscanned": "refuse"}),
    )
    .await;
    let image = http()
        .get(server.url("/v2/team/app/manifests/v1"))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    let refusal = assert_error(image, StatusCode::FORBIDDEN, "DENIED").await;
    assert!(
        refusal.to_string().contains("ALPINE-CVE-2026-0002"),
        "{refusal}"
    );
    for (referrer, _) in sboms.values() {
        let got = http()
            .get(server.url(&format!("/v2/team/app/manifests/{referrer}")))
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), StatusCode::OK);
    }
}
