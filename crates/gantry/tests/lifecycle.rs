//! Lifecycle policies against the real server: tag rules, retention, garbage collection,
//! quotas.

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
    gantry_on(s).args(args).output().unwrap()
}

/// The items of a plan list `key` as `repository:name` (the tag, or else the digest), sorted.
fn sorted_pairs(report: &Value, key: &str) -> Vec<String> {
    let mut pairs: Vec<String> = report[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let name = p.get("tag").unwrap_or(&p["digest"]);
            format!(
                "{}:{}",
                p["repository"].as_str().unwrap(),
                name.as_str().unwrap()
            )
        })
        .collect();
    pairs.sort();
    pairs
}

/// Writes `policy` to a file and sets it as `project`'s retention policy with the CLI.
fn set_policy(s: &Server, dir: &std::path::Path, project: &str, policy: &str) {
    let file = dir.join("retention.toml");
    std::fs::write(&file, policy).unwrap();
    let out = gantry_as_admin(s, &["retention", "set", project, file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `gantry retention run PROJECT [--dry-run] --json`.
fn retention_run(s: &Server, project: &str, dry_run: bool) -> Value {
    let mut args = vec!["retention", "run", project, "--json"];
    if dry_run {
        args.push("--dry-run");
    }
    let out = gantry_as_admin(s, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
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
    api_set_immutable_tags(&s, "team", &["v1.0.0"]).await;

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
    // A run flushes its own server's pull counts; with several replicas the pull may have
    // been counted by another, which writes it within its flush interval (a bounded wait).
    eventually(
        PULL_COUNT_STALENESS,
        "the pull of dev-pulled recorded",
        || async {
            let listed = get_json(&s, "/api/v1/repositories/team%2Fapp/artifacts?limit=100").await;
            let artifacts = listed["artifacts"].as_array().unwrap().clone();
            artifacts
                .iter()
                .any(|a| a["digest"] == digest.as_str() && a["pulls"] == 1)
                .then_some(())
        },
    )
    .await;

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
            "team/app:v1.0.1",
            "team/app:v1.0.2"
        ],
        "the protected v1.0.0 is not among the deletions"
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

/// Pushes a two-platform index tagged `tag` over two untagged image manifests (pushed by
/// digest, as `manifest push --all` does); returns the index digest and the children's.
async fn push_multi_arch_index(s: &Server, repo: &str, tag: &str) -> (String, Vec<String>) {
    let mut entries = Vec::new();
    let mut children = Vec::new();
    for arch in ["amd64", "arm64"] {
        let manifest = prepared_manifest(s, repo, &format!("{tag}-{arch}")).await;
        let digest = push_manifest_by_digest(s, repo, media_type::OCI_MANIFEST, &manifest).await;
        let mut entry = descriptor(media_type::OCI_MANIFEST, &manifest);
        entry["platform"] = json!({"architecture": arch, "os": "linux"});
        entries.push(entry);
        children.push(digest);
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": entries,
    }))
    .unwrap();
    let r = put_manifest(s, repo, tag, media_type::OCI_INDEX, &index).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    (gantry_oci::Digest::sha256_of(&index).to_string(), children)
}

async fn manifest_status(s: &Server, repo: &str, digest: &str) -> StatusCode {
    http()
        .head(s.url(&format!("/v2/{repo}/manifests/{digest}")))
        .header(
            "accept",
            format!("{},{}", media_type::OCI_MANIFEST, media_type::OCI_INDEX),
        )
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn retention_never_deletes_children_of_a_kept_index() {
    let s = Server::start();
    let (index, children) = push_multi_arch_index(&s, "team/app", "v1.0.1").await;
    // An unrelated untagged manifest: the untagged rule may take that one.
    let stray = prepared_manifest(&s, "team/app", "stray").await;
    let stray_digest =
        push_manifest_by_digest(&s, "team/app", media_type::OCI_MANIFEST, &stray).await;

    let dir = tempfile::tempdir().unwrap();
    set_policy(
        &s,
        dir.path(),
        "team",
        "[[rules]]\ntags = { include = [\"v1.0.1\"] }\nkeep = \"always\"\n\n\
         [[rules]]\nuntagged = true\nkeep = { most_recently_pushed = 0 }\n",
    );
    let dry = retention_run(&s, "team", true);
    assert_eq!(
        sorted_pairs(&dry, "delete_manifests"),
        [format!("team/app:{stray_digest}")],
        "only the stray goes; the index's children are part of the kept v1.0.1"
    );
    for child in &children {
        let survivor = dry["keep"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["digest"] == json!(child))
            .unwrap();
        assert_eq!(
            survivor["reasons"],
            json!([format!("child of index {index}, which stays")])
        );
    }
    let real = retention_run(&s, "team", false);
    assert_eq!(
        sorted_pairs(&real, "delete_manifests"),
        sorted_pairs(&dry, "delete_manifests")
    );
    assert_eq!(
        manifest_status(&s, "team/app", &stray_digest).await,
        StatusCode::NOT_FOUND
    );
    for child in &children {
        assert_eq!(manifest_status(&s, "team/app", child).await, StatusCode::OK);
    }
    // The real client copies the whole index, every platform.
    let out = tempfile::tempdir().unwrap();
    run(skopeo(out.path())
        .args(["copy", "--all", "--src-tls-verify=false", "--src-creds"])
        .arg(format!("admin:{ADMIN_PASSWORD}"))
        .arg(format!("docker://{}/team/app:v1.0.1", s.addr))
        .arg(format!("oci:{}:v1.0.1", out.path().join("copy").display())));
    let copied = std::fs::read_dir(out.path().join("copy/blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(
        copied,
        1 + 2 * 3,
        "the index, and each platform's manifest, config and layer"
    );
}

#[tokio::test]
async fn retention_dry_run_real_run_history_and_what_is_gone_are_one_plan_under_immutable_tags() {
    let s = Server::start();
    let mut digests = std::collections::BTreeMap::new();
    let mut push = |tag: &'static str, digest: String| digests.insert(tag, digest);
    for tag in [
        "v1.0.0", "v1.0.1", "v1.0.2", "v1.0.3", "v1.0.4", "v1.1.0", "v1.1.1",
    ] {
        push(
            tag,
            push_image(&s, "team/app", tag, tag).await.1.to_string(),
        );
    }
    // commit-old shares v1.0.0's digest and is the oldest commit tag; commit-mid and
    // commit-new follow within moments (likely the same second: sub-second order decides).
    let (v100, _) = push_image(&s, "team/app", "v1.0.0", "v1.0.0").await;
    let r = put_manifest(
        &s,
        "team/app",
        "commit-old",
        media_type::OCI_MANIFEST,
        &v100,
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    for tag in ["commit-mid", "commit-new", "dev-idle", "scratch"] {
        push(
            tag,
            push_image(&s, "team/app", tag, tag).await.1.to_string(),
        );
    }
    let before = get_json(&s, "/v2/team/app/tags/list").await["tags"].clone();
    // The README's recommended setup: immutable v* and the newest 3 of each version line.
    api_set_immutable_tags(&s, "team", &["v*"]).await;

    let dir = tempfile::tempdir().unwrap();
    set_policy(
        &s,
        dir.path(),
        "team",
        "[[rules]]\ntags = { include = [\"v*\"] }\nkeep = { newest_per_version_line = 3 }\n\n\
         [[rules]]\ntags = { include = [\"commit-*\"] }\nkeep = { most_recently_pushed = 1 }\n\n\
         [[rules]]\ntags = { include = [\"dev-*\"] }\nkeep = { pulled_within_days = 7 }\n",
    );
    let text = gantry_as_admin(&s, &["retention", "run", "team", "--dry-run"]);
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    let dry = retention_run(&s, "team", true);
    let expected_tags = [
        "team/app:commit-mid",
        "team/app:dev-idle",
        "team/app:scratch",
    ];
    assert_eq!(sorted_pairs(&dry, "delete_tags"), expected_tags);
    assert_eq!(
        sorted_pairs(&dry, "protected"),
        ["team/app:v1.0.0", "team/app:v1.0.1"]
    );
    let mut expected_manifests: Vec<String> = ["commit-mid", "dev-idle", "scratch"]
        .iter()
        .map(|t| format!("team/app:{}", digests[t]))
        .collect();
    expected_manifests.sort();
    assert_eq!(sorted_pairs(&dry, "delete_manifests"), expected_manifests);
    // Every deletion carries its reason; the protected are listed apart, in no total.
    let reasons: Vec<(String, String)> = dry["delete_tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["tag"].as_str().unwrap().into(),
                t["reason"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(reasons.contains(&("scratch".into(), "selected by no rule".into())));
    assert!(reasons.contains(&(
        "commit-mid".into(),
        "not kept by rule 2 (most_recently_pushed)".into()
    )));
    assert!(text.contains("would delete 3 tags:"), "{text}");
    assert!(text.contains("would delete 3 manifests"), "{text}");
    assert!(
        text.contains(
            "protected by immutable tag rules (2 tags; kept, and in none of the totals above):"
        ),
        "{text}"
    );
    assert!(
        text.contains("team/app:scratch — selected by no rule"),
        "{text}"
    );

    let real = retention_run(&s, "team", false);
    for key in ["delete_tags", "delete_manifests", "protected"] {
        assert_eq!(sorted_pairs(&real, key), sorted_pairs(&dry, key), "{key}");
    }
    assert_eq!(real["freed_bytes"], dry["freed_bytes"]);
    // What is gone is exactly the plan.
    let after = get_json(&s, "/v2/team/app/tags/list").await["tags"].clone();
    let gone: Vec<String> = before
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| !after.as_array().unwrap().contains(t))
        .map(|t| format!("team/app:{}", t.as_str().unwrap()))
        .collect();
    assert_eq!(gone, expected_tags);
    for (tag, digest) in &digests {
        let expected = if ["commit-mid", "dev-idle", "scratch"].contains(tag) {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::OK
        };
        assert_eq!(
            manifest_status(&s, "team/app", digest).await,
            expected,
            "{tag}"
        );
    }
    // The history records the same numbers for every run.
    let history = get_json(&s, "/api/v1/projects/team/retention/runs").await;
    for run in history["runs"].as_array().unwrap() {
        assert_eq!(
            (
                run["deleted_tags"].clone(),
                run["deleted_manifests"].clone(),
                run["freed_bytes"].clone()
            ),
            (json!(3), json!(3), dry["freed_bytes"].clone()),
            "{run}"
        );
    }
    let dry_runs: Vec<bool> = history["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["dry_run"].as_bool().unwrap())
        .collect();
    assert_eq!(
        dry_runs,
        [false, true, true],
        "the real run and both dry runs"
    );
}

#[tokio::test]
async fn retention_policy_errors_point_at_the_users_toml_and_say_what_is_accepted() {
    let s = Server::start();
    push_image(&s, "team/app", "v1.0.1", "v1.0.1").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("retention.toml");
    std::fs::write(
        &file,
        "[[rules]]\ntags = { include = [\"v1.0.1\"] }\nkeep = { always = true }\n",
    )
    .unwrap();
    let out = gantry_as_admin(&s, &["retention", "set", "team", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 3, column 8"), "{stderr}");
    assert!(
        stderr.contains(r#"`always` takes no value: write keep = "always""#),
        "{stderr}"
    );
    std::fs::write(
        &file,
        "[[rules]]\ntags = { include = [\"v*\"] }\nkeep = { newest = 3 }\n",
    )
    .unwrap();
    let out = gantry_as_admin(&s, &["retention", "set", "team", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 3") && stderr.contains("newest_per_version_line"),
        "{stderr}"
    );
    // The documented form is accepted and shown back.
    set_policy(
        &s,
        dir.path(),
        "team",
        "[[rules]]\ntags = { include = [\"v1.0.1\"] }\nkeep = \"always\"\n",
    );
    let out = gantry_as_admin(&s, &["retention", "show", "team"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(r#"keep = "always""#));
}

async fn gc(s: &Server, dry_run: bool, grace_secs: u64) -> Value {
    gc_at(&s.base, dry_run, grace_secs).await
}

/// [`gc`] on the server at `base` (one replica itself, past the balancer).
async fn gc_at(base: &str, dry_run: bool, grace_secs: u64) -> Value {
    let r = http()
        .post(format!(
            // pause_ms: the throttle's path runs too (1 ms between batches).
            "{base}/api/v1/gc?dry_run={dry_run}&grace_secs={grace_secs}&pause_ms=1"
        ))
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
    assert!(s.stores_blob(&b_own).await, "a dry run deletes nothing");

    let report = gc(&s, false, 0).await;
    assert_eq!(report["manifests"].as_array().unwrap().len(), 2);
    // The dry run said exactly what the real run then freed.
    for figure in ["manifest_bytes", "links", "blobs", "blob_bytes"] {
        assert_eq!(
            dry[figure], report[figure],
            "{figure}: dry {dry} real {report}"
        );
    }
    // b's and c's own layers and configs, and the dangling blob: 5 blobs.
    assert_eq!(report["blobs"], 5, "{report}");
    for gone in [&b_own, &c_own, &b_config, &dangling] {
        assert!(!s.stores_blob(gone).await, "{gone} was collected");
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
    assert!(s.stores_blob(&a_own).await);
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
    // With several replicas, the collection runs on the first one while the pushes reusing
    // the shared base layer go through the balancer to all of them (issue 12).
    let collecting_at = if s.replicas() > 1 {
        s.replica_base(0)
    } else {
        s.base.clone()
    };
    let collector = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut runs = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                gc_at(&collecting_at, false, 5).await;
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
    let files = s.stored_blobs().await;
    // Per worker: at most 3 tagged manifests × (config + own layer), plus the shared base.
    assert!(files <= 4 * 3 * 2 + 1, "{files} blob files remain");
}

/// The project's live usage (bytes, artifacts) after `gantry quota recount` confirmed it.
fn recounted_usage(s: &Server, project: &str) -> (i64, i64) {
    let out = gantry_as_admin(s, &["quota", "recount", project, "--json"]);
    assert!(out.status.success(), "{out:?}");
    let recount: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(recount["agree"], true, "live usage drifted: {recount}");
    (
        recount["live"]["bytes"].as_i64().unwrap(),
        recount["live"]["artifacts"].as_i64().unwrap(),
    )
}

fn set_quota(s: &Server, project: &str, limits: &[&str]) {
    let out = gantry_as_admin(s, &[&["quota", "set", project], limits].concat());
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Quota of"));
}

fn len(bytes: &[u8]) -> i64 {
    bytes.len() as i64
}

#[tokio::test]
async fn quota_refuses_pushes_past_the_limit_and_usage_stays_exact_through_deletes_and_gc() {
    let s = Server::start();
    api_create_project(&s, "team", false).await;
    set_quota(&s, "team", &["--storage", "20KB", "--artifacts", "3"]);
    let big = vec![b'x'; 8000];
    let push = |repo: &'static str, tag: &'static str, config: &'static [u8]| {
        let (s, big) = (&s, big.clone());
        async move {
            push_blob(s, repo, &big).await;
            push_blob(s, repo, config).await;
            let manifest = image_manifest(config, &[&big]);
            let r = put_manifest(s, repo, tag, media_type::OCI_MANIFEST, &manifest).await;
            (r, manifest)
        }
    };
    let (r, manifest_a) = push("team/a", "v1", b"{\"config\":\"a\"}").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let mut expected = 8000 + len(b"{\"config\":\"a\"}") + len(&manifest_a);
    assert_eq!(recounted_usage(&s, "team"), (expected, 1));
    // The same layer in another repository of the project is not counted twice.
    let (r, manifest_b) = push("team/b", "v1", b"{\"config\":\"b\"}").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    expected += len(b"{\"config\":\"b\"}") + len(&manifest_b);
    assert_eq!(recounted_usage(&s, "team"), (expected, 2));
    // Other projects are counted apart.
    push_image(&s, "other/app", "v1", "o").await;
    assert_eq!(recounted_usage(&s, "team"), (expected, 2));

    // A blob past the storage limit is refused with a message that says what to do, and
    // leaves nothing behind.
    let huge = vec![b'y'; 12_000];
    let huge_digest = gantry_oci::Digest::sha256_of(&huge);
    let r = http()
        .post(s.url(&format!("/v2/team/a/blobs/uploads/?digest={huge_digest}")))
        .body(huge.clone())
        .send()
        .await
        .unwrap();
    let body = assert_error(r, StatusCode::FORBIDDEN, "DENIED").await;
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("storage quota exceeded") && message.contains("gantry quota set team"),
        "{message}"
    );
    assert!(!s.stores_blob(&huge_digest).await);
    // The same through a chunked upload: refused at the last request, the session ends.
    let r = http()
        .post(s.url("/v2/team/a/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = header(&r, "location").unwrap().to_string();
    let r = patch_chunk(&s, &location, &format!("0-{}", huge.len() - 1), &huge).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let separator = if location.contains('?') { '&' } else { '?' };
    let r = http()
        .put(s.url(&format!("{location}{separator}digest={huge_digest}")))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::FORBIDDEN, "DENIED").await;
    assert!(!s.stores_blob(&huge_digest).await);
    let r = http().get(s.url(&location)).send().await.unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    assert_eq!(recounted_usage(&s, "team"), (expected, 2));

    // Past the artifact limit a manifest is refused; tagging an existing one again is not a
    // new artifact.
    push_blob(&s, "team/a", b"{\"config\":\"c\"}").await;
    set_quota(&s, "team", &["--artifacts", "2"]);
    let manifest_c = image_manifest(b"{\"config\":\"c\"}", &[&big]);
    let r = put_manifest(&s, "team/a", "v2", media_type::OCI_MANIFEST, &manifest_c).await;
    let body = assert_error(r, StatusCode::FORBIDDEN, "DENIED").await;
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("artifact quota exceeded"));
    expected += len(b"{\"config\":\"c\"}"); // its config blob was linked before the refusal
    let r = put_manifest(&s, "team/a", "again", media_type::OCI_MANIFEST, &manifest_a).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(recounted_usage(&s, "team"), (expected, 2));

    // Deleting: a manifest's own bytes go at once, the blobs only it used once GC unlinks them
    // (the shared layer stays, team/a still uses it).
    let digest_b = gantry_oci::Digest::sha256_of(&manifest_b);
    let r = http()
        .delete(s.url(&format!("/v2/team/b/manifests/{digest_b}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    expected -= len(&manifest_b);
    assert_eq!(recounted_usage(&s, "team"), (expected, 1));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    gc(&s, false, 0).await;
    expected -= len(b"{\"config\":\"b\"}") + len(b"{\"config\":\"c\"}");
    assert_eq!(recounted_usage(&s, "team"), (expected, 1));
    assert_eq!(
        expected,
        8000 + len(b"{\"config\":\"a\"}") + len(&manifest_a)
    );

    // A full project refuses a new upload before any byte is sent.
    set_quota(&s, "team", &["--storage", &expected.to_string()]);
    let r = http()
        .post(s.url("/v2/team/a/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let body = assert_error(r, StatusCode::FORBIDDEN, "DENIED").await;
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("storage quota exceeded"));

    // A real client shows the reason.
    let dir = tempfile::tempdir().unwrap();
    make_layout(dir.path(), "v1", &[("app/data", b"some data")]);
    let stderr = fails(
        skopeo(dir.path())
            .args(["copy", "--dest-tls-verify=false", "--dest-creds"])
            .arg(format!("admin:{ADMIN_PASSWORD}"))
            .arg(format!("oci:{}:v1", dir.path().join("layout").display()))
            .arg(format!("docker://{}/team/c:v1", s.addr)),
    );
    assert!(stderr.contains("quota exceeded"), "{stderr}");

    // Lifting the limit lets pushes through again; `quota show` and `quota list` report it.
    set_quota(&s, "team", &["--storage", "unlimited"]);
    let out = gantry_as_admin(&s, &["quota", "show", "team"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("(unlimited)") && shown.contains("1 of 2"),
        "{shown}"
    );
    let out = gantry_as_admin(&s, &["quota", "list", "--json"]);
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let projects: Vec<&str> = listed["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["project"].as_str().unwrap())
        .collect();
    assert_eq!(projects, ["other", "team"]);
    // Only system administrators set quotas.
    api_create_user(&s, "owner", "a-password", false).await;
    api_set_role(&s, "team", "owner", "project-admin").await;
    let r = http_as("owner", "a-password")
        .put(s.url("/api/v1/projects/team/quota"))
        .json(&json!({"storage_bytes": null, "artifacts": null}))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::FORBIDDEN, "DENIED").await;
    let r = http()
        .put(s.url("/api/v1/projects/team/quota"))
        .json(&json!({"storage_bytes": -1}))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "INVALID_REQUEST").await;
}

#[tokio::test]
async fn quota_is_never_exceeded_and_stays_exact_under_concurrent_pushes_deletes_and_gc() {
    let s = std::sync::Arc::new(Server::start());
    api_create_project(&s, "busy", false).await;
    const LIMIT: i64 = 60_000;
    set_quota(&s, "busy", &["--storage", &LIMIT.to_string()]);
    let mut workers = Vec::new();
    for worker in 0..8 {
        let s = s.clone();
        workers.push(tokio::spawn(async move {
            let (mut kept, mut refusals) = (Vec::new(), 0);
            for round in 0..6 {
                let repo = format!("busy/w{}", worker % 4);
                let layer = vec![b'a' + (worker * 6 + round) as u8; 3000];
                let config = format!("config {worker} {round}").into_bytes();
                let mut refused = false;
                for blob in [&layer, &config] {
                    let digest = gantry_oci::Digest::sha256_of(blob);
                    let r = http()
                        .post(s.url(&format!("/v2/{repo}/blobs/uploads/?digest={digest}")))
                        .body(blob.clone())
                        .send()
                        .await
                        .unwrap();
                    match r.status() {
                        StatusCode::CREATED => {}
                        StatusCode::FORBIDDEN => refused = true,
                        other => panic!("unexpected {other}"),
                    }
                }
                if refused {
                    refusals += 1;
                    continue;
                }
                let manifest = image_manifest(&config, &[&layer]);
                let tag = format!("w{worker}-r{round}");
                let r = put_manifest(&s, &repo, &tag, media_type::OCI_MANIFEST, &manifest).await;
                match r.status() {
                    StatusCode::CREATED => {}
                    StatusCode::FORBIDDEN => {
                        refusals += 1;
                        continue;
                    }
                    // Only if this push took longer than the collector's grace window.
                    StatusCode::BAD_REQUEST => {
                        assert_error(r, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN").await;
                        continue;
                    }
                    other => panic!("unexpected {other}"),
                }
                // Every other image is deleted again, making room for others.
                if round % 2 == 0 {
                    kept.push(manifest);
                } else {
                    let digest = gantry_oci::Digest::sha256_of(&manifest);
                    let r = http()
                        .delete(s.url(&format!("/v2/{repo}/manifests/{digest}")))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), StatusCode::ACCEPTED);
                }
            }
            (kept, refusals)
        }));
    }
    let collector = {
        let s = s.clone();
        tokio::spawn(async move {
            for _ in 0..10 {
                // A grace window of 1 s, not 0: with 0, a collection may take the blobs of a
                // push whose manifest has not arrived yet (what the grace window is for).
                gc(&s, false, 1).await;
                let quota = get_json(&s, "/api/v1/projects/busy/quota").await;
                let used = quota["storage"]["used_bytes"].as_i64().unwrap();
                assert!(used <= LIMIT, "usage {used} passed the limit {LIMIT}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        })
    };
    let (mut kept, mut refusals) = (Vec::new(), 0);
    for w in workers {
        let (worker_kept, worker_refusals) = w.await.unwrap();
        kept.extend(worker_kept);
        refusals += worker_refusals;
    }
    assert!(
        refusals > 0,
        "the limit was never reached: the test shows nothing"
    );
    collector.await.unwrap();
    let during = recounted_usage(&s, "busy");
    assert!(during.0 <= LIMIT, "{during:?}");

    // Once GC has removed everything untagged, usage is exactly what the tagged images hold.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    gc(&s, false, 0).await;
    let mut blobs = std::collections::HashMap::new();
    let mut manifests = std::collections::HashMap::new();
    for manifest in &kept {
        let parsed: Value = serde_json::from_slice(manifest).unwrap();
        for blob in [&parsed["config"], &parsed["layers"][0]] {
            blobs.insert(
                blob["digest"].as_str().unwrap().to_string(),
                blob["size"].as_i64().unwrap(),
            );
        }
        manifests.insert(gantry_oci::Digest::sha256_of(manifest), len(manifest));
    }
    let want_bytes: i64 = blobs.values().sum::<i64>() + manifests.values().sum::<i64>();
    assert_eq!(
        recounted_usage(&s, "busy"),
        (want_bytes, manifests.len() as i64)
    );
    assert!(!kept.is_empty());
}

#[tokio::test]
async fn retention_runs_by_itself_on_its_cron_schedule() {
    let s = Server::start();
    push_image(&s, "team/app", "dev-idle", "idle").await;
    push_image(&s, "team/app", "v1.0.0", "release").await;
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("retention.toml");
    // Every second (cron with a seconds field), so that the test need not wait for a minute.
    std::fs::write(
        &policy,
        "schedule = \"* * * * * *\"\n\n\
         [[rules]]\ntags = { include = [\"dev-*\"] }\nkeep = { pulled_within_days = 7 }\n\n\
         [[rules]]\ntags = { include = [\"v*\"] }\nkeep = \"always\"\n",
    )
    .unwrap();
    let out = gantry_as_admin(&s, &["retention", "set", "team", policy.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let out = gantry_as_admin(&s, &["retention", "show", "team"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("schedule = \"* * * * * *\""), "{shown}");

    let mut history = Value::Null;
    for _ in 0..100 {
        history = get_json(&s, "/api/v1/projects/team/retention/runs").await;
        if history["runs"]
            .as_array()
            .is_some_and(|runs| runs.iter().any(|r| r["actor"] == "scheduler"))
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let run = history["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["actor"] == "scheduler")
        .unwrap_or_else(|| panic!("no scheduled run within 10 s: {history}"));
    assert_eq!(run["dry_run"], false);
    let tags = get_json(&s, "/v2/team/app/tags/list").await;
    assert_eq!(
        tags["tags"],
        json!(["v1.0.0"]),
        "the idle dev tag went by schedule"
    );
    // Each firing is a job in the history, with its result (recorded just after the run).
    let job = eventually(
        std::time::Duration::from_secs(20),
        "the run that deleted the tag, as a job",
        || async {
            let out = gantry_as_admin(&s, &["jobs", "list", "--kind", "retention", "--json"]);
            assert!(out.status.success(), "{out:?}");
            let jobs: Value = serde_json::from_slice(&out.stdout).unwrap();
            jobs["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|j| j["state"] == "succeeded" && j["result"]["deleted_tags"] == 1)
                .cloned()
        },
    )
    .await;
    assert_eq!(job["subject"], "project:team");
    assert_eq!(job["attempts"], 1);
    let out = gantry_as_admin(&s, &["jobs", "show", &job["id"].to_string()]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && shown.contains("retention (succeeded)"),
        "{out:?}"
    );

    // A malformed schedule is refused with the expected form.
    let r = http()
        .put(s.url("/api/v1/projects/team/retention"))
        .json(&json!({"rules": [], "schedule": "daily"}))
        .send()
        .await
        .unwrap();
    let body = assert_error(r, StatusCode::BAD_REQUEST, "INVALID_REQUEST").await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("0 3 * * *"),
        "{body}"
    );
}

/// Retention counted cosign's `sha256-<hex>.sig` tags as artifacts of their own: a rule
/// keeping the newest tag kept the newest signature and deleted the image it signs. A
/// signature now goes and stays with its image, and keeps its tag.
#[tokio::test]
async fn retention_keeps_and_deletes_cosign_signatures_with_the_images_they_sign() {
    let s = Server::start();
    let (_, v1) = push_image(&s, "team/app", "v1", "one").await;
    let v1_sig = push_cosign_signature(&s, "team/app", &v1.to_string()).await;
    let (_, v2) = push_image(&s, "team/app", "v2", "two").await;
    let v2_sig = push_cosign_signature(&s, "team/app", &v2.to_string()).await;
    let dir = tempfile::tempdir().unwrap();
    set_policy(
        &s,
        dir.path(),
        "team",
        "[[rules]]\ntags = { include = [\"*\"] }\nkeep = { most_recently_pushed = 1 }\n",
    );
    let real = retention_run(&s, "team", false);
    assert_eq!(
        sorted_pairs(&real, "delete_manifests"),
        [format!("team/app:{v1}"), format!("team/app:{v1_sig}")],
        "{real}"
    );
    for kept in [v2.to_string(), v2_sig] {
        assert_eq!(manifest_status(&s, "team/app", &kept).await, StatusCode::OK);
    }
    let sig_tag = format!("{}.sig", v2.to_string().replace(':', "-"));
    assert_eq!(
        manifest_status(&s, "team/app", &sig_tag).await,
        StatusCode::OK,
        "the kept signature keeps its tag"
    );
}

/// GC kept cosign's `.sig` manifests forever: their tag made them reachable though the image
/// they sign was deleted. A referrer tag (`.sig`, `.att`, `.sbom`, the referrers fallback tag)
/// now keeps its manifest only while the image its name gives lives.
#[tokio::test]
async fn gc_collects_signatures_whose_image_is_gone_and_keeps_those_whose_image_lives() {
    // Also: the `.sig` version an appended signature replaced is collected, the current one kept.
    let s = Server::start();
    let (_, v1) = push_image(&s, "team/app", "v1", "one").await;
    let v1_sig = push_cosign_signature(&s, "team/app", &v1.to_string()).await;
    let (_, v2) = push_image(&s, "team/app", "v2", "two").await;
    let v2_sig = push_cosign_signature(&s, "team/app", &v2.to_string()).await;
    // The referrers fallback index of each image, listing its signature.
    let mut fallbacks = Vec::new();
    for (image, signature) in [(&v1, &v1_sig), (&v2, &v2_sig)] {
        let sig_manifest = get_bytes(&s, &format!("/v2/team/app/manifests/{signature}")).await;
        let mut entry = descriptor(media_type::OCI_MANIFEST, &sig_manifest);
        entry["artifactType"] = json!("application/vnd.dev.cosign.artifact.sig.v1+json");
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_INDEX,
            "manifests": [entry],
        }))
        .unwrap();
        let tag = image.to_string().replace(':', "-");
        let put = put_manifest(&s, "team/app", &tag, media_type::OCI_INDEX, &index).await;
        assert_eq!(put.status(), StatusCode::CREATED);
        fallbacks.push((tag, gantry_oci::Digest::sha256_of(&index).to_string()));
    }
    // v3 has no fallback index; a second signature is appended to its `.sig` as cosign
    // appends: a new manifest with one more layer moves the tag, and the version it replaced
    // is left untagged (sigstore/cosign#507).
    let (_, v3) = push_image(&s, "team/app", "v3", "three").await;
    let stale_v3_sig = push_cosign_signature(&s, "team/app", &v3.to_string()).await;
    let v3_tag = format!("{}.sig", v3.to_string().replace(':', "-"));
    let mut appended: Value = serde_json::from_slice(
        &get_bytes(&s, &format!("/v2/team/app/manifests/{stale_v3_sig}")).await,
    )
    .unwrap();
    let second_payload = format!(
        r#"{{"critical":{{"image":{{"docker-manifest-digest":"{v3}"}}}},"optional":{{"n":2}}}}"#
    );
    push_blob(&s, "team/app", second_payload.as_bytes()).await;
    let mut layer = descriptor(
        "application/vnd.dev.cosign.simplesigning.v1+json",
        second_payload.as_bytes(),
    );
    layer["annotations"] = json!({"dev.cosignproject.cosign/signature": "c2ln"});
    appended["layers"].as_array_mut().unwrap().push(layer);
    let appended = serde_json::to_vec(&appended).unwrap();
    let put = put_manifest(&s, "team/app", &v3_tag, media_type::OCI_MANIFEST, &appended).await;
    assert_eq!(put.status(), StatusCode::CREATED);
    let v3_sig = gantry_oci::Digest::sha256_of(&appended).to_string();
    let deleted = http()
        .delete(s.url(&format!("/v2/team/app/manifests/{v1}")))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::ACCEPTED);
    gc_now(&s).await;
    let v1_tag = format!("{}.sig", v1.to_string().replace(':', "-"));
    for gone in [
        &v1_sig,
        &v1_tag,
        &fallbacks[0].0,
        &fallbacks[0].1,
        &stale_v3_sig,
    ] {
        assert_eq!(
            manifest_status(&s, "team/app", gone).await,
            StatusCode::NOT_FOUND,
            "{gone} outlived the image it names"
        );
    }
    let v2_tag = format!("{}.sig", v2.to_string().replace(':', "-"));
    for kept in [
        &v3_sig,
        &v3_tag,
        &v2.to_string(),
        &v2_sig,
        &v2_tag,
        &fallbacks[1].0,
        &fallbacks[1].1,
    ] {
        assert_eq!(
            manifest_status(&s, "team/app", kept).await,
            StatusCode::OK,
            "{kept} went while its image lives"
        );
    }
}
