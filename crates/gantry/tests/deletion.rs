//! Deleting repositories and projects (issue 11 item 5) against the real server: through the
//! CLI and the API, with skopeo pushing and pulling, the audit entries, usage and blob files
//! after garbage collection, names used again, and tag rules refusing.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::Value;

/// The `gantry` CLI as admin against `s`; must succeed; returns stdout.
fn cli(s: &Server, args: &[&str]) -> String {
    let out = gantry_as_admin(&[args, &["--registry", &s.addr]].concat());
    assert!(out.status.success(), "gantry {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn used_bytes(s: &Server, project: &str) -> i64 {
    get_json(s, &format!("/api/v1/projects/{project}/quota")).await["storage"]["used_bytes"]
        .as_i64()
        .unwrap_or_else(|| panic!("quota of {project}"))
}

async fn audit_actions(s: &Server, project: &str) -> Vec<(String, String, Value)> {
    let log = get_json(s, &format!("/api/v1/audit?project={project}&limit=1000")).await;
    let entries = log
        .as_array()
        .cloned()
        .or_else(|| log["events"].as_array().cloned())
        .unwrap_or_default();
    entries
        .into_iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or_default().to_string(),
                e["resource"].as_str().unwrap_or_default().to_string(),
                e["detail"]
                    .as_str()
                    .and_then(|d| serde_json::from_str(d).ok())
                    .unwrap_or(Value::Null),
            )
        })
        .collect()
}

/// Pushes an umoci-made image to `repo:v1` with skopeo; returns the manifest digest.
fn skopeo_push(s: &Server, dir: &std::path::Path, repo: &str, content: &[u8]) -> String {
    let seed = gantry_oci::Digest::sha256_of(content);
    let work = dir.join(format!("{}-{}", repo.replace('/', "_"), &seed.hex()[..12]));
    std::fs::create_dir_all(&work).unwrap();
    make_layout(&work, "v1", &[("app/data.bin", content)]);
    let layout = work.join("layout");
    run(skopeo(dir)
        .args([
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            &admin_creds(),
        ])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker://{}/{repo}:v1", s.addr)));
    index_digest(&layout)
}

#[tokio::test]
async fn emptied_project_can_be_deleted_after_its_tags_are_deleted_and_gc_ran() {
    let s = Server::start();
    push_image(&s, "team/app", "v1", "app").await;
    push_image(&s, "team/web", "v1", "web").await;
    for repo in ["team/app", "team/web"] {
        let r = http()
            .delete(s.url(&format!("/v2/{repo}/manifests/v1")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED, "{repo}");
    }
    let report = gc_now(&s).await;
    assert_eq!(report["repositories"], 2, "{report}");
    // Was: 409 "project \"team\" still has 2 repositories" for ever.
    let r = http()
        .delete(s.url("/api/v1/projects/team"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["name"], "team");
    assert_eq!(s.stored_blobs().await, 0);
}

#[tokio::test]
async fn repository_and_project_deleted_through_cli_and_api_free_everything_and_names_are_reusable()
{
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let first = skopeo_push(&s, dir.path(), "team/app", b"first content of app\n");
    push_image(&s, "team/web", "v1", "web").await;
    push_image(&s, "other/tool", "v1", "tool").await;
    assert!(s.stored_blobs().await >= 6);
    let before = used_bytes(&s, "team").await;
    assert!(before > 0);

    // A repository through the CLI.
    let out = cli(&s, &["repo", "delete", "team/app", "--yes"]);
    assert!(
        out.contains("Deleted repository team/app: 1 tags, 1 manifests, 2 blob links, 0 uploads"),
        "{out}"
    );
    let after_app = used_bytes(&s, "team").await;
    assert!(
        after_app < before && after_app > 0,
        "{before} → {after_app}"
    );
    let r = http()
        .get(s.url("/v2/team/app/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let audit = audit_actions(&s, "team").await;
    let entry = audit
        .iter()
        .find(|(action, resource, _)| action == "repository.delete" && resource == "team/app")
        .unwrap_or_else(|| panic!("no repository.delete entry: {audit:?}"));
    assert_eq!(entry.2["manifests"], 1, "{entry:?}");
    assert_eq!(entry.2["freed_bytes"].as_i64().unwrap(), before - after_app);

    // Its project through the API, forced (team/web still holds an image).
    let r = http()
        .delete(s.url("/api/v1/projects/team"))
        .send()
        .await
        .unwrap();
    let refused = assert_error(r, StatusCode::CONFLICT, "CONFLICT").await;
    assert!(refused.to_string().contains("team/web"), "{refused}");
    let r = http()
        .delete(s.url("/api/v1/projects/team?force=true"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["repositories"][0]["repository"], "team/web", "{body}");
    assert_eq!(body["repositories"][0]["tags"], 1, "{body}");

    // The other way round: a repository through the API, its project through the CLI.
    let r = http()
        .delete(s.url("/api/v1/repositories/other%2Ftool"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let out = cli(&s, &["project", "delete", "other", "--yes"]);
    assert!(out.contains("Deleted project other"), "{out}");

    // The audit log keeps every deletion.
    for (project, repository) in [("team", "team/web"), ("other", "other/tool")] {
        let audit = audit_actions(&s, project).await;
        assert!(
            audit
                .iter()
                .any(|(a, r, _)| a == "repository.delete" && r == repository),
            "{audit:?}"
        );
        assert!(
            audit
                .iter()
                .any(|(a, r, _)| a == "project.delete" && r == project),
            "{audit:?}"
        );
    }

    // Garbage collection (through the CLI too) frees every blob file.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let out = cli(&s, &["gc", "--grace", "0s"]);
    assert!(out.contains("empty repositories"), "{out}");
    let report = gc_now(&s).await;
    assert_eq!(report["blobs"], 0, "the CLI's run freed them all: {report}");
    assert_eq!(s.stored_blobs().await, 0);
    assert!(
        out.contains(" 0 empty repositories"),
        "deleted repositories left no rows behind: {out}"
    );

    // The names are free again and start empty.
    let r = http()
        .post(s.url("/api/v1/projects"))
        .json(&serde_json::json!({"name": "team"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(used_bytes(&s, "team").await, 0);
    let tags = http()
        .get(s.url("/v2/team/web/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(tags.status(), StatusCode::NOT_FOUND);
    let second = skopeo_push(&s, dir.path(), "team/app", b"second content of app\n");
    assert_ne!(first, second);
    let pulled = dir.path().join("pulled");
    run(skopeo(dir.path())
        .args([
            "copy",
            "--src-tls-verify=false",
            "--src-creds",
            &admin_creds(),
        ])
        .arg(format!("docker://{}/team/app:v1", s.addr))
        .arg(format!("oci:{}:v1", pulled.display())));
    assert_eq!(index_digest(&pulled), second);
    let tags = get_json(&s, "/v2/team/app/tags/list").await;
    assert_eq!(tags["tags"], serde_json::json!(["v1"]));
}

#[tokio::test]
async fn immutable_tag_refuses_repository_delete_and_nothing_is_deleted() {
    let s = Server::start();
    push_image(&s, "team/app", "v1", "app").await;
    push_image(&s, "team/app", "latest", "app-latest").await;
    api_set_immutable_tags(&s, "team", &["v*"]).await;
    let usage = used_bytes(&s, "team").await;

    let r = http()
        .delete(s.url("/api/v1/repositories/team%2Fapp"))
        .send()
        .await
        .unwrap();
    let refused = assert_error(r, StatusCode::FORBIDDEN, "DENIED").await;
    let message = refused.to_string();
    assert!(
        message.contains("\\\"v1\\\"") && message.contains("immutable") && message.contains("v*"),
        "{message}"
    );
    let r = http()
        .delete(s.url("/api/v1/projects/team?force=true"))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::FORBIDDEN, "DENIED").await;
    let out = gantry_as_admin(&["repo", "delete", "team/app", "--yes", "--registry", &s.addr]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("immutable"),
        "{out:?}"
    );

    // Nothing was deleted: both tags, the usage.
    let tags = get_json(&s, "/v2/team/app/tags/list").await;
    assert_eq!(tags["tags"], serde_json::json!(["latest", "v1"]));
    assert_eq!(used_bytes(&s, "team").await, usage);
    let r = http()
        .delete(s.url("/api/v1/repositories/team%2Fnone-such"))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "NAME_UNKNOWN").await;
}

/// The status of `GET /v2/{repo}/manifests/{reference}`.
async fn manifest_status(s: &Server, repo: &str, reference: &str) -> StatusCode {
    http()
        .get(s.url(&format!("/v2/{repo}/manifests/{reference}")))
        .header("accept", gantry_oci::media_type::OCI_MANIFEST)
        .send()
        .await
        .unwrap()
        .status()
}

/// Harbor's artifact page deletes one artifact or removes one tag, which the REST API (and so
/// the web UI) could not: only whole repositories. `DELETE …/artifacts/{reference}` deletes the
/// artifact with its tags and `DELETE …/artifacts/{reference}/tags/{tag}` one of its tags,
/// through the registry's delete (tag rules apply), audited.
#[tokio::test]
async fn one_artifact_and_one_tag_are_deleted_through_the_api_as_tag_rules_allow() {
    let s = Server::start();
    let (manifest, dev) = push_image(&s, "team/app", "dev-1", "dev").await;
    let r = put_manifest(
        &s,
        "team/app",
        "dev-2",
        gantry_oci::media_type::OCI_MANIFEST,
        &manifest,
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let (_, release) = push_image(&s, "team/app", "v1.0.0", "release").await;
    api_set_immutable_tags(&s, "team", &["v*"]).await;
    let artifacts = "/api/v1/repositories/team%2Fapp/artifacts";
    let delete = |path: String| {
        let url = s.url(&path);
        async move { http().delete(url).send().await.unwrap() }
    };

    let r = delete(format!("{artifacts}/dev-1/tags/dev-2")).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        manifest_status(&s, "team/app", "dev-2").await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        manifest_status(&s, "team/app", "dev-1").await,
        StatusCode::OK
    );
    // A tag of another artifact is not removed through this one.
    let r = delete(format!("{artifacts}/v1.0.0/tags/dev-1")).await;
    assert_error(r, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
    assert_eq!(
        manifest_status(&s, "team/app", "dev-1").await,
        StatusCode::OK
    );
    // An immutable tag refuses its artifact's deletion, and its own removal.
    let r = delete(format!("{artifacts}/{release}")).await;
    assert_error(r, StatusCode::FORBIDDEN, "DENIED").await;
    let r = delete(format!("{artifacts}/{release}/tags/v1.0.0")).await;
    assert_error(r, StatusCode::FORBIDDEN, "DENIED").await;
    assert_eq!(
        manifest_status(&s, "team/app", "v1.0.0").await,
        StatusCode::OK
    );

    // Named by its tag, the artifact goes with all its tags.
    let r = delete(format!("{artifacts}/dev-1")).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        manifest_status(&s, "team/app", &dev.to_string()).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        manifest_status(&s, "team/app", "dev-1").await,
        StatusCode::NOT_FOUND
    );
    let r = delete(format!("{artifacts}/dev-1")).await;
    assert_error(r, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;

    // The same through the CLI: one tag removed, then the artifact with its other tags.
    push_image(&s, "team/app", "dev-cli", "cli").await;
    let manifest = get_bytes(&s, "/v2/team/app/manifests/dev-cli").await;
    let r = put_manifest(
        &s,
        "team/app",
        "dev-cli2",
        gantry_oci::media_type::OCI_MANIFEST,
        &manifest,
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(cli(&s, &["artifact", "untag", "team/app:dev-cli2"]).contains("removed the tag"));
    assert_eq!(
        manifest_status(&s, "team/app", "dev-cli2").await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        manifest_status(&s, "team/app", "dev-cli").await,
        StatusCode::OK
    );
    let out = gantry_as_admin(&[
        "artifact",
        "untag",
        &format!("team/app@{release}"),
        "--registry",
        &s.addr,
    ]);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("names no tag"),
        "{out:?}"
    );
    assert!(cli(&s, &["artifact", "delete", "team/app:dev-cli", "--yes"]).contains("deleted"));
    assert_eq!(
        manifest_status(&s, "team/app", "dev-cli").await,
        StatusCode::NOT_FOUND
    );

    // Each server writes its audit entries off the request path (a bounded wait).
    let wanted = [
        ("tag.delete", "team/app:dev-2".to_string()),
        ("artifact.delete", format!("team/app@{dev}")),
    ];
    eventually(
        std::time::Duration::from_secs(5),
        "the tag removal and the artifact deletion audited",
        || async {
            let audit = audit_actions(&s, "team").await;
            wanted
                .iter()
                .all(|(action, resource)| {
                    audit.iter().any(|(a, r, _)| a == action && r == resource)
                })
                .then_some(())
        },
    )
    .await;
}
