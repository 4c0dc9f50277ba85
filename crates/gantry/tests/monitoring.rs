//! Health, readiness and Prometheus metrics, checked with the real tools: Debian's
//! `prometheus` scrapes the server and answers PromQL, `promtool check metrics` lints the
//! exposition.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use reqwest::StatusCode;
use serde_json::Value;

/// The value of one series (`name{labels}` exactly as exposed) in a text exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn metrics_text(server: &Server) -> String {
    let base = server.metrics_base.as_ref().expect("a metrics listener");
    let r = anonymous()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header(&r, "content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    r.text().await.unwrap()
}

fn start_with_metrics_listener() -> Server {
    Server::start_configured(&[("GANTRY_METRICS_LISTEN", "127.0.0.1:0")])
}

#[tokio::test]
async fn healthz_answers_while_the_process_serves() {
    let server = Server::start();
    let r = anonymous()
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn readyz_turns_503_when_the_database_file_or_the_blob_directory_goes_and_200_when_restored()
{
    let server = Server::start();
    let ready = || async { anonymous().get(server.url("/readyz")).send().await.unwrap() };
    assert_eq!(ready().await.status(), StatusCode::OK);

    // Open connections keep working on a moved file: only a look at the path tells. (A
    // `chmod 000` is the same fault for a non-root server; root reads the file regardless.)
    let database = server.data_dir.join("gantry.db");
    let moved = server.data_dir.join("gantry.db.moved");
    std::fs::rename(&database, &moved).unwrap();
    let body = assert_error(
        ready().await,
        StatusCode::SERVICE_UNAVAILABLE,
        "UNAVAILABLE",
    )
    .await;
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("gantry.db"), "{message}");
    assert!(
        !message.contains(&*server.data_dir.to_string_lossy()),
        "an unauthenticated probe is not told the data directory: {message}"
    );
    std::fs::rename(&moved, &database).unwrap();
    assert_eq!(ready().await.status(), StatusCode::OK);

    let blobs = server.data_dir.join("storage/blobs");
    let removed = server.data_dir.join("storage/blobs.removed");
    std::fs::rename(&blobs, &removed).unwrap();
    let body = assert_error(
        ready().await,
        StatusCode::SERVICE_UNAVAILABLE,
        "UNAVAILABLE",
    )
    .await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("blobs directory"),
        "{body}"
    );
    std::fs::rename(&removed, &blobs).unwrap();
    assert_eq!(ready().await.status(), StatusCode::OK);
}

#[tokio::test]
async fn metrics_on_the_main_listener_need_a_system_administrator() {
    let server = Server::start();
    api_create_user(&server, "dev", "dev-password-1", false).await;
    let url = server.url("/metrics");
    assert_error(
        anonymous().get(&url).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    )
    .await;
    assert_error(
        http_as("dev", "dev-password-1")
            .get(&url)
            .send()
            .await
            .unwrap(),
        StatusCode::FORBIDDEN,
        "DENIED",
    )
    .await;
    let r = http().get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("gantry_http_requests_total"));
}

#[tokio::test]
async fn metrics_count_requests_bytes_pushes_pulls_logins_jobs_and_storage() {
    let server = start_with_metrics_listener();
    let layer = vec![7u8; 1 << 20];
    let digest = push_blob(&server, "alpha/app", &layer).await;
    let (first, _) = push_image(&server, "alpha/app", "v1", "one").await;
    let (second, _) = push_image(&server, "alpha/app", "v2", "two").await;
    push_image(&server, "beta/api", "v1", "three").await;
    let pulled = get_bytes(&server, &format!("/v2/alpha/app/blobs/{digest}")).await;
    assert_eq!(pulled.len(), layer.len());
    for _ in 0..2 {
        get_bytes(&server, "/v2/alpha/app/manifests/v1").await;
    }
    let wrong = http_as("admin", "not-the-password")
        .get(server.url("/v2/"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let gc = http().post(server.url("/api/v1/gc")).send().await.unwrap();
    assert_eq!(gc.status(), StatusCode::OK);

    let text = metrics_text(&server).await;
    assert_eq!(
        sample(&text, r#"gantry_pushes_total{project="alpha"}"#),
        Some(2.0)
    );
    assert_eq!(
        sample(&text, r#"gantry_pushes_total{project="beta"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, r#"gantry_pulls_total{project="alpha"}"#),
        Some(2.0)
    );
    assert!(
        sample(
            &text,
            r#"gantry_http_received_bytes_total{route="uploads"}"#
        )
        .is_some_and(|bytes| bytes >= layer.len() as f64),
        "{text}"
    );
    assert!(
        sample(&text, r#"gantry_http_sent_bytes_total{route="blobs"}"#)
            .is_some_and(|bytes| bytes >= layer.len() as f64),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"gantry_http_requests_total{method="PUT",route="manifests",status="201"}"#
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(&text, r#"gantry_logins_total{result="failure"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, r#"gantry_job_runs_total{job="gc",result="success"}"#),
        Some(1.0)
    );
    assert_eq!(sample(&text, "gantry_uploads_in_flight"), Some(0.0));
    // Two artifacts in alpha; its bytes are the layer pushed alone, both images' blobs (as
    // `push_image` makes them) and their manifests.
    assert_eq!(
        sample(&text, r#"gantry_project_artifacts{project="alpha"}"#),
        Some(2.0)
    );
    let image_bytes = |seed: &str, manifest: &[u8]| {
        let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":"{seed}"}}"#);
        config.len() + format!("layer of {seed}").len() + manifest.len()
    };
    let stored = layer.len() + image_bytes("one", &first) + image_bytes("two", &second);
    assert_eq!(
        sample(&text, r#"gantry_project_stored_bytes{project="alpha"}"#),
        Some(stored as f64)
    );
    assert!(sample(&text, r#"gantry_meta_pool_max_connections{pool="writer"}"#).is_some());
    assert!(sample(&text, "process_resident_memory_bytes").is_some());
}

#[tokio::test]
async fn per_repository_series_are_opt_in() {
    let server = Server::start_configured(&[
        ("GANTRY_METRICS_LISTEN", "127.0.0.1:0"),
        ("GANTRY_METRICS_PER_REPOSITORY", "true"),
    ]);
    push_image(&server, "alpha/app", "v1", "one").await;
    let text = metrics_text(&server).await;
    assert_eq!(
        sample(
            &text,
            r#"gantry_pushes_total{project="alpha",repository="alpha/app"}"#
        ),
        Some(1.0)
    );

    let plain = start_with_metrics_listener();
    push_image(&plain, "alpha/app", "v1", "one").await;
    let text = metrics_text(&plain).await;
    assert!(!text.contains("repository="), "{text}");
}

#[tokio::test]
async fn promtool_check_metrics_finds_nothing_to_complain_about() {
    let server = start_with_metrics_listener();
    push_image(&server, "alpha/app", "v1", "one").await;
    get_bytes(&server, "/v2/alpha/app/manifests/v1").await;
    let text = metrics_text(&server).await;
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) is installed");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let complaints = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool: {complaints}\n{text}");
    assert_eq!(complaints.trim(), "", "promtool complains");
}

/// Debian's Prometheus scraping `target` every second, with its data in a temporary directory.
struct Prometheus {
    child: std::process::Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: gantry\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian package) is installed");
        Prometheus {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// The single value of an instant PromQL query, once it has one.
    async fn query_until(&self, query: &str, wanted: f64) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = None;
        while Instant::now() < deadline {
            let answer = anonymous()
                .get(format!("{}/api/v1/query", self.base))
                .query(&[("query", query)])
                .send()
                .await;
            if let Ok(answer) = answer {
                let body: Value = answer.json().await.unwrap_or_default();
                last = body["data"]["result"][0]["value"][1]
                    .as_str()
                    .and_then(|v| v.parse::<f64>().ok());
                if last == Some(wanted) {
                    return wanted;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        last.unwrap_or(f64::NAN)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn prometheus_scrapes_the_push_count_of_a_project() {
    let server = start_with_metrics_listener();
    let target = server
        .metrics_base
        .as_ref()
        .unwrap()
        .trim_start_matches("http://")
        .to_string();
    let prometheus = Prometheus::start(&target);
    for (i, repository) in ["team/api", "team/api", "team/web", "other/app"]
        .iter()
        .enumerate()
    {
        push_image(&server, repository, &format!("v{i}"), &format!("seed-{i}")).await;
    }
    assert_eq!(
        prometheus
            .query_until(r#"sum(gantry_pushes_total{project="team"})"#, 3.0)
            .await,
        3.0,
        "pushes to project team as Prometheus saw them"
    );
    assert_eq!(
        prometheus.query_until(r#"up{job="gantry"}"#, 1.0).await,
        1.0
    );
}
