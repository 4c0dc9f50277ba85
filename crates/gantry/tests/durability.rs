//! Crash safety and bounded memory, against the real binary.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use gantry_oci::{media_type, Digest};
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;

#[derive(Default)]
struct Acknowledged {
    blobs: Vec<(String, Digest)>,
    manifests: Vec<(String, String, Vec<u8>)>,
}

/// One client: pushes blobs (monolithic or chunked) and manifests over them until the server
/// dies, recording only what the server acknowledged.
async fn pusher(base: String, worker: usize, acked: Arc<Mutex<Acknowledged>>) {
    let c = http();
    let mut rng = rand::rngs::StdRng::seed_from_u64(worker as u64);
    let repo = format!("crash/w{worker}");
    for round in 0.. {
        let size = rng.random_range(1..1_500_000usize);
        let content: Vec<u8> = (0..size).map(|_| rng.random()).collect();
        let digest = Digest::sha256_of(&content);
        let ok = if round % 2 == 0 {
            c.post(format!("{base}/v2/{repo}/blobs/uploads/?digest={digest}"))
                .body(content.clone())
                .send()
                .await
                .map(|r| r.status() == StatusCode::CREATED)
        } else {
            chunked_push(&c, &base, &repo, &content, &digest).await
        };
        match ok {
            Ok(true) => acked
                .lock()
                .unwrap()
                .blobs
                .push((repo.clone(), digest.clone())),
            Ok(false) => panic!("server refused a valid blob"),
            Err(_) => return, // server gone
        }
        let config = format!(r#"{{"round":{round}}}"#).into_bytes();
        if c.post(format!(
            "{base}/v2/{repo}/blobs/uploads/?digest={}",
            Digest::sha256_of(&config)
        ))
        .body(config.clone())
        .send()
        .await
        .is_err()
        {
            return;
        }
        let manifest = image_manifest(&config, &[&content]);
        let tag = format!("r{round}");
        match c
            .put(format!("{base}/v2/{repo}/manifests/{tag}"))
            .header("content-type", media_type::OCI_MANIFEST)
            .body(manifest.clone())
            .send()
            .await
        {
            Ok(r) if r.status() == StatusCode::CREATED => {
                acked
                    .lock()
                    .unwrap()
                    .manifests
                    .push((repo.clone(), tag, manifest))
            }
            Ok(r) => panic!("manifest refused: {}", r.status()),
            Err(_) => return,
        }
    }
}

async fn chunked_push(
    c: &reqwest::Client,
    base: &str,
    repo: &str,
    content: &[u8],
    digest: &Digest,
) -> reqwest::Result<bool> {
    let r = c
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .await?;
    let mut location = header(&r, "location").unwrap_or_default().to_string();
    for (i, chunk) in content.chunks(400_000).enumerate() {
        let start = i * 400_000;
        let r = c
            .patch(format!("{base}{location}"))
            .header(
                "content-range",
                format!("{start}-{}", start + chunk.len() - 1),
            )
            .body(chunk.to_vec())
            .send()
            .await?;
        if r.status() != StatusCode::ACCEPTED {
            return Ok(false);
        }
        location = header(&r, "location").unwrap_or_default().to_string();
    }
    let r = c
        .put(format!("{base}{location}?digest={digest}"))
        .send()
        .await?;
    Ok(r.status() == StatusCode::CREATED)
}

/// Every file in the blob store must hash to its name: nothing half-written is in place.
fn assert_no_partial_blob_files(data_dir: &std::path::Path) -> usize {
    let mut checked = 0;
    let root = data_dir.join("storage/blobs/sha256");
    let Ok(prefixes) = std::fs::read_dir(&root) else {
        return 0;
    };
    for prefix in prefixes {
        for file in std::fs::read_dir(prefix.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            let content = std::fs::read(&path).unwrap();
            assert_eq!(
                Digest::sha256_of(&content).hex(),
                path.file_name().unwrap().to_str().unwrap(),
                "blob file {} does not match its name",
                path.display()
            );
            checked += 1;
        }
    }
    checked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_concurrent_pushes_loses_no_acknowledged_write() {
    let mut server = Server::start();
    let acked = Arc::new(Mutex::new(Acknowledged::default()));
    for cycle in 0..3u64 {
        let workers: Vec<_> = (0..12)
            .map(|w| {
                tokio::spawn(pusher(
                    server.base.clone(),
                    w + 100 * cycle as usize,
                    acked.clone(),
                ))
            })
            .collect();
        // Kill once this cycle has made progress (however loaded the machine), then a moment
        // later, so that the kill lands in the middle of uploads rather than between them.
        let before = acked.lock().unwrap().blobs.len();
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked.lock().unwrap().blobs.len() < before + 8 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(100 + 150 * cycle)).await;
        server.kill9();
        for w in workers {
            w.await.unwrap();
        }
        server.restart();
    }

    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(
        acked.blobs.len() > 20 && !acked.manifests.is_empty(),
        "the test made too little progress: {} blobs",
        acked.blobs.len()
    );
    let c = http();
    for (repo, digest) in &acked.blobs {
        let r = c
            .get(server.url(&format!("/v2/{repo}/blobs/{digest}")))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "acknowledged blob {digest} in {repo} lost"
        );
        assert_eq!(Digest::sha256_of(&r.bytes().await.unwrap()), *digest);
    }
    for (repo, tag, manifest) in &acked.manifests {
        let r = c
            .get(server.url(&format!("/v2/{repo}/manifests/{tag}")))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "acknowledged manifest {repo}:{tag} lost"
        );
        assert_eq!(&r.bytes().await.unwrap()[..], &manifest[..]);
    }
    // Whatever is visible through the API is complete, acknowledged or not.
    let catalog: serde_json::Value = get_json(&server, "/v2/_catalog").await;
    for repo in catalog["repositories"].as_array().unwrap() {
        let repo = repo.as_str().unwrap();
        let tags: serde_json::Value = get_json(&server, &format!("/v2/{repo}/tags/list")).await;
        for tag in tags["tags"].as_array().unwrap() {
            let m: serde_json::Value = get_json(
                &server,
                &format!("/v2/{repo}/manifests/{}", tag.as_str().unwrap()),
            )
            .await;
            for layer in m["layers"].as_array().unwrap() {
                let digest: Digest = layer["digest"].as_str().unwrap().parse().unwrap();
                let r = c
                    .get(server.url(&format!("/v2/{repo}/blobs/{digest}")))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::OK);
                assert_eq!(Digest::sha256_of(&r.bytes().await.unwrap()), digest);
            }
        }
    }
    let files = assert_no_partial_blob_files(&server.data_dir);
    eprintln!(
        "after 3 kill -9 cycles: {} acknowledged blobs and {} manifests intact, {files} blob files verified",
        acked.blobs.len(),
        acked.manifests.len()
    );
    assert!(files >= acked.blobs.len() / 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushing_and_pulling_a_2_gib_blob_keeps_server_memory_bounded() {
    const SIZE: u64 = 2 << 30;
    let server = Server::start();
    let (growth_mib, push_secs) = push_and_pull_a_large_blob(&server, SIZE).await;
    eprintln!(
        "2 GiB push took {push_secs:.1}s (debug build); server peak RSS grew by {growth_mib} MiB"
    );
    assert!(
        growth_mib < 40,
        "server memory grew by {growth_mib} MiB for a 2 GiB blob"
    );
}

/// Regression: glibc kept the 7 MiB that each Argon2id verification allocates in the arena of
/// whichever blocking thread ran it (its mmap threshold rises after the first large free), so
/// 16 concurrent logins left the server at ~140 MiB for good, and a fill by 16 clients at
/// 120–300 MiB.
#[tokio::test]
async fn concurrent_password_checks_leave_no_memory_behind() {
    let server = Server::start();
    http().get(server.url("/v2/")).send().await.unwrap();
    let before = server.rss_kib();
    let users: Vec<String> = (0..16).map(|i| format!("login{i}")).collect();
    for user in &users {
        api_create_user(&server, user, "a-long-password", false).await;
    }
    let logins = users.iter().map(|user| {
        let client = http_as(user, "a-long-password");
        let url = server.url("/v2/");
        async move { client.get(url).send().await.unwrap().status() }
    });
    for status in futures::future::join_all(logins).await {
        assert_eq!(status, StatusCode::OK);
    }
    let grown_mib = server.rss_kib().saturating_sub(before) / 1024;
    assert!(
        grown_mib < 24,
        "16 users created and logged in at once left {grown_mib} MiB behind"
    );
}
