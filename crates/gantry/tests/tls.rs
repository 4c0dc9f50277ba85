//! TLS in the server and in the `gantry` client, against a test CA the openssl CLI makes:
//! skopeo, podman, containerd and the gantry CLI push and pull over https; a wrong CA is
//! refused; ECDSA and RSA keys serve; HTTP/2 is chosen by ALPN; replacing the certificate files
//! (or SIGHUP) switches the served certificate without dropping a connection in flight; a
//! certificate that cannot be used stops the start with a message naming the file and flag.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

#[derive(Clone, Copy)]
enum KeyKind {
    Ecdsa,
    Rsa,
}

fn openssl(args: &[&str]) -> Command {
    let mut cmd = Command::new("openssl");
    cmd.args(args);
    cmd
}

/// A certificate authority of the test's own (an ECDSA P-256 root in `DIR/NAME/ca.crt`).
struct TestCa {
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl TestCa {
    fn new(dir: &Path, name: &str) -> TestCa {
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("ca.crt"), dir.join("ca.key"));
        run(&mut openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ]));
        TestCa { dir, cert, key }
    }

    /// Issues a server certificate for 127.0.0.1 and localhost with `serial`; returns the
    /// chain file (the certificate, then the CA's) and the key file.
    fn issue(&self, name: &str, kind: KeyKind, serial: u32) -> (PathBuf, PathBuf) {
        let key = self.dir.join(format!("{name}.key"));
        let csr = self.dir.join(format!("{name}.csr"));
        let cert = self.dir.join(format!("{name}.crt"));
        let extensions = self.dir.join(format!("{name}.ext"));
        let algorithm: &[&str] = match kind {
            KeyKind::Ecdsa => &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
            KeyKind::Rsa => &["-newkey", "rsa:2048"],
        };
        run(&mut openssl(
            &[
                &["req", "-new", "-nodes", "-subj", "/CN=127.0.0.1"][..],
                algorithm,
                &[
                    "-keyout",
                    key.to_str().unwrap(),
                    "-out",
                    csr.to_str().unwrap(),
                ],
            ]
            .concat(),
        ));
        std::fs::write(
            &extensions,
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        run(&mut openssl(&[
            "x509",
            "-req",
            "-days",
            "2",
            "-set_serial",
            &serial.to_string(),
            "-in",
            csr.to_str().unwrap(),
            "-CA",
            self.cert.to_str().unwrap(),
            "-CAkey",
            self.key.to_str().unwrap(),
            "-extfile",
            extensions.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ]));
        let chain = self.dir.join(format!("{name}.chain.pem"));
        let mut pem = std::fs::read(&cert).unwrap();
        pem.extend(std::fs::read(&self.cert).unwrap());
        std::fs::write(&chain, pem).unwrap();
        (chain, key)
    }

    /// A directory with the CA as `ca.crt`, as skopeo's and podman's `--cert-dir` take it.
    fn cert_dir(&self) -> PathBuf {
        let dir = self.dir.join("cert-dir");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(&self.cert, dir.join("ca.crt")).unwrap();
        dir
    }

    /// A reqwest client that trusts this CA (and sends no credentials).
    fn client(&self) -> reqwest::Client {
        let pem = std::fs::read(&self.cert).unwrap();
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .build()
            .unwrap()
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A server on `DIR/data` serving TLS with these files, plus extra settings.
fn tls_server(dir: &Path, chain: &Path, key: &Path, env: &[(&str, &str)]) -> Server {
    let mut settings = vec![
        ("GANTRY_TLS_CERT", path(chain)),
        ("GANTRY_TLS_KEY", path(key)),
    ];
    settings.extend_from_slice(env);
    let server = Server::start_with(&dir.join("data"), &settings);
    assert!(server.base.starts_with("https://"), "{}", server.base);
    server
}

/// The serial number (hex, as openssl prints it) of the first certificate in `text`.
fn serial_in(text: &str) -> String {
    let begin = text
        .find("-----BEGIN CERTIFICATE-----")
        .unwrap_or_else(|| panic!("no certificate in: {text}"));
    let end = text[begin..].find("-----END CERTIFICATE-----").unwrap() + begin + 25;
    let mut x509 = openssl(&["x509", "-noout", "-serial"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    x509.stdin
        .take()
        .unwrap()
        .write_all(&text.as_bytes()[begin..end])
        .unwrap();
    let out = x509.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The serial of the certificate a new connection to `addr` gets (verified against `ca`).
fn served_serial(addr: &str, ca: &Path) -> String {
    let out = openssl(&[
        "s_client",
        "-connect",
        addr,
        "-CAfile",
        path(ca),
        "-verify_return_error",
    ])
    .stdin(Stdio::null())
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "s_client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serial_in(&String::from_utf8_lossy(&out.stdout))
}

/// Waits until new connections get the certificate with `serial`.
fn wait_for_serial(addr: &str, ca: &Path, serial: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let served = served_serial(addr, ca);
        if served == serial {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still served {served}, expected {serial}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Replaces `target` with `source` the way renewals do: a new file renamed over the old.
fn replace(source: &Path, target: &Path) {
    let staged = target.with_extension("new");
    std::fs::copy(source, &staged).unwrap();
    std::fs::rename(&staged, target).unwrap();
}

/// A server on files of its own (`DIR/served.crt`, `DIR/served.key`), first holding `chain`
/// and `key`; returns it and the two paths, for replacing.
fn server_on_replaceable_files(
    dir: &Path,
    chain: &Path,
    key: &Path,
    env: &[(&str, &str)],
) -> (Server, PathBuf, PathBuf) {
    let served_chain = dir.join("served.crt");
    let served_key = dir.join("served.key");
    replace(chain, &served_chain);
    replace(key, &served_key);
    let server = tls_server(dir, &served_chain, &served_key, env);
    (server, served_chain, served_key)
}

/// An `openssl s_client` connection, handshake done, that has not sent a request yet.
struct OpenConnection {
    child: std::process::Child,
    output: std::sync::Arc<std::sync::Mutex<String>>,
    reader: std::thread::JoinHandle<()>,
}

impl OpenConnection {
    fn open(addr: &str, ca: &Path) -> OpenConnection {
        let mut child = openssl(&[
            "s_client",
            "-connect",
            addr,
            "-CAfile",
            path(ca),
            "-verify_return_error",
            "-ign_eof",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        let output = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut stdout = child.stdout.take().unwrap();
        let sink = output.clone();
        let reader = std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while !output
            .lock()
            .unwrap()
            .contains("Verify return code: 0 (ok)")
        {
            assert!(
                Instant::now() < deadline,
                "no handshake: {}",
                output.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        OpenConnection {
            child,
            output,
            reader,
        }
    }

    /// Sends one request (the connection then closes) and returns everything s_client printed.
    fn finish(mut self, request: &str) -> String {
        let mut stdin = self.child.stdin.take().unwrap();
        stdin.write_all(request.as_bytes()).unwrap();
        drop(stdin);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "the old connection did not finish"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.reader.join().unwrap();
        let output = self.output.lock().unwrap().clone();
        output
    }
}

/// `Bearer realm="…"` of an anonymous `GET /v2/`.
async fn realm_of(client: &reqwest::Client, server: &Server) -> String {
    let response = client.get(server.url("/v2/")).send().await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::UNAUTHORIZED);
    let challenge = header(&response, "www-authenticate").unwrap().to_string();
    challenge
        .split("realm=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn skopeo_podman_and_the_gantry_cli_push_and_pull_over_https_and_refuse_a_wrong_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "test-ca");
    let (chain, key) = ca.issue("server", KeyKind::Ecdsa, 1);
    let s = tls_server(dir.path(), &chain, &key, &[]);
    // Token challenges send clients to https: a plain-HTTP realm would fail on this port.
    assert_eq!(
        realm_of(&ca.client(), &s).await,
        format!("https://{}/auth/token", s.addr)
    );

    make_layout(dir.path(), "v1", &[("etc/motd", b"hello over TLS\n")]);
    let layout = dir.path().join("layout");
    let pushed = index_digest(&layout);
    let certs = ca.cert_dir();
    run(skopeo(dir.path())
        .args(["login", "--cert-dir", path(&certs), "-u", "admin", "-p"])
        .args([ADMIN_PASSWORD, &s.addr]));
    let image = format!("docker://{}/team/app:v1", s.addr);
    run(skopeo(dir.path())
        .args(["copy", "--dest-cert-dir", path(&certs)])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(&image));
    let out = dir.path().join("skopeo-out");
    run(skopeo(dir.path())
        .args(["copy", "--src-cert-dir", path(&certs), &image])
        .arg(format!("oci:{}:v1", out.display())));
    assert_eq!(
        index_digest(&out),
        pushed,
        "skopeo: digest out equals digest in"
    );

    // podman pulls, retags and pushes back over https.
    let source = format!("{}/team/app:v1", s.addr);
    let target = format!("{}/team/from-podman:v2", s.addr);
    run(&mut podman(
        dir.path(),
        &["pull", "--cert-dir", path(&certs), &source],
    ));
    run(&mut podman(dir.path(), &["tag", &source, &target]));
    run(&mut podman(
        dir.path(),
        &["push", "--cert-dir", path(&certs), &target],
    ));
    let tags = run(skopeo(dir.path()).args([
        "list-tags",
        "--cert-dir",
        path(&certs),
        &format!("docker://{}/team/from-podman", s.addr),
    ]));
    assert_eq!(
        serde_json::from_str::<Value>(&tags).unwrap()["Tags"],
        json!(["v2"])
    );

    // The gantry CLI: a loopback registry without a scheme is tried over https first.
    let ca_cert = path(&ca.cert);
    let gantry_out = dir.path().join("gantry-out");
    let pulled = gantry_as_admin(&[
        "pull",
        &source,
        path(&gantry_out),
        "--ca-cert",
        ca_cert,
        "-q",
    ]);
    assert!(
        pulled.status.success(),
        "{}",
        String::from_utf8_lossy(&pulled.stderr)
    );
    assert_eq!(
        index_digest(&gantry_out),
        pushed,
        "gantry: digest out equals digest in"
    );
    let pushed_by_gantry = format!("{}/team/from-gantry:v3", s.addr);
    let layout_arg = format!("{}:v1", layout.display());
    let pushed_out = gantry_as_admin(&[
        "push",
        &layout_arg,
        &pushed_by_gantry,
        "--ca-cert",
        ca_cert,
        "-q",
    ]);
    assert!(
        pushed_out.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed_out.stderr)
    );
    let raw = run(skopeo(dir.path()).args([
        "inspect",
        "--raw",
        "--cert-dir",
        path(&certs),
        &format!("docker://{pushed_by_gantry}"),
    ]));
    assert_eq!(
        gantry_oci::Digest::sha256_of(raw.as_bytes()).to_string(),
        pushed
    );
    // An explicit https:// in --registry, for the management API.
    let registry = format!("https://{}", s.addr);
    let projects = gantry_as_admin(&[
        "project",
        "list",
        "--registry",
        &registry,
        "--ca-cert",
        ca_cert,
    ]);
    assert!(
        projects.status.success(),
        "{}",
        String::from_utf8_lossy(&projects.stderr)
    );
    assert!(String::from_utf8_lossy(&projects.stdout).contains("team"));

    // A certificate from another CA is refused, by skopeo and by gantry with what to do.
    let other = TestCa::new(dir.path(), "other-ca");
    let stderr = fails(skopeo(dir.path()).args([
        "inspect",
        "--raw",
        "--cert-dir",
        path(&other.cert_dir()),
        &image,
    ]));
    assert!(
        stderr.contains("x509: certificate signed by unknown authority"),
        "{stderr}"
    );
    for wrong in [vec!["--ca-cert", path(&other.cert)], vec![]] {
        let refused = gantry_as_admin(
            &[
                &["pull", &source, path(&dir.path().join("refused")), "-q"][..],
                &wrong[..],
            ]
            .concat(),
        );
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "{stderr}");
        assert!(
            stderr.contains("is not trusted") && stderr.contains("--ca-cert"),
            "{stderr}"
        );
    }
    // Plain HTTP to the TLS port is no registry: an explicit http:// fails.
    let plain = gantry_as_admin(&[
        "project",
        "list",
        "--registry",
        &format!("http://{}", s.addr),
    ]);
    assert!(!plain.status.success());
}

#[tokio::test]
async fn containerd_pulls_and_pushes_over_https_with_a_hosts_toml_naming_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "test-ca");
    let (chain, key) = ca.issue("server", KeyKind::Ecdsa, 2);
    let s = tls_server(dir.path(), &chain, &key, &[]);
    make_layout(
        dir.path(),
        "v1",
        &[("etc/motd", b"hello containerd over TLS\n")],
    );
    run(skopeo(dir.path())
        .args([
            "copy",
            "--dest-cert-dir",
            path(&ca.cert_dir()),
            "--dest-creds",
        ])
        .arg(admin_creds())
        .arg(format!("oci:{}:v1", dir.path().join("layout").display()))
        .arg(format!("docker://{}/team/app:v1", s.addr)));

    // containerd's registry host configuration: DIR/HOST:PORT/hosts.toml.
    let hosts_dir = |name: &str, ca_cert: &Path| {
        let hosts = dir.path().join(name);
        std::fs::create_dir_all(hosts.join(&s.addr)).unwrap();
        std::fs::write(
            hosts.join(&s.addr).join("hosts.toml"),
            format!(
                "server = \"https://{addr}\"\n\n[host.\"https://{addr}\"]\n  \
                 capabilities = [\"pull\", \"resolve\", \"push\"]\n  ca = \"{ca}\"\n",
                addr = s.addr,
                ca = ca_cert.display()
            ),
        )
        .unwrap();
        hosts
    };
    let trusted = hosts_dir("hosts", &ca.cert);
    let containerd = Containerd::start(&dir.path().join("containerd"));
    let source = format!("{}/team/app:v1", s.addr);
    let target = format!("{}/team/from-ctr:v2", s.addr);
    let creds = admin_creds();
    let with_hosts = |hosts: &Path, args: &[&str]| {
        let mut cmd = containerd.ctr(&["images"]);
        cmd.args(&args[..1])
            .arg("--hosts-dir")
            .arg(hosts)
            .args(["--user", &creds])
            .args(&args[1..]);
        cmd
    };
    run(&mut with_hosts(
        &trusted,
        &["pull", "--snapshotter", "native", &source],
    ));
    run(&mut containerd.ctr(&["images", "tag", &source, &target]));
    run(&mut with_hosts(&trusted, &["push", &target]));
    let tags: Value = ca
        .client()
        .get(s.url("/v2/team/from-ctr/tags/list"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tags["tags"], json!(["v2"]));

    let other = TestCa::new(dir.path(), "other-ca");
    let untrusted = hosts_dir("hosts-other", &other.cert);
    let stderr = fails(&mut with_hosts(
        &untrusted,
        &["pull", "--snapshotter", "native", &target],
    ));
    assert!(stderr.contains("x509"), "{stderr}");
}

/// curl against the server, trusting `ca`; returns stdout.
fn curl(ca: &Path, args: &[&str]) -> String {
    run(Command::new("curl")
        .args(["--silent", "--show-error", "--cacert", path(ca)])
        .args(args))
}

#[test]
fn rsa_keys_serve_tls_1_2_and_1_3_and_alpn_negotiates_http2() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "test-ca");
    let (chain, key) = ca.issue("server", KeyKind::Rsa, 3);
    let s = tls_server(dir.path(), &chain, &key, &[]);
    let v2 = s.url("/v2/");
    let version = |args: &[&str]| {
        curl(
            &ca.cert,
            &[
                &["--output", "/dev/null", "--write-out", "%{http_version}"][..],
                args,
                &[&v2],
            ]
            .concat(),
        )
    };
    assert_eq!(version(&["--http2"]), "2", "ALPN chose h2");
    assert_eq!(version(&["--http1.1"]), "1.1", "ALPN chose http/1.1");
    assert_eq!(
        version(&["--tlsv1.2", "--tls-max", "1.2"]),
        "2",
        "TLS 1.2 is served"
    );
    assert_eq!(version(&["--tlsv1.3"]), "2", "TLS 1.3 is served");
    let alpn = run(openssl(&[
        "s_client",
        "-connect",
        &s.addr,
        "-CAfile",
        path(&ca.cert),
        "-alpn",
        "h2",
    ])
    .stdin(Stdio::null()));
    assert!(alpn.contains("ALPN protocol: h2"), "{alpn}");
    // Over HTTP/2 the host comes as :authority; the token realm still names it, with https.
    let headers = curl(
        &ca.cert,
        &[
            "--http2",
            "--dump-header",
            "-",
            "--output",
            "/dev/null",
            &v2,
        ],
    );
    assert!(
        headers.contains(&format!("realm=\"https://{}/auth/token\"", s.addr)),
        "{headers}"
    );
}

#[test]
fn replacing_the_certificate_files_switches_the_served_certificate_without_dropping_a_connection() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "test-ca");
    let (first_chain, first_key) = ca.issue("first", KeyKind::Ecdsa, 0x65);
    let (second_chain, second_key) = ca.issue("second", KeyKind::Rsa, 0xCA);
    let (s, served_chain, served_key) =
        server_on_replaceable_files(dir.path(), &first_chain, &first_key, &[]);
    assert_eq!(served_serial(&s.addr, &ca.cert), "serial=65");

    // A connection opened before the renewal...
    let before = OpenConnection::open(&s.addr, &ca.cert);
    replace(&second_key, &served_key);
    replace(&second_chain, &served_chain);
    // ...while new connections get the new certificate (the files are looked at every 2 s)...
    wait_for_serial(&s.addr, &ca.cert, "serial=CA");
    // ...still completes a request, on the certificate it started with.
    let output = before.finish(&format!(
        "GET /v2/ HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        s.addr
    ));
    assert_eq!(serial_in(&output), "serial=65");
    assert!(output.contains("HTTP/1.1 401"), "{output}");

    // A broken replacement keeps the served certificate and the server up.
    std::fs::write(&served_key, "-----BEGIN PRIVATE KEY-----\nnot a key\n").unwrap();
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(served_serial(&s.addr, &ca.cert), "serial=CA");
    replace(&first_chain, &served_chain);
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        served_serial(&s.addr, &ca.cert),
        "serial=CA",
        "a chain whose key is not beside it is not served"
    );
    replace(&first_key, &served_key);
    wait_for_serial(&s.addr, &ca.cert, "serial=65");
    // SIGTERM still stops a TLS server gracefully (the watcher does not hold it up).
    let mut s = s;
    assert!(s.terminate().success());
}

#[test]
fn sighup_reloads_the_certificate_when_polling_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "test-ca");
    let (first_chain, first_key) = ca.issue("first", KeyKind::Ecdsa, 0x11);
    let (second_chain, second_key) = ca.issue("second", KeyKind::Ecdsa, 0x22);
    let (s, served_chain, served_key) = server_on_replaceable_files(
        dir.path(),
        &first_chain,
        &first_key,
        &[("GANTRY_TLS_RELOAD_POLL_SECS", "0")],
    );
    replace(&second_key, &served_key);
    replace(&second_chain, &served_chain);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        served_serial(&s.addr, &ca.cert),
        "serial=11",
        "without polling only SIGHUP reloads"
    );
    unsafe { libc::kill(s.pid() as i32, libc::SIGHUP) };
    wait_for_serial(&s.addr, &ca.cert, "serial=22");
}

#[test]
fn a_certificate_that_cannot_be_used_stops_the_start_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "test-ca");
    let (chain, _) = ca.issue("one", KeyKind::Ecdsa, 1);
    let (_, other_key) = ca.issue("two", KeyKind::Ecdsa, 2);
    let serve = |tls: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_gantry"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(tls)
            .env("GANTRY_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .output()
            .unwrap();
        assert!(!out.status.success(), "gantry serve {tls:?} started");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let missing = dir.path().join("missing.pem");
    let stderr = serve(&["--tls-cert", path(&missing), "--tls-key", path(&other_key)]);
    assert!(
        stderr.contains("missing.pem") && stderr.contains("--tls-cert"),
        "{stderr}"
    );
    let stderr = serve(&["--tls-cert", path(&chain), "--tls-key", path(&other_key)]);
    assert!(
        stderr.contains("does not belong to the certificate")
            && stderr.contains("two.key")
            && stderr.contains("--tls-key"),
        "{stderr}"
    );
    let stderr = serve(&["--tls-cert", path(&chain)]);
    assert!(stderr.contains("--tls-key"), "{stderr}");
}

/// Kills the child it holds when dropped (an openssl server for one test).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `[vulndb] refresh` from an internal https mirror whose certificate a private CA issued:
/// the refresh trusts `refresh_ca_cert` (the job had only the system's roots before, so such a
/// mirror could not be used).
#[tokio::test]
async fn a_scheduled_refresh_trusts_the_configured_ca_of_its_https_mirror() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "mirror-ca");
    let (chain, key) = ca.issue("mirror", KeyKind::Ecdsa, 7);
    let site = dir.path().join("site");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::copy(gantry_osv::testdata::go_snapshot(), site.join("all.zip")).unwrap();
    let port = free_port();
    // openssl's own https server: -WWW serves the files of its working directory.
    let _mirror = Killed(
        openssl(&["s_server", "-quiet", "-WWW", "-accept"])
            .arg(port.to_string())
            .args(["-cert", path(&chain), "-key", path(&key)])
            .current_dir(&site)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let config = dir.path().join("gantry.toml");
    std::fs::write(
        &config,
        format!(
            "[vulndb]\nrefresh = \"https://127.0.0.1:{port}/all.zip\"\nrefresh_every_secs = 2\n\
             refresh_ca_cert = {:?}\n",
            path(&ca.cert)
        ),
    )
    .unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        &[("GANTRY_CONFIG", path(&config))],
    );
    let url = server.url("/api/v1/jobs?kind=vulndb-refresh&state=succeeded");
    let job = eventually(Duration::from_secs(60), "a succeeded refresh job", || {
        let url = url.clone();
        async move {
            let listing: Value = http().get(&url).send().await.ok()?.json().await.ok()?;
            listing["jobs"].as_array()?.first().cloned()
        }
    })
    .await;
    assert_eq!(job["result"]["records"], 4291, "{job}");
}
