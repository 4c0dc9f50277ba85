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
    for user in ["mia", "dev"] {
        let r = admin
            .post(s.url("/api/v1/users"))
            .json(&json!({"name": user, "password": "a-password"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let r = admin
        .post(s.url("/api/v1/projects"))
        .json(&json!({"name": "team"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    for (user, role) in [("mia", "maintainer"), ("dev", "developer")] {
        let r = admin
            .put(s.url(&format!("/api/v1/projects/team/members/{user}")))
            .json(&json!({ "role": role }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
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
