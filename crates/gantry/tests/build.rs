//! `gantry build` with a real Go toolchain (Debian's golang-go from `.ci/run`, or any `go` on
//! PATH / GANTRY_GO): real programs, pushed to a real server, pulled back with skopeo and taken
//! apart layer by layer.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use gantry_inspect::elf;
use gantry_oci::Digest;
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/go")
        .join(name)
}

/// Runs `gantry build` as the test servers' admin with a fixed source date.
fn gantry_build(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gantry"))
        .arg("build")
        .args(args)
        .env("GANTRY_USERNAME", "admin")
        .env("GANTRY_PASSWORD", ADMIN_PASSWORD)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap()
}

fn built_digest(out: &std::process::Output) -> Digest {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "gantry build failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let start = stdout.find("(sha256:").expect("the digest is printed") + 1;
    stdout[start..start + 71].parse().unwrap()
}

struct File {
    bytes: Vec<u8>,
    mode: u32,
    uid: u64,
}

/// Every entry of an OCI layout's image, layers applied in order.
fn unpack(layout: &Path, manifest: &Value) -> BTreeMap<String, File> {
    let mut files = BTreeMap::new();
    for layer in manifest["layers"].as_array().unwrap() {
        let digest = layer["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:");
        let gz = std::fs::read(layout.join("blobs/sha256").join(digest)).unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(gz.as_slice()));
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let (mode, uid) = (
                entry.header().mode().unwrap(),
                entry.header().uid().unwrap(),
            );
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            files.insert(path, File { bytes, mode, uid });
        }
    }
    files
}

fn blob(layout: &Path, digest: &str) -> Value {
    let bytes = std::fs::read(
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )
    .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn builds_a_static_nonroot_image_that_skopeo_pulls_back_and_rebuilds_identically() {
    let s = Server::start();
    let image = format!("{}/team/hello:v1", s.addr);
    let first = built_digest(&gantry_build(&[
        "-C",
        fixture("hello").to_str().unwrap(),
        "--image",
        &image,
        "-q",
    ]));

    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("pulled");
    run(Command::new("skopeo")
        .env("HOME", dir.path())
        .args([
            "copy",
            "--src-tls-verify=false",
            "--src-creds",
            &admin_creds(),
        ])
        .arg(format!("docker://{image}"))
        .arg(format!("oci:{}:v1", layout.display())));
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["digest"],
        first.to_string(),
        "skopeo pulled the digest gantry built"
    );
    let manifest = blob(&layout, &first.to_string());
    let config = blob(&layout, manifest["config"]["digest"].as_str().unwrap());
    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/usr/local/bin/hello"])
    );
    assert_eq!(
        config["created"], "2023-11-14T22:13:20Z",
        "SOURCE_DATE_EPOCH"
    );
    assert_eq!(
        config["config"]["Labels"]["org.opencontainers.image.title"],
        "hello"
    );
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], "amd64");

    let files = unpack(&layout, &manifest);
    let binary = &files["usr/local/bin/hello"];
    let facts = elf::facts(&binary.bytes).expect("an ELF binary");
    assert!(facts.static_linked, "CGO off gives a static binary");
    assert!(facts.stripped, "-s -w strips the symbol table");
    assert_eq!(binary.mode & 0o777, 0o755);
    let info = gantry_inspect::buildinfo::parse(&binary.bytes).unwrap();
    assert_eq!(info.path, "example.com/hello");
    assert_eq!(info.setting("CGO_ENABLED"), Some("0"));
    assert_eq!(info.setting("-trimpath"), Some("true"));
    assert_eq!(
        files["etc/ssl/certs/ca-certificates.crt"].bytes,
        std::fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap()
    );
    let passwd = String::from_utf8_lossy(&files["etc/passwd"].bytes).into_owned();
    assert!(passwd.contains("nonroot:x:65532:65532:"), "{passwd}");
    assert_eq!(files["home/nonroot/"].uid, 65532);
    assert_eq!(files["tmp/"].mode & 0o7777, 0o1777);
    assert!(
        !files
            .keys()
            .any(|k| k.contains("go/src") || k.ends_with(".go")),
        "no sources or toolchain"
    );

    // Size: the image is the compressed binary plus a small base, far under 10 MB.
    let compressed: u64 = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["size"].as_u64().unwrap())
        .sum();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(9));
    std::io::Write::write_all(&mut gz, &binary.bytes).unwrap();
    let binary_gz = gz.finish().unwrap().len() as u64;
    assert!(
        compressed <= binary_gz + 300_000,
        "{compressed} > {binary_gz} + 300 KB"
    );
    assert!(compressed < 10_000_000);

    // The SBOM is a referrer of the image, made from the binary's build info.
    let referrers = get_json(&s, &format!("/v2/team/hello/referrers/{first}")).await;
    let entries = referrers["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{referrers}");
    assert_eq!(entries[0]["artifactType"], "application/spdx+json");
    let sbom_manifest = get_json(
        &s,
        &format!(
            "/v2/team/hello/manifests/{}",
            entries[0]["digest"].as_str().unwrap()
        ),
    )
    .await;
    let sbom: Value = serde_json::from_slice(
        &get_bytes(
            &s,
            &format!(
                "/v2/team/hello/blobs/{}",
                sbom_manifest["layers"][0]["digest"].as_str().unwrap()
            ),
        )
        .await,
    )
    .unwrap();
    assert_eq!(sbom["spdxVersion"], "SPDX-2.3");
    assert_eq!(sbom["packages"][0]["name"], "example.com/hello");
    assert_eq!(sbom["packages"][1]["name"], "stdlib");

    // Reproducible: the same source and flags give the same digest, pushed under a new tag.
    let again = built_digest(&gantry_build(&[
        "-C",
        fixture("hello").to_str().unwrap(),
        "--image",
        &format!("{}/team/hello:v1-again", s.addr),
        "-q",
    ]));
    assert_eq!(again, first);
}

#[test]
fn multi_platform_builds_with_vendored_modules_under_one_index() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let digest = built_digest(&gantry_build(&[
        "-C",
        fixture("vendored").to_str().unwrap(),
        "--image",
        "registry.example.com/team/greeter:v2.0.0",
        "--platform",
        "linux/amd64,linux/arm64",
        "--with-tzdata",
        "--output",
        layout.to_str().unwrap(),
    ]));
    let index = blob(&layout, &digest.to_string());
    assert_eq!(index["mediaType"], gantry_oci::media_type::OCI_INDEX);
    let platforms: Vec<(String, Value)> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["platform"]["architecture"].as_str().unwrap().to_string(),
                blob(&layout, m["digest"].as_str().unwrap()),
            )
        })
        .collect();
    assert_eq!(
        platforms.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(),
        ["amd64", "arm64"]
    );
    for (arch, manifest) in &platforms {
        let files = unpack(&layout, manifest);
        assert!(
            files.contains_key("usr/share/zoneinfo/UTC"),
            "--with-tzdata copies the time zone database"
        );
        let binary = &files["usr/local/bin/greeter"].bytes;
        let facts = elf::facts(binary).unwrap();
        assert_eq!(facts.machine, if arch == "amd64" { 62 } else { 183 });
        assert!(facts.static_linked);
        let info = gantry_inspect::buildinfo::parse(binary).unwrap();
        assert_eq!(info.deps.len(), 1);
        assert_eq!(info.deps[0].to_string(), "example.com/greet@v1.2.3");
        let config = blob(&layout, manifest["config"]["digest"].as_str().unwrap());
        assert_eq!(config["architecture"], arch.as_str());
        assert_eq!(
            config["config"]["Labels"]["org.opencontainers.image.version"],
            "v2.0.0"
        );
    }
    // Each platform's SBOM is in the layout, naming the vendored module.
    let top: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let sboms: Vec<&Value> = top["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["artifactType"] == "application/spdx+json")
        .collect();
    assert_eq!(sboms.len(), 2);
    let sbom_manifest = blob(&layout, sboms[1]["digest"].as_str().unwrap());
    let sbom = blob(
        &layout,
        sbom_manifest["layers"][0]["digest"].as_str().unwrap(),
    );
    let names: Vec<&str> = sbom["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["example.com/greeter", "stdlib", "example.com/greet"]
    );
}

fn git(dir: &Path, args: &[&str]) -> String {
    run(Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_DATE", "1700000500 +0000")
        .env("GIT_AUTHOR_DATE", "1700000500 +0000"))
    .trim()
    .to_string()
}

/// Ref names of a layout's index.json, image entries only.
fn image_tags(layout: &Path) -> Vec<String> {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mut tags: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["artifactType"].is_null())
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    tags.sort();
    tags
}

#[test]
fn auto_tags_follow_git_and_never_add_latest() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    for file in ["go.mod", "main.go"] {
        std::fs::copy(fixture("hello").join(file), repo.join(file)).unwrap();
    }
    git(&repo, &["init", "-q", "-b", "main"]);
    git(
        &repo,
        &[
            "remote",
            "add",
            "origin",
            "https://token:secret@git.example.com/team/hello.git",
        ],
    );
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "hello"]);
    git(&repo, &["tag", "v1.2.0"]);
    let sha = git(&repo, &["rev-parse", "--short=12", "HEAD"]);
    let build = |out: &Path| {
        Command::new(env!("CARGO_BIN_EXE_gantry"))
            .args([
                "build",
                "--image",
                "registry.example.com/team/hello",
                "--tags",
                "auto",
                "-C",
            ])
            .arg(&repo)
            .arg("--output")
            .arg(out)
            .env_remove("SOURCE_DATE_EPOCH")
            .output()
            .unwrap()
    };
    let release = dir.path().join("release");
    let digest = built_digest(&build(&release));
    assert_eq!(
        image_tags(&release),
        ["commit-".to_string() + &sha, "v1.2.0".into()]
    );
    // Without SOURCE_DATE_EPOCH the commit time stamps the image.
    let manifest = blob(&release, &digest.to_string());
    let config = blob(&release, manifest["config"]["digest"].as_str().unwrap());
    assert_eq!(config["created"], "2023-11-14T22:21:40Z");
    assert_eq!(
        config["config"]["Labels"]["org.opencontainers.image.source"],
        "https://git.example.com/team/hello.git",
        "the origin's URL, without the credentials in it"
    );
    assert_eq!(
        config["config"]["Labels"]["org.opencontainers.image.revision"]
            .as_str()
            .unwrap()
            .len(),
        40
    );

    git(&repo, &["checkout", "-q", "-b", "feature/login"]);
    std::fs::write(repo.join("README"), "x\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "more"]);
    let sha = git(&repo, &["rev-parse", "--short=12", "HEAD"]);
    let dev = dir.path().join("dev");
    built_digest(&build(&dev));
    assert_eq!(
        image_tags(&dev),
        ["commit-".to_string() + &sha, "dev-latest".into()]
    );

    // No tag at all is an error that says what to do; latest is never implied.
    let out = gantry_build(&[
        "--image",
        "registry.example.com/team/hello",
        "--output",
        "/tmp/x",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--tags auto") && err.contains("latest is never implied"),
        "{err}"
    );
}

/// Runs `gantry analyze` as admin.
fn gantry_analyze(args: &[&str]) -> std::process::Output {
    gantry_as_admin(&[&["analyze"], args].concat())
}

#[tokio::test]
async fn analyze_reports_sizes_wasted_bytes_and_budgets_of_known_images() {
    use gantry_builder::layer::{self, Content, Entry, LayerSpec};
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let layout = gantry_client::Layout::create(dir.path().join("layout")).unwrap();
    // Layer 0 ships 200 kB of noise; layer 1 deletes it and overwrites a config file.
    let noise: Vec<u8> = (0..6250u32)
        .flat_map(|i| hex::decode(Digest::sha256_of(&i.to_le_bytes()).hex()).unwrap())
        .collect();
    let file = |bytes: &[u8]| Entry {
        content: Content::Bytes(bytes.to_vec()),
        mode: 0o644,
        uid: 0,
        gid: 0,
    };
    let mut lower = LayerSpec::default();
    lower.add("data/noise.bin", file(&noise));
    lower.add("etc/app.conf", file(b"v1"));
    let mut upper = LayerSpec::default();
    upper.add("data/.wh.noise.bin", file(b""));
    upper.add("etc/app.conf", file(b"version 2"));
    upper.add("app", file(b"#!/bin/true\n"));
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    for (i, spec) in [lower, upper].iter().enumerate() {
        let path = layout.scratch_path(&format!("l{i}"));
        let built = layer::write(spec, 0, &path).unwrap();
        layout.adopt(&built.digest, &path).unwrap();
        descriptors.push(serde_json::json!({"mediaType": gantry_oci::media_type::OCI_LAYER_GZIP, "digest": built.digest.to_string(), "size": built.size}));
        diff_ids.push(built.diff_id.to_string());
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/app"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let config_digest = layout.put_bytes(&config).unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": gantry_oci::media_type::OCI_MANIFEST,
        "config": {"mediaType": gantry_oci::media_type::OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
        "layers": descriptors,
    }))
    .unwrap();
    let manifest_digest = layout.put_bytes(&manifest).unwrap();
    layout
        .add_to_index(
            gantry_oci::Descriptor {
                media_type: gantry_oci::media_type::OCI_MANIFEST.into(),
                digest: manifest_digest.clone(),
                size: manifest.len() as u64,
                artifact_type: None,
                annotations: None,
                platform: None,
            },
            "v1",
        )
        .unwrap();
    let image = format!("{}/team/waste:v1", s.addr);
    let layout_arg = format!("{}:v1", dir.path().join("layout").display());
    let out = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["push", "-q", &layout_arg, &image])
        .env("GANTRY_USERNAME", "admin")
        .env("GANTRY_PASSWORD", ADMIN_PASSWORD)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // From the registry: over a 100 kB budget, so the command fails, and says why.
    let out = gantry_analyze(&[&image, "--json", "--budget", "100KB"]);
    assert!(
        !out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("over the budget"));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["digest"], manifest_digest.to_string());
    assert_eq!(report["budget"]["within"], false);
    assert_eq!(report["wasted_bytes"], 200_002);
    let wasted: Vec<(&str, &str)> = report["wasted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["path"].as_str().unwrap(), w["how"].as_str().unwrap()))
        .collect();
    assert_eq!(
        wasted,
        [
            ("data/noise.bin", "deleted"),
            ("etc/app.conf", "overwritten")
        ]
    );
    assert!(
        report["layers"][0]["compressed"].as_u64().unwrap() > 190_000,
        "noise does not compress"
    );
    assert!(report["layers"][0]["uncompressed"].as_u64().unwrap() > 200_000);
    assert_eq!(report["binary"]["path"], "/app");
    assert_eq!(report["binary"]["elf"], false);
    // The same image from its layout, with a budget it meets.
    let out = gantry_analyze(&[&format!("oci:{layout_arg}"), "--budget", "1MB"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Wasted: 200.0 KB in 2 files"), "{text}");
    assert!(text.contains("within"), "{text}");

    // A Go image built by gantry: static, stripped, its Go version; compared with the first.
    let hello = format!("{}/team/hello:v1", s.addr);
    built_digest(&gantry_build(&[
        "-C",
        fixture("hello").to_str().unwrap(),
        "--image",
        &hello,
        "-q",
    ]));
    let out = gantry_analyze(&[&hello, "--json", "--budget", "10MB"]);
    assert!(out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["binary"]["static_linked"], true);
    assert_eq!(report["binary"]["stripped"], true);
    assert!(report["binary"]["go_version"]
        .as_str()
        .unwrap()
        .starts_with("go1."));
    assert_eq!(report["wasted_bytes"], 0);
    let out = gantry_analyze(&[&image, &hello, "--json"]);
    let diff: Value = serde_json::from_slice(&out.stdout).unwrap();
    let changed = diff["comparison"]["changed"].as_array().unwrap();
    assert_eq!(
        changed[0][0], "usr/local/bin/hello",
        "the biggest change comes first"
    );
}

#[tokio::test]
async fn builds_on_a_base_image_and_writes_an_archive_podman_loads() {
    let s = Server::start();
    let base = format!("{}/team/hello:v1", s.addr);
    let base_digest = built_digest(&gantry_build(&[
        "-C",
        fixture("hello").to_str().unwrap(),
        "--image",
        &base,
        "-q",
    ]));
    let image = format!("{}/team/greeter:v1", s.addr);
    let digest = built_digest(&gantry_build(&[
        "-C",
        fixture("vendored").to_str().unwrap(),
        "--image",
        &image,
        "--base",
        &base,
        "-q",
    ]));
    let base_manifest = get_json(&s, &format!("/v2/team/hello/manifests/{base_digest}")).await;
    let manifest = get_json(&s, &format!("/v2/team/greeter/manifests/{digest}")).await;
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3, "the base's two layers and the binary");
    assert_eq!(layers[..2], base_manifest["layers"].as_array().unwrap()[..]);
    let config: Value = serde_json::from_slice(
        &get_bytes(
            &s,
            &format!(
                "/v2/team/greeter/blobs/{}",
                manifest["config"]["digest"].as_str().unwrap()
            ),
        )
        .await,
    )
    .unwrap();
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/usr/local/bin/greeter"])
    );
    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 3);
    assert_eq!(config["history"].as_array().unwrap().len(), 3);

    // A tarball for `podman load` (docker load reads the same format).
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("greeter.tar");
    built_digest(&gantry_build(&[
        "-C",
        fixture("vendored").to_str().unwrap(),
        "--image",
        "registry.example.com/team/greeter:v1",
        "--output",
        &format!("docker-archive:{}", archive.display()),
    ]));
    let podman = |args: &[&str]| {
        run(Command::new("podman")
            .arg("--root")
            .arg(dir.path().join("root"))
            .arg("--runroot")
            .arg(dir.path().join("run"))
            .args(["--storage-driver", "vfs"])
            .env("HOME", dir.path())
            .env("XDG_RUNTIME_DIR", dir.path())
            .env("CONTAINERS_REGISTRIES_CONF", "/dev/null")
            .args(args))
    };
    podman(&["load", "-i", archive.to_str().unwrap()]);
    let images = podman(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(
        images.contains("registry.example.com/team/greeter:v1"),
        "{images}"
    );
    let user = podman(&[
        "image",
        "inspect",
        "--format",
        "{{.Config.User}}",
        "registry.example.com/team/greeter:v1",
    ]);
    assert_eq!(user.trim(), "65532:65532");
}

#[tokio::test(flavor = "multi_thread")]
async fn build_with_a_sign_key_pushes_an_image_an_enforcing_project_pulls() {
    let server = Server::start();
    api_create_project(&server, "team", false).await;
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("release");
    let generate = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args([
            "key",
            "generate",
            "--output-key-prefix",
            prefix.to_str().unwrap(),
        ])
        .env("COSIGN_PASSWORD", "build-password")
        .output()
        .unwrap();
    assert!(generate.status.success(), "{generate:?}");
    let key = dir.path().join("release.key");
    let public = dir.path().join("release.pub");
    let image = format!("{}/team/hello:v1.0.0", server.addr);
    let policy = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args([
            "signing-policy",
            "set",
            "team",
            "--registry",
            &server.addr,
            "--key",
            public.to_str().unwrap(),
            "--enforce",
        ])
        .env("GANTRY_USERNAME", "admin")
        .env("GANTRY_PASSWORD", ADMIN_PASSWORD)
        .output()
        .unwrap();
    assert!(policy.status.success(), "{policy:?}");
    let hello = fixture("hello");
    // A wrong password stops the build before anything is pushed.
    // `gantry build` of the hello fixture signed with the key, the key's password given.
    let build_signed = |password: &str| {
        Command::new(env!("CARGO_BIN_EXE_gantry"))
            .args([
                "build",
                "-C",
                hello.to_str().unwrap(),
                "--image",
                &image,
                "--sign-key",
                key.to_str().unwrap(),
            ])
            .env("COSIGN_PASSWORD", password)
            .env("GANTRY_USERNAME", "admin")
            .env("GANTRY_PASSWORD", ADMIN_PASSWORD)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .output()
            .unwrap()
    };
    let wrong = build_signed("wrong");
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("password"),
        "{wrong:?}"
    );
    let out = build_signed("build-password");
    let digest = built_digest(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("signed by sha256:"),
        "{out:?}"
    );
    login(dir.path(), &server, "admin", ADMIN_PASSWORD);
    skopeo_pull(&server, dir.path(), "team/hello:v1.0.0").unwrap();
    let verified = gantry_as_admin(&[
        "verify",
        "--key",
        public.to_str().unwrap(),
        &format!("{}/team/hello@{digest}", server.addr),
    ]);
    assert!(verified.status.success(), "{verified:?}");
}
