//! `gantry backup` and `gantry restore-backup`: an online backup taken while clients push and
//! garbage collection runs restores into a registry where everything acknowledged before the
//! backup started pulls complete; a restore refuses what is not a complete, intact backup and a
//! target that is in use or not empty.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use gantry_oci::{media_type, Digest};
use rand::RngCore;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn gantry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(args)
        .output()
        .unwrap()
}

/// `gantry restore-backup FROM --data-dir TO`.
fn restore_backup(from: &Path, to: &Path) -> Output {
    gantry(&[
        "restore-backup",
        path(from),
        "--quiet",
        "--data-dir",
        path(to),
    ])
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// An image the registry acknowledged: where, and the digests a pull must give back.
#[derive(Debug, Clone)]
struct Pushed {
    repo: String,
    tag: String,
    manifest: Digest,
    blobs: Vec<Digest>,
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// Pushes an image with random layers of `layer_sizes` bytes (and a random config).
async fn push_random_image(s: &Server, repo: &str, tag: &str, layer_sizes: &[usize]) -> Pushed {
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux", "seed": hex::encode(random_bytes(16)),
    }))
    .unwrap();
    let layers: Vec<Vec<u8>> = layer_sizes.iter().map(|n| random_bytes(*n)).collect();
    let mut blobs = vec![push_blob(s, repo, &config).await];
    for layer in &layers {
        blobs.push(push_blob(s, repo, layer).await);
    }
    let layer_refs: Vec<&[u8]> = layers.iter().map(Vec::as_slice).collect();
    let manifest = image_manifest(&config, &layer_refs);
    let r = put_manifest(s, repo, tag, media_type::OCI_MANIFEST, &manifest).await;
    assert_eq!(r.status(), StatusCode::CREATED, "push of {repo}:{tag}");
    Pushed {
        repo: repo.to_string(),
        tag: tag.to_string(),
        manifest: Digest::sha256_of(&manifest),
        blobs,
    }
}

/// Pulls `image` by tag from `s`: the manifest and every blob must come back with their digests.
async fn assert_pulls_complete(s: &Server, image: &Pushed) {
    let what = format!("{}:{}", image.repo, image.tag);
    let manifest = get_bytes(s, &format!("/v2/{}/manifests/{}", image.repo, image.tag)).await;
    assert_eq!(
        Digest::sha256_of(&manifest),
        image.manifest,
        "manifest of {what}"
    );
    for blob in &image.blobs {
        let bytes = get_bytes(s, &format!("/v2/{}/blobs/{blob}", image.repo)).await;
        assert_eq!(&Digest::sha256_of(&bytes), blob, "blob of {what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_taken_while_eight_clients_push_and_gc_runs_restores_every_push_acknowledged_before_it(
) {
    const GRACE_SECS: u64 = 5;
    let s = Arc::new(Server::start());
    let temp = tempfile::tempdir().unwrap();
    // Large images whose manifests are deleted and collected while the backup copies blobs:
    // the snapshot records their blobs, so garbage collection must wait for the copy.
    let mut doomed = Vec::new();
    for i in 0..4 {
        doomed.push(push_random_image(&s, "doomed/app", &format!("d{i}"), &[24 << 20]).await);
    }
    // A token issued before the backup works against the restored registry (same key).
    let token = get_json(
        &s,
        "/auth/token?service=gantry&scope=repository:doomed/app:pull",
    )
    .await;
    let token = token["token"].as_str().expect("a token").to_string();

    let acknowledged: Arc<Mutex<Vec<(Instant, Pushed)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut pushers = Vec::new();
    for worker in 0..8 {
        let (s, stop, acknowledged) = (s.clone(), stop.clone(), acknowledged.clone());
        pushers.push(tokio::spawn(async move {
            let mut round = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let sizes = [1024 + (round * 7919) % (256 << 10), 512];
                let pushed =
                    push_random_image(&s, &format!("team/p{worker}"), &format!("r{round}"), &sizes)
                        .await;
                acknowledged.lock().unwrap().push((Instant::now(), pushed));
                round += 1;
            }
        }));
    }
    // Past the grace window for the doomed images, while the pushers keep going.
    tokio::time::sleep(Duration::from_secs(GRACE_SECS + 1)).await;

    let backup_dir = temp.path().join("backup");
    let started = Instant::now();
    let mut backup = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["backup", path(&backup_dir), "--quiet", "--data-dir"])
        .arg(&s.data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = backup.stderr.take().unwrap();
    let (snapshot_tx, snapshot_rx) = tokio::sync::oneshot::channel();
    let stderr_reader = std::thread::spawn(move || {
        let mut snapshot_tx = Some(snapshot_tx);
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap();
            if line.contains("database snapshot taken") {
                if let Some(tx) = snapshot_tx.take() {
                    let _ = tx.send(());
                }
            }
            lines.push(line);
        }
        lines
    });
    snapshot_rx
        .await
        .expect("the backup reports its snapshot before copying blobs");
    // Now delete the doomed images and collect them, while the backup copies their blobs.
    for image in &doomed {
        let r = http()
            .delete(s.url(&format!("/v2/doomed/app/manifests/{}", image.manifest)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }
    let collector = {
        let s = s.clone();
        let backup_manifest = backup_dir.join("gantry-backup.json");
        tokio::spawn(async move {
            let r = http()
                .post(s.url(&format!("/api/v1/gc?grace_secs={GRACE_SECS}")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            let report: Value = r.json().await.unwrap();
            (backup_manifest.is_file(), report)
        })
    };
    let output = tokio::task::spawn_blocking(move || backup.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = stderr_reader.join().unwrap().join("\n");
    assert!(
        output.status.success(),
        "backup failed: {stderr}\n{}",
        text(&output.stdout)
    );
    let (backup_was_complete, report) = collector.await.unwrap();
    assert!(
        report["blobs"].as_u64().unwrap() >= 8,
        "garbage collection freed the doomed images' blobs once the backup was done: {report}"
    );
    assert!(
        backup_was_complete,
        "garbage collection deleted blobs before the backup had copied them"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for pusher in pushers {
        pusher.await.unwrap();
    }
    let before: Vec<Pushed> = acknowledged
        .lock()
        .unwrap()
        .iter()
        .filter(|(at, _)| *at < started)
        .map(|(_, pushed)| pushed.clone())
        .collect();
    assert!(
        before.len() >= 16,
        "only {} pushes before the backup",
        before.len()
    );
    assert!(
        backup_dir.join("gantry-backup.json").is_file(),
        "a finished backup has its manifest"
    );

    let restored = temp.path().join("restored");
    let out = restore_backup(&backup_dir, &restored);
    assert!(
        out.status.success(),
        "restore failed: {}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("restored the backup"),
        "{}",
        text(&out.stdout)
    );
    drop(s);
    let r = Server::start_in(&restored);
    for image in before.iter().chain(&doomed) {
        assert_pulls_complete(&r, image).await;
    }
    let ping = reqwest::Client::new()
        .get(r.url("/v2/"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        ping.status(),
        StatusCode::OK,
        "a token issued before the backup is valid after the restore"
    );
}

#[tokio::test]
async fn restore_refuses_an_incomplete_or_damaged_backup_and_a_used_or_non_empty_target() {
    let s = Server::start();
    let image = push_random_image(&s, "team/app", "v1", &[4096]).await;
    let temp = tempfile::tempdir().unwrap();
    let backup_dir = temp.path().join("backup");
    let data_dir = path(&s.data_dir).to_string();
    let out = gantry(&[
        "backup",
        path(&backup_dir),
        "--quiet",
        "--data-dir",
        &data_dir,
    ]);
    assert!(out.status.success(), "backup failed: {}", text(&out.stderr));
    let err = text(&gantry(&["backup", path(&backup_dir), "--data-dir", &data_dir]).stderr);
    assert!(
        err.contains("is not empty"),
        "backup into a used directory: {err}"
    );

    let restore = |from: &Path, to: &Path| {
        let out = restore_backup(from, to);
        assert!(
            !out.status.success(),
            "restore of {from:?} into {to:?} succeeded"
        );
        text(&out.stderr)
    };
    // The running server's directory.
    let err = restore(&backup_dir, &s.data_dir);
    assert!(err.contains("in use by a running gantry"), "{err}");
    // A directory with something in it.
    let occupied = temp.path().join("occupied");
    std::fs::create_dir(&occupied).unwrap();
    std::fs::write(occupied.join("notes.txt"), "keep me").unwrap();
    let err = restore(&backup_dir, &occupied);
    assert!(err.contains("is not empty"), "{err}");
    assert_eq!(
        std::fs::read(occupied.join("notes.txt")).unwrap(),
        b"keep me"
    );
    // A backup interrupted before its manifest was written.
    let copy_of_backup = |name: &str| {
        let copy = temp.path().join(name);
        run(Command::new("cp").arg("-a").arg(&backup_dir).arg(&copy));
        copy
    };
    let incomplete = copy_of_backup("incomplete");
    std::fs::remove_file(incomplete.join("gantry-backup.json")).unwrap();
    let target = temp.path().join("target");
    let err = restore(&incomplete, &target);
    assert!(err.contains("not a complete gantry backup"), "{err}");
    // A backup whose blob was damaged afterwards: named, and nothing is left behind.
    let damaged = copy_of_backup("damaged");
    let layer = &image.blobs[1];
    let file = damaged
        .join("storage/blobs/sha256")
        .join(&layer.hex()[..2])
        .join(layer.hex());
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    let err = restore(&damaged, &target);
    assert!(
        err.contains(&layer.to_string()) && err.contains("damaged"),
        "{err}"
    );
    assert!(
        !target.exists(),
        "a failed restore leaves no data directory"
    );
    let leftovers: Vec<_> = std::fs::read_dir(temp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("restoring"))
        .collect();
    assert!(leftovers.is_empty(), "staging left behind: {leftovers:?}");

    // The intact backup restores into an empty directory that exists already.
    std::fs::create_dir(&target).unwrap();
    let out = restore_backup(&backup_dir, &target);
    assert!(
        out.status.success(),
        "restore failed: {}",
        text(&out.stderr)
    );
    let r = Server::start_in(&target);
    assert_pulls_complete(&r, &image).await;
}
