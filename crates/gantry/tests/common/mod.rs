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

/// A test's registry: one `gantry serve` process, or with `GANTRY_TEST_REPLICAS=N` (N > 1)
/// N of them behind a loopback nginx (see [`REPLICAS_ENV`]). `base` and `addr` are where
/// clients go: the process, or the balancer.
pub struct Server {
    pub base: String,
    pub addr: String,
    /// `http://IP:PORT` of the unauthenticated metrics listener, when one was asked for
    /// (GANTRY_METRICS_LISTEN; the first replica's in replica mode).
    pub metrics_base: Option<String>,
    /// The test's data directory: the server's, or in replica mode the directory holding each
    /// replica's own (`replica-N`), the shared token key, the shared archive directory and
    /// the balancer's files.
    pub data_dir: PathBuf,
    /// In replica mode, the `s3://BUCKET/PREFIX` the replicas keep blobs in.
    pub storage_location: Option<String>,
    processes: Vec<Process>,
    balancer: Option<Balancer>,
    _temp: Option<tempfile::TempDir>,
}

/// One `gantry serve` process and what it was started with, so it can be started again.
struct Process {
    child: Option<Child>,
    addr: String,
    data_dir: PathBuf,
    /// The directory whose PostgreSQL database it uses (the test's data directory).
    database_of: PathBuf,
    env: Vec<(String, String)>,
}

/// A `gantry serve` started but not yet known to be ready (killed if dropped so: a start
/// that fails leaves no process behind).
struct Launching {
    child: Option<Child>,
    ready: std::sync::mpsc::Receiver<Value>,
}

impl Drop for Launching {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Spawns `gantry serve`; [`Launching::ready`] waits for its JSON "ready" log line, which
/// carries the address it bound (and the metrics listener's, if any). Binding port 0 in the
/// server avoids races between tests picking free ports.
fn launch(
    listen: &str,
    data_dir: &Path,
    database_of: &Path,
    env: &[(String, String)],
) -> Launching {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gantry"));
    if let Some(url) = postgres_database_for(database_of) {
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
        .envs(env.iter().map(|(k, v)| (k, v)))
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
    Launching {
        child: Some(child),
        ready: rx,
    }
}

impl Launching {
    fn ready(mut self) -> (Child, Value) {
        let ready = self
            .ready
            .recv_timeout(Duration::from_secs(30))
            .expect("gantry did not report that it is ready");
        (self.child.take().unwrap(), ready)
    }
}

/// The PostgreSQL server the integration tests run on instead of SQLite when set (an admin
/// connection URL), as the metadata suite does with the same variable.
pub const POSTGRES_ENV: &str = "GANTRY_TEST_POSTGRES";

/// With `GANTRY_TEST_POSTGRES` set: the URL of the database that belongs to `data_dir`
/// (created on first use), so a server restarted on the same data directory finds its data.
fn postgres_database_for(data_dir: &Path) -> Option<String> {
    let admin = std::env::var(POSTGRES_ENV).ok()?;
    let name = postgres_database_name(data_dir);
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

/// The name of the database that belongs to `data_dir`.
fn postgres_database_name(data_dir: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    data_dir.hash(&mut hasher);
    format!("gantry_it_{:016x}", hasher.finish())
}

/// Drops the database that belongs to `data_dir`, if `GANTRY_TEST_POSTGRES` is set (a test
/// run makes hundreds; left behind, they filled the disk). Failures are ignored: it is
/// cleanup, and runs in `Drop`.
fn drop_postgres_database(data_dir: &Path) {
    let Ok(admin) = std::env::var(POSTGRES_ENV) else {
        return;
    };
    let name = postgres_database_name(data_dir);
    let _ = Command::new("psql")
        .args([&admin, "-qc"])
        .arg(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn listen_field(ready: &Value) -> String {
    ready["listen"].as_str().unwrap_or_default().to_string()
}

/// How many `gantry serve` processes every test server is made of. Set to N > 1, each
/// `Server::start*` starts N replicas that share the test's PostgreSQL database
/// (`GANTRY_TEST_POSTGRES`, required), a prefix of its own in the Garage bucket
/// (`GANTRY_TEST_S3_*`, required), one token signing key, the admin password and an archive
/// directory, each with its own data directory, behind a loopback nginx configured by
/// `deploy/nginx/gantry.conf` that sends consecutive requests to different replicas.
/// `scripts/test-all.sh` runs the integration tests of its PostgreSQL pass with 3.
pub const REPLICAS_ENV: &str = "GANTRY_TEST_REPLICAS";

/// The number of processes per test server: 1 unless `GANTRY_TEST_REPLICAS` says more.
pub fn replica_count() -> usize {
    match std::env::var(REPLICAS_ENV) {
        Err(_) => 1,
        Ok(n) => n
            .parse()
            .ok()
            .filter(|n| *n >= 1)
            .unwrap_or_else(|| panic!("{REPLICAS_ENV}={n:?} is not a number of replicas")),
    }
}

/// Whether test servers are several replicas behind a balancer.
pub fn replicated() -> bool {
    replica_count() > 1
}

/// A free loopback port (bound and released: for servers that take no port 0, and the
/// balancer, which binds it right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What the replicas of the test whose data directory is `dir` share besides the database:
/// kept in files there, so servers started again on the directory find the same.
fn replica_settings(dir: &Path) -> (String, Vec<(String, String)>) {
    std::fs::create_dir_all(dir).unwrap();
    // One signing key, made beforehand as the README says (a key given explicitly must exist).
    let key = dir.join("token-key.pem");
    if !key.exists() {
        run(Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
            ])
            .arg(&key));
    }
    let bucket = gantry_storage::suite::test_bucket();
    let location_file = dir.join("storage-location");
    let location = match std::fs::read_to_string(&location_file) {
        Ok(location) => location,
        Err(_) => {
            std::fs::write(&location_file, &bucket.location).unwrap();
            bucket.location.clone()
        }
    };
    let mut env: Vec<(String, String)> = bucket
        .settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    env.extend([
        ("GANTRY_STORAGE".to_string(), location.clone()),
        ("GANTRY_TOKEN_KEY".to_string(), key.display().to_string()),
        // Archives written by one replica are restored by another: a shared directory.
        (
            "GANTRY_ARCHIVE_LOCATION".to_string(),
            dir.join("archive").display().to_string(),
        ),
        // nginx connects from loopback and names the client in X-Forwarded-For.
        (
            "GANTRY_TRUSTED_PROXIES".to_string(),
            "127.0.0.1".to_string(),
        ),
    ]);
    (location, env)
}

fn owned(env: &[(&str, &str)]) -> Vec<(String, String)> {
    env.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
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
    /// they give it a certificate (GANTRY_TLS_CERT). In replica mode ([`REPLICAS_ENV`]),
    /// `replica_count()` replicas behind nginx.
    pub fn start_with(data_dir: &Path, env: &[(&str, &str)]) -> Server {
        if replicated() {
            return Server::start_replicas(data_dir, env, replica_count());
        }
        let env = owned(env);
        let (child, ready) = launch("127.0.0.1:0", data_dir, data_dir, &env).ready();
        let addr = listen_field(&ready);
        let scheme = if env.iter().any(|(name, _)| name == "GANTRY_TLS_CERT") {
            "https"
        } else {
            "http"
        };
        Server {
            base: format!("{scheme}://{addr}"),
            addr: addr.clone(),
            metrics_base: ready["metrics_listen"]
                .as_str()
                .map(|a| format!("http://{a}")),
            data_dir: data_dir.to_path_buf(),
            storage_location: None,
            processes: vec![Process {
                child: Some(child),
                addr,
                data_dir: data_dir.to_path_buf(),
                database_of: data_dir.to_path_buf(),
                env,
            }],
            balancer: None,
            _temp: None,
        }
    }

    /// `count` replicas on `data_dir` (see [`REPLICAS_ENV`]) behind a loopback nginx; the
    /// test's settings `env` apply to each and win over the shared ones.
    pub fn start_replicas(data_dir: &Path, env: &[(&str, &str)], count: usize) -> Server {
        assert!(
            std::env::var(POSTGRES_ENV).is_ok(),
            "{REPLICAS_ENV} needs {POSTGRES_ENV}: replicas share a PostgreSQL database \
             (scripts/postgres.sh start DIR prints one)"
        );
        let (location, mut settings) = replica_settings(data_dir);
        let port = free_port();
        let public = format!("http://127.0.0.1:{port}");
        settings.push(("GANTRY_PUBLIC_URL".to_string(), public.clone()));
        settings.extend(owned(env));
        // Started together: they migrate the shared database once, under its lock.
        let launching: Vec<_> = (0..count)
            .map(|i| {
                let own = data_dir.join(format!("replica-{i}"));
                (
                    own.clone(),
                    launch("127.0.0.1:0", &own, data_dir, &settings),
                )
            })
            .collect();
        let mut metrics_base = None;
        let processes: Vec<Process> = launching
            .into_iter()
            .map(|(own, launching)| {
                let (child, ready) = launching.ready();
                metrics_base = metrics_base.take().or_else(|| {
                    ready["metrics_listen"]
                        .as_str()
                        .map(|a| format!("http://{a}"))
                });
                Process {
                    child: Some(child),
                    addr: listen_field(&ready),
                    data_dir: own,
                    database_of: data_dir.to_path_buf(),
                    env: settings.clone(),
                }
            })
            .collect();
        let upstreams: Vec<&str> = processes.iter().map(|p| p.addr.as_str()).collect();
        let balancer = Balancer::start(&data_dir.join("balancer"), port, &upstreams);
        Server {
            base: public,
            addr: format!("127.0.0.1:{port}"),
            metrics_base,
            data_dir: data_dir.to_path_buf(),
            storage_location: Some(location),
            processes,
            balancer: Some(balancer),
            _temp: None,
        }
    }

    /// How many `gantry serve` processes this server is.
    pub fn replicas(&self) -> usize {
        self.processes.len()
    }

    /// `http://IP:PORT` of replica `i` itself, past the balancer.
    pub fn replica_base(&self, i: usize) -> String {
        format!("http://{}", self.processes[i].addr)
    }

    /// The process id of the server (of the first replica in replica mode).
    pub fn pid(&self) -> u32 {
        self.processes[0].child.as_ref().expect("running").id()
    }

    /// SIGKILL of every process: no chance to flush or clean up.
    pub fn kill9(&mut self) {
        for i in 0..self.processes.len() {
            self.kill9_replica(i);
        }
    }

    /// SIGKILL of replica `i` alone; the balancer sends requests to the others meanwhile.
    pub fn kill9_replica(&mut self, i: usize) {
        if let Some(mut child) = self.processes[i].child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM and wait: the graceful path (every replica; the last failure, if any).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.terminate_within(Duration::from_secs(60))
            .expect("gantry did not exit within 60 s of SIGTERM")
    }

    /// SIGTERM to every process, then wait at most `limit`; `None` (after SIGKILL) if one
    /// did not exit in time, else the first unsuccessful exit status (or a success).
    pub fn terminate_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        for process in &self.processes {
            let child = process.child.as_ref().expect("running");
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        }
        let deadline = std::time::Instant::now() + limit;
        let mut statuses = Vec::new();
        for process in &mut self.processes {
            let child = process.child.as_mut().expect("running");
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    process.child = None;
                    statuses.push(status);
                    break;
                }
                if std::time::Instant::now() >= deadline {
                    self.kill9();
                    return None;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        statuses
            .iter()
            .find(|s| !s.success())
            .or(statuses.last())
            .copied()
    }

    /// Restarts every process on its data directory, port and settings.
    pub fn restart(&mut self) {
        self.kill9();
        let launching: Vec<_> = (0..self.processes.len())
            .map(|i| self.launch_again(i))
            .collect();
        for (i, launching) in launching.into_iter().enumerate() {
            self.become_ready(i, launching);
        }
    }

    /// Kills replica `i` (if running) and starts it again on its data directory and port.
    pub fn restart_replica(&mut self, i: usize) {
        self.kill9_replica(i);
        let launching = self.launch_again(i);
        self.become_ready(i, launching);
    }

    fn launch_again(&self, i: usize) -> Launching {
        let p = &self.processes[i];
        launch(&p.addr, &p.data_dir, &p.database_of, &p.env)
    }

    fn become_ready(&mut self, i: usize, launching: Launching) {
        let (child, ready) = launching.ready();
        assert_eq!(listen_field(&ready), self.processes[i].addr);
        self.processes[i].child = Some(child);
    }

    /// Peak resident memory of the server process (the first replica) so far, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.proc_status_kib("VmHWM:")
    }

    /// Resident memory of the server process (the first replica) now, in KiB.
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

    /// The replicas' blob store (replica mode), as the tests reach it.
    fn bucket_store(&self) -> Option<gantry_storage::S3BlobStore> {
        let location = self.storage_location.as_ref()?;
        let bucket = gantry_storage::suite::test_bucket();
        let store = gantry_storage::S3BlobStore::open_with(
            location,
            gantry_storage::MIN_PART_SIZE,
            &bucket.settings(),
        );
        Some(store.unwrap())
    }

    /// How many committed blobs the server stores: files under the data directory's
    /// `storage/blobs`, or in replica mode objects under the bucket prefix's `blobs/`.
    pub async fn stored_blobs(&self) -> usize {
        match self.bucket_store() {
            None => files_under(&self.data_dir.join("storage/blobs")),
            Some(store) => store.keys_under("blobs").await.unwrap().len(),
        }
    }

    /// Whether the blob store holds `digest` (its file, or its object in replica mode).
    pub async fn stores_blob(&self, digest: &Digest) -> bool {
        use gantry_storage::BlobStore;
        match self.bucket_store() {
            None => self
                .data_dir
                .join("storage/blobs/sha256")
                .join(&digest.hex()[..2])
                .join(digest.hex())
                .exists(),
            Some(store) => store.stat(digest).await.unwrap().is_some(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        // A server on a directory of its own leaves nothing behind: no server can start on
        // that directory again, so its database goes too.
        if self._temp.is_some() {
            if let Some(process) = self.processes.first() {
                drop_postgres_database(&process.database_of);
            }
        }
    }
}

/// A loopback nginx, as a process of the test's own (its configuration, logs, pid and temp
/// files under `dir`, in the foreground), configured from the reference
/// `deploy/nginx/gantry.conf` with the replicas' addresses and its port.
struct Balancer {
    child: Child,
}

/// The reference configuration the README shows.
const NGINX_REFERENCE_CONF: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/nginx/gantry.conf"
));

impl Balancer {
    fn start(dir: &Path, port: u16, upstreams: &[&str]) -> Balancer {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir.join("temp")).unwrap();
        let path = |name: &str| dir.join(name).display().to_string();
        let mut conf = String::new();
        let mut replicas_written = false;
        for line in NGINX_REFERENCE_CONF.lines() {
            if line.ends_with("# each replica") {
                if !replicas_written {
                    for upstream in upstreams {
                        conf += &line.replace("10.0.0.11:5000", upstream);
                        conf.push('\n');
                    }
                    replicas_written = true;
                }
                continue;
            }
            let line = line.replace("listen 80;", &format!("listen 127.0.0.1:{port};"));
            conf += &line;
            conf.push('\n');
            if line.trim() == "http {" {
                // Paths of the test's own instead of the system's.
                for (directive, name) in [
                    ("access_log", "access.log"),
                    ("client_body_temp_path", "temp/body"),
                    ("proxy_temp_path", "temp/proxy"),
                    ("fastcgi_temp_path", "temp/fastcgi"),
                    ("uwsgi_temp_path", "temp/uwsgi"),
                    ("scgi_temp_path", "temp/scgi"),
                ] {
                    conf += &format!("    {directive} {};\n", path(name));
                }
            }
        }
        assert!(
            replicas_written,
            "deploy/nginx/gantry.conf lists no replica"
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let mut child = Command::new("nginx")
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-g")
            .arg(format!("daemon off; pid {};", path("nginx.pid")))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts (scripts/test-all.sh installs Debian's nginx)");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "nginx exited ({status}): {}",
                    std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
                );
            }
            assert!(std::time::Instant::now() < deadline, "nginx did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Balancer { child }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers (SIGKILL would leave them running).
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// How long pulls counted by one server may take to be seen through another: the pull-count
/// flush interval of `gantry serve` (1 s) and slack for a loaded machine.
pub const PULL_COUNT_STALENESS: Duration = Duration::from_secs(4);

/// In replica mode, says (on stderr) why the calling test does not apply and returns true;
/// the test then returns at once. For tests about one process itself, not about the registry.
pub fn single_process_only(reason: &str) -> bool {
    if replicated() {
        eprintln!("skipped with {} replicas: {reason}", replica_count());
    }
    replicated()
}

/// Polls `check` until it returns `Some`, for at most `limit`; what it returned. For what
/// another process makes visible within a documented bound (pull counts written in batches,
/// the audit log written off the request path), instead of sleeping blindly.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    within(limit, check)
        .await
        .unwrap_or_else(|| panic!("{what}: not within {limit:?}"))
}

/// [`eventually`], with `None` when `limit` passes: for a test that says more about the
/// state it found before failing.
pub async fn within<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(found) = check().await {
            return Some(found);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A client that sends the admin's Basic credentials with every request.
pub fn http() -> reqwest::Client {
    http_as("admin", ADMIN_PASSWORD)
}

/// A client that sends `user`'s Basic credentials with every request.
pub fn http_as(user: &str, password: &str) -> reqwest::Client {
    client_as(user, password).build().unwrap()
}

/// The admin's client that answers redirects to the caller instead of following them.
pub fn http_not_following_redirects() -> reqwest::Client {
    client_as("admin", ADMIN_PASSWORD)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn client_as(user: &str, password: &str) -> reqwest::ClientBuilder {
    let mut headers = reqwest::header::HeaderMap::new();
    let credentials = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{user}:{password}"),
    );
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Basic {credentials}").parse().unwrap(),
    );
    reqwest::Client::builder().default_headers(headers)
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
    let status = r.status();
    let body = r.text().await.unwrap_or_default();
    assert_eq!(status, StatusCode::CREATED, "blob push to {repo}: {body}");
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
    run_with_input(cmd, None)
}

/// [`run`], writing `input` (when given) to its standard input.
pub fn run_with_input(cmd: &mut Command, input: Option<&str>) -> String {
    use std::io::Write;
    let program = format!("{cmd:?}");
    let started = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = started.unwrap_or_else(|e| {
        panic!("cannot run {program}: {e} (is it installed? .ci/run installs it)")
    });
    if let Some(input) = input {
        let mut stdin = child.stdin.take().expect("piped");
        stdin.write_all(input.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{program} failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The Prometheus text of the server (or replica) at `base` (`http://IP:PORT`).
pub async fn metrics_text(base: &str) -> String {
    http()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
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

/// Asserts that no file directly in `server`'s data directory (the SQLite database and its
/// journal) holds `secret` in the clear; a no-op when the metadata is elsewhere (replicas).
pub fn assert_no_data_file_holds(server: &Server, secret: &str) {
    if replicated() {
        return;
    }
    for entry in std::fs::read_dir(&server.data_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds the secret in the clear",
                path.display()
            );
        }
    }
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
    let status = r.status();
    let body = r.text().await.unwrap_or_default();
    assert_eq!(status, StatusCode::CREATED, "create user {name}: {body}");
}

/// Creates a project through the REST API, as admin.
pub async fn api_create_project(server: &Server, name: &str, public: bool) {
    let r = http()
        .post(server.url("/api/v1/projects"))
        .json(&json!({"name": name, "public": public}))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body = r.text().await.unwrap_or_default();
    assert_eq!(status, StatusCode::CREATED, "create project {name}: {body}");
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

/// Runs an offline admin command (`gantry vulndb import …`) on the server's metadata store:
/// its data directory (the first replica's), or the PostgreSQL database the servers share.
/// Panics with the command's output when it fails; returns its stdout.
pub fn gantry_on_store(server: &Server, args: &[&str]) -> String {
    let process = &server.processes[0];
    let mut command = Command::new(env!("CARGO_BIN_EXE_gantry"));
    if let Some(url) = postgres_database_for(&process.database_of) {
        command.env("GANTRY_DATABASE", url);
    }
    command
        .args(args)
        .arg("--data-dir")
        .arg(&process.data_dir)
        .env_remove("GANTRY_CONFIG");
    run(&mut command)
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

/// `len` bytes that gzip cannot shrink (xorshift64), different for each `seed`, so a layer
/// is as large as asked.
pub fn incompressible_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ seed.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Builds a layout (tag `v1`: `app/data.bin` of `big_len` incompressible bytes and a small
/// file) under `dir` and pushes it with skopeo, logged in as admin, to `team/app:v1`.
/// Returns the layout, its index digest and the pushed `docker://` reference.
pub fn skopeo_push_test_layout(s: &Server, dir: &Path, big_len: u32) -> (PathBuf, String, String) {
    let big = incompressible_bytes(big_len as usize, 0);
    make_layout(
        dir,
        "v1",
        &[("app/data.bin", &big), ("app/hello.txt", b"hello\n")],
    );
    let layout = dir.join("layout");
    let pushed = index_digest(&layout);
    login(dir, s, "admin", ADMIN_PASSWORD);
    let dest = format!("docker://{}/team/app:v1", s.addr);
    run(skopeo(dir)
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(&dest));
    (layout, pushed, dest)
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

/// The `gantry` CLI as the admin of `server` (its address and the admin's credentials in the
/// environment): add arguments, then run it ([`run`] when it must succeed).
pub fn gantry_on(server: &Server) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gantry"));
    command
        .env("GANTRY_REGISTRY", &server.addr)
        .env("GANTRY_USERNAME", "admin")
        .env("GANTRY_PASSWORD", ADMIN_PASSWORD);
    command
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

/// Streams `total` bytes of a cheap deterministic pattern without holding them in memory.
pub fn pattern_stream(
    total: u64,
) -> (
    impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>>,
    Digest,
) {
    const CHUNK: usize = 1 << 20;
    let block: Vec<u8> = (0..CHUNK).map(|i| (i * 31 % 251) as u8).collect();
    let mut hasher = gantry_oci::Hasher::new(gantry_oci::Algorithm::Sha256);
    let mut left = total;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        hasher.update(&block[..n]);
        left -= n as u64;
    }
    let block = bytes::Bytes::from(block);
    let stream = futures::stream::unfold(total, move |left| {
        let block = block.clone();
        async move {
            (left > 0).then(|| {
                let n = left.min(CHUNK as u64) as usize;
                (Ok(block.slice(..n)), left - n as u64)
            })
        }
    });
    (stream, hasher.finish())
}

/// Reads a response body to its end without holding it; returns its length and SHA-256.
pub async fn hash_body(response: Response) -> (u64, Digest) {
    use futures::StreamExt;
    let mut body = response.bytes_stream();
    let mut hasher = gantry_oci::Hasher::new(gantry_oci::Algorithm::Sha256);
    let mut received = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        received += chunk.len() as u64;
        hasher.update(&chunk);
    }
    (received, hasher.finish())
}

/// Pushes `size` bytes of [`pattern_stream`] monolithically to `big/blob`, pulls the blob back
/// and checks its length and digest; returns the server's peak RSS growth in MiB and the
/// push's duration in seconds.
pub async fn push_and_pull_a_large_blob(server: &Server, size: u64) -> (u64, f64) {
    let before = server.peak_rss_kib();
    let (stream, digest) = pattern_stream(size);
    let started = std::time::Instant::now();
    let r = http()
        .post(server.url(&format!("/v2/big/blob/blobs/uploads/?digest={digest}")))
        .header("content-length", size)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let push_secs = started.elapsed().as_secs_f64();
    let r = http()
        .get(server.url(&format!("/v2/big/blob/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(hash_body(r).await, (size, digest));
    let growth_mib = server.peak_rss_kib().saturating_sub(before) / 1024;
    (growth_mib, push_secs)
}

/// `gantry scan`, its prepared databases (`--db`) kept in one cache directory for the whole
/// test process (so parallel scans of one snapshot share, and race to build, one entry), not
/// in the user's.
pub fn gantry_scan() -> Command {
    static CACHE: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(|| tempfile::tempdir().unwrap());
    let mut command = Command::new(env!("CARGO_BIN_EXE_gantry"));
    command.arg("scan").env("GANTRY_CACHE_DIR", cache.path());
    command
}

/// The error text of a failed pull, or `Ok` when `command` succeeded.
fn pulled(command: &mut Command) -> Result<(), String> {
    let out = command.output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `skopeo copy` of `reference` out of the registry: the error text when it fails.
pub fn skopeo_pull(server: &Server, dir: &Path, reference: &str) -> Result<(), String> {
    pulled(
        skopeo(dir)
            .args(["copy", "--src-tls-verify=false"])
            .arg(format!("docker://{}/{reference}", server.addr))
            .arg(format!("oci:{}:out", dir.join("pulled").display())),
    )
}

/// `podman pull` of `reference` from the registry: the error text when it fails.
pub fn podman_pull(server: &Server, dir: &Path, reference: &str) -> Result<(), String> {
    pulled(podman(dir, &["pull", "--tls-verify=false"]).arg(format!("{}/{reference}", server.addr)))
}

/// Pushes a cosign v2 (tag-scheme) signature of image `digest` in `repo`: a `.sig` manifest
/// (an OCI image config over one simple signing payload layer) under `sha256-<hex>.sig`; its
/// digest.
pub async fn push_cosign_signature(s: &Server, repo: &str, digest: &str) -> String {
    let payload = format!(r#"{{"critical":{{"image":{{"docker-manifest-digest":"{digest}"}}}}}}"#);
    let config = br#"{"architecture":"","os":"","config":{}}"#;
    push_blob(s, repo, payload.as_bytes()).await;
    push_blob(s, repo, config).await;
    let mut layer = descriptor(
        "application/vnd.dev.cosign.simplesigning.v1+json",
        payload.as_bytes(),
    );
    layer["annotations"] = json!({"dev.cosignproject.cosign/signature": "c2ln"});
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": descriptor(media_type::OCI_CONFIG, config),
        "layers": [layer],
    }))
    .unwrap();
    let tag = format!("{}.sig", digest.replace(':', "-"));
    let put = put_manifest(s, repo, &tag, media_type::OCI_MANIFEST, &manifest).await;
    assert_eq!(put.status(), StatusCode::CREATED);
    gantry_oci::Digest::sha256_of(&manifest).to_string()
}

/// Debian's docker-registry (Distribution 2.8) serving `dir` on a free port, open; stopped on
/// drop; `.1` is its `127.0.0.1:PORT`. It has no referrers API, so a bundle attached there is
/// listed by the fallback tag.
pub struct Distribution(pub std::process::Child, pub String);

impl Distribution {
    pub fn start(dir: &Path) -> Distribution {
        Distribution::start_on(dir, free_port())
    }

    /// [`Distribution::start`] on `port` (the same data again, after a stop).
    pub fn start_on(dir: &Path, port: u16) -> Distribution {
        let addr = format!("127.0.0.1:{port}");
        Distribution::start_at(dir, &addr, Command::new("docker-registry"))
    }

    /// [`Distribution::start`] listening on `addr` (`IP:PORT`), run by `launcher` (a
    /// `docker-registry` command; another host's: [`NetHost::command`]).
    pub fn start_at(dir: &Path, addr: &str, mut launcher: Command) -> Distribution {
        let config = dir.join("distribution.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: error, accesslog: {{disabled: true}}}}\n\
                 storage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\n\
                 http: {{addr: {addr}}}\n",
                dir.join("distribution-data").display()
            ),
        )
        .unwrap();
        let child = launcher
            .arg("serve")
            .arg(&config)
            .spawn()
            .expect("docker-registry (Debian's package; scripts/test-all.sh installs it)");
        // Dropped (killed and waited for) however the wait below ends.
        let peer = Distribution(child, addr.to_string());
        for _ in 0..100 {
            if std::net::TcpStream::connect(&peer.1).is_ok() {
                return peer;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("docker-registry did not listen on {}", peer.1);
    }
}

impl Drop for Distribution {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Another host on this machine: a network namespace joined to this one by a veth pair
/// (`ip netns`, `ip link`; iproute2, as root), at `ns_ip` on a /30 with this side at `host_ip`.
/// Deleted on drop.
pub struct NetHost {
    name: String,
    /// This side's end of the pair.
    link: String,
    /// The other host's end.
    peer: String,
    pub host_ip: String,
    pub ns_ip: String,
}

impl NetHost {
    /// A new host; `n` (0-63) tells apart the hosts of one test process.
    pub fn create(n: u8) -> NetHost {
        let id = format!("{}{n}", std::process::id() % 100_000);
        let subnet = format!("10.213.{}.{}", std::process::id() % 250, 4 * u32::from(n));
        let base: u32 = subnet.rsplit('.').next().unwrap().parse().unwrap();
        let prefix = subnet.rsplit_once('.').unwrap().0.to_string();
        let host = NetHost {
            name: format!("gantry-test-{id}"),
            link: format!("gth{id}"),
            peer: format!("gtn{id}"),
            host_ip: format!("{prefix}.{}", base + 1),
            ns_ip: format!("{prefix}.{}", base + 2),
        };
        let ip = |args: &[&str]| {
            run(Command::new("ip").args(args));
        };
        ip(&["netns", "add", &host.name]);
        ip(&[
            "link", "add", &host.link, "type", "veth", "peer", "name", &host.peer,
        ]);
        ip(&["link", "set", &host.peer, "netns", &host.name]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", host.host_ip),
            "dev",
            &host.link,
        ]);
        ip(&["link", "set", &host.link, "up"]);
        run(host.command("ip").args([
            "addr",
            "add",
            &format!("{}/30", host.ns_ip),
            "dev",
            &host.peer,
        ]));
        run(host.command("ip").args(["link", "set", &host.peer, "up"]));
        run(host.command("ip").args(["link", "set", "lo", "up"]));
        host
    }

    /// `program` run on that host.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    /// Takes the other host's end of the link down (`false`: packets to it are dropped, so
    /// connections time out) or up again.
    pub fn set_reachable(&self, up: bool) {
        run(self
            .command("ip")
            .args(["link", "set", &self.peer, if up { "up" } else { "down" }]));
    }
}

impl Drop for NetHost {
    fn drop(&mut self) {
        // Deleting the namespace deletes the pair with it, usually; the link is made sure of.
        for args in [["netns", "del", &self.name], ["link", "del", &self.link]] {
            let _ = Command::new("ip").args(args).stderr(Stdio::null()).status();
        }
    }
}

/// The tests' fault proxy (`fixtures/fault_proxy.py`) in front of an origin: `addr` is what
/// a Gantry's upstream URL names; it counts requests, answers 429, sends slowly or asks for
/// bearer tokens as its state files say.
pub struct FaultProxy {
    child: std::process::Child,
    pub addr: String,
    pub state: PathBuf,
}

impl FaultProxy {
    pub fn start(dir: &Path, origin: &str) -> FaultProxy {
        let state = dir.join("proxy-state");
        std::fs::create_dir_all(&state).unwrap();
        let port = free_port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fault_proxy.py");
        let child = Command::new("python3")
            .arg(script)
            .arg(origin)
            .arg(port.to_string())
            .arg(&state)
            .spawn()
            .expect("python3 runs the fault proxy");
        let proxy = FaultProxy {
            child,
            addr: format!("127.0.0.1:{port}"),
            state,
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(&proxy.addr).is_ok() {
                return proxy;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the fault proxy did not listen on {}", proxy.addr);
    }

    /// Forwards to `origin` from now on.
    pub fn set_origin(&self, origin: &str) {
        std::fs::write(self.state.join("origin"), origin).unwrap();
    }

    /// `429`: answer every request with 429; empty: forward.
    pub fn set_mode(&self, mode: &str) {
        std::fs::write(self.state.join("mode"), mode).unwrap();
    }

    pub fn send_blobs_slowly(&self) {
        std::fs::write(self.state.join("slow"), "").unwrap();
    }

    /// The requests forwarded (or refused) so far, `METHOD PATH` each, and `done PATH` for
    /// each answer sent whole.
    pub fn log(&self) -> Vec<String> {
        std::fs::read_to_string(self.state.join("log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    pub fn count(&self, line: &str) -> usize {
        self.log().iter().filter(|l| l.as_str() == line).count()
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop();
    }
}
