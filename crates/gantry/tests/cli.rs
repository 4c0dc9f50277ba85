//! The `gantry` command line: push, pull and copy against a real server, and the errors a
//! user sees when something is wrong.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

/// Runs the CLI as the test servers' admin (credentials from the environment, as in CI).
fn gantry(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(args)
        .env("GANTRY_USERNAME", "admin")
        .env("GANTRY_PASSWORD", ADMIN_PASSWORD)
        .output()
        .unwrap()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn push_pull_and_copy_keep_digests() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    // A layout made by pulling an image gantry pushed over the API.
    let (manifest, digest) = push_image(&s, "seed/app", "v1", "cli").await;
    let first = dir.path().join("first");
    let first_arg = format!("{}:v1", first.display());
    let out = gantry(&["pull", "-q", &format!("{}/seed/app:v1", s.addr), &first_arg]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&digest.to_string()));
    let index: Value =
        serde_json::from_slice(&std::fs::read(first.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest.to_string());
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "v1"
    );

    let out = gantry(&[
        "push",
        "-q",
        &first_arg,
        &format!("{}/pushed/app:v2", s.addr),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = gantry(&[
        "copy",
        "-q",
        &format!("{}/pushed/app:v2", s.addr),
        &format!("{}/copied/app:v3", s.addr),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    let r = http()
        .get(s.url("/v2/copied/app/manifests/v3"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "docker-content-digest"),
        Some(digest.to_string().as_str())
    );
    assert_eq!(r.bytes().await.unwrap(), manifest);
}

#[test]
fn errors_say_what_is_wrong_and_what_to_do() {
    let out = gantry(&["pull", "not-a-registry/app", "/tmp/x"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("registry host") && err.contains("REGISTRY/REPOSITORY"),
        "{err}"
    );

    let out = gantry(&["push", "/nonexistent/layout", "127.0.0.1:1/a:b"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not an OCI image layout"),
        "{}",
        stderr(&out)
    );

    let out = gantry(&[
        "pull",
        "-q",
        "127.0.0.1:1/a:b",
        "/tmp/gantry-test-unreachable",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot reach registry"),
        "{}",
        stderr(&out)
    );

    let out = gantry(&["serve", "--listen", "nonsense"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not an IP:port"), "{}", stderr(&out));
}

#[test]
fn serve_reads_environment_and_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gantry.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:1\"\nunknown_key = 1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .arg("serve")
        .env("GANTRY_CONFIG", &config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("unknown field"), "{}", stderr(&out));
}

#[test]
fn help_teaches_the_commands() {
    let out = gantry(&["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for word in ["serve", "push", "pull", "copy", "127.0.0.1:5000"] {
        assert!(help.contains(word), "--help lacks {word}: {help}");
    }
    let out = gantry(&["serve", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for word in [
        "--listen",
        "--data-dir",
        "GANTRY_LISTEN",
        "GANTRY_DATA_DIR",
        "--config",
    ] {
        assert!(help.contains(word), "serve --help lacks {word}: {help}");
    }
}
