//! Webhooks against the real server and a receiver in the test: CloudEvents attributes, the
//! HMAC signature, the payload of every event type, order per repository, and a receiver
//! that was down getting every event once it is back.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use common::*;
use gantry_oci::{media_type, Digest};
use hmac::Mac;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// One delivery as the receiver got it.
#[derive(Clone, Debug)]
struct Received {
    content_type: String,
    signature: String,
    body: Bytes,
    event: Value,
}

/// A webhook receiver on a loopback port that records every delivery; it can be stopped and
/// started again on the same port.
struct Receiver {
    port: u16,
    received: Arc<std::sync::Mutex<Vec<Received>>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut receiver = Receiver {
            port,
            received: Arc::default(),
            task: None,
        };
        receiver.serve(listener);
        receiver
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let received = self.received.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let received = received.clone();
                async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string()
                    };
                    received.lock().unwrap().push(Received {
                        content_type: header("content-type"),
                        signature: header("x-gantry-signature-256"),
                        event: serde_json::from_slice(&body).unwrap_or(Value::Null),
                        body,
                    });
                    StatusCode::NO_CONTENT
                }
            }),
        );
        self.task = Some(tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        }));
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// Stops answering: connections to the port are refused.
    async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    async fn restart(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        self.serve(listener);
    }

    /// The deliveries so far, each event once (deliveries are at least once).
    fn events(&self) -> Vec<Received> {
        let mut seen = std::collections::HashSet::new();
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| seen.insert(r.event["id"].as_str().unwrap_or_default().to_string()))
            .cloned()
            .collect()
    }

    /// Waits (at most 60 s) until `count` distinct events have arrived; returns them.
    async fn until(&self, count: usize) -> Vec<Received> {
        for _ in 0..600 {
            let events = self.events();
            if events.len() >= count {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let types: Vec<Value> = self
            .events()
            .iter()
            .map(|r| r.event["type"].clone())
            .collect();
        panic!("{count} events never arrived; got {types:?}");
    }
}

/// The delivery log at `path` once it lists `count` deliveries, all succeeded (at most 20 s:
/// a delivery is recorded just after its receiver answered).
async fn all_delivered(s: &Server, path: &str, count: usize) -> Value {
    eventually(
        Duration::from_secs(20),
        "every delivery recorded as succeeded",
        || async {
            let log = get_json(s, path).await;
            let deliveries = log["deliveries"].as_array().unwrap();
            (deliveries.len() == count && deliveries.iter().all(|d| d["state"] == "succeeded"))
                .then_some(log)
        },
    )
    .await
}

/// Adds a webhook for `events` of `project` with the CLI; returns its id and secret.
fn add_webhook(s: &Server, project: &str, url: &str, events: &[&str]) -> (i64, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gantry"));
    command
        .args(["webhook", "add", project, "--url", url, "--json"])
        .env("GANTRY_REGISTRY", &s.addr)
        .env("GANTRY_USERNAME", "admin")
        .env("GANTRY_PASSWORD", ADMIN_PASSWORD);
    for event in events {
        command.args(["--event", event]);
    }
    let added: Value = serde_json::from_str(&run(&mut command)).unwrap();
    (
        added["id"].as_i64().unwrap(),
        added["secret"].as_str().unwrap().to_string(),
    )
}

fn hmac_of(secret: &str, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The bytes `push_image(.., seed)` stores: manifest, config and layer.
fn image_size(manifest: &[u8], seed: &str) -> u64 {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":"{seed}"}}"#);
    let layer = format!("layer of {seed}");
    (manifest.len() + config.len() + layer.len()) as u64
}

async fn send(request: reqwest::RequestBuilder) -> Value {
    let response = request.send().await.unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert!(status.is_success(), "{status}: {body}");
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

/// Every event type a project webhook takes arrives as a signed CloudEvent with the payload a
/// receiver needs, in the order the changes happened.
#[tokio::test]
async fn webhooks_deliver_signed_cloud_events_of_every_type_in_order() {
    let s = Server::start();
    let receiver = Receiver::start().await;
    api_create_project(&s, "team", false).await;
    let (webhook, secret) = add_webhook(&s, "team", &receiver.url(), gantry_webhooks::EVENT_TYPES);
    // The database holds the secret sealed; deliveries are signed with it all the same.
    assert_no_data_file_holds(&s, &secret);
    let mut expected = Vec::new();

    let (manifest_a, a) = push_image(&s, "team/app", "v1", "a").await;
    expected.push((
        "artifact.pushed",
        json!({"digest": a.to_string(), "tag": "v1",
        "media_type": media_type::OCI_MANIFEST, "size": image_size(&manifest_a, "a")}),
    ));
    let (manifest_b, b) = push_image(&s, "team/app", "v1", "b").await;
    expected.push((
        "tag.moved",
        json!({"tag": "v1", "from_digest": a.to_string(), "digest": b.to_string()}),
    ));
    expected.push((
        "artifact.pushed",
        json!({"digest": b.to_string(), "tag": "v1",
        "size": image_size(&manifest_b, "b")}),
    ));
    receiver.until(expected.len()).await;

    get_bytes(&s, "/v2/team/app/manifests/v1").await;
    expected.push((
        "artifact.pulled",
        json!({"digest": b.to_string(), "count": 1}),
    ));
    receiver.until(expected.len()).await;

    let delete =
        |reference: String| http().delete(s.url(&format!("/v2/team/app/manifests/{reference}")));
    assert_eq!(
        delete("v1".into()).send().await.unwrap().status(),
        StatusCode::ACCEPTED
    );
    expected.push(("tag.deleted", json!({"tag": "v1", "digest": b.to_string()})));
    assert_eq!(
        delete(a.to_string()).send().await.unwrap().status(),
        StatusCode::ACCEPTED
    );
    expected.push((
        "artifact.deleted",
        json!({"digest": a.to_string(), "tags": []}),
    ));

    // One artifact (b) with a limit of one: pushing a's manifest again is refused.
    send(
        http()
            .put(s.url("/api/v1/projects/team/quota"))
            .json(&json!({"storage_bytes": null, "artifacts": 1})),
    )
    .await;
    let refused = put_manifest(
        &s,
        "team/app",
        "again",
        media_type::OCI_MANIFEST,
        &manifest_a,
    )
    .await;
    assert_error(refused, StatusCode::FORBIDDEN, "DENIED").await;
    expected.push((
        "quota.exceeded",
        json!({"resource": "artifacts", "used": 1, "limit": 1}),
    ));
    send(
        http()
            .put(s.url("/api/v1/projects/team/quota"))
            .json(&json!({"storage_bytes": null, "artifacts": null})),
    )
    .await;

    send(
        http()
            .put(s.url("/api/v1/projects/team/retention"))
            .json(&json!({"rules": []})),
    )
    .await;
    send(http().post(s.url("/api/v1/projects/team/retention/runs"))).await;
    expected.push((
        "retention.completed",
        json!({"deleted_manifests": 0, "freed_bytes": 0}),
    ));
    receiver.until(expected.len()).await;

    let (manifest_d, d) = push_image(&s, "team/app", "v2", "d").await;
    expected.push((
        "artifact.pushed",
        json!({"digest": d.to_string(), "tag": "v2"}),
    ));
    let archived = send(
        http()
            .post(s.url("/api/v1/projects/team/archives"))
            .json(&json!({"tags": {"include": ["v2"]}})),
    )
    .await;
    let archive = archived["archived"][0]["id"].as_i64().unwrap();
    let d_size = image_size(&manifest_d, "d");
    expected.push((
        "artifact.archived",
        json!({"digest": d.to_string(), "tags": ["v2"], "archive_id": archive}),
    ));
    expected.push((
        "artifact.deleted",
        json!({"digest": d.to_string(), "tags": ["v2"], "size": d_size}),
    ));
    send(http().post(s.url(&format!("/api/v1/projects/team/archives/{archive}/restore")))).await;
    expected.push((
        "artifact.pushed",
        json!({"digest": d.to_string(), "tag": "v2", "size": d_size}),
    ));
    expected.push((
        "artifact.restored",
        json!({"digest": d.to_string(), "archive_id": archive}),
    ));

    let arrived = receiver.until(expected.len()).await;
    assert_eq!(arrived.len(), expected.len(), "no event more than expected");
    let id = |r: &Received| -> i64 { r.event["id"].as_str().unwrap().parse().unwrap() };
    // A repository's events arrive in the order their changes were made (outbox ids follow
    // commit order); the project's own (retention) travel apart.
    let in_repository: Vec<i64> = arrived
        .iter()
        .filter(|r| r.event["data"]["repository"] == "team/app")
        .map(id)
        .collect();
    assert!(
        in_repository.is_sorted(),
        "team/app's events in order: {in_repository:?}"
    );
    let mut events = arrived.clone();
    events.sort_by_key(id);
    for (received, &(event_type, ref fields)) in events.iter().zip(&expected) {
        let event = &received.event;
        let context = format!("{event:#}");
        assert_eq!(
            received.content_type,
            "application/cloudevents+json; charset=utf-8"
        );
        assert_eq!(
            received.signature,
            hmac_of(&secret, &received.body),
            "{context}"
        );
        assert_eq!(event["specversion"], "1.0", "{context}");
        assert_eq!(
            event["type"],
            format!("dev.gantry.{event_type}"),
            "{context}"
        );
        assert_eq!(event["source"], s.url("/api/v1/projects/team"), "{context}");
        assert_eq!(event["datacontenttype"], "application/json", "{context}");
        assert!(
            time::OffsetDateTime::parse(
                event["time"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339
            )
            .is_ok(),
            "{context}"
        );
        let data = &event["data"];
        assert_eq!(data["project"], "team", "{context}");
        if event_type != "retention.completed" {
            assert_eq!(data["repository"], "team/app", "{context}");
        }
        if !matches!(event_type, "artifact.pulled" | "quota.exceeded") {
            assert_eq!(data["actor"], "admin", "{context}");
        }
        for (name, value) in fields.as_object().unwrap() {
            assert_eq!(&data[name], value, "{name} of {context}");
        }
    }
    let subjects: Vec<&str> = events[..3]
        .iter()
        .map(|r| r.event["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["team/app:v1"; 3]);

    // The delivery log says the same.
    let path = format!("/api/v1/projects/team/webhooks/{webhook}/deliveries?limit=100");
    let log = all_delivered(&s, &path, expected.len()).await;
    for delivery in log["deliveries"].as_array().unwrap() {
        assert_eq!(delivery["status"], 204, "{delivery}");
    }
}

/// A receiver that is down while 20 images are pushed gets all 20 once it is back, each
/// repository's in push order; the delivery log shows the retries.
#[tokio::test]
async fn a_receiver_that_was_down_gets_all_20_pushes_once_it_is_back() {
    let s = Server::start();
    let mut receiver = Receiver::start().await;
    api_create_project(&s, "team", false).await;
    let (webhook, secret) = add_webhook(&s, "team", &receiver.url(), &["artifact.pushed"]);
    receiver.stop().await;
    let mut pushed: Vec<(String, Digest)> = Vec::new();
    for n in 0..20 {
        let repository = format!("team/app-{}", n % 2);
        let (_, digest) =
            push_image(&s, &repository, &format!("v{n}"), &format!("image {n}")).await;
        pushed.push((repository, digest));
    }
    // The receiver is down: the first delivery fails (and is retried) before it comes back.
    let deliveries = format!("/api/v1/projects/team/webhooks/{webhook}/deliveries?limit=100");
    eventually(
        Duration::from_secs(20),
        "a delivery failing while the receiver is down",
        || async {
            let log = get_json(&s, &deliveries).await;
            log["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| {
                    d["last_error"]
                        .as_str()
                        .is_some_and(|e| e.contains("cannot reach"))
                })
                .then_some(())
        },
    )
    .await;
    receiver.restart().await;
    let events = receiver.until(20).await;
    assert_eq!(events.len(), 20);
    for received in &events {
        assert_eq!(received.signature, hmac_of(&secret, &received.body));
    }
    for repository in ["team/app-0", "team/app-1"] {
        let arrived: Vec<String> = events
            .iter()
            .filter(|r| r.event["data"]["repository"] == repository)
            .map(|r| r.event["data"]["digest"].as_str().unwrap().to_string())
            .collect();
        let in_push_order: Vec<String> = pushed
            .iter()
            .filter(|(r, _)| r == repository)
            .map(|(_, d)| d.to_string())
            .collect();
        assert_eq!(
            arrived, in_push_order,
            "{repository}'s events in push order"
        );
    }
    // A delivery is recorded as succeeded just after the receiver answered it.
    let log = all_delivered(&s, &deliveries, 20).await;
    let deliveries = log["deliveries"].as_array().unwrap();
    assert!(
        deliveries
            .iter()
            .any(|d| d["attempts"].as_u64().unwrap() > 1),
        "the first deliveries were retried: {log:#}"
    );
}

/// A secret an earlier version stored in plain (written into the database here) is sealed
/// when the server next starts, and deliveries are still signed with it.
#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_secret_stored_in_plain_is_sealed_at_start_and_still_signs() {
    if replicated() {
        // The test writes into the SQLite file of one server.
        return;
    }
    let mut s = Server::start();
    let receiver = Receiver::start().await;
    api_create_project(&s, "team", false).await;
    let (webhook, _) = add_webhook(&s, "team", &receiver.url(), &["artifact.pushed"]);
    let plain = "plain-secret-of-an-earlier-version";
    run(Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3, sys\n\
             db = sqlite3.connect(sys.argv[1], timeout=30)\n\
             db.execute('UPDATE webhooks SET secret = ?, secret_sealed = 0 WHERE id = ?', (sys.argv[2], int(sys.argv[3])))\n\
             db.commit()",
        )
        .arg(s.data_dir.join("gantry.db"))
        .arg(plain)
        .arg(webhook.to_string()));
    s.restart();
    // The row holds the sealed form now. (Pages SQLite freed may keep the old bytes until
    // reused: sealing at start protects what is written from then on.)
    let stored = run(Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3, sys\n\
             db = sqlite3.connect(sys.argv[1], timeout=30)\n\
             print(*db.execute('SELECT secret_sealed, secret FROM webhooks WHERE id = ?', (int(sys.argv[2]),)).fetchone())",
        )
        .arg(s.data_dir.join("gantry.db"))
        .arg(webhook.to_string()));
    assert!(stored.starts_with("1 v1:"), "{stored}");
    push_image(&s, "team/app", "v1", "a").await;
    let received = receiver.until(1).await;
    assert_eq!(received[0].signature, hmac_of(plain, &received[0].body));
}

/// Bad webhooks are refused with the reason; a test delivery reaches the receiver.
#[tokio::test]
async fn webhook_add_refuses_bad_urls_and_event_types_and_test_delivers_a_ping() {
    let s = Server::start();
    let receiver = Receiver::start().await;
    api_create_project(&s, "team", false).await;
    let add = |body: Value| {
        http()
            .post(s.url("/api/v1/projects/team/webhooks"))
            .json(&body)
    };
    for (body, said) in [
        (
            json!({"url": "ftp://example.com/x", "event_types": ["artifact.pushed"]}),
            "http",
        ),
        (
            json!({"url": "http://example.com/x", "event_types": []}),
            "at least one",
        ),
        (
            json!({"url": "http://example.com/x", "event_types": ["artifact.exploded"]}),
            "artifact.exploded",
        ),
    ] {
        let refused = assert_error(
            add(body).send().await.unwrap(),
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        )
        .await;
        assert!(
            refused["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains(said),
            "{refused}"
        );
    }
    let (webhook, secret) = add_webhook(&s, "team", &receiver.url(), &["tag.deleted"]);
    let queued =
        send(http().post(s.url(&format!("/api/v1/projects/team/webhooks/{webhook}/test")))).await;
    assert_eq!(queued["event_type"], "dev.gantry.webhook.test");
    let ping = &receiver.until(1).await[0];
    assert_eq!(ping.event["type"], "dev.gantry.webhook.test");
    assert_eq!(ping.signature, hmac_of(&secret, &ping.body));
    let listed = get_json(&s, "/api/v1/projects/team/webhooks").await;
    assert_eq!(listed["webhooks"][0]["url"], receiver.url());
    assert!(
        listed["webhooks"][0].get("secret").is_none(),
        "the secret is shown once"
    );
    let removed = http()
        .delete(s.url(&format!("/api/v1/projects/team/webhooks/{webhook}")))
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    assert_error(
        http()
            .delete(s.url(&format!("/api/v1/projects/team/webhooks/{webhook}")))
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;
}

/// A webhook could only be added and removed, not changed or paused (Harbor edits and
/// disables its webhooks). `PATCH` changes its URL, event types or `enabled`: the next events
/// go as changed, none while it is disabled, and its secret still signs.
#[tokio::test]
async fn a_changed_webhook_delivers_as_changed_and_nothing_while_disabled() {
    let s = Server::start();
    let receiver = Receiver::start().await;
    // Another webhook that always gets pushes: once it has an event, every webhook's
    // fan-out of that event is over.
    let witness = Receiver::start().await;
    api_create_project(&s, "team", false).await;
    let (webhook, secret) = add_webhook(&s, "team", &receiver.url(), &["tag.deleted"]);
    add_webhook(&s, "team", &witness.url(), &["artifact.pushed"]);
    let path = format!("/api/v1/projects/team/webhooks/{webhook}");
    let patch = |body: Value| http().patch(s.url(&path)).json(&body);

    let changed = send(patch(json!({"event_types": ["artifact.pushed"]}))).await;
    assert_eq!(changed["event_types"], json!(["artifact.pushed"]));
    assert_eq!(changed["url"], receiver.url());
    push_image(&s, "team/app", "v1", "one").await;
    let first = &receiver.until(1).await[0];
    assert_eq!(first.event["data"]["tag"], "v1", "{:#}", first.event);

    assert_eq!(
        send(patch(json!({"enabled": false}))).await["enabled"],
        false
    );
    push_image(&s, "team/app", "v2", "two").await;
    witness.until(2).await;
    // Resumed through the CLI.
    let resumed = run(Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args([
            "webhook",
            "update",
            "team",
            &webhook.to_string(),
            "--enable",
        ])
        .env("GANTRY_REGISTRY", &s.addr)
        .env("GANTRY_USERNAME", "admin")
        .env("GANTRY_PASSWORD", ADMIN_PASSWORD));
    assert!(resumed.contains("(enabled)"), "{resumed}");
    push_image(&s, "team/app", "v3", "three").await;
    witness.until(3).await;
    let events = receiver.until(2).await;
    let tags: Vec<&Value> = events.iter().map(|r| &r.event["data"]["tag"]).collect();
    assert_eq!(tags, [&json!("v1"), &json!("v3")], "nothing while disabled");
    assert_eq!(events[1].signature, hmac_of(&secret, &events[1].body));

    let refused = assert_error(
        patch(json!({"url": "ftp://example.com/x"}))
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
    )
    .await;
    assert!(refused.to_string().contains("http"), "{refused}");
    assert_error(
        http()
            .patch(s.url("/api/v1/projects/team/webhooks/999"))
            .json(&json!({"enabled": false}))
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;
}
