//! Archive and restore against the real server: artifacts leave the registry as OCI image
//! layout tarballs (in a directory, or in an S3 bucket served by moto's S3 server) and come
//! back byte for byte, checked with skopeo.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use gantry_oci::{media_type, Digest};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn gantry(s: &Server, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(args)
        .arg("--json")
        .env("GANTRY_REGISTRY", &s.addr)
        .env("GANTRY_USERNAME", "admin")
        .env("GANTRY_PASSWORD", ADMIN_PASSWORD)
        .output()
        .unwrap();
    assert!(out.status.success(), "gantry {args:?}: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Pushes a real image (built by umoci, copied by skopeo) as `team/app:{tag}`, plus a
/// signature-like referrer; returns the image's digest.
async fn push_release(s: &Server, dir: &Path, tag: &str) -> String {
    make_layout(dir, tag, &[("app/bin", format!("binary {tag}").as_bytes())]);
    let layout = dir.join("layout");
    run(skopeo(dir)
        .args(["copy", "--dest-tls-verify=false", "--dest-creds"])
        .arg(format!("admin:{ADMIN_PASSWORD}"))
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("docker://{}/team/app:{tag}", s.addr)));
    let digest = index_digest(&layout);
    let signature = b"signature payload";
    push_blob(s, "team/app", signature).await;
    push_blob(s, "team/app", b"{}").await;
    let referrer = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "artifactType": "application/vnd.dev.cosign.simplesigning.v1+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": Digest::sha256_of(b"{}").to_string(), "size": 2},
        "layers": [descriptor("application/vnd.dev.cosign.simplesigning.v1+json", signature)],
        "subject": {"mediaType": media_type::OCI_MANIFEST, "digest": digest, "size": 1},
    }))
    .unwrap();
    push_manifest_by_digest(s, "team/app", media_type::OCI_MANIFEST, &referrer).await;
    // And a cosign v2 signature: a `.sig` manifest under the tag naming the image.
    push_cosign_signature(s, "team/app", &digest).await;
    digest
}

/// cosign's signature tag of image `digest`.
fn sig_tag(digest: &str) -> String {
    format!("{}.sig", digest.replace(':', "-"))
}

/// skopeo copies `team/app:{tag}` out of the registry; returns the digest it got.
fn pulled_digest(s: &Server, dir: &Path, tag: &str) -> String {
    let out = dir.join(format!("pulled-{tag}"));
    run(skopeo(dir)
        .args(["copy", "--src-tls-verify=false", "--src-creds"])
        .arg(format!("admin:{ADMIN_PASSWORD}"))
        .arg(format!("docker://{}/team/app:{tag}", s.addr))
        .arg(format!("oci:{}:{tag}", out.display())));
    index_digest(&out)
}

async fn manifest_status(s: &Server, reference: &str) -> StatusCode {
    http()
        .get(s.url(&format!("/v2/team/app/manifests/{reference}")))
        .header("accept", media_type::OCI_MANIFEST)
        .send()
        .await
        .unwrap()
        .status()
}

async fn referrers_of(s: &Server, digest: &str) -> usize {
    get_json(s, &format!("/v2/team/app/referrers/{digest}")).await["manifests"]
        .as_array()
        .unwrap()
        .len()
}

/// Archives v1.*, checks it is gone (blobs too, after GC), restores it and checks skopeo
/// pulls the identical image. Returns the archive's object key.
async fn round_trip(s: &Server) -> String {
    let dir = tempfile::tempdir().unwrap();
    let old = push_release(s, &dir.path().join("old"), "v1.0.0").await;
    let new = push_release(s, &dir.path().join("new"), "v2.0.0").await;
    assert_eq!(referrers_of(s, &old).await, 1);

    let dry = gantry(s, &["archive", "team", "--tag", "v1.*", "--dry-run"]);
    assert_eq!(dry["archived"].as_array().unwrap().len(), 1, "{dry}");
    assert_eq!(dry["archived"][0]["digest"], old.as_str());
    assert_eq!(
        manifest_status(s, "v1.0.0").await,
        StatusCode::OK,
        "a dry run moves nothing"
    );

    let report = gantry(s, &["archive", "team", "--tag", "v1.*"]);
    let archived = &report["archived"][0];
    assert_eq!(archived["tags"], json!(["v1.0.0"]));
    // The referrer and the `.sig` manifest go with the image (the `.sig` once stayed behind,
    // tagged, signing nothing).
    assert_eq!(
        archived["referrers"].as_array().unwrap().len(),
        2,
        "{archived}"
    );
    let id = archived["id"].as_i64().unwrap();
    let key = archived["object_key"].as_str().unwrap().to_string();
    assert_eq!(manifest_status(s, "v1.0.0").await, StatusCode::NOT_FOUND);
    assert_eq!(manifest_status(s, &old).await, StatusCode::NOT_FOUND);
    assert_eq!(
        manifest_status(s, &sig_tag(&old)).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(manifest_status(s, "v2.0.0").await, StatusCode::OK);
    assert_eq!(manifest_status(s, &sig_tag(&new)).await, StatusCode::OK);

    // Garbage collection frees the archived image's own blobs.
    let layers: Vec<String> = {
        let out = dir.path().join("old/layout");
        let index: Value =
            serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
        let manifest_digest = index["manifests"][0]["digest"]
            .as_str()
            .unwrap()
            .replace("sha256:", "");
        let manifest: Value = serde_json::from_slice(
            &std::fs::read(out.join("blobs/sha256").join(manifest_digest)).unwrap(),
        )
        .unwrap();
        manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect()
    };
    gc_now(s).await;
    for layer in &layers {
        let r = http()
            .head(s.url(&format!("/v2/team/app/blobs/{layer}")))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::NOT_FOUND,
            "{layer} left the registry"
        );
    }

    let restored = gantry(s, &["restore", "team", &id.to_string()]);
    assert_eq!(restored["tags"], json!(["v1.0.0"]));
    assert_eq!(restored["manifests"], 3, "{restored}");
    assert_eq!(
        pulled_digest(s, dir.path(), "v1.0.0"),
        old,
        "same digest after restore"
    );
    assert_eq!(pulled_digest(s, dir.path(), "v2.0.0"), new);
    assert_eq!(
        referrers_of(s, &old).await,
        1,
        "the signature came back too"
    );
    assert_eq!(
        manifest_status(s, &sig_tag(&old)).await,
        StatusCode::OK,
        "the .sig manifest came back under its tag"
    );
    let listed = gantry(s, &["archive", "team", "--list"]);
    assert!(listed["archives"][0]["restored_at"].is_i64(), "{listed}");
    key
}

#[tokio::test]
async fn archive_to_a_directory_and_restore_byte_identical() {
    let s = Server::start();
    let key = round_trip(&s).await;
    let tarball = s.data_dir.join("archive").join(&key);
    assert!(tarball.is_file(), "{} exists", tarball.display());
    // The tarball is an OCI image layout other tools read: skopeo finds the tag in it.
    let dir = tempfile::tempdir().unwrap();
    let inspected: Value = serde_json::from_str(&run(skopeo(dir.path())
        .arg("inspect")
        .arg(format!("oci-archive:{}:v1.0.0", tarball.display()))))
    .unwrap();
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 1);

    // While archived, an immutable tag cannot come back with other content.
    api_set_immutable_tags(&s, "team", &["v*"]).await;
    let report = gantry(&s, &["archive", "team", "--tag", "v1.*"]);
    assert_eq!(report["archived"].as_array().unwrap().len(), 1);
    let (config, layer) = (b"{\"other\":1}".to_vec(), b"other".to_vec());
    push_blob(&s, "team/app", &config).await;
    push_blob(&s, "team/app", &layer).await;
    let other = image_manifest(&config, &[&layer]);
    let r = put_manifest(&s, "team/app", "v1.0.0", media_type::OCI_MANIFEST, &other).await;
    let body = assert_error(r, StatusCode::FORBIDDEN, "DENIED").await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("archived"),
        "{body}"
    );

    // Deleting an archive removes its tarball and its record; it can no longer be restored.
    let id = report["archived"][0]["id"].as_i64().unwrap();
    let second = s
        .data_dir
        .join("archive")
        .join(report["archived"][0]["object_key"].as_str().unwrap());
    assert!(second.is_file());
    let deleted = gantry(&s, &["archive", "team", "--delete", &id.to_string()]);
    assert_eq!(deleted["deleted"], id);
    assert!(!second.exists(), "the tarball is gone");
    let listed = gantry(&s, &["archive", "team", "--list"]);
    assert!(listed["archives"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["id"] != id));
    let r = http()
        .post(s.url(&format!("/api/v1/projects/team/archives/{id}/restore")))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;
}

/// moto's S3 server (pip moto[server]) on a free port, stopped on drop.
struct S3Server {
    child: std::process::Child,
    endpoint: String,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_s3() -> S3Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("moto_server runs (.ci/run installs moto[server])");
    // Owned from here on, so that it is stopped however the test ends.
    let server = S3Server {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..100 {
        if reqwest::get(&server.endpoint).await.is_ok() {
            return server;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("moto_server did not start on {}", server.endpoint);
}

#[tokio::test]
async fn archive_to_an_s3_bucket_and_restore_byte_identical() {
    if single_process_only(
        "the archive bucket is a moto server of the test's own, reached through AWS_*, and the \
         replicas' AWS_* name the Garage holding their blobs (one set serves both); archiving \
         to a directory and restoring runs through the replicas",
    ) {
        return;
    }
    let s3 = start_s3().await;
    let r = reqwest::Client::new()
        .put(format!("{}/archives", s3.endpoint))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "bucket created: {}", r.status());
    let s = Server::start_configured(&[
        ("GANTRY_ARCHIVE_LOCATION", "s3://archives/registry-1"),
        ("AWS_ENDPOINT_URL", &s3.endpoint),
        ("AWS_ACCESS_KEY_ID", "gantry-test"),
        ("AWS_SECRET_ACCESS_KEY", "gantry-test-secret"),
        ("AWS_REGION", "us-east-1"),
    ]);
    let key = round_trip(&s).await;
    // The object is in the bucket, under the prefix.
    let listing = reqwest::get(format!(
        "{}/archives?list-type=2&prefix=registry-1/",
        s3.endpoint
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(listing.contains(&format!("registry-1/{key}")), "{listing}");
    assert!(
        !s.data_dir.join("archive").exists(),
        "nothing archived locally"
    );
}

#[tokio::test]
async fn archive_never_takes_a_platform_image_of_a_kept_index() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    // v1.9.0 is a real image that is also the amd64 entry of the index v2.0.0, which stays.
    let image = push_release(&s, &dir.path().join("image"), "v1.9.0").await;
    let manifest = get_bytes(&s, &format!("/v2/team/app/manifests/{image}")).await;
    let mut entry = descriptor(media_type::OCI_MANIFEST, &manifest);
    entry["platform"] = json!({"architecture": "amd64", "os": "linux"});
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": [entry],
    }))
    .unwrap();
    let r = put_manifest(&s, "team/app", "v2.0.0", media_type::OCI_INDEX, &index).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let index_digest = Digest::sha256_of(&index).to_string();

    let report = gantry(&s, &["archive", "team", "--tag", "v1.*"]);
    assert_eq!(report["archived"], json!([]), "{report}");
    assert_eq!(
        report["passed"],
        json!([{
            "repository": "team/app",
            "digest": image,
            "reason": format!("child of index {index_digest}, which stays"),
        }])
    );
    assert_eq!(manifest_status(&s, "v1.9.0").await, StatusCode::OK);
    // The kept index is whole: skopeo copies every platform.
    run(skopeo(dir.path())
        .args(["copy", "--all", "--src-tls-verify=false", "--src-creds"])
        .arg(format!("admin:{ADMIN_PASSWORD}"))
        .arg(format!("docker://{}/team/app:v2.0.0", s.addr))
        .arg(format!("oci:{}:v2.0.0", dir.path().join("copy").display())));
}
