//! TLS for `gantry serve`: a certificate chain and its key from PEM files, served with rustls
//! (TLS 1.2 and 1.3; HTTP/2 and HTTP/1.1 chosen by ALPN), and replaced without a restart when
//! the files change or on SIGHUP, so that renewals (certbot, cert-manager) need no downtime.
//! Connections keep the certificate they were opened with; new handshakes get the new one.

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, Context};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;

/// A client that has not finished its handshake by then is dropped (it holds a socket).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the served certificate chain and its private key are (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The chain: the server's certificate first, then the intermediates.
    pub cert: PathBuf,
    /// Its private key: PKCS#8, SEC1 (`EC PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`).
    pub key: PathBuf,
}

/// The flags and settings that name the files, for error messages.
const CERT_SETTING: &str = "--tls-cert, GANTRY_TLS_CERT or [tls] cert";
const KEY_SETTING: &str = "--tls-key, GANTRY_TLS_KEY or [tls] key";

/// rustls's ring provider: the one reqwest already uses, so the binary has one crypto library.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What identifies one version of the files: rewriting either, renaming a new one over it, or
/// re-pointing a symlink (as cert-manager's secret volumes do) changes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FilesVersion([Option<(Option<SystemTime>, u64, u64)>; 2]);

impl FilesVersion {
    fn of(files: &TlsFiles) -> FilesVersion {
        let version = |path: &PathBuf| {
            std::fs::metadata(path)
                .ok()
                .map(|m| (m.modified().ok(), m.len(), m.ino()))
        };
        FilesVersion([version(&files.cert), version(&files.key)])
    }
}

/// Reads the chain and the key and checks that they belong together.
fn load(files: &TlsFiles, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
    let cert = files.cert.display();
    let key = files.key.display();
    let chain_pem = std::fs::read(&files.cert).with_context(|| {
        format!("cannot read the TLS certificate chain {cert} ({CERT_SETTING})")
    })?;
    let chain = CertificateDer::pem_slice_iter(&chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("the TLS certificate chain {cert} is not valid PEM: {e}"))?;
    anyhow::ensure!(
        !chain.is_empty(),
        "the TLS certificate chain {cert} holds no PEM certificate (-----BEGIN CERTIFICATE-----): \
         give the server's certificate, then its intermediates ({CERT_SETTING})"
    );
    let key_pem = std::fs::read(&files.key)
        .with_context(|| format!("cannot read the TLS private key {key} ({KEY_SETTING})"))?;
    let private_key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        anyhow!(
            "the TLS private key {key} holds no PEM private key (PKCS#8, EC or RSA): {e} ({KEY_SETTING})"
        )
    })?;
    CertifiedKey::from_der(chain, private_key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => anyhow!(
            "the TLS private key {key} does not belong to the certificate in {cert}: give the key \
             the certificate was issued for ({KEY_SETTING})"
        ),
        rustls::Error::InvalidCertificate(reason) => {
            anyhow!("the first certificate in {cert} cannot be used: {reason:?} ({CERT_SETTING})")
        }
        other => anyhow!(
            "the TLS private key {key} cannot be used ({other}): it must be an ECDSA (P-256, \
             P-384), Ed25519 or RSA key ({KEY_SETTING})"
        ),
    })
}

/// The SHA-256 fingerprint of the server's own certificate, as logs name it.
fn fingerprint(certified: &CertifiedKey) -> String {
    certified
        .cert
        .first()
        .map(|leaf| gantry_oci::Digest::sha256_of(leaf).to_string())
        .unwrap_or_default()
}

/// The certificate new handshakes get; replaced in place by [`ServedCertificate::reload`].
#[derive(Debug)]
pub struct ServedCertificate {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// The version of the files `current` was read from.
    loaded: RwLock<FilesVersion>,
}

impl ServedCertificate {
    /// Reads the files; an error names the file, what is wrong and the setting to fix.
    pub fn load(files: &TlsFiles) -> anyhow::Result<Arc<ServedCertificate>> {
        let provider = provider();
        // Taken before reading: a change while reading is seen by the next look.
        let version = FilesVersion::of(files);
        let certified = load(files, &provider)?;
        tracing::info!(cert = %files.cert.display(), fingerprint = fingerprint(&certified), "TLS certificate loaded");
        Ok(Arc::new(ServedCertificate {
            files: files.clone(),
            provider,
            current: RwLock::new(Arc::new(certified)),
            loaded: RwLock::new(version),
        }))
    }

    /// Reads the files again if they changed since the last read (always when `forced`).
    /// A chain or key that cannot be used is logged and the previous certificate kept.
    pub fn reload(&self, forced: bool) {
        let version = FilesVersion::of(&self.files);
        {
            let mut loaded = self.loaded.write().unwrap_or_else(|e| e.into_inner());
            if !forced && *loaded == version {
                return;
            }
            // A bad version is reported once, not at every look.
            *loaded = version;
        }
        match load(&self.files, &self.provider) {
            Ok(certified) => {
                tracing::info!(
                    cert = %self.files.cert.display(),
                    fingerprint = fingerprint(&certified),
                    "TLS certificate reloaded"
                );
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(certified);
            }
            Err(e) => tracing::error!(
                error = format!("{e:#}"),
                "the TLS certificate files changed but cannot be used: still serving the previous certificate"
            ),
        }
    }

    /// The rustls configuration: TLS 1.2 and 1.3, ALPN `h2` then `http/1.1`, no client
    /// certificates, and this certificate (as it is at each handshake).
    pub fn server_config(self: &Arc<Self>) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .context("the TLS provider supports neither TLS 1.2 nor 1.3")?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Looks at the files every `poll` (never when `None`) and reloads them when they
    /// changed, and at once on SIGHUP. The signal handler is installed before this returns,
    /// so a SIGHUP after start-up never terminates the server.
    pub fn watch(
        self: &Arc<Self>,
        poll: Option<Duration>,
    ) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("cannot install the SIGHUP handler")?;
        let served = self.clone();
        Ok(tokio::spawn(async move {
            let mut every = poll.map(tokio::time::interval);
            loop {
                let look = async {
                    match every.as_mut() {
                        Some(every) => every.tick().await,
                        None => std::future::pending().await,
                    }
                };
                let forced = tokio::select! {
                    _ = look => false,
                    _ = hangup.recv() => true,
                };
                if forced {
                    tracing::info!("SIGHUP: reloading the TLS certificate");
                }
                let served = served.clone();
                // File reads and key parsing block: off the async workers.
                let _ = tokio::task::spawn_blocking(move || served.reload(forced)).await;
            }
        }))
    }
}

impl ResolvesServerCert for ServedCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// A TCP listener whose connections are TLS: handshakes run in their own tasks, so a slow
/// client cannot hold up others, and only finished handshakes are handed to the HTTP server.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> TlsListener {
        TlsListener {
            tcp,
            acceptor: TlsAcceptor::from(config),
            handshakes: JoinSet::new(),
        }
    }

    /// The next connection whose handshake succeeded. Cancel-safe: state lives in `self`.
    async fn accept(&mut self) -> (TlsStream<TcpStream>, SocketAddr) {
        enum Event {
            Connected(std::io::Result<(TcpStream, SocketAddr)>),
            // Boxed: a TLS session is a kilobyte, a TCP stream a few words.
            Handshaken(Option<Box<(TlsStream<TcpStream>, SocketAddr)>>),
        }
        loop {
            let event = tokio::select! {
                connected = self.tcp.accept() => Event::Connected(connected),
                Some(done) = self.handshakes.join_next() => Event::Handshaken(done.ok().flatten().map(Box::new)),
            };
            match event {
                Event::Connected(Ok((tcp, peer))) => {
                    let acceptor = self.acceptor.clone();
                    self.handshakes.spawn(async move {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(tls)) => Some((tls, peer)),
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                None
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                None
                            }
                        }
                    });
                }
                Event::Connected(Err(e)) => {
                    // Out of file descriptors and the like: wait rather than spin (as axum does).
                    tracing::error!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Event::Handshaken(Some(connection)) => return *connection,
                Event::Handshaken(None) => {}
            }
        }
    }
}

/// The socket `gantry serve` answers on: plain HTTP, or TLS.
pub enum EdgeListener {
    Plain(TcpListener),
    Tls(TlsListener),
}

impl axum::serve::Listener for EdgeListener {
    type Io = Either<TcpStream, TlsStream<TcpStream>>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, SocketAddr) {
        match self {
            EdgeListener::Plain(tcp) => {
                let (io, peer) = axum::serve::Listener::accept(tcp).await;
                (Either::Left(io), peer)
            }
            EdgeListener::Tls(tls) => {
                let (io, peer) = tls.accept().await;
                (Either::Right(io), peer)
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            EdgeListener::Plain(tcp) => tcp.local_addr(),
            EdgeListener::Tls(tls) => tls.tcp.local_addr(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_are_named_with_the_setting_to_fix() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles {
            cert: dir.path().join("absent.crt"),
            key: dir.path().join("absent.key"),
        };
        let err = format!("{:#}", ServedCertificate::load(&files).unwrap_err());
        assert!(
            err.contains("absent.crt") && err.contains("--tls-cert"),
            "{err}"
        );
        std::fs::write(&files.cert, "not a certificate\n").unwrap();
        let err = format!("{:#}", ServedCertificate::load(&files).unwrap_err());
        assert!(err.contains("holds no PEM certificate"), "{err}");
    }

    #[test]
    fn a_changed_file_is_a_new_version() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles {
            cert: dir.path().join("c"),
            key: dir.path().join("k"),
        };
        std::fs::write(&files.cert, "a").unwrap();
        std::fs::write(&files.key, "a").unwrap();
        let before = FilesVersion::of(&files);
        assert_eq!(before, FilesVersion::of(&files));
        // Renamed over, as certbot and editors do: another inode even with the same size.
        std::fs::write(dir.path().join("new"), "b").unwrap();
        std::fs::rename(dir.path().join("new"), &files.key).unwrap();
        assert_ne!(before, FilesVersion::of(&files));
    }
}
