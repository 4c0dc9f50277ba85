//! Test harness: starts the real `gantry serve` binary on a free port with a temporary data
//! directory, and small helpers that speak the Distribution API with reqwest.
#![allow(dead_code)] // each test crate uses a different subset of the helpers

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gantry_oci::{media_type, Digest};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

/// The `admin` password every test server starts with (tests that need the generated one
/// pass an empty GANTRY_ADMIN_PASSWORD).
pub const ADMIN_PASSWORD: &str = "test-admin-password";

/// `admin:ADMIN_PASSWORD`, as skopeo's `--creds` takes it.
pub fn admin_creds() -> String {
    format!("admin:{ADMIN_PASSWORD}")
}

pub struct Server {
    pub base: String,
    pub addr: String,
    /// `http://IP:PORT` of the unauthenticated metrics listener, when one was asked for
    /// (GANTRY_METRICS_LISTEN).
    pub metrics_base: Option<String>,
    pub data_dir: PathBuf,
    child: Option<Child>,
    _temp: Option<tempfile::TempDir>,
}

/// Spawns `gantry serve` and waits for its JSON "ready" log line, which carries the address
/// it bound (and the metrics listener's, if any). Binding port 0 in the server avoids races
/// between tests picking free ports.
fn spawn(listen: &str, data_dir: &Path, env: &[(&str, &str)]) -> (Child, Value) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gantry"));
    if let Some(url) = postgres_database_for(data_dir) {
        command.env("GANTRY_DATABASE", url);
    }
    let mut child = command
        .args([
            "serve",
            "--log-format",
            "json",
            "--listen",
            listen,
            "--data-dir",
        ])
        .arg(data_dir)
        .env("GANTRY_LOG", "warn,gantry::serve=info")
        .env("GANTRY_ADMIN_PASSWORD", ADMIN_PASSWORD)
        // Most tests are about registry behaviour, not projects: let pushes create them.
        // Tests of the access model turn this off.
        .env("GANTRY_AUTO_CREATE_PROJECTS", "true")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gantry binary starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let ready = serde_json::from_str::<Value>(&line)
                .ok()
                .filter(|v| v["message"] == "gantry registry ready");
            match (ready, tx.as_ref()) {
                (Some(v), Some(sender)) => {
                    let _ = sender.send(v);
                    tx = None;
                }
                _ => eprintln!("gantry: {line}"),
            }
        }
    });
    let ready = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("gantry did not report that it is ready");
    (child, ready)
}

/// The PostgreSQL server the integration tests run on instead of SQLite when set (an admin
/// connection URL), as the metadata suite does with the same variable.
pub const POSTGRES_ENV: &str = "GANTRY_TEST_POSTGRES";

/// With `GANTRY_TEST_POSTGRES` set: the URL of the database that belongs to `data_dir`
/// (created on first use), so a server restarted on the same data directory finds its data.
fn postgres_database_for(data_dir: &Path) -> Option<String> {
    use std::hash::{Hash, Hasher};
    let admin = std::env::var(POSTGRES_ENV).ok()?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    data_dir.hash(&mut hasher);
    let name = format!("gantry_it_{:016x}", hasher.finish());
    let exists = Command::new("psql")
        .args([&admin, "-tAc"])
        .arg(format!(
            "SELECT 1 FROM pg_database WHERE datname = '{name}'"
        ))
        .output()
        .expect("psql runs");
    if String::from_utf8_lossy(&exists.stdout).trim() != "1" {
        run(Command::new("psql")
            .args([&admin, "-qc"])
            .arg(format!("CREATE DATABASE {name}")));
    }
    let (base, _) = admin.rsplit_once('/').expect("a URL ending in /DATABASE");
    Some(format!("{base}/{name}"))
}

fn listen_field(ready: &Value) -> String {
    ready["listen"].as_str().unwrap_or_default().to_string()
}

impl Server {
    pub fn start() -> Server {
        Server::start_configured(&[])
    }

    /// Starts a server on a fresh temporary data directory with extra settings.
    pub fn start_configured(env: &[(&str, &str)]) -> Server {
        let temp = tempfile::tempdir().unwrap();
        let data_dir = temp.path().join("data");
        let mut server = Server::start_with(&data_dir, env);
        server._temp = Some(temp);
        server
    }

    /// Starts a server on an existing (or new) data directory.
    pub fn start_in(data_dir: &Path) -> Server {
        Server::start_with(data_dir, &[])
    }

    /// Starts a server with extra environment variables (settings); `base` is https when
    /// they give it a certificate (GANTRY_TLS_CERT).
    pub fn start_with(data_dir: &Path, env: &[(&str, &str)]) -> Server {
        let (child, ready) = spawn("127.0.0.1:0", data_dir, env);
        let addr = listen_field(&ready);
        let scheme = if env.iter().any(|(name, _)| *name == "GANTRY_TLS_CERT") {
            "https"
        } else {
            "http"
        };
        Server {
            base: format!("{scheme}://{addr}"),
            addr,
            metrics_base: ready["metrics_listen"]
                .as_str()
                .map(|a| format!("http://{a}")),
            data_dir: data_dir.to_path_buf(),
            child: Some(child),
            _temp: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM and wait: the graceful path.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.terminate_within(Duration::from_secs(60))
            .expect("gantry did not exit within 60 s of SIGTERM")
    }

    /// SIGTERM, then wait at most `limit`; `None` (after SIGKILL) if it did not exit in time.
    pub fn terminate_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut().expect("running");
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill9();
        None
    }

    /// Restarts on the same data directory and port.
    pub fn restart(&mut self) {
        self.kill9();
        let (child, ready) = spawn(&self.addr, &self.data_dir, &[]);
        assert_eq!(listen_field(&ready), self.addr);
        self.child = Some(child);
    }

    /// Peak resident memory of the server process so far, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.proc_status_kib("VmHWM:")
    }

    /// Resident memory of the server process now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.proc_status_kib("VmRSS:")
    }

    fn proc_status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc status"))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A client that sends the admin's Basic credentials with every request.
pub fn http() -> reqwest::Client {
    http_as("admin", ADMIN_PASSWORD)
}

/// A client that sends `user`'s Basic credentials with every request.
pub fn http_as(user: &str, password: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let credentials = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{user}:{password}"),
    );
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Basic {credentials}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

/// A client without credentials.
pub fn anonymous() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

pub fn header<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Asserts an OCI error response: status, JSON content type and the code.
pub async fn assert_error(response: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status, "status for expected {code}");
    assert_eq!(header(&response, "content-type"), Some("application/json"));
    let body: Value = response.json().await.expect("error body is JSON");
    assert_eq!(body["errors"][0]["code"], code, "body: {body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "message missing: {body}"
    );
    body
}

/// Monolithic upload; returns the digest.
pub async fn push_blob(server: &Server, repo: &str, content: &[u8]) -> Digest {
    let digest = Digest::sha256_of(content);
    let r = http()
        .post(server.url(&format!("/v2/{repo}/blobs/uploads/?digest={digest}")))
        .body(content.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "blob push to {repo}");
    digest
}

pub fn descriptor(media_type: &str, content: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": Digest::sha256_of(content).to_string(), "size": content.len()})
}

/// An OCI image manifest over a config and layers (not pushed).
pub fn image_manifest(config: &[u8], layers: &[&[u8]]) -> Vec<u8> {
    let layers: Vec<Value> = layers
        .iter()
        .map(|l| descriptor(media_type::OCI_LAYER_GZIP, l))
        .collect();
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": descriptor(media_type::OCI_CONFIG, config),
        "layers": layers,
    }))
    .unwrap()
}

pub async fn put_manifest(
    server: &Server,
    repo: &str,
    reference: &str,
    content_type: &str,
    body: &[u8],
) -> Response {
    http()
        .put(server.url(&format!("/v2/{repo}/manifests/{reference}")))
        .header("content-type", content_type)
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

/// Makes tags matching `patterns` immutable in `project` (as admin, through the REST API).
pub async fn api_set_immutable_tags(server: &Server, project: &str, patterns: &[&str]) {
    let r = http()
        .put(server.url(&format!("/api/v1/projects/{project}/tag-rules")))
        .json(&json!({ "immutable": patterns }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "tag rules of {project}");
}

/// Pushes a manifest by its digest (untagged, as `manifest push --all` pushes platform
/// images); returns the digest.
pub async fn push_manifest_by_digest(
    server: &Server,
    repo: &str,
    content_type: &str,
    body: &[u8],
) -> String {
    let digest = Digest::sha256_of(body).to_string();
    let r = put_manifest(server, repo, &digest, content_type, body).await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "manifest push to {repo}@{digest}"
    );
    digest
}

/// Pushes a small image (config + one layer) tagged `tag`; returns manifest bytes and digest.
pub async fn push_image(server: &Server, repo: &str, tag: &str, seed: &str) -> (Vec<u8>, Digest) {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":"{seed}"}}"#).into_bytes();
    let layer = format!("layer of {seed}").into_bytes();
    push_blob(server, repo, &config).await;
    push_blob(server, repo, &layer).await;
    let manifest = image_manifest(&config, &[&layer]);
    let r = put_manifest(server, repo, tag, media_type::OCI_MANIFEST, &manifest).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let digest = Digest::sha256_of(&manifest);
    (manifest, digest)
}

/// Runs an external client, failing the test with its output if it fails.
pub fn run(cmd: &mut Command) -> String {
    let program = format!("{cmd:?}");
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {program}: {e} (is it installed? .ci/run installs it)")
    });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{program} failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Sends one request exactly as written (no client-side path normalisation) and returns the
/// status and body.
pub fn raw_request(server: &Server, method: &str, path: &str) -> (u16, Value) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(&server.addr).unwrap();
    let credentials =
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, admin_creds());
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {credentials}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        server.addr
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// PATCHes `body` to an upload session with `Content-Range: <range>` (a fresh connection, so
/// it also works across server restarts).
pub async fn patch_chunk(server: &Server, location: &str, range: &str, body: &[u8]) -> Response {
    http()
        .patch(server.url(location))
        .header("content-range", range)
        .header("content-type", "application/octet-stream")
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

/// GETs `path` and returns the body, whatever the status (callers assert on the content).
pub async fn get_bytes(server: &Server, path: &str) -> bytes::Bytes {
    http()
        .get(server.url(path))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
}

/// GETs `path` and parses the body as JSON.
pub async fn get_json(server: &Server, path: &str) -> Value {
    http()
        .get(server.url(path))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Creates a user through the REST API, as admin.
pub async fn api_create_user(server: &Server, name: &str, password: &str, admin: bool) {
    let r = http()
        .post(server.url("/api/v1/users"))
        .json(&json!({"name": name, "password": password, "admin": admin}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "create user {name}");
}

/// Creates a project through the REST API, as admin.
pub async fn api_create_project(server: &Server, name: &str, public: bool) {
    let r = http()
        .post(server.url("/api/v1/projects"))
        .json(&json!({"name": name, "public": public}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "create project {name}");
}

/// Gives `user` `role` in `project` through the REST API, as admin.
pub async fn api_set_role(server: &Server, project: &str, user: &str, role: &str) {
    let r = http()
        .put(server.url(&format!("/api/v1/projects/{project}/members/{user}")))
        .json(&json!({ "role": role }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{user} as {role} in {project}");
}

// ---- real clients -------------------------------------------------------------------

/// Builds a small OCI layout with umoci: one layer holding `files`.
pub fn make_layout(dir: &Path, tag: &str, files: &[(&str, &[u8])]) {
    let layout = dir.join("layout");
    let bundle = dir.join("bundle");
    let image = format!("{}:{tag}", layout.display());
    run(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout));
    run(Command::new("umoci").args(["new", "--image", &image]));
    run(Command::new("umoci")
        .args(["unpack", "--rootless", "--image", &image])
        .arg(&bundle));
    for (name, content) in files {
        let path = bundle.join("rootfs").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    run(Command::new("umoci")
        .args(["repack", "--image", &image])
        .arg(&bundle));
}

pub fn index_digest(layout: &Path) -> String {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// skopeo with a private blob-info cache and credentials file (`auth.json` under
/// XDG_RUNTIME_DIR, which podman shares) per test, so earlier runs cannot skip uploads.
pub fn skopeo(dir: &Path) -> Command {
    let mut cmd = Command::new("skopeo");
    cmd.env("XDG_RUNTIME_DIR", dir).env("HOME", dir);
    cmd.arg("--registries-conf").arg("/dev/null");
    cmd
}

/// podman with private storage and credentials under `dir`.
pub fn podman(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = with_private_storage("podman", dir);
    cmd.args(args);
    cmd
}

/// buildah with private storage under `dir` (the same layout as [`podman`]'s).
pub fn buildah(dir: &Path) -> Command {
    with_private_storage("buildah", dir)
}

/// A containers/storage tool (podman, buildah) with its storage, home and registries
/// configuration under `dir`, so tests share nothing with each other or the machine.
fn with_private_storage(program: &str, dir: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.arg("--root")
        .arg(dir.join("root"))
        .arg("--runroot")
        .arg(dir.join("run"))
        .args(["--storage-driver", "vfs"])
        .env("HOME", dir)
        .env("XDG_RUNTIME_DIR", dir)
        .env("CONTAINERS_REGISTRIES_CONF", "/dev/null");
    cmd
}

/// Runs a client that must fail; returns its stderr.
pub fn fails(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "{cmd:?} should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs the `gantry` CLI as the test servers' admin (credentials from the environment, as in
/// CI); the caller checks the outcome.
pub fn gantry_as_admin(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(args)
        .env("GANTRY_USERNAME", "admin")
        .env("GANTRY_PASSWORD", ADMIN_PASSWORD)
        .output()
        .unwrap()
}

/// `skopeo login` as `user`: later skopeo and podman commands in `dir` use the stored
/// credentials through the token flow.
pub fn login(dir: &Path, server: &Server, user: &str, password: &str) {
    run(skopeo(dir).args([
        "login",
        "--tls-verify=false",
        "-u",
        user,
        "-p",
        password,
        &server.addr,
    ]));
}

/// A containerd daemon of the test's own, with every path under `dir`.
pub struct Containerd {
    child: std::process::Child,
    socket: std::path::PathBuf,
}

impl Containerd {
    pub fn start(dir: &Path) -> Containerd {
        std::fs::create_dir_all(dir).unwrap();
        let socket = dir.join("containerd.sock");
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\", \"io.containerd.snapshotter.v1.btrfs\", \
                 \"io.containerd.snapshotter.v1.zfs\", \"io.containerd.snapshotter.v1.devmapper\", \
                 \"io.containerd.snapshotter.v1.aufs\"]\n[grpc]\n  address = \"{socket}\"\n",
                root = dir.join("root").display(),
                state = dir.join("state").display(),
                socket = socket.display(),
            ),
        )
        .unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("containerd starts (.ci/run installs it)");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !socket.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "containerd did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Containerd { child, socket }
    }

    pub fn ctr(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address").arg(&self.socket).args(args);
        cmd
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How many files lie under `dir`, at any depth (0 when it does not exist).
pub fn files_under(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().path())
                .map(|p| if p.is_dir() { files_under(&p) } else { 1 })
                .sum()
        })
        .unwrap_or(0)
}

/// Garbage collection with no grace window, once the second has turned (links made in the
/// cutoff second stay); returns the report.
pub async fn gc_now(server: &Server) -> Value {
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = http()
        .post(server.url("/api/v1/gc?grace_secs=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}
