//! Real clients against the real server: skopeo, podman and the oras Python SDK, installed
//! by `.ci/run`. Digests that go in must come out identical.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::{json, Value};

#[test]
fn skopeo_copies_in_and_out_inspects_lists_and_deletes() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let (layout, pushed, dest) = skopeo_push_test_layout(&s, dir.path(), 5_000_000);

    let raw = run(skopeo(dir.path()).args(["inspect", "--tls-verify=false", "--raw", &dest]));
    let raw_digest = gantry_oci::Digest::sha256_of(raw.as_bytes()).to_string();
    assert_eq!(
        raw_digest, pushed,
        "inspect --raw returns the exact manifest bytes"
    );

    let tags: Value = serde_json::from_str(&run(skopeo(dir.path()).args([
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{}/team/app", s.addr),
    ])))
    .unwrap();
    assert_eq!(tags["Tags"], serde_json::json!(["v1"]));

    let out = dir.path().join("out");
    run(skopeo(dir.path())
        .args(["copy", "--src-tls-verify=false", &dest])
        .arg(format!("oci:{}:v1", out.display())));
    assert_eq!(index_digest(&out), pushed, "digest out equals digest in");
    // Every blob came back byte-identical (the layout's files are named by digest).
    for entry in std::fs::read_dir(out.join("blobs/sha256")).unwrap() {
        let path = entry.unwrap().path();
        let content = std::fs::read(&path).unwrap();
        assert_eq!(
            gantry_oci::Digest::sha256_of(&content).hex(),
            path.file_name().unwrap().to_str().unwrap()
        );
        assert!(layout
            .join("blobs/sha256")
            .join(path.file_name().unwrap())
            .exists());
    }

    run(skopeo(dir.path()).args([
        "delete",
        "--tls-verify=false",
        &format!("docker://{}/team/app@{pushed}", s.addr),
    ]));
    let out = skopeo(dir.path())
        .args(["inspect", "--tls-verify=false", "--raw", &dest])
        .output()
        .unwrap();
    assert!(!out.status.success(), "the deleted manifest is gone");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("manifest unknown"), "{stderr}");
}

#[test]
fn podman_pushes_and_pulls() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    make_layout(dir.path(), "v1", &[("srv/app", b"#!/bin/true\n")]);
    let layout = dir.path().join("layout");
    let pushed = index_digest(&layout);
    login(dir.path(), &s, "admin", ADMIN_PASSWORD);
    let podman = |args: &[&str]| run(&mut podman(dir.path(), args));
    // Into the registry with skopeo, through podman's own storage, and back out by push.
    run(skopeo(dir.path())
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker://{}/team/base:v1", s.addr)));
    let source = format!("{}/team/base:v1", s.addr);
    podman(&["pull", "--tls-verify=false", &source]);
    let target = format!("{}/team/podman-pushed:v2", s.addr);
    podman(&["tag", &source, &target]);
    podman(&["push", "--tls-verify=false", &target]);
    podman(&["rmi", "-a", "-f"]);
    podman(&["pull", "--tls-verify=false", &target]);
    let ids = podman(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(ids.contains("team/podman-pushed"), "{ids}");

    // The pushed image's layers are the ones skopeo pushed (same digests).
    let base: Value = serde_json::from_str(&run(skopeo(dir.path()).args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{source}"),
    ])))
    .unwrap();
    let pushed_by_podman: Value = serde_json::from_str(&run(skopeo(dir.path()).args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{target}"),
    ])))
    .unwrap();
    assert_eq!(base["Layers"], pushed_by_podman["Layers"]);
    assert_eq!(base["Digest"], pushed);
}

#[tokio::test]
async fn oras_sdk_pushes_an_artifact_with_a_subject_and_finds_it_as_a_referrer() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    push_image(&s, "other/thing", "v1", "for oras").await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/oras_referrers.py");
    let out = run(Command::new("python3")
        .arg(script)
        .arg(&s.addr)
        .arg(dir.path())
        .env("HOME", dir.path())
        .env("ORAS_USER", "admin")
        .env("ORAS_PASSWORD", ADMIN_PASSWORD));
    assert!(out.contains("oras ok"), "{out}");
}

/// POSTs JSON to the REST API as admin and returns the answer.
async fn api_post(s: &Server, path: &str, body: Value) -> Value {
    let r = http().post(s.url(path)).json(&body).send().await.unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap()
}

#[tokio::test]
async fn skopeo_and_podman_use_robot_accounts_and_ci_tokens_until_expiry_or_revocation() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(
        &dir.path().join("data"),
        &[("GANTRY_AUTO_CREATE_PROJECTS", "false")],
    );
    make_layout(dir.path(), "v1", &[("app/bin", b"binary\n")]);
    let layout = format!("oci:{}:v1", dir.path().join("layout").display());
    api_create_project(&s, "ci", false).await;
    let robot = api_post(
        &s,
        "/api/v1/projects/ci/robots",
        json!({"name": "puller", "actions": ["pull"]}),
    )
    .await;
    let token = api_post(
        &s,
        "/api/v1/tokens",
        json!({"project": "ci", "repository": "ci/app", "actions": ["push"], "ttl_secs": 600}),
    )
    .await;
    assert_eq!(
        token["actions"],
        json!(["pull", "push"]),
        "pushing implies pulling"
    );
    let (ci_name, ci_secret) = (
        token["name"].as_str().unwrap(),
        token["secret"].as_str().unwrap(),
    );
    let image = |tag: &str| format!("docker://{}/ci/app:{tag}", s.addr);
    // skopeo pushing the test layout to `destination` with the credentials stored in `home`.
    let push = |home: &Path, destination: String| {
        let mut cmd = skopeo(home);
        cmd.args(["copy", "--dest-tls-verify=false", &layout])
            .arg(destination);
        cmd
    };
    let home = |name: &str| {
        let path = dir.path().join(name);
        std::fs::create_dir_all(&path).unwrap();
        path
    };

    // The CI token pushes (skopeo logs in, then speaks the bearer-token flow).
    let ci = home("ci");
    login(&ci, &s, ci_name, ci_secret);
    run(&mut push(&ci, image("v1")));
    // ...only where it was minted for.
    let stderr = fails(&mut push(&ci, format!("docker://{}/ci/other:v1", s.addr)));
    assert!(stderr.contains("403"), "{stderr}");

    // The robot pulls, and may not push.
    let bot = home("robot");
    login(
        &bot,
        &s,
        robot["name"].as_str().unwrap(),
        robot["secret"].as_str().unwrap(),
    );
    let out = bot.join("out");
    run(skopeo(&bot)
        .args(["copy", "--src-tls-verify=false"])
        .arg(image("v1"))
        .arg(format!("oci:{}:v1", out.display())));
    let stderr = fails(&mut push(&bot, image("robot")));
    assert!(stderr.contains("denied"), "{stderr}");

    // podman logs in with the robot and pulls.
    let pod_bot = home("podman-robot");
    run(&mut podman(
        &pod_bot,
        &[
            "login",
            "--tls-verify=false",
            "-u",
            robot["name"].as_str().unwrap(),
            "-p",
            robot["secret"].as_str().unwrap(),
            &s.addr,
        ],
    ));
    run(&mut podman(
        &pod_bot,
        &[
            "pull",
            "--tls-verify=false",
            &format!("{}/ci/app:v1", s.addr),
        ],
    ));

    // A developer (a user, not an admin) copies between repositories: skopeo asks one token
    // for pull on the source and push on the destination, and mounts the blobs.
    api_create_user(&s, "dev", "dev-password", false).await;
    api_set_role(&s, "ci", "dev", "developer").await;
    let dev = home("dev");
    login(&dev, &s, "dev", "dev-password");
    run(skopeo(&dev)
        .args(["copy", "--src-tls-verify=false", "--dest-tls-verify=false"])
        .arg(image("v1"))
        .arg(format!("docker://{}/ci/copy:v1", s.addr)));

    // podman logs in with the CI token and pushes.
    let pod = home("podman");
    run(&mut podman(
        &pod,
        &[
            "login",
            "--tls-verify=false",
            "-u",
            ci_name,
            "-p",
            ci_secret,
            &s.addr,
        ],
    ));
    let source = format!("{}/ci/app:v1", s.addr);
    let target = format!("{}/ci/app:podman", s.addr);
    run(&mut podman(&pod, &["pull", "--tls-verify=false", &source]));
    run(&mut podman(&pod, &["tag", &source, &target]));
    run(&mut podman(&pod, &["push", "--tls-verify=false", &target]));
    let tags: Value = serde_json::from_str(&run(skopeo(&bot).args([
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{}/ci/app", s.addr),
    ])))
    .unwrap();
    assert_eq!(tags["Tags"], json!(["podman", "v1"]));

    // Revoked: the next push fails at once.
    let r = http()
        .delete(s.url(&format!("/api/v1/tokens/{}", ci_name.replace('$', "%24"))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::NO_CONTENT);
    if replicated() {
        // The other replicas drop their caches within about a second of the change (the
        // access change counter, see ARCHITECTURE): until then one may still issue a token.
        eventually(
            std::time::Duration::from_secs(3),
            "every replica refuses the revoked token",
            || async {
                let mut refused = 0;
                for _ in 0..6 {
                    let r = http_as(ci_name, ci_secret)
                        .get(s.url("/auth/token?service=gantry"))
                        .send()
                        .await
                        .unwrap();
                    refused += usize::from(r.status() == reqwest::StatusCode::UNAUTHORIZED);
                }
                (refused == 6).then_some(())
            },
        )
        .await;
    }
    let stderr = fails(&mut push(&ci, image("after-revoke")));
    assert!(stderr.contains("unauthorized"), "{stderr}");

    // Expired: a token minted for 10 s works, then stops by itself (10 s leaves a loaded CI
    // machine time for the first push).
    let short = api_post(
        &s,
        "/api/v1/tokens",
        json!({"project": "ci", "actions": ["pull", "push"], "ttl_secs": 10}),
    )
    .await;
    let started = std::time::Instant::now();
    let brief = home("brief");
    login(
        &brief,
        &s,
        short["name"].as_str().unwrap(),
        short["secret"].as_str().unwrap(),
    );
    run(&mut push(&brief, image("brief")));
    std::thread::sleep(std::time::Duration::from_secs(11).saturating_sub(started.elapsed()));
    let stderr = fails(&mut push(&brief, image("expired")));
    assert!(stderr.contains("unauthorized"), "{stderr}");

    // The audit log names who pushed, and how they logged in.
    let audit: Value = get_json(&s, "/api/v1/audit?project=ci&limit=1000").await;
    let events = audit["events"].as_array().unwrap();
    assert!(events
        .iter()
        .any(|e| e["actor"] == ci_name && e["action"] == "push" && e["resource"] == "ci/app:v1"));
    assert!(events
        .iter()
        .any(|e| e["action"] == "ci.revoke" && e["resource"] == ci_name));
}

#[tokio::test]
async fn containerd_pulls_and_pushes_through_the_oauth2_password_grant() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(
        &dir.path().join("data"),
        &[("GANTRY_AUTO_CREATE_PROJECTS", "false")],
    );
    make_layout(
        dir.path(),
        "v1",
        &[("etc/motd", b"hello from containerd\n")],
    );
    api_create_project(&s, "team", false).await;
    api_create_user(&s, "dev", "dev-password", false).await;
    api_set_role(&s, "team", "dev", "developer").await;
    login(dir.path(), &s, "admin", ADMIN_PASSWORD);
    run(skopeo(dir.path())
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", dir.path().join("layout").display()))
        .arg(format!("docker://{}/team/app:v1", s.addr)));

    let containerd = Containerd::start(&dir.path().join("containerd"));
    let source = format!("{}/team/app:v1", s.addr);
    let target = format!("{}/team/from-ctr:v2", s.addr);
    let user = ["--plain-http", "--user", "dev:dev-password"];
    // Without credentials the private image is refused.
    fails(&mut containerd.ctr(&[
        "images",
        "pull",
        "--plain-http",
        "--snapshotter",
        "native",
        &source,
    ]));
    run(&mut containerd.ctr(
        &[
            &["images", "pull", "--snapshotter", "native"][..],
            &user[..],
            &[source.as_str()][..],
        ]
        .concat(),
    ));
    run(&mut containerd.ctr(&["images", "tag", &source, &target]));
    run(&mut containerd.ctr(&[&["images", "push"][..], &user[..], &[target.as_str()][..]].concat()));
    let tags: Value = get_json(&s, "/v2/team/from-ctr/tags/list").await;
    assert_eq!(tags["tags"], json!(["v2"]));
    // containerd used the OAuth2 form (not the GET fallback), as the audit log records.
    let audit: Value = get_json(&s, "/api/v1/audit?limit=1000").await;
    assert!(audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["actor"] == "dev"
            && e["action"] == "login"
            && e["resource"] == "oauth2-password"
            && e["outcome"] == "success"));
}
