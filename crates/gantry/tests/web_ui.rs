//! The web UI in a real browser (issue 16): Debian's Chromium driven by npm playwright-core
//! (`clients/web_ui.js`, installed by scripts/test-all.sh) against the real server: sign in,
//! find a pushed repository and artifact, read its vulnerabilities and signature state, a
//! label holding markup shown as inert text, a retention dry run, a CI token created and
//! revoked, a form without its CSRF token refused, logout ending the session, and a developer
//! of one project not seeing another. Screenshots of the main pages are saved under the
//! target directory (`tmp/ui-screenshots`).

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::json;

/// Pushes the OCI layout in `dir` (tag `v1`) as `reference`.
fn push_layout(server: &Server, dir: &Path, reference: &str) {
    run(skopeo(dir)
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", dir.join("layout").display()))
        .arg(format!("docker://{}/{reference}", server.addr)));
}

#[tokio::test(flavor = "multi_thread")]
async fn in_a_browser_the_ui_shows_images_runs_a_dry_run_mints_a_token_and_refuses_what_it_must() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let s = Server::start();
    api_create_project(&s, "team-a", false).await;
    api_create_project(&s, "team-b", false).await;
    api_create_user(&s, "dev-a", "dev-a-password-1", false).await;
    api_set_role(&s, "team-a", "dev-a", "developer").await;

    // Vulnerability data for the Debian package the image holds.
    let osv = dir.join("osv");
    std::fs::create_dir_all(&osv).unwrap();
    let record = json!({
        "id": "GANTRY-UI-0001", "modified": "2026-11-01T00:00:00Z",
        "summary": "openssl test advisory",
        "affected": [{
            "package": {"ecosystem": "Debian:12", "name": "openssl"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.99-1"}]}],
        }],
    });
    std::fs::write(osv.join("GANTRY-UI-0001.json"), record.to_string()).unwrap();
    gantry_on_store(&s, &["vulndb", "import", osv.to_str().unwrap(), "--quiet"]);

    // v1: a Debian image with a vulnerable openssl and a label holding markup; v2 later.
    login(dir, &s, "admin", ADMIN_PASSWORD);
    let first = dir.join("first");
    std::fs::create_dir_all(&first).unwrap();
    make_layout(
        &first,
        "v1",
        &[
            ("etc/os-release", b"ID=debian\nVERSION_ID=\"12\"\n"),
            (
                "var/lib/dpkg/status",
                b"Package: openssl\nStatus: install ok installed\nVersion: 3.0.0-1\nArchitecture: amd64\n\n",
            ),
        ],
    );
    run(Command::new("umoci")
        .args(["config", "--image"])
        .arg(format!("{}:v1", first.join("layout").display()))
        .args(["--config.label", "evil=<img src=x onerror=alert(1)>"]));
    std::fs::rename(first.join("layout"), dir.join("layout")).unwrap();
    push_layout(&s, dir, "team-a/app:v1");
    std::fs::remove_dir_all(dir.join("layout")).unwrap();
    let second = dir.join("second");
    std::fs::create_dir_all(&second).unwrap();
    make_layout(&second, "v1", &[("etc/motd", b"the second")]);
    std::fs::rename(second.join("layout"), dir.join("layout")).unwrap();
    push_layout(&s, dir, "team-a/app:v2");
    push_layout(&s, dir, "team-b/secret:v1");

    let r = http()
        .put(s.url("/api/v1/projects/team-a/retention"))
        .json(&json!({"rules": [{"keep": {"most_recently_pushed": 1}}]}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    eventually(std::time::Duration::from_secs(60), "v1 scanned", || async {
        let scan = get_json(
            &s,
            "/api/v1/repositories/team-a%2Fapp/artifacts/v1/vulnerabilities",
        )
        .await;
        (scan["images"][0]["status"] == "scanned").then_some(())
    })
    .await;

    let r = http()
        .post(s.url("/api/v1/usage/snapshots"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());

    let screenshots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/web_ui.js");
    let out = Command::new("node")
        .arg(&script)
        .env("GANTRY_URL", &s.base)
        .env("SCREENSHOTS", &screenshots)
        .env("ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("DEV_USER", "dev-a")
        .env("DEV_PASSWORD", "dev-a-password-1")
        .env("EXPECT_VULNERABILITY", "GANTRY-UI-0001")
        .output()
        .expect("node (scripts/test-all.sh needs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the browser run failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("failed:"), "{stdout}");
    for page in [
        "projects",
        "repository",
        "artifact",
        "retention",
        "tokens",
        "usage",
        "settings",
        "analysis",
    ] {
        let png = std::fs::read(screenshots.join(format!("{page}.png"))).unwrap();
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 10_000,
            "{page}.png"
        );
    }
    // What the browser did went through the API: the admin's token is revoked there, the
    // developer's is theirs.
    let tokens = get_json(&s, "/api/v1/tokens?project=team-a").await;
    let tokens = tokens["credentials"].as_array().unwrap();
    let by = |user: &str| {
        tokens
            .iter()
            .filter(|t| t["created_by"] == user)
            .collect::<Vec<_>>()
    };
    assert_eq!(by("admin").len(), 1, "{tokens:?}");
    assert_eq!(by("admin")[0]["revoked"], true, "{tokens:?}");
    assert_eq!(by("dev-a").len(), 1, "{tokens:?}");
}
