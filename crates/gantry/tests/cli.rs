//! The `gantry` command line: push, pull and copy against a real server, and the errors a
//! user sees when something is wrong.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

/// Runs the CLI as the test servers' admin (credentials from the environment, as in CI).
fn gantry(args: &[&str]) -> std::process::Output {
    gantry_as_admin(args)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn push_pull_and_copy_keep_digests() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    // A layout made by pulling an image gantry pushed over the API.
    let (manifest, digest) = push_image(&s, "seed/app", "v1", "cli").await;
    let first = dir.path().join("first");
    let first_arg = format!("{}:v1", first.display());
    let out = gantry(&["pull", "-q", &format!("{}/seed/app:v1", s.addr), &first_arg]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&digest.to_string()));
    let index: Value =
        serde_json::from_slice(&std::fs::read(first.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest.to_string());
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "v1"
    );

    let out = gantry(&[
        "push",
        "-q",
        &first_arg,
        &format!("{}/pushed/app:v2", s.addr),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = gantry(&[
        "copy",
        "-q",
        &format!("{}/pushed/app:v2", s.addr),
        &format!("{}/copied/app:v3", s.addr),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    let r = http()
        .get(s.url("/v2/copied/app/manifests/v3"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "docker-content-digest"),
        Some(digest.to_string().as_str())
    );
    assert_eq!(r.bytes().await.unwrap(), manifest);
}

#[test]
fn errors_say_what_is_wrong_and_what_to_do() {
    let out = gantry(&["pull", "not-a-registry/app", "/tmp/x"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("registry host") && err.contains("REGISTRY/REPOSITORY"),
        "{err}"
    );

    let out = gantry(&["push", "/nonexistent/layout", "127.0.0.1:1/a:b"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not an OCI image layout"),
        "{}",
        stderr(&out)
    );

    let out = gantry(&[
        "pull",
        "-q",
        "127.0.0.1:1/a:b",
        "/tmp/gantry-test-unreachable",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot reach registry"),
        "{}",
        stderr(&out)
    );

    let out = gantry(&["serve", "--listen", "nonsense"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not an IP:port"), "{}", stderr(&out));
}

#[test]
fn serve_reads_environment_and_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gantry.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:1\"\nunknown_key = 1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .arg("serve")
        .env("GANTRY_CONFIG", &config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("unknown field"), "{}", stderr(&out));
}

#[test]
fn help_teaches_the_commands() {
    let out = gantry(&["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for word in ["serve", "push", "pull", "copy", "127.0.0.1:5000"] {
        assert!(help.contains(word), "--help lacks {word}: {help}");
    }
    let out = gantry(&["serve", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for word in [
        "--listen",
        "--data-dir",
        "GANTRY_LISTEN",
        "GANTRY_DATA_DIR",
        "--config",
    ] {
        assert!(help.contains(word), "serve --help lacks {word}: {help}");
    }
}

/// Runs the CLI with a private HOME (for `gantry login`'s config.json), no credentials in the
/// environment, and `stdin` piped in.
fn gantry_at(
    home: &std::path::Path,
    registry: &str,
    args: &[&str],
    stdin: &str,
) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(args)
        .env("HOME", home)
        .env_remove("DOCKER_CONFIG")
        .env_remove("GANTRY_USERNAME")
        .env_remove("GANTRY_PASSWORD")
        .env("GANTRY_REGISTRY", registry)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn login_then_manage_projects_members_and_ci_tokens() {
    let s = Server::start_configured(&[("GANTRY_AUTO_CREATE_PROJECTS", "false")]);
    let home = tempfile::tempdir().unwrap();
    let g = |args: &[&str], stdin: &str| gantry_at(home.path(), &s.addr, args, stdin);

    // Not logged in: the error says how to log in.
    let out = g(&["project", "list"], "");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("gantry login"), "{}", stderr(&out));
    // A wrong password is refused and nothing is saved.
    let out = g(
        &["login", &s.addr, "-u", "admin", "--password-stdin"],
        "wrong\n",
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("login failed"), "{}", stderr(&out));
    assert!(!home.path().join(".docker/config.json").exists());

    let out = g(
        &["login", &s.addr, "-u", "admin", "--password-stdin"],
        &format!("{ADMIN_PASSWORD}\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let config: Value =
        serde_json::from_slice(&std::fs::read(home.path().join(".docker/config.json")).unwrap())
            .unwrap();
    assert!(config["auths"][&s.addr]["auth"].is_string());

    for args in [
        &["project", "create", "team"][..],
        &["user", "create", "alice", "--password-stdin"][..],
        &["member", "add", "team", "alice", "--role", "maintainer"][..],
    ] {
        let out = g(args, "alice-password\n");
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    let out = g(&["member", "list", "team"], "");
    let members = stdout(&out);
    assert!(
        members.contains("alice") && members.contains("maintainer"),
        "{members}"
    );
    let out = g(&["project", "list", "--json"], "");
    let projects: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        projects["projects"],
        serde_json::json!([{
            "name": "team",
            "public": false,
            "quota": {
                "project": "team",
                "storage": {"used_bytes": 0, "limit_bytes": null},
                "artifacts": {"used": 0, "limit": null},
            },
            "repositories": 0,
            "last_pushed_at": null,
        }])
    );

    // A CI token from the CLI is a working password, until revoked.
    let out = g(
        &[
            "token",
            "create",
            "--project",
            "team",
            "--push",
            "--ttl",
            "10m",
            "--json",
        ],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let token: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (name, secret) = (
        token["name"].as_str().unwrap(),
        token["secret"].as_str().unwrap(),
    );
    assert_eq!(token["actions"], serde_json::json!(["pull", "push"]));
    push_image(&s, "team/app", "v1", "cli").await;
    let ci = http_as(name, secret);
    let r = ci
        .get(s.url("/v2/team/app/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let out = g(&["token", "revoke", name], "");
    assert!(out.status.success(), "{}", stderr(&out));
    // Revocation also clears the server's cache of verified credentials: refused at once.
    let r = ci
        .get(s.url("/v2/team/app/tags/list"))
        .send()
        .await
        .unwrap();
    assert_error(r, reqwest::StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;

    let out = g(&["audit", "--project", "team", "--since", "1h"], "");
    let audit = stdout(&out);
    for action in ["project.create", "member.set", "ci.create", "ci.revoke"] {
        assert!(audit.contains(action), "{action} missing from:\n{audit}");
    }
    // The stored login also serves push/pull.
    let layout = home.path().join("layout");
    let out = g(
        &[
            "pull",
            "-q",
            &format!("{}/team/app:v1", s.addr),
            layout.to_str().unwrap(),
        ],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let out = g(&["logout", &s.addr], "");
    assert!(out.status.success());
    let out = g(&["project", "list"], "");
    assert!(!out.status.success(), "logged out");
}

/// Each fixture Dockerfile says on its first line which rules it must hit (`# expect: GL001`);
/// every rule is hit by one and missed by the others. The `good-*` ones are a corpus of
/// real-world multi-stage Go Dockerfiles (cross-builds on $BUILDPLATFORM, distroless,
/// chainguard, alpine, scratch, heredocs, ARG-built FROM lines) that must lint clean; the ones
/// named after a fault (`en-dash-flag`, `curly-quoted-cmd`, `heredoc-go-build`,
/// `distroless-nonroot-no-user`) pin what BuildKit makes of them.
#[test]
fn lint_finds_exactly_the_expected_rules_in_each_fixture() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dockerfiles");
    let mut hit = std::collections::BTreeSet::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let want: Vec<&str> = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect:"))
            .expect("a first line # expect: ...")
            .split_whitespace()
            .collect();
        let out = gantry(&["lint", "--json", path.to_str().unwrap()]);
        let findings: Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut got: Vec<&str> = findings
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["rule"].as_str().unwrap())
            .collect();
        got.sort();
        got.dedup();
        assert_eq!(got, want, "{}", path.display());
        let errors = findings
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["severity"] == "error");
        assert_eq!(
            out.status.success(),
            !errors,
            "{}: exit status follows errors",
            path.display()
        );
        hit.extend(got.iter().map(|r| r.to_string()));
    }
    // Every rule `gantry lint --help` lists is hit by some fixture, and only those.
    let help = gantry(&["lint", "--help"]);
    let listed: std::collections::BTreeSet<String> = String::from_utf8_lossy(&help.stdout)
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("GL"))
        .map(|l| format!("GL{}", &l[..3]))
        .collect();
    assert_eq!(listed.len(), 14, "{listed:?}");
    assert_eq!(hit, listed, "every rule is hit by some fixture");
    let clean = files
        .iter()
        .filter(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .starts_with("# expect:\n")
        })
        .count();
    assert!(
        clean >= 10,
        "a corpus of real-world Dockerfiles lints clean: {clean}"
    );

    // What `gantry init dockerfile` prints passes.
    let out = gantry(&["init", "dockerfile", "--package", "./cmd/api"]);
    let temp = tempfile::tempdir().unwrap();
    let path = temp.path().join("Dockerfile");
    std::fs::write(&path, &out.stdout).unwrap();
    let out = gantry(&["lint", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = gantry(&["lint", "/nonexistent/Dockerfile"]);
    assert!(stderr(&out).contains("cannot read"), "{}", stderr(&out));
}
