//! Lifecycle policies against the real server. So far: tag rules.

mod common;

use std::process::Command;

use common::*;
use gantry_oci::media_type;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Pushes the blobs of an image seeded by `seed` and returns its manifest (not pushed).
async fn prepared_manifest(s: &Server, repo: &str, seed: &str) -> Vec<u8> {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":"{seed}"}}"#).into_bytes();
    let layer = format!("layer of {seed}").into_bytes();
    push_blob(s, repo, &config).await;
    push_blob(s, repo, &layer).await;
    image_manifest(&config, &[&layer])
}

#[tokio::test]
async fn tag_rules_make_tags_immutable_restrict_names_and_refuse_latest() {
    let s = Server::start();
    let admin = http();
    api_create_project(&s, "team", false).await;
    for (user, role) in [("mia", "maintainer"), ("dev", "developer")] {
        api_create_user(&s, user, "a-password", false).await;
        api_set_role(&s, "team", user, role).await;
    }
    // Developers may read the rules, not change them.
    let r = http_as("dev", "a-password")
        .put(s.url("/api/v1/projects/team/tag-rules"))
        .json(&json!({"refuse_latest": true}))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::FORBIDDEN, "DENIED").await;
    // A maintainer sets them with the CLI.
    let out = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args([
            "tag-rules",
            "set",
            "team",
            "--immutable",
            "v*",
            "--allowed",
            "v*,commit-*,dev-*",
            "--refuse-latest",
            "--json",
        ])
        .env("GANTRY_REGISTRY", &s.addr)
        .env("GANTRY_USERNAME", "mia")
        .env("GANTRY_PASSWORD", "a-password")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rules: Value = http_as("dev", "a-password")
        .get(s.url("/api/v1/projects/team/tag-rules"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        rules,
        json!({"immutable": ["v*"], "allowed": ["v*", "commit-*", "dev-*"], "refuse_latest": true})
    );

    let first = prepared_manifest(&s, "team/app", "first").await;
    let second = prepared_manifest(&s, "team/app", "second").await;
    async fn put(s: &Server, tag: &str, body: &[u8]) -> reqwest::Response {
        put_manifest(s, "team/app", tag, media_type::OCI_MANIFEST, body).await
    }
    assert_eq!(
        put(&s, "v1.0.0", &first).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        put(&s, "v1.0.0", &first).await.status(),
        StatusCode::CREATED,
        "the same digest again is fine"
    );
    let body = assert_error(
        put(&s, "v1.0.0", &second).await,
        StatusCode::FORBIDDEN,
        "DENIED",
    )
    .await;
    assert!(
        body.to_string().contains("immutable \\\"v*\\\""),
        "the refusal names the rule: {body}"
    );
    let body = assert_error(
        put(&s, "latest", &first).await,
        StatusCode::BAD_REQUEST,
        "TAG_INVALID",
    )
    .await;
    assert!(body.to_string().contains("refuse_latest"), "{body}");
    let body = assert_error(
        put(&s, "nightly", &first).await,
        StatusCode::BAD_REQUEST,
        "TAG_INVALID",
    )
    .await;
    assert!(body.to_string().contains("v*, commit-*, dev-*"), "{body}");
    // Mutable tags move freely.
    assert_eq!(
        put(&s, "dev-latest", &first).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        put(&s, "dev-latest", &second).await.status(),
        StatusCode::CREATED
    );

    // Immutable tags cannot be deleted, by tag or through their digest.
    let delete = |reference: String| {
        admin
            .delete(s.url(&format!("/v2/team/app/manifests/{reference}")))
            .send()
    };
    assert_error(
        delete("v1.0.0".into()).await.unwrap(),
        StatusCode::FORBIDDEN,
        "DENIED",
    )
    .await;
    let digest = gantry_oci::Digest::sha256_of(&first).to_string();
    assert_error(
        delete(digest).await.unwrap(),
        StatusCode::FORBIDDEN,
        "DENIED",
    )
    .await;
    assert_eq!(
        delete("dev-latest".into()).await.unwrap().status(),
        StatusCode::ACCEPTED
    );
    let tags = get_json(&s, "/v2/team/app/tags/list").await;
    assert_eq!(tags["tags"], json!(["v1.0.0"]));

    // Malformed rules are refused with a clear error, and nothing changes.
    for bad in [
        json!({"immutable": ["v/*"]}),
        json!({"imutable": ["v*"]}),
        json!({"refuse_latest": "yes"}),
    ] {
        let r = admin
            .put(s.url("/api/v1/projects/team/tag-rules"))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_error(r, StatusCode::BAD_REQUEST, "INVALID_REQUEST").await;
    }
    let audit = get_json(&s, "/api/v1/audit?project=team").await;
    assert!(audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "tag-rules.set" && e["actor"] == "mia"));
    // Rules apply per project: another project takes latest.
    push_image(&s, "other/app", "latest", "x").await;
}

fn gantry_as_admin(s: &Server, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(args)
        .env("GANTRY_REGISTRY", &s.addr)
        .env("GANTRY_USERNAME", "admin")
        .env("GANTRY_PASSWORD", ADMIN_PASSWORD)
        .output()
        .unwrap()
}

fn sorted_pairs(report: &Value, key: &str) -> Vec<String> {
    let mut pairs: Vec<String> = report[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| format!("{}:{}", p[0].as_str().unwrap(), p[1].as_str().unwrap()))
        .collect();
    pairs.sort();
    pairs
}

#[tokio::test]
async fn retention_dry_run_and_real_run_agree_and_respect_pulls_and_immutable_tags() {
    let s = Server::start();
    for tag in [
        "v1.0.0",
        "v1.0.1",
        "v1.0.2",
        "v1.0.3",
        "v1.0.4",
        "commit-old",
        "commit-new",
        "dev-pulled",
        "dev-idle",
    ] {
        push_image(&s, "team/app", tag, tag).await;
    }
    // A pull by tag, as docker does it: HEAD by tag, then GET by digest.
    let head = http()
        .head(s.url("/v2/team/app/manifests/dev-pulled"))
        .header("accept", media_type::OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    let digest = header(&head, "docker-content-digest").unwrap().to_string();
    let r = http()
        .get(s.url(&format!("/v2/team/app/manifests/{digest}")))
        .header("accept", media_type::OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // v1.0.0 is protected by an immutable tag rule.
    let r = http()
        .put(s.url("/api/v1/projects/team/tag-rules"))
        .json(&json!({"immutable": ["v1.0.0"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("retention.toml");
    std::fs::write(
        &policy,
        "[[rules]]\ntags = { include = [\"v*\"] }\nkeep = { newest_per_version_line = 2 }\n\n\
         [[rules]]\ntags = { include = [\"commit-*\"] }\nkeep = { most_recently_pushed = 1 }\n\n\
         [[rules]]\ntags = { include = [\"dev-*\"] }\nkeep = { pulled_within_days = 7 }\n",
    )
    .unwrap();
    let out = gantry_as_admin(&s, &["retention", "set", "team", policy.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = gantry_as_admin(&s, &["retention", "show", "team"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("newest_per_version_line = 2"));

    let out = gantry_as_admin(&s, &["retention", "run", "team", "--dry-run", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dry: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(dry["dry_run"], true);
    assert_eq!(
        sorted_pairs(&dry, "delete_tags"),
        [
            "team/app:commit-old",
            "team/app:dev-idle",
            "team/app:v1.0.0",
            "team/app:v1.0.1",
            "team/app:v1.0.2"
        ]
    );
    assert_eq!(sorted_pairs(&dry, "protected"), ["team/app:v1.0.0"]);
    assert!(dry["freed_bytes"].as_u64().unwrap() > 0);
    let kept = dry["keep"].as_array().unwrap();
    let dev = kept
        .iter()
        .find(|k| k["tags"] == json!(["dev-pulled"]))
        .unwrap();
    assert_eq!(
        dev["reasons"][0],
        "rule 3 (pulled_within_days) keeps dev-pulled"
    );
    // A dry run deletes nothing.
    let all_tags = json!([
        "commit-new",
        "commit-old",
        "dev-idle",
        "dev-pulled",
        "v1.0.0",
        "v1.0.1",
        "v1.0.2",
        "v1.0.3",
        "v1.0.4"
    ]);
    assert_eq!(
        get_json(&s, "/v2/team/app/tags/list").await["tags"],
        all_tags
    );

    let r = http()
        .post(s.url("/api/v1/projects/team/retention/runs"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let real: Value = r.json().await.unwrap();
    assert_eq!(real["dry_run"], false);
    for key in ["delete_tags", "delete_manifests", "protected"] {
        assert_eq!(
            sorted_pairs(&real, key),
            sorted_pairs(&dry, key),
            "dry run and real run agree on {key}"
        );
    }
    assert_eq!(real["freed_bytes"], dry["freed_bytes"]);
    assert_eq!(
        get_json(&s, "/v2/team/app/tags/list").await["tags"],
        json!(["commit-new", "dev-pulled", "v1.0.0", "v1.0.3", "v1.0.4"])
    );
    let history = get_json(&s, "/api/v1/projects/team/retention/runs").await;
    let runs: Vec<bool> = history["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["dry_run"].as_bool().unwrap())
        .collect();
    assert_eq!(runs, [false, true]);
    // Policies are checked when set.
    let r = http()
        .put(s.url("/api/v1/projects/team/retention"))
        .json(&json!({"rules": [{"keep": {"forever": 1}}]}))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "INVALID_REQUEST").await;
}

async fn gc(s: &Server, dry_run: bool, grace_secs: u64) -> Value {
    let r = http()
        .post(s.url(&format!(
            "/api/v1/gc?dry_run={dry_run}&grace_secs={grace_secs}"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

/// Fetches the manifest `reference` of `repo` and every blob it names: each must answer 200.
async fn assert_pulls_completely(s: &Server, repo: &str, reference: &str) {
    let manifest = get_json(s, &format!("/v2/{repo}/manifests/{reference}")).await;
    let blobs = manifest["layers"].as_array().expect("an image manifest");
    for blob in blobs.iter().chain([&manifest["config"]]) {
        let digest = blob["digest"].as_str().unwrap();
        let r = http()
            .get(s.url(&format!("/v2/{repo}/blobs/{digest}")))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "{repo}:{reference} lost {digest}"
        );
    }
}

fn blob_file(s: &Server, digest: &gantry_oci::Digest) -> std::path::PathBuf {
    s.data_dir
        .join("storage/blobs/sha256")
        .join(&digest.hex()[..2])
        .join(digest.hex())
}

#[tokio::test]
async fn gc_collects_unreachable_manifests_and_blobs_and_keeps_everything_tagged() {
    let s = Server::start();
    let shared = b"shared base layer".to_vec();
    let push = |tag: Option<&'static str>, own: &'static [u8]| {
        let s = &s;
        let shared = shared.clone();
        async move {
            let config = [b"config of ".as_slice(), own].concat();
            push_blob(s, "team/app", &config).await;
            push_blob(s, "team/app", &shared).await;
            push_blob(s, "team/app", own).await;
            let manifest = image_manifest(&config, &[&shared, own]);
            let digest = gantry_oci::Digest::sha256_of(&manifest).to_string();
            let reference = tag.map_or(digest.clone(), str::to_string);
            let r = put_manifest(
                s,
                "team/app",
                &reference,
                media_type::OCI_MANIFEST,
                &manifest,
            )
            .await;
            assert_eq!(r.status(), StatusCode::CREATED);
            (
                digest,
                gantry_oci::Digest::sha256_of(own),
                gantry_oci::Digest::sha256_of(&config),
            )
        }
    };
    let (a, a_own, _) = push(Some("a"), b"layer a").await;
    let (b, b_own, b_config) = push(Some("b"), b"layer b").await;
    let (c, c_own, _) = push(None, b"layer c").await;
    let dangling = push_blob(&s, "team/app", b"uploaded, never used").await;
    let r = http()
        .delete(s.url("/v2/team/app/manifests/b"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    // Inside the grace window nothing is touched.
    let report = gc(&s, false, 3600).await;
    assert_eq!(
        (
            report["manifests"].as_array().unwrap().len(),
            report["blobs"].as_u64()
        ),
        (0, Some(0))
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let dry = gc(&s, true, 0).await;
    let mut listed: Vec<String> = dry["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m[1].as_str().unwrap().to_string())
        .collect();
    listed.sort();
    let mut want = vec![b.clone(), c.clone()];
    want.sort();
    assert_eq!(listed, want);
    assert!(blob_file(&s, &b_own).exists(), "a dry run deletes nothing");

    let report = gc(&s, false, 0).await;
    assert_eq!(report["manifests"].as_array().unwrap().len(), 2);
    // b's and c's own layers and configs, and the dangling blob: 5 blobs.
    assert_eq!(report["blobs"], 5, "{report}");
    for gone in [&b_own, &c_own, &b_config, &dangling] {
        assert!(!blob_file(&s, gone).exists(), "{gone} was collected");
        let r = http()
            .head(s.url(&format!("/v2/team/app/blobs/{gone}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
    for digest in [&b, &c] {
        let r = http()
            .get(s.url(&format!("/v2/team/app/manifests/{digest}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
    // The tagged image pulls completely, its shared layer included.
    assert_pulls_completely(&s, "team/app", "a").await;
    assert!(blob_file(&s, &a_own).exists());
    assert_eq!(
        gantry_oci::Digest::sha256_of(&get_bytes(&s, &format!("/v2/team/app/manifests/{a}")).await)
            .to_string(),
        a
    );
    // A second collection finds nothing more.
    let again = gc(&s, false, 0).await;
    assert_eq!(
        (
            again["manifests"].as_array().unwrap().len(),
            again["blobs"].as_u64()
        ),
        (0, Some(0))
    );
}

#[tokio::test]
async fn gc_stress_pushes_and_pulls_go_on_and_nothing_reachable_is_lost() {
    let s = std::sync::Arc::new(Server::start());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..4 {
        let (s, stop) = (s.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut round = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let repo = format!("stress/w{worker}");
                // Every image shares a base layer with all others, and has one of its own.
                let config = format!("config {worker} {round}").into_bytes();
                let own = format!("layer {worker} {round}").into_bytes();
                let base = b"the shared base".to_vec();
                for blob in [&config, &base, &own] {
                    push_blob(&s, &repo, blob).await;
                }
                let manifest = image_manifest(&config, &[&base, &own]);
                let tag = format!("r{}", round % 3); // tags move: older manifests become garbage
                let r = put_manifest(&s, &repo, &tag, media_type::OCI_MANIFEST, &manifest).await;
                assert_eq!(r.status(), StatusCode::CREATED, "push during GC");
                // Pull something tagged, completely.
                assert_pulls_completely(&s, &repo, &tag).await;
                round += 1;
            }
            round
        }));
    }
    let collector = {
        let (s, stop) = (s.clone(), stop.clone());
        tokio::spawn(async move {
            let mut runs = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                gc(&s, false, 5).await;
                runs += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            runs
        })
    };
    tokio::time::sleep(std::time::Duration::from_secs(8)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut pushed = 0;
    for w in workers {
        pushed += w.await.unwrap();
    }
    let runs = collector.await.unwrap();
    assert!(
        pushed > 20 && runs > 5,
        "{pushed} pushes, {runs} collections"
    );

    // Every tag still pulls completely.
    for worker in 0..4 {
        let repo = format!("stress/w{worker}");
        let tags = get_json(&s, &format!("/v2/{repo}/tags/list")).await;
        for tag in tags["tags"].as_array().unwrap() {
            assert_pulls_completely(&s, &repo, tag.as_str().unwrap()).await;
        }
    }
    // Once everything is older than the grace window, everything unreferenced goes.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    gc(&s, false, 0).await;
    let left = gc(&s, true, 0).await;
    assert_eq!(
        (
            left["manifests"].as_array().unwrap().len(),
            left["links"].as_u64(),
            left["blobs"].as_u64()
        ),
        (0, Some(0), Some(0))
    );
    let files = walk_count(&s.data_dir.join("storage/blobs"));
    // Per worker: at most 3 tagged manifests × (config + own layer), plus the shared base.
    assert!(files <= 4 * 3 * 2 + 1, "{files} blob files remain");
}

fn walk_count(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().path())
                .map(|p| if p.is_dir() { walk_count(&p) } else { 1 })
                .sum()
        })
        .unwrap_or(0)
}
