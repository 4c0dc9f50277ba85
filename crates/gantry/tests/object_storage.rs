//! `gantry serve --storage s3://…` on a real Garage (scripts/test-all.sh starts it and passes
//! its bucket as GANTRY_TEST_S3_*): skopeo pushes and pulls byte-identical images whose blobs
//! live in the bucket, and a chunked upload goes on in a new process after kill -9.

mod common;

use common::*;
use gantry_oci::Digest;
use gantry_storage::suite::{test_bucket, TestBucket};
use gantry_storage::{BlobStore, S3BlobStore, MIN_PART_SIZE};
use reqwest::StatusCode;

/// The server's settings for `bucket`: the storage location and the AWS_* variables.
fn s3_env(bucket: &TestBucket) -> Vec<(&str, &str)> {
    let mut env = bucket.settings();
    env.push(("GANTRY_STORAGE", bucket.location.as_str()));
    env
}

fn store(bucket: &TestBucket) -> S3BlobStore {
    S3BlobStore::open_with(&bucket.location, MIN_PART_SIZE, &bucket.settings()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn skopeo_pushes_and_pulls_with_blobs_in_garage() {
    let bucket = test_bucket();
    let s = Server::start_configured(&s3_env(&bucket));
    let dir = tempfile::tempdir().unwrap();
    // Larger than two S3 parts, so the layer goes up as a multipart upload.
    let (_, pushed, dest) = skopeo_push_test_layout(&s, dir.path(), 12_000_000);

    let out = dir.path().join("out");
    run(skopeo(dir.path())
        .args(["copy", "--src-tls-verify=false", &dest])
        .arg(format!("oci:{}:v1", out.display())));
    assert_eq!(index_digest(&out), pushed, "digest out equals digest in");

    // Every blob came back byte-identical; the layer and the config (manifests live in the
    // database) are in the bucket, nothing is on local disk.
    let blobs = store(&bucket);
    let mut in_bucket = Vec::new();
    for entry in std::fs::read_dir(out.join("blobs/sha256")).unwrap() {
        let path = entry.unwrap().path();
        let content = std::fs::read(&path).unwrap();
        let digest = Digest::sha256_of(&content);
        assert_eq!(digest.hex(), path.file_name().unwrap().to_str().unwrap());
        if blobs.stat(&digest).await.unwrap() == Some(content.len() as u64) {
            in_bucket.push(content.len());
        }
    }
    assert_eq!(
        in_bucket.len(),
        2,
        "config and layer are in the bucket: {in_bucket:?}"
    );
    assert!(
        in_bucket.iter().any(|&size| size > 11_000_000),
        "{in_bucket:?}"
    );
    assert_eq!(files_under(&s.data_dir.join("storage/blobs")), 0);

    // Readiness asks the bucket.
    let ready = anonymous().get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chunked_upload_on_s3_storage_continues_in_a_new_process_after_kill_9() {
    let bucket = test_bucket();
    let env = s3_env(&bucket);
    let mut first = Server::start_configured(&env);
    let content: Vec<u8> = (0..9 * 1024 * 1024 + 77u32)
        .map(|i| (i % 249) as u8 ^ (i >> 16) as u8)
        .collect();
    let digest = Digest::sha256_of(&content);
    let cut = 6 * 1024 * 1024 + 5;

    let r = http()
        .post(first.url("/v2/team/chunks/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = header(&r, "location").unwrap().to_string();
    let r = patch_chunk(
        &first,
        &location,
        &format!("0-{}", cut - 1),
        &content[..cut],
    )
    .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    // The new process has no hash state and no bytes of its own: it continues from the bucket.
    first.kill9();
    let second = Server::start_with(&first.data_dir, &env);
    let status = http().get(second.url(&location)).send().await.unwrap();
    assert_eq!(status.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        header(&status, "range"),
        Some(format!("0-{}", cut - 1).as_str())
    );
    let r = patch_chunk(
        &second,
        &location,
        &format!("{cut}-{}", content.len() - 1),
        &content[cut..],
    )
    .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = header(&r, "location").unwrap().to_string();
    let separator = if location.contains('?') { '&' } else { '?' };
    let r = http()
        .put(second.url(&format!("{location}{separator}digest={digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    let got = get_bytes(&second, &format!("/v2/team/chunks/blobs/{digest}")).await;
    assert!(got[..] == content[..], "the blob reads back byte for byte");
    let r = http()
        .get(second.url(&format!("/v2/team/chunks/blobs/{digest}")))
        .header("range", "bytes=5242870-5242889")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert!(r.bytes().await.unwrap()[..] == content[5_242_870..5_242_890]);
}

/// Runs `gantry serve` with `storage` and `env`, which must refuse to start; returns stderr.
fn serve_refuses(storage: &str, env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["serve", "--listen", "127.0.0.1:0", "--storage", storage])
        .arg("--data-dir")
        .arg(dir.path())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn serve_refuses_a_storage_location_that_is_not_s3() {
    let stderr = serve_refuses("/var/blobs", &[]);
    assert!(stderr.contains("must be s3://BUCKET[/PREFIX]"), "{stderr}");
}

#[test]
fn serve_does_not_start_on_a_bucket_that_does_not_exist() {
    let bucket = test_bucket();
    let stderr = serve_refuses("s3://gantry-no-such-bucket/x", &bucket.settings());
    assert!(stderr.contains("does not answer"), "{stderr}");
    assert!(stderr.contains("the bucket does not"), "{stderr}");
    let secret = bucket.setting("AWS_SECRET_ACCESS_KEY");
    assert!(!stderr.contains(secret), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_redirect_blob_gets_answer_307_to_a_presigned_url_that_skopeo_follows() {
    let bucket = test_bucket();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gantry.toml");
    std::fs::write(&config, "[storage]\nredirect = true\n").unwrap();
    let mut env = s3_env(&bucket);
    let config_path = config.to_str().unwrap().to_string();
    env.push(("GANTRY_CONFIG", &config_path));
    let s = Server::start_configured(&env);

    let content = b"a blob served by the bucket itself".repeat(1000);
    let digest = push_blob(&s, "team/direct", &content).await;
    let r = http_not_following_redirects()
        .get(s.url(&format!("/v2/team/direct/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        header(&r, "docker-content-digest"),
        Some(digest.to_string().as_str())
    );
    let location = header(&r, "location").unwrap().to_string();
    let endpoint = bucket.setting("AWS_ENDPOINT_URL");
    assert!(location.starts_with(endpoint), "{location}");
    assert!(location.contains("X-Amz-Signature="), "{location}");
    // The URL alone (no registry credentials) gives the bytes, and ranges of them.
    let direct = anonymous().get(&location).send().await.unwrap();
    assert_eq!(direct.status(), StatusCode::OK);
    assert!(direct.bytes().await.unwrap()[..] == content[..]);
    let ranged = anonymous()
        .get(&location)
        .header("range", "bytes=2-9")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
    assert!(ranged.bytes().await.unwrap()[..] == content[2..10]);
    // HEAD still answers from the registry.
    let head = http()
        .head(s.url(&format!("/v2/team/direct/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);

    // A real client pulls through the redirects, byte for byte.
    let (_, pushed, dest) = skopeo_push_test_layout(&s, dir.path(), 3_000_000);
    let out = dir.path().join("out");
    run(skopeo(dir.path())
        .args(["copy", "--src-tls-verify=false", &dest])
        .arg(format!("oci:{}:v1", out.display())));
    assert_eq!(index_digest(&out), pushed);
}

#[tokio::test(flavor = "multi_thread")]
async fn pushing_and_pulling_a_256_mib_blob_on_s3_storage_keeps_server_memory_bounded() {
    const SIZE: u64 = 256 << 20;
    let bucket = test_bucket();
    let server = Server::start_configured(&s3_env(&bucket));
    let (growth_mib, _) = push_and_pull_a_large_blob(&server, SIZE).await;
    // One 8 MiB part buffered (and its copy in flight), not the blob.
    eprintln!("256 MiB on S3: server peak RSS grew by {growth_mib} MiB");
    assert!(
        growth_mib < 40,
        "server memory grew by {growth_mib} MiB for a 256 MiB blob on S3"
    );
}
