//! Usage and growth over time (issue 11 item 4): snapshots through the API and `gantry usage`
//! against what the test pushed, pulled and deleted. Days cannot be waited for: a real
//! snapshot is moved back a day, and an older day is written, with the `sqlite3` CLI.

mod common;

use std::process::Command;

use common::*;
use gantry_oci::{media_type, size};
use rand::RngCore;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Runs SQL against the server's database while it runs (WAL: the server sees it at once).
fn sqlite(server: &Server, sql: &str) {
    run(Command::new("sqlite3")
        .args(["-cmd", ".timeout 10000"])
        .arg(server.data_dir.join("gantry.db"))
        .arg(sql));
}

/// Pushes an image whose one layer is `layer_bytes` random bytes, tagged `tag`; returns the
/// manifest digest and the image's bytes (manifest, config and layer).
async fn push_sized_image(
    server: &Server,
    repo: &str,
    tag: &str,
    layer_bytes: usize,
) -> (String, i64) {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","tag":"{tag}"}}"#).into_bytes();
    let mut layer = vec![0u8; layer_bytes];
    rand::rng().fill_bytes(&mut layer);
    push_blob(server, repo, &config).await;
    push_blob(server, repo, &layer).await;
    let manifest = image_manifest(&config, &[&layer]);
    let r = put_manifest(server, repo, tag, media_type::OCI_MANIFEST, &manifest).await;
    assert_eq!(r.status(), StatusCode::CREATED, "push {repo}:{tag}");
    let digest = gantry_oci::Digest::sha256_of(&manifest).to_string();
    (digest, (manifest.len() + config.len() + layer.len()) as i64)
}

async fn pull(server: &Server, repo: &str, reference: &str, times: usize) {
    for _ in 0..times {
        let r = http()
            .get(server.url(&format!("/v2/{repo}/manifests/{reference}")))
            .header("accept", media_type::OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "pull {repo}:{reference}");
    }
}

async fn take_snapshot(server: &Server) -> Value {
    let r = http()
        .post(server.url("/api/v1/usage/snapshots"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json().await.unwrap()
}

fn figures(bytes: i64, artifacts: i64, pushes: i64, pulls: i64) -> (i64, i64, i64, i64) {
    (bytes, artifacts, pushes, pulls)
}

/// (day, (bytes, artifacts, pushes, pulls)) of a series.
fn days_of(series: &Value) -> Vec<(String, (i64, i64, i64, i64))> {
    series["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["day"].as_str().unwrap().to_string(),
                figures(
                    d["bytes"].as_i64().unwrap(),
                    d["artifacts"].as_i64().unwrap(),
                    d["pushes"].as_i64().unwrap(),
                    d["pulls"].as_i64().unwrap(),
                ),
            )
        })
        .collect()
}

fn series<'a>(report: &'a Value, key: &str, name: &str) -> &'a Value {
    let field = if key == "projects" {
        "project"
    } else {
        "repository"
    };
    report[key]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s[field] == name)
        .unwrap_or_else(|| panic!("no {key} series of {name} in {report:#}"))
}

fn gantry_usage(server: &Server, args: &[&str]) -> String {
    let out = gantry_as_admin(&[&["usage", "--registry", &server.addr], args].concat());
    assert!(
        out.status.success(),
        "gantry usage {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn usage_series_growers_and_version_growth_equal_what_was_pushed_pulled_and_deleted() {
    let s = Server::start();
    // Yesterday: team/web and team/api v1.0.0 (~9 MB), pulled twice by digest.
    let (_, web_bytes) = push_sized_image(&s, "team/web", "v0.1.0", 1_000_000).await;
    let (v1_0, v1_0_bytes) = push_sized_image(&s, "team/api", "v1.0.0", 9_000_000).await;
    pull(&s, "team/api", &v1_0, 2).await;
    // A HEAD by tag is not a pull.
    let r = http()
        .head(s.url("/v2/team/api/manifests/v1.0.0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let taken = take_snapshot(&s).await;
    let today = taken["day"].as_str().unwrap().to_string();
    assert_eq!(
        (
            &taken["projects"],
            &taken["repositories"],
            &taken["version_lines"]
        ),
        (&json!(1), &json!(2), &json!(2))
    );
    // That snapshot becomes yesterday's; the day before has a small recorded figure.
    sqlite(
        &s,
        &format!(
            "UPDATE usage_snapshots SET day = date('{today}', '-1 day') WHERE day = '{today}';
             UPDATE usage_project_snapshots SET day = date('{today}', '-1 day') WHERE day = '{today}';
             UPDATE usage_version_snapshots SET day = date('{today}', '-1 day') WHERE day = '{today}';
             INSERT INTO usage_snapshots VALUES (date('{today}', '-2 day'), 'team', 'team/api', 1000, 0, 0, 0, 0);
             INSERT INTO usage_project_snapshots VALUES (date('{today}', '-2 day'), 'team', 1000, 0, 0, 0, 0);"
        ),
    );
    let day = |back: i64| {
        let out = run(Command::new("sqlite3")
            .arg(":memory:")
            .arg(format!("SELECT date('{today}', '-{back} day')")));
        out.trim().to_string()
    };
    let (yesterday, before) = (day(1), day(2));

    // Today: v1.4.0 (~30 MB) pushed and pulled three times by tag; v1.0.0 deleted (as
    // retention would): its pulls must stay counted, its size stays in the history.
    let (_, v1_4_bytes) = push_sized_image(&s, "team/api", "v1.4.0", 30_000_000).await;
    pull(&s, "team/api", "v1.4.0", 3).await;
    let r = http()
        .delete(s.url(&format!("/v2/team/api/manifests/{v1_0}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    take_snapshot(&s).await;
    // Taking it again the same day replaces it (the figures below are there once).
    take_snapshot(&s).await;

    let report: Value = get_json(&s, "/api/v1/usage?project=team&since_days=30").await;
    assert_eq!(report["until"], json!(today));
    // team/api yesterday: v1.0.0; today: v1.4.0 plus v1.0.0's layer and config, which stay
    // linked (and counted, as the quota counts them) until garbage collection.
    let v1_0_manifest = v1_0_bytes - 9_000_000 - config_len("v1.0.0");
    let api_today = v1_0_bytes - v1_0_manifest + v1_4_bytes;
    assert_eq!(
        days_of(series(&report, "repositories", "team/api")),
        [
            (before.clone(), figures(1000, 0, 0, 0)),
            (yesterday.clone(), figures(v1_0_bytes, 1, 1, 2)),
            (today.clone(), figures(api_today, 1, 2, 5)),
        ]
    );
    assert_eq!(
        days_of(series(&report, "repositories", "team/web")),
        [
            (yesterday.clone(), figures(web_bytes, 1, 1, 0)),
            (today.clone(), figures(web_bytes, 1, 1, 0)),
        ]
    );
    assert_eq!(
        days_of(series(&report, "projects", "team")),
        [
            (before.clone(), figures(1000, 0, 0, 0)),
            (yesterday.clone(), figures(web_bytes + v1_0_bytes, 2, 2, 2)),
            (today.clone(), figures(web_bytes + api_today, 2, 3, 5)),
        ]
    );
    // The project's figures are its quota's.
    let quota = get_json(&s, "/api/v1/projects/team/quota").await;
    assert_eq!(quota["storage"]["used_bytes"], json!(web_bytes + api_today));
    assert_eq!(
        report["growers"],
        json!([
            {"project": "team", "repository": "team/api", "first_day": before, "first_bytes": 1000,
             "last_day": today, "last_bytes": api_today, "bytes_growth": api_today - 1000,
             "pushes": 2, "pulls": 5},
            {"project": "team", "repository": "team/web", "first_day": before, "first_bytes": 0,
             "last_day": today, "last_bytes": web_bytes, "bytes_growth": web_bytes,
             "pushes": 1, "pulls": 0},
        ])
    );
    let api_versions = report["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["repository"] == "team/api")
        .unwrap();
    let points: Vec<(&str, &str, i64, &str)> = api_versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["line"].as_str().unwrap(),
                v["tag"].as_str().unwrap(),
                v["bytes"].as_i64().unwrap(),
                v["day"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        points,
        [
            ("v1.0", "v1.0.0", v1_0_bytes, yesterday.as_str()),
            ("v1.4", "v1.4.0", v1_4_bytes, today.as_str()),
        ]
    );
    let ratio = v1_4_bytes as f64 / v1_0_bytes as f64;
    assert_eq!(api_versions["ratio"].as_f64().unwrap(), ratio);
    assert_eq!(api_versions["first"]["tag"], "v1.0.0");
    assert_eq!(api_versions["last"]["tag"], "v1.4.0");

    // A window of today only: no growth within it.
    let today_only = get_json(&s, "/api/v1/usage?project=team&since_days=0").await;
    assert_eq!(today_only["since"], json!(today));
    assert_eq!(today_only["growers"], json!([]));
    assert_eq!(days_of(series(&today_only, "projects", "team")).len(), 1);

    // The CLI's JSON is the API's answer; its text shows the chart and the grown image.
    let cli: Value = serde_json::from_str(&gantry_usage(&s, &["team", "--json"])).unwrap();
    assert_eq!(cli, report);
    let text = gantry_usage(&s, &["team", "--since", "4w"]);
    assert!(text.contains("team  ▁▃█  "), "{text}");
    let first_project = size::format(1000);
    let last_project = size::format((web_bytes + api_today) as u64);
    assert!(
        text.contains(&format!("{first_project} → {last_project}")),
        "{text}"
    );
    let grew = format!(
        "team/api  v1.0.0 {} → v1.4.0 {} ({:+.0}%)",
        size::format(v1_0_bytes as u64),
        size::format(v1_4_bytes as u64),
        (v1_4_bytes - v1_0_bytes) as f64 * 100.0 / v1_0_bytes as f64
    );
    assert!(text.contains(&grew), "{text}\nwants {grew}");
    assert!(text.contains("Biggest growers"), "{text}");
    let snapshot = gantry_usage(&s, &["snapshot"]);
    assert!(
        snapshot.contains(&format!(
            "Usage snapshot of {today} taken: 1 projects, 2 repositories"
        )),
        "{snapshot}"
    );
}

/// The config `push_sized_image` writes for `tag`, whose length the manifest's size needs.
fn config_len(tag: &str) -> i64 {
    format!(r#"{{"architecture":"amd64","os":"linux","tag":"{tag}"}}"#).len() as i64
}

#[tokio::test]
async fn usage_of_a_project_is_for_those_who_may_list_it_and_every_projects_for_admins() {
    let s = Server::start_configured(&[("GANTRY_AUTO_CREATE_PROJECTS", "false")]);
    api_create_project(&s, "team", false).await;
    api_create_project(&s, "ops", false).await;
    for user in ["guest", "limited", "dev"] {
        api_create_user(&s, user, "a-password", false).await;
    }
    api_set_role(&s, "team", "guest", "guest").await;
    api_set_role(&s, "team", "limited", "limited-guest").await;
    api_set_role(&s, "team", "dev", "developer").await;
    take_snapshot(&s).await;
    let status = |user: &str, method: reqwest::Method, path: &str| {
        let client = http_as(user, "a-password");
        let url = s.url(path);
        async move { client.request(method, url).send().await.unwrap() }
    };
    let r = status("guest", reqwest::Method::GET, "/api/v1/usage?project=team").await;
    assert_eq!(r.status(), StatusCode::OK);
    let report: Value = r.json().await.unwrap();
    assert_eq!(report["projects"][0]["project"], "team");
    assert_eq!(report["projects"].as_array().unwrap().len(), 1);
    for (user, path) in [
        ("limited", "/api/v1/usage?project=team"),
        ("guest", "/api/v1/usage?project=ops"),
        ("dev", "/api/v1/usage"),
    ] {
        let r = status(user, reqwest::Method::GET, path).await;
        assert_error(r, StatusCode::FORBIDDEN, "DENIED").await;
    }
    let r = status("dev", reqwest::Method::POST, "/api/v1/usage/snapshots").await;
    assert_error(r, StatusCode::FORBIDDEN, "DENIED").await;
    let r = http()
        .get(s.url("/api/v1/usage?project=nope"))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let r = http()
        .get(s.url("/api/v1/usage?since_days=36501"))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "INVALID_REQUEST").await;
    let every: Value = get_json(&s, "/api/v1/usage").await;
    let projects: Vec<&str> = every["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["project"].as_str().unwrap())
        .collect();
    assert_eq!(projects, ["ops", "team"]);
}

#[tokio::test]
async fn serve_takes_todays_usage_snapshot_at_start_when_it_is_missing() {
    let mut s = Server::start();
    let (_, bytes) = push_sized_image(&s, "team/api", "v1.0.0", 1000).await;
    // Today's snapshot was taken at start, before the push; without it, the next start takes
    // one, which sees the image.
    sqlite(
        &s,
        "DELETE FROM usage_snapshot_days; DELETE FROM usage_snapshots; \
                DELETE FROM usage_project_snapshots; DELETE FROM usage_version_snapshots;",
    );
    s.restart();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let report = get_json(&s, "/api/v1/usage?project=team").await;
        if let Some(days) = report["projects"][0]["days"].as_array() {
            assert_eq!(days.len(), 1);
            assert_eq!(days[0]["day"], report["until"]);
            assert_eq!(
                (&days[0]["bytes"], &days[0]["pushes"]),
                (&json!(bytes), &json!(1))
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no snapshot at start: {report}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
