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
