//! Running Gantry as an operator does: one server per data directory, a private data
//! directory, logs fit for files and pipes, and administration commands that accept what an
//! administrator means.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// Runs the CLI against `server` as its admin.
fn gantry(server: &Server, args: &[&str]) -> std::process::Output {
    gantry_as_admin(&[args, &["--registry", &server.addr]].concat())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Two `gantry serve` processes on one data directory both started and both ran the
/// schedulers. The second must exit at once, naming the directory and the process holding it.
#[test]
fn second_server_on_the_same_data_directory_is_refused_naming_the_first() {
    let s = Server::start();
    let out = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&s.data_dir)
        .env("GANTRY_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "the second server started");
    let error = text(&out.stderr);
    assert!(
        error.contains(&s.data_dir.display().to_string()),
        "does not name the directory: {error}"
    );
    assert!(
        error.contains(&format!("pid {}", s.pid())),
        "does not name the other process: {error}"
    );
    assert!(
        error.contains("--data-dir"),
        "does not say what to do: {error}"
    );
}

/// The lock dies with its process: after kill -9 the directory is free at once.
#[test]
fn data_directory_lock_is_released_when_the_server_is_killed() {
    let mut s = Server::start();
    s.kill9();
    s.restart();
}

/// `gantry.db` was created mode 0644 although it holds password hashes and secret digests.
/// The data directory and everything in it are private to the server's user.
#[tokio::test]
async fn data_directory_and_everything_in_it_are_private_to_the_server_user() {
    let s = Server::start();
    push_image(&s, "team/app", "v1", "private").await;
    // An upload left open, so its file exists too.
    let r = http()
        .post(s.url("/v2/team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
    let mut seen = 0;
    let mut pending = vec![s.data_dir.clone()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::metadata(&path).unwrap();
        let want = if meta.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(&path), want, "{} is not private", path.display());
        seen += 1;
        if meta.is_dir() {
            pending.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
    }
    for name in ["gantry.db", "gantry.db-wal", "token-signing-key.pem"] {
        assert!(s.data_dir.join(name).exists(), "{name} missing");
    }
    assert!(seen > 10, "only {seen} entries checked");
}

/// A data directory an earlier version left world-readable is made private at start-up.
#[test]
fn data_directory_left_open_by_an_earlier_version_is_tightened_at_start() {
    let mut s = Server::start();
    s.terminate();
    std::fs::set_permissions(&s.data_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let db = s.data_dir.join("gantry.db");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    s.restart();
    assert_eq!(mode(&s.data_dir), 0o700);
    assert_eq!(mode(&db), 0o600);
}

/// `gantry serve` on a new data directory under `dir`, any port, text logs at info level.
fn serve_with_text_logs(dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gantry"));
    command
        .args(["serve", "--log-format", "text", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env("GANTRY_LOG", "info")
        .env("GANTRY_ADMIN_PASSWORD", ADMIN_PASSWORD);
    command
}

/// Logs written to a file or pipe kept ANSI colour codes. Colour only on a terminal.
#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = serve_with_text_logs(dir.path())
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        let ready = line.contains("gantry registry ready");
        lines.push(line);
        if ready {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let log = lines.join("\n");
    assert!(log.contains("gantry registry ready"), "{log}");
    assert!(log.contains("INFO"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a piped log: {log:?}"
    );
}

/// `gantry gc --grace 0s` was refused with "must be positive and not absurdly long". An
/// administrator who has stopped all pushes may collect everything now: accepted, with a warning.
#[tokio::test]
async fn gc_with_zero_grace_is_accepted_with_a_warning() {
    let s = Server::start();
    let (_, digest) = push_image(&s, "team/app", "v1", "zero-grace").await;
    let r = http()
        .delete(s.url(&format!("/v2/team/app/manifests/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
    // Grace is counted in whole seconds: let the deleted image's blobs be a second old.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let out = gantry(&s, &["gc", "--grace", "0s", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("warning: --grace 0s"),
        "{}",
        text(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["blobs"], 2, "{report}");
    // A zero lifetime is still refused: a token that expires when it is made is a mistake.
    let out = gantry(
        &s,
        &[
            "token",
            "create",
            "--project",
            "team",
            "--pull",
            "--ttl",
            "0s",
        ],
    );
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("zero"), "{}", text(&out.stderr));
}

/// `gantry project set` had `--public` but no `--private`.
#[tokio::test]
async fn project_set_has_private_as_well_as_public() {
    let s = Server::start();
    api_create_project(&s, "team", false).await;
    let visibility = |s: &Server| {
        let out = gantry(s, &["project", "show", "team", "--json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["public"].clone()
    };
    let out = gantry(&s, &["project", "set", "team", "--public"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(visibility(&s), true);
    let out = gantry(&s, &["project", "set", "team", "--private"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(visibility(&s), false);
    // Neither, or both: the error names the choice.
    let out = gantry(&s, &["project", "set", "team"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--public"),
        "{}",
        text(&out.stderr)
    );
    let out = gantry(&s, &["project", "set", "team", "--public", "--private"]);
    assert!(!out.status.success());
}

/// The systemd units in packaging/ load without a single remark from `systemd-analyze verify`
/// (ExecStart pointed at the binary under test, since /usr/local/bin/gantry need not exist).
#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let packaging = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging");
    let temp = tempfile::tempdir().unwrap();
    let units = [
        "gantry.service",
        "gantry-backup.service",
        "gantry-backup.timer",
    ];
    for unit in units {
        let text = std::fs::read_to_string(packaging.join(unit)).unwrap();
        let text = text.replace("/usr/local/bin/gantry", env!("CARGO_BIN_EXE_gantry"));
        std::fs::write(temp.path().join(unit), text).unwrap();
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(units)
        .current_dir(temp.path())
        .output()
        .expect("systemd-analyze runs (apt-get install systemd)");
    let remarks: Vec<String> = text(&out.stderr)
        .lines()
        .chain(text(&out.stdout).lines())
        .filter(|line| line.contains("gantry"))
        .map(str::to_string)
        .collect();
    assert!(
        out.status.success() && remarks.is_empty(),
        "systemd-analyze verify: {}\n{remarks:#?}\n{}",
        out.status,
        text(&out.stderr)
    );
}

/// Under systemd, stderr is journald's stream, which stamps every line itself: our lines
/// carried a second timestamp and no priority. With `JOURNAL_STREAM` naming stderr they start
/// with the syslog priority (`<6>` for info) and no time; naming another file (a child whose
/// stderr was redirected inherits the variable), it changes nothing.
#[test]
fn logs_to_journald_carry_priorities_and_no_timestamps_of_their_own() {
    use std::os::unix::fs::MetadataExt;
    fn ready_line(journal_stream: fn(&std::fs::Metadata) -> String) -> String {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("stderr.log");
        let file = std::fs::File::create(&log_path).unwrap();
        let announced = journal_stream(&file.metadata().unwrap());
        let mut child = serve_with_text_logs(dir.path())
            .env("JOURNAL_STREAM", announced)
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let log = loop {
            let log = std::fs::read_to_string(&log_path).unwrap();
            if log.contains("gantry registry ready") || std::time::Instant::now() > deadline {
                break log;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!log.contains('\u{1b}'), "colour codes: {log:?}");
        log.lines()
            .find(|l| l.contains("gantry registry ready"))
            .unwrap_or_else(|| panic!("never ready: {log}"))
            .to_string()
    }
    let line = ready_line(|m| format!("{}:{}", m.dev(), m.ino()));
    let rest = line.strip_prefix("<6>").unwrap_or_else(|| panic!("{line}"));
    assert!(rest.trim_start().starts_with("INFO"), "{line}");
    let line = ready_line(|m| format!("{}:{}", m.dev(), m.ino() + 1));
    assert!(
        line.starts_with(|c: char| c.is_ascii_digit()),
        "our own timestamp first when stderr is not the journal: {line}"
    );
}
