//! The audit log records what was refused, not only what succeeded: auditors want the denied
//! pushes and pulls, the tag-rule and immutability violations, the quota refusals and the
//! failed and throttled logins most.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// The project's audit events (as admin), newest first.
async fn events(s: &Server, project: Option<&str>) -> Vec<Value> {
    let path = match project {
        Some(p) => format!("/api/v1/audit?project={p}&limit=1000"),
        None => "/api/v1/audit?limit=1000".to_string(),
    };
    get_json(s, &path).await["events"]
        .as_array()
        .unwrap()
        .clone()
}

/// Every audit event (as admin), once `found` holds for them: each server writes its entries
/// off the request path, so with several replicas the last ones may still be on their way
/// from another (a bounded wait).
async fn events_once(s: &Server, what: &str, found: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    eventually(std::time::Duration::from_secs(3), what, || async {
        let log = events(s, None).await;
        found(&log).then_some(log)
    })
    .await
}

/// The denied event of `actor` doing `action` whose detail contains `why`, if logged.
fn find_denied<'a>(events: &'a [Value], actor: &str, action: &str, why: &str) -> Option<&'a Value> {
    events.iter().find(|e| {
        e["actor"] == actor
            && e["action"] == action
            && e["outcome"] == "denied"
            && e["detail"].as_str().is_some_and(|d| d.contains(why))
    })
}

/// The one denied event of `actor` doing `action` whose detail contains `why`.
fn denied<'a>(events: &'a [Value], actor: &str, action: &str, why: &str) -> &'a Value {
    find_denied(events, actor, action, why)
        .unwrap_or_else(|| panic!("no denied {action} by {actor} for {why:?} in {events:#?}"))
}

/// Refused operations were missing from the audit log: denied pushes and pulls,
/// immutable-tag and tag-rule violations, quota refusals.
#[tokio::test]
async fn refused_pushes_pulls_tag_rule_and_quota_violations_are_audited() {
    let s = Server::start_configured(&[("GANTRY_AUTO_CREATE_PROJECTS", "false")]);
    api_create_project(&s, "team", false).await;
    api_create_user(&s, "guest1", "guest1-password", false).await;
    api_set_role(&s, "team", "guest1", "guest").await;
    api_create_user(&s, "dev1", "dev1-password", false).await;
    api_set_role(&s, "team", "dev1", "developer").await;
    api_create_user(&s, "outsider", "outsider-password", false).await;
    push_image(&s, "team/app", "v1.0.0", "first").await;

    // A guest's push with skopeo, through the token flow: refused at the first upload.
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("src");
    std::fs::create_dir_all(&layout).unwrap();
    make_layout(&layout, "v2", &[("etc/app", b"guest push\n")]);
    let out = fails(skopeo(dir.path()).args([
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "guest1:guest1-password",
        &format!("oci:{}:v2", layout.join("layout").display()),
        &format!("docker://{}/team/app:v2", s.addr),
    ]));
    assert!(!out.is_empty());

    // A pull by someone who is not a member.
    let r = http_as("outsider", "outsider-password")
        .get(s.url("/v2/team/app/manifests/v1.0.0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Tag rules: v* immutable, latest refused.
    let r = http()
        .put(s.url("/api/v1/projects/team/tag-rules"))
        .json(&json!({"immutable": ["v*"], "refuse_latest": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let dev = http_as("dev1", "dev1-password");
    let config = br#"{"architecture":"amd64","os":"linux","seed":"moved"}"#;
    let layer = b"another layer";
    for blob in [&config[..], &layer[..]] {
        let digest = gantry_oci::Digest::sha256_of(blob);
        let r = dev
            .post(s.url(&format!("/v2/team/app/blobs/uploads/?digest={digest}")))
            .body(blob.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let manifest = image_manifest(config, &[layer]);
    for tag in ["v1.0.0", "latest"] {
        let r = dev
            .put(s.url(&format!("/v2/team/app/manifests/{tag}")))
            .header("content-type", gantry_oci::media_type::OCI_MANIFEST)
            .body(manifest.clone())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "{tag}: {}", r.status());
    }

    // A quota of one artifact: the next push is refused.
    let r = http()
        .put(s.url("/api/v1/projects/team/quota"))
        .json(&json!({"artifacts": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let r = dev
        .put(s.url("/v2/team/app/manifests/v3.0.0"))
        .header("content-type", gantry_oci::media_type::OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Each server writes its audit entries off the request path: with several replicas the
    // last refusals may still be on their way from another one (a bounded wait).
    let log = eventually(
        std::time::Duration::from_secs(3),
        "every refusal in the audit log",
        || async {
            let log = events(&s, Some("team")).await;
            let expected = [
                ("guest1", "may not push"),
                ("dev1", "immutable"),
                ("dev1", "latest"),
                ("dev1", "quota"),
            ];
            let all = expected
                .iter()
                .all(|(actor, why)| find_denied(&log, actor, "push", why).is_some())
                && find_denied(&log, "outsider", "pull", "").is_some();
            all.then_some(log)
        },
    )
    .await;
    let push = denied(&log, "guest1", "push", "may not push");
    assert_eq!(push["project"], "team");
    assert!(push["resource"].as_str().unwrap().starts_with("team/app"));
    let pull = denied(&log, "outsider", "pull", "");
    assert_eq!(pull["resource"], "team/app:v1.0.0");
    let immutable = denied(&log, "dev1", "push", "immutable");
    assert_eq!(immutable["resource"], "team/app:v1.0.0");
    let latest = denied(&log, "dev1", "push", "latest");
    assert_eq!(latest["resource"], "team/app:latest");
    let quota = denied(&log, "dev1", "push", "quota");
    assert_eq!(quota["resource"], "team/app:v3.0.0");
    // Each refusal is recorded once, and the successful push of v1.0.0 is there as before.
    assert_eq!(
        log.iter()
            .filter(|e| e["actor"] == "dev1" && e["outcome"] == "denied")
            .count(),
        3,
        "{log:#?}"
    );
    assert!(log
        .iter()
        .any(|e| e["action"] == "push" && e["outcome"] == "success"));
}

/// The REST API audited what it did but not what it refused: a developer's refused
/// repository delete and an immutable tag refusing an artifact's deletion left no entry (the
/// registry API's refusals had them). Every policy refusal of the REST API is now audited as
/// `denied`, once, with the operation, the path, the project and what refused it.
#[tokio::test]
async fn refusals_of_the_rest_api_are_audited_with_what_refused_them() {
    let s = Server::start_configured(&[("GANTRY_AUTO_CREATE_PROJECTS", "false")]);
    api_create_project(&s, "team", false).await;
    api_create_user(&s, "dev1", "dev1-password", false).await;
    api_set_role(&s, "team", "dev1", "developer").await;
    push_image(&s, "team/app", "v1.0.0", "first").await;
    api_set_immutable_tags(&s, "team", &["v*"]).await;

    let r = http_as("dev1", "dev1-password")
        .delete(s.url("/api/v1/repositories/team%2Fapp"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = http()
        .delete(s.url("/api/v1/repositories/team%2Fapp/artifacts/v1.0.0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    let refused = |log: &[Value]| {
        find_denied(log, "dev1", "DELETE /api/v1/repositories/{repository}", "").is_some()
            && find_denied(
                log,
                "admin",
                "DELETE /api/v1/repositories/{repository}/artifacts/{reference}",
                "immutable",
            )
            .is_some()
    };
    let log = events_once(&s, "the REST API's refusals audited", |log| refused(log)).await;
    let by_dev = denied(&log, "dev1", "DELETE /api/v1/repositories/{repository}", "");
    assert_eq!(by_dev["project"], "team");
    assert_eq!(by_dev["resource"], "/api/v1/repositories/team%2Fapp");
    assert!(by_dev["client"].as_str().is_some_and(|c| !c.is_empty()));
    assert_eq!(
        log.iter().filter(|e| e["outcome"] == "denied").count(),
        2,
        "each refusal once, and nothing else denied: {log:#?}"
    );
}

/// Failed logins, and logins refused by the throttle, are audited with what refused them.
#[tokio::test]
async fn failed_and_throttled_logins_are_audited() {
    let s = Server::start();
    api_create_user(&s, "carol", "carol-password", false).await;
    let wrong = http_as("carol", "wrong-password");
    let mut throttled = false;
    for _ in 0..20 {
        let r = wrong.get(s.url("/v2/")).send().await.unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            throttled = true;
            break;
        }
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    assert!(throttled, "wrong passwords were never throttled");
    let log = events_once(&s, "carol's throttled login audited", |log| {
        find_denied(log, "carol", "login", "too many failed logins").is_some()
    })
    .await;
    let logins: Vec<&Value> = log
        .iter()
        .filter(|e| e["actor"] == "carol" && e["action"] == "login")
        .collect();
    assert!(
        logins
            .iter()
            .any(|e| e["outcome"] == "failure" && e["detail"] == "invalid username or password"),
        "{logins:#?}"
    );
    let refused = denied(&log, "carol", "login", "too many failed logins");
    assert!(refused["client"].as_str().is_some_and(|c| !c.is_empty()));
}

/// A wrong password from an address that is locked out is answered 429; the audit log said
/// "failure" with no reason, as if nothing had been refused.
#[tokio::test]
async fn failures_from_a_locked_out_address_are_audited_as_denied() {
    let s = Server::start();
    let mut throttled = false;
    for i in 0..20 {
        let r = http_as(&format!("nobody{i}"), "guess")
            .get(s.url("/v2/"))
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            throttled = true;
            break;
        }
    }
    assert!(throttled, "failures from one address were never throttled");
    let log = events_once(&s, "the address lockout audited", |log| {
        log.iter()
            .any(|e| e["action"] == "login" && e["outcome"] == "denied")
    })
    .await;
    let refused = log
        .iter()
        .find(|e| e["action"] == "login" && e["outcome"] == "denied")
        .unwrap_or_else(|| panic!("no denied login in {log:#?}"));
    assert!(
        refused["detail"]
            .as_str()
            .is_some_and(|d| d.contains("too many failed logins")),
        "{refused}"
    );
}

/// Deletions no request made were not audited: a scheduled retention run deleted tags and
/// manifests and the audit log did not say so. The audit log now takes what background work
/// changed from the event outbox: each deleted tag and manifest and the run itself, by
/// `scheduler`, and a garbage collection as `garbage-collection`.
#[tokio::test]
async fn what_scheduled_retention_and_garbage_collection_delete_is_audited() {
    let s = Server::start();
    let (_, idle) = push_image(&s, "team/app", "dev-idle", "idle").await;
    push_image(&s, "team/app", "v1.0.0", "release").await;
    let policy = json!({
        "schedule": "* * * * * *",
        "rules": [
            {"tags": {"include": ["dev-*"]}, "keep": {"pulled_within_days": 7}},
            {"tags": {"include": ["v*"]}, "keep": "always"}
        ]
    });
    let r = http()
        .put(s.url("/api/v1/projects/team/retention"))
        .json(&policy)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let by_scheduler = |events: &[Value], action: &str, resource: &str| {
        events.iter().any(|e| {
            e["actor"] == "scheduler" && e["action"] == action && e["resource"] == resource
        })
    };
    let audited = within(std::time::Duration::from_secs(20), || async {
        let events = events(&s, Some("team")).await;
        (by_scheduler(&events, "tag.deleted", "team/app:dev-idle")
            && by_scheduler(&events, "artifact.deleted", &format!("team/app@{idle}"))
            && by_scheduler(&events, "retention.completed", "team"))
        .then_some(events)
    })
    .await;
    let Some(audited) = audited else {
        panic!(
            "scheduled deletions not audited within 20 s; the jobs: {:#}\nthe audit log: {:#}",
            get_json(&s, "/api/v1/jobs?limit=50").await,
            get_json(&s, "/api/v1/audit?project=team&limit=50").await
        )
    };
    let run = audited
        .iter()
        .find(|e| {
            e["action"] == "retention.completed"
                && e["detail"].as_str().unwrap().starts_with("1 tags")
        })
        .unwrap_or_else(|| panic!("the run that deleted dev-idle: {audited:#?}"));
    assert_eq!(run["outcome"], "success");

    // A collection through the API is audited by its request (gc.run) and, as what the
    // collection did, once more from the outbox.
    let r = http()
        .post(s.url("/api/v1/gc?grace_secs=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    eventually(
        std::time::Duration::from_secs(10),
        "the collection audited",
        || async {
            events(&s, None)
                .await
                .into_iter()
                .find(|e| e["actor"] == "garbage-collection" && e["action"] == "gc.completed")
        },
    )
    .await;
}
