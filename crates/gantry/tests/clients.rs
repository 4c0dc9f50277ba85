//! Real clients against the real server: skopeo, podman and the oras Python SDK, installed
//! by `.ci/run`. Digests that go in must come out identical.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

/// Builds a small OCI layout with umoci: one layer holding `files`.
fn make_layout(dir: &Path, tag: &str, files: &[(&str, &[u8])]) {
    let layout = dir.join("layout");
    let bundle = dir.join("bundle");
    let image = format!("{}:{tag}", layout.display());
    run(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout));
    run(Command::new("umoci").args(["new", "--image", &image]));
    run(Command::new("umoci")
        .args(["unpack", "--rootless", "--image", &image])
        .arg(&bundle));
    for (name, content) in files {
        let path = bundle.join("rootfs").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    run(Command::new("umoci")
        .args(["repack", "--image", &image])
        .arg(&bundle));
}

fn index_digest(layout: &Path) -> String {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// skopeo with a private blob-info cache and credentials file (`auth.json` under
/// XDG_RUNTIME_DIR, which podman shares) per test, so earlier runs cannot skip uploads.
fn skopeo(dir: &Path) -> Command {
    let mut cmd = Command::new("skopeo");
    cmd.env("XDG_RUNTIME_DIR", dir).env("HOME", dir);
    cmd.arg("--registries-conf").arg("/dev/null");
    cmd
}

/// `skopeo login` as `user`: later skopeo and podman commands in `dir` use the stored
/// credentials through the token flow.
fn login(dir: &Path, server: &Server, user: &str, password: &str) {
    run(skopeo(dir).args([
        "login",
        "--tls-verify=false",
        "-u",
        user,
        "-p",
        password,
        &server.addr,
    ]));
}

#[test]
fn skopeo_copies_in_and_out_inspects_lists_and_deletes() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..5_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    make_layout(
        dir.path(),
        "v1",
        &[("app/data.bin", &big), ("app/hello.txt", b"hello\n")],
    );
    let layout = dir.path().join("layout");
    let pushed = index_digest(&layout);
    login(dir.path(), &s, "admin", ADMIN_PASSWORD);

    let dest = format!("docker://{}/team/app:v1", s.addr);
    run(skopeo(dir.path())
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(&dest));

    let raw = run(skopeo(dir.path()).args(["inspect", "--tls-verify=false", "--raw", &dest]));
    let raw_digest = gantry_oci::Digest::sha256_of(raw.as_bytes()).to_string();
    assert_eq!(
        raw_digest, pushed,
        "inspect --raw returns the exact manifest bytes"
    );

    let tags: Value = serde_json::from_str(&run(skopeo(dir.path()).args([
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{}/team/app", s.addr),
    ])))
    .unwrap();
    assert_eq!(tags["Tags"], serde_json::json!(["v1"]));

    let out = dir.path().join("out");
    run(skopeo(dir.path())
        .args(["copy", "--src-tls-verify=false", &dest])
        .arg(format!("oci:{}:v1", out.display())));
    assert_eq!(index_digest(&out), pushed, "digest out equals digest in");
    // Every blob came back byte-identical (the layout's files are named by digest).
    for entry in std::fs::read_dir(out.join("blobs/sha256")).unwrap() {
        let path = entry.unwrap().path();
        let content = std::fs::read(&path).unwrap();
        assert_eq!(
            gantry_oci::Digest::sha256_of(&content).hex(),
            path.file_name().unwrap().to_str().unwrap()
        );
        assert!(layout
            .join("blobs/sha256")
            .join(path.file_name().unwrap())
            .exists());
    }

    run(skopeo(dir.path()).args([
        "delete",
        "--tls-verify=false",
        &format!("docker://{}/team/app@{pushed}", s.addr),
    ]));
    let out = skopeo(dir.path())
        .args(["inspect", "--tls-verify=false", "--raw", &dest])
        .output()
        .unwrap();
    assert!(!out.status.success(), "the deleted manifest is gone");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("manifest unknown"), "{stderr}");
}

#[test]
fn podman_pushes_and_pulls() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    make_layout(dir.path(), "v1", &[("srv/app", b"#!/bin/true\n")]);
    let layout = dir.path().join("layout");
    let pushed = index_digest(&layout);
    login(dir.path(), &s, "admin", ADMIN_PASSWORD);
    let podman = |args: &[&str]| {
        let mut cmd = Command::new("podman");
        cmd.arg("--root")
            .arg(dir.path().join("root"))
            .arg("--runroot")
            .arg(dir.path().join("run"))
            .args(["--storage-driver", "vfs"])
            .env("HOME", dir.path())
            .env("XDG_RUNTIME_DIR", dir.path())
            .env("CONTAINERS_REGISTRIES_CONF", "/dev/null")
            .args(args);
        run(&mut cmd)
    };
    // Into the registry with skopeo, through podman's own storage, and back out by push.
    run(skopeo(dir.path())
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker://{}/team/base:v1", s.addr)));
    let source = format!("{}/team/base:v1", s.addr);
    podman(&["pull", "--tls-verify=false", &source]);
    let target = format!("{}/team/podman-pushed:v2", s.addr);
    podman(&["tag", &source, &target]);
    podman(&["push", "--tls-verify=false", &target]);
    podman(&["rmi", "-a", "-f"]);
    podman(&["pull", "--tls-verify=false", &target]);
    let ids = podman(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(ids.contains("team/podman-pushed"), "{ids}");

    // The pushed image's layers are the ones skopeo pushed (same digests).
    let base: Value = serde_json::from_str(&run(skopeo(dir.path()).args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{source}"),
    ])))
    .unwrap();
    let pushed_by_podman: Value = serde_json::from_str(&run(skopeo(dir.path()).args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{target}"),
    ])))
    .unwrap();
    assert_eq!(base["Layers"], pushed_by_podman["Layers"]);
    assert_eq!(base["Digest"], pushed);
}

#[test]
fn oras_sdk_pushes_an_artifact_with_a_subject_and_finds_it_as_a_referrer() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/oras_referrers.py");
    let out = run(Command::new("python3")
        .arg(script)
        .arg(&s.addr)
        .arg(dir.path())
        .env("HOME", dir.path())
        .env("ORAS_USER", "admin")
        .env("ORAS_PASSWORD", ADMIN_PASSWORD));
    assert!(out.contains("oras ok"), "{out}");
}
