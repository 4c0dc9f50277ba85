//! `gantry vulndb import` and `gantry vulndb status` on the real binary: the Go vulnerability
//! database snapshot (shared test data, CC-BY-4.0, attribution in its NOTICES) imports whole
//! from its zip, a directory and a URL; a re-import changes nothing; malformed records are
//! listed and skipped; an empty database says how to fill it.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use gantry_osv::testdata::{go_snapshot as snapshot, GO_SNAPSHOT_RECORDS};
use serde_json::Value;

/// Records in the snapshot.
const SNAPSHOT_RECORDS: u64 = GO_SNAPSHOT_RECORDS as u64;

/// `gantry vulndb ARGS --data-dir DATA --quiet`, with no database from the environment.
fn vulndb(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gantry"))
        .arg("vulndb")
        .args(args)
        .args(["--data-dir", data.to_str().unwrap(), "--quiet"])
        .env_remove("GANTRY_DATABASE")
        .env_remove("GANTRY_CONFIG")
        .output()
        .unwrap()
}

fn succeeds(data: &Path, args: &[&str]) -> (String, String) {
    let out = vulndb(data, args);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "gantry vulndb {args:?} failed:\n{stdout}\n{stderr}"
    );
    (stdout, stderr)
}

fn status(data: &Path) -> Value {
    let (stdout, _) = succeeds(data, &["status", "--json"]);
    serde_json::from_str(&stdout).unwrap()
}

#[test]
fn the_go_snapshot_imports_and_a_reimport_changes_nothing() {
    let data = tempfile::tempdir().unwrap();
    let (empty, _) = succeeds(data.path(), &["status"]);
    assert!(empty.starts_with("empty:"), "{empty}");
    assert!(empty.contains("gantry vulndb import"), "{empty}");

    let zip = snapshot();
    let started = std::time::Instant::now();
    let (stdout, _) = succeeds(data.path(), &["import", zip.to_str().unwrap()]);
    eprintln!("import of the Go snapshot: {:?}", started.elapsed());
    assert!(
        stdout.contains("imported 4291 records into source \"go\""),
        "{stdout}"
    );

    let first = status(data.path());
    let go = &first["sources"][0];
    assert_eq!(first["sources"].as_array().unwrap().len(), 1);
    assert_eq!(go["name"], "go");
    assert_eq!(go["records"], SNAPSHOT_RECORDS);
    assert_eq!(go["malformed"], 0);
    assert_eq!(go["location"], zip.to_str().unwrap());
    // The Go database's `modified` are placeholders: no newest time is claimed.
    assert_eq!(go["newest_modified"], Value::Null);
    assert!(go["age_seconds"].as_i64().unwrap() < 600);

    let (table, _) = succeeds(data.path(), &["status"]);
    assert!(
        table.lines().next().unwrap().starts_with("SOURCE"),
        "{table}"
    );
    assert!(table.contains("go") && table.contains("4291"), "{table}");

    succeeds(data.path(), &["import", zip.to_str().unwrap()]);
    let second = status(data.path());
    assert_eq!(second["sources"][0]["records"], SNAPSHOT_RECORDS);
    assert_eq!(second["sources"].as_array().unwrap().len(), 1);
    assert_eq!(
        second["generation"].as_i64().unwrap(),
        first["generation"].as_i64().unwrap() + 1,
        "every import bumps the generation the scanner watches"
    );
}

/// The snapshot's entries as files in a directory tree.
fn unzip_into(dir: &Path) {
    let status = Command::new("unzip")
        .args([
            "-q",
            snapshot().to_str().unwrap(),
            "-d",
            dir.to_str().unwrap(),
        ])
        .status()
        .expect("unzip is installed");
    assert!(status.success());
}

#[test]
fn a_malformed_file_among_good_ones_is_reported_and_skipped() {
    let data = tempfile::tempdir().unwrap();
    let source = tempfile::tempdir().unwrap();
    let nested = source.path().join("osv/go");
    std::fs::create_dir_all(&nested).unwrap();
    unzip_into(&nested);
    std::fs::write(
        nested.join("GO-9999-0001.json"),
        r#"{"id": "GO-9999-0001", "affected": "x"}"#,
    )
    .unwrap();
    std::fs::write(source.path().join("README.md"), "not a record").unwrap();
    let (stdout, stderr) = succeeds(
        data.path(),
        &[
            "import",
            source.path().to_str().unwrap(),
            "--source",
            "mirror",
        ],
    );
    assert!(
        stderr.contains("skipped osv/go/GO-9999-0001.json"),
        "{stderr}"
    );
    assert!(
        stdout.contains("imported 4291 records into source \"mirror\", skipped 1 malformed"),
        "{stdout}"
    );
    let go = &status(data.path())["sources"][0];
    assert_eq!(go["name"], "mirror");
    assert_eq!(go["records"], SNAPSHOT_RECORDS);
    assert_eq!(go["malformed"], 1);
}

#[test]
fn a_source_without_records_changes_nothing() {
    let data = tempfile::tempdir().unwrap();
    let zip = snapshot();
    succeeds(data.path(), &["import", zip.to_str().unwrap()]);
    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("bad.json"), "{").unwrap();
    let out = vulndb(
        data.path(),
        &["import", empty.path().to_str().unwrap(), "--source", "go"],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("holds no OSV record that parses: nothing was changed"),
        "{stderr}"
    );
    assert_eq!(
        status(data.path())["sources"][0]["records"],
        SNAPSHOT_RECORDS
    );
    let missing = vulndb(data.path(), &["import", "/nonexistent/all.zip"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read /nonexistent/all.zip"));
}

/// Serves `body` to every GET on a loopback port; returns the URL of `path`.
fn serve_once(body: Vec<u8>, path: &str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}{path}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/zip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    url
}

#[test]
fn the_go_snapshot_imports_from_a_url() {
    let data = tempfile::tempdir().unwrap();
    let url = serve_once(std::fs::read(snapshot()).unwrap(), "/osv/Go/all.zip");
    let (stdout, _) = succeeds(data.path(), &["import", &url]);
    assert!(
        stdout.contains("imported 4291 records into source \"go\""),
        "{stdout}"
    );
    let go = &status(data.path())["sources"][0];
    assert_eq!(go["location"], url.as_str());
    assert_eq!(go["records"], SNAPSHOT_RECORDS);
    // Nothing listens there: the download fails and says which URL.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let unreachable = format!("http://{closed}/all.zip");
    let out = vulndb(data.path(), &["import", &unreachable]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot download {unreachable}")),
        "{stderr}"
    );
}

/// `[vulndb] refresh`: an air-gapped site's internal mirror (here the snapshot's directory)
/// is imported on the schedule as a job on the job backbone, without anyone running the CLI.
#[tokio::test]
async fn a_scheduled_refresh_imports_the_mirror_as_a_job() {
    let temp = tempfile::tempdir().unwrap();
    let mirror = temp.path().join("mirror");
    std::fs::create_dir_all(&mirror).unwrap();
    unzip_into(&mirror);
    let config = temp.path().join("gantry.toml");
    std::fs::write(
        &config,
        format!(
            "[vulndb]\nrefresh = {:?}\nrefresh_every_secs = 2\n",
            mirror.to_str().unwrap()
        ),
    )
    .unwrap();
    let server = common::Server::start_with(
        &temp.path().join("data"),
        &[("GANTRY_CONFIG", config.to_str().unwrap())],
    );
    let url = server.url("/api/v1/jobs?kind=vulndb-refresh&state=succeeded");
    let job = common::eventually(Duration::from_secs(60), "a succeeded refresh job", || {
        let url = url.clone();
        async move {
            let listing: Value = common::http()
                .get(&url)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            listing["jobs"].as_array()?.first().cloned()
        }
    })
    .await;
    assert_eq!(job["result"]["records"], SNAPSHOT_RECORDS, "{job}");
    assert_eq!(job["result"]["source"], "go", "{job}");
    assert_eq!(job["result"]["malformed"], 0, "{job}");
    assert_eq!(
        job["subject"],
        format!("vulndb:{}", mirror.to_str().unwrap())
    );
}
