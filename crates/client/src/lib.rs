//! A registry client for the Distribution API and OCI image layouts. Every transfer streams:
//! blobs go from source to destination chunk by chunk, verified against their digest.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

mod api;
mod bearer;
mod docker_config;
mod layout;
mod reference;
mod transfer;

pub use docker_config::DockerConfig;
pub use layout::Layout;
pub use reference::{is_loopback, ImageRef, RefError};
pub use transfer::{copy, pull_to_layout, push_layout, Progress, Silent};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use gantry_oci::{Digest, Hasher};
use reqwest::{header, Method, StatusCode};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach registry {registry}: {source}")]
    Connect {
        registry: String,
        source: reqwest::Error,
    },
    /// The registry's TLS certificate was refused (an unknown CA, another host's name, expired).
    #[error("the TLS certificate of {registry} is not trusted: {reason}")]
    UntrustedCertificate { registry: String, reason: String },
    #[error("cannot use the CA certificates in {path}: {reason}")]
    CaCertificates { path: String, reason: String },
    #[error("{method} {url} failed with {status}: {message}")]
    Status {
        method: Method,
        url: String,
        status: StatusCode,
        message: String,
        /// The `Retry-After` header of a 429 or 503, as sent (seconds or an HTTP date).
        retry_after: Option<String>,
    },
    #[error("{0}")]
    Protocol(String),
    #[error("content of {what} does not match its digest {expected} (got {actual})")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Ref(#[from] RefError),
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// Blob bytes in flight between a source and a destination.
pub type BlobStream = futures::stream::BoxStream<'static, Result<Bytes>>;

/// Basic credentials for registries that ask for them.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({}, ****)", self.username)
    }
}

/// A manifest fetched from a registry: its exact bytes, media type and digest.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub media_type: String,
    pub digest: Digest,
    pub bytes: Bytes,
}

impl FetchedManifest {
    /// Parses the manifest and settles its media type, which is then what a destination is
    /// told. The type it came with (a registry's Content-Type) is trusted when it names a
    /// manifest type; otherwise `descriptor_type`, the media type of the descriptor that named
    /// it (a layout's `index.json`, an index's child), says what a manifest without a
    /// `mediaType` field is (see [`gantry_oci::manifest::parse`]).
    pub fn parse(
        &mut self,
        descriptor_type: Option<&str>,
    ) -> std::result::Result<gantry_oci::ParsedManifest, gantry_oci::ManifestError> {
        let served = self.media_type.as_str();
        let claim = if gantry_oci::media_type::MANIFEST_TYPES.contains(&served) {
            Some(served)
        } else {
            descriptor_type
        };
        let parsed = gantry_oci::manifest::parse(&self.bytes, claim)?;
        self.media_type = parsed.media_type.clone();
        Ok(parsed)
    }
}

/// Every manifest type a client of Gantry accepts.
pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// How a client reaches registries: which scheme, and which certificates it trusts.
#[derive(Clone, Debug, Default)]
pub struct Transport {
    /// Speak plain HTTP to every registry, loopback or not.
    pub plain_http: bool,
    /// A PEM file of CA certificates trusted besides the system's roots (a private CA).
    pub ca_cert: Option<PathBuf>,
    /// How long a connection may take to open; `None`: the system's limit.
    pub connect_timeout: Option<Duration>,
    /// How long a response may go without a byte arriving (headers or body); `None`: no
    /// limit.
    pub read_timeout: Option<Duration>,
}

/// Which scheme a registry is spoken to with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    Https,
    Http,
    /// https, and plain HTTP when the TLS connection cannot be made (loopback registries,
    /// as docker treats them).
    HttpsThenHttp,
}

/// Splits `[https://|http://]host[:port][/]` into the host and the scheme rule: an explicit
/// scheme wins, then `plain_http`; loopback hosts try https first, others speak only https.
fn scheme_of(registry: &str, plain_http: bool) -> (&str, Scheme) {
    let trimmed = registry.trim_end_matches('/');
    if let Some(host) = trimmed.strip_prefix("https://") {
        (host, Scheme::Https)
    } else if let Some(host) = trimmed.strip_prefix("http://") {
        (host, Scheme::Http)
    } else if plain_http {
        (trimmed, Scheme::Http)
    } else if is_loopback(trimmed) {
        (trimmed, Scheme::HttpsThenHttp)
    } else {
        (trimmed, Scheme::Https)
    }
}

/// The HTTP client every gantry client request goes through: gantry's user agent, rustls
/// with the system's roots and `transport.ca_cert`'s certificates. Fails when `ca_cert`
/// cannot be read or holds no certificate.
pub fn http_client(transport: &Transport) -> Result<reqwest::Client> {
    let mut http = reqwest::Client::builder()
        .user_agent(concat!("gantry/", env!("CARGO_PKG_VERSION")))
        .pool_max_idle_per_host(16);
    if let Some(timeout) = transport.connect_timeout {
        http = http.connect_timeout(timeout);
    }
    if let Some(timeout) = transport.read_timeout {
        http = http.read_timeout(timeout);
    }
    if let Some(path) = &transport.ca_cert {
        for certificate in ca_certificates(path)? {
            http = http.add_root_certificate(certificate);
        }
    }
    Ok(http.build().expect("HTTP client builds"))
}

/// A connection to one registry host.
#[derive(Clone, Debug)]
pub struct RegistryClient {
    http: reqwest::Client,
    /// `host[:port]`
    host: String,
    scheme: Scheme,
    /// `scheme://host[:port]`, settled by the first request.
    base: Arc<tokio::sync::OnceCell<String>>,
    credentials: Option<Credentials>,
    /// Bearer tokens from the registry's token realm, by repository (a registry using token
    /// authentication; empty otherwise).
    tokens: Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>,
}

impl RegistryClient {
    /// `registry` is `host[:port]`, or `https://host[:port]` / `http://host[:port]` to fix the
    /// scheme. Without one, a loopback registry is tried over https first and then plain HTTP
    /// (as docker does), any other over https only unless `transport.plain_http` is set.
    /// Fails when `transport.ca_cert` cannot be read or holds no certificate.
    pub fn new(
        registry: &str,
        transport: &Transport,
        credentials: Option<Credentials>,
    ) -> Result<RegistryClient> {
        let (host, scheme) = scheme_of(registry, transport.plain_http);
        Ok(RegistryClient {
            http: http_client(transport)?,
            host: host.to_string(),
            scheme,
            base: Arc::default(),
            credentials,
            tokens: Arc::default(),
        })
    }

    /// Client for the registry an image reference names (see [`RegistryClient::new`]).
    pub fn for_ref(
        image: &ImageRef,
        transport: &Transport,
        credentials: Option<Credentials>,
    ) -> Result<RegistryClient> {
        RegistryClient::new(&image.registry, transport, credentials)
    }

    /// `scheme://host[:port]`; the first call settles the scheme of a loopback registry by
    /// asking `/v2/` over https and, when no TLS connection can be made, over plain HTTP.
    async fn base(&self) -> Result<&str> {
        let base = self.base.get_or_try_init(|| async {
            let https = format!("https://{}", self.host);
            let http = format!("http://{}", self.host);
            match self.scheme {
                Scheme::Https => Ok(https),
                Scheme::Http => Ok(http),
                Scheme::HttpsThenHttp => match self.http.get(format!("{https}/v2/")).send().await {
                    Ok(_) => Ok(https),
                    Err(tls_failure) => match self.http.get(format!("{http}/v2/")).send().await {
                        Ok(_) => Ok(http),
                        // Neither answers: the https failure says more (e.g. an untrusted
                        // certificate) than a TLS server's refusal of plain HTTP.
                        Err(_) => Err(connect_error(&https, tls_failure)),
                    },
                },
            }
        });
        base.await.map(String::as_str)
    }

    async fn url(&self, path: &str) -> Result<String> {
        Ok(format!("{}{path}", self.base().await?))
    }

    /// A request with the token kept for its repository, else the Basic credentials.
    fn request(&self, method: Method, url: &str) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, url);
        let token = self
            .tokens
            .lock()
            .expect("token table")
            .get(bearer::repository_of(url))
            .cloned();
        match (token, &self.credentials) {
            (Some(token), _) => builder.bearer_auth(token),
            (None, Some(c)) => builder.basic_auth(&c.username, Some(&c.password)),
            (None, None) => builder,
        }
    }

    /// Sends a request; a 401 with a `Bearer` challenge is answered with a token from the
    /// challenge's realm and the request sent again (when its body can be sent twice).
    async fn send(&self, builder: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let again = builder.try_clone();
        let response = builder.send().await.map_err(|e| self.unreachable(e))?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let challenge = response
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(bearer::parse_challenge);
        let (Some(challenge), Some(again)) = (challenge, again) else {
            return Ok(response);
        };
        let token = self.token(&challenge).await?;
        let mut request = again
            .build()
            .map_err(|e| ClientError::Protocol(format!("cannot repeat the request: {e}")))?;
        self.tokens.lock().expect("token table").insert(
            bearer::repository_of(request.url().as_str()).to_string(),
            token.clone(),
        );
        let value = header::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| ClientError::Protocol("the token realm sent an unusable token".into()))?;
        request.headers_mut().insert(header::AUTHORIZATION, value);
        self.http
            .execute(request)
            .await
            .map_err(|e| self.unreachable(e))
    }

    fn unreachable(&self, source: reqwest::Error) -> ClientError {
        let registry = self.base.get().map_or(self.host.as_str(), String::as_str);
        connect_error(registry, source)
    }

    /// A token from `challenge`'s realm for its service and scope, asked with the Basic
    /// credentials when there are any.
    async fn token(&self, challenge: &bearer::Challenge) -> Result<String> {
        let mut url = reqwest::Url::parse(&challenge.realm).map_err(|e| {
            ClientError::Protocol(format!(
                "token realm {:?} is not a URL: {e}",
                challenge.realm
            ))
        })?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = &challenge.service {
                query.append_pair("service", service);
            }
            if let Some(scope) = &challenge.scope {
                query.append_pair("scope", scope);
            }
        }
        let mut request = self.http.get(url);
        if let Some(c) = &self.credentials {
            request = request.basic_auth(&c.username, Some(&c.password));
        }
        let response = request.send().await.map_err(|e| self.unreachable(e))?;
        let response = self.check(Method::GET, response).await?;
        let body: serde_json::Value = response
            .json()
            .await
            .map_err(|e| ClientError::Protocol(format!("token realm answered no JSON: {e}")))?;
        body["token"]
            .as_str()
            .or_else(|| body["access_token"].as_str())
            .map(str::to_string)
            .ok_or_else(|| ClientError::Protocol("token realm answered without a token".into()))
    }

    /// Turns a non-success response into an error that carries the registry's message.
    async fn check(
        &self,
        method: Method,
        response: reqwest::Response,
    ) -> Result<reqwest::Response> {
        if response.status().is_success() {
            return Ok(response);
        }
        let url = response.url().to_string();
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                let e = &v["errors"][0];
                Some(format!(
                    "{}: {}",
                    e["code"].as_str()?,
                    e["message"].as_str().unwrap_or("")
                ))
            })
            .unwrap_or_else(|| body.chars().take(300).collect());
        Err(ClientError::Status {
            method,
            url,
            status,
            message,
            retry_after,
        })
    }

    /// Size of the blob in `repository`, or `None` when the registry does not hold it there.
    pub async fn blob_size(&self, repository: &str, digest: &Digest) -> Result<Option<u64>> {
        let url = self
            .url(&format!("/v2/{repository}/blobs/{digest}"))
            .await?;
        let response = self.send(self.request(Method::HEAD, &url)).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = self.check(Method::HEAD, response).await?;
        Ok(response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok()))
    }

    /// The descriptor (media type, digest, size) of the manifest `reference` names in
    /// `repository` (a HEAD, which no pull policy refuses), or `None` when the registry does
    /// not hold it.
    pub async fn manifest_descriptor(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<gantry_oci::Descriptor>> {
        let url = self
            .url(&format!("/v2/{repository}/manifests/{reference}"))
            .await?;
        let request = self
            .request(Method::HEAD, &url)
            .header(header::ACCEPT, ACCEPT_MANIFESTS);
        let response = self.send(request).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = self.check(Method::HEAD, response).await?;
        let headers = response.headers();
        let field = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let missing =
            |name: &str| ClientError::Protocol(format!("HEAD {url} answered without {name}"));
        let digest =
            field("docker-content-digest").ok_or_else(|| missing("Docker-Content-Digest"))?;
        let digest = digest
            .parse()
            .map_err(|_| ClientError::Protocol(format!("HEAD {url}: {digest} is not a digest")))?;
        Ok(Some(gantry_oci::Descriptor {
            media_type: gantry_oci::media_type::essence(
                field("content-type").ok_or_else(|| missing("Content-Type"))?,
            )
            .to_string(),
            digest,
            size: field("content-length")
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| missing("Content-Length"))?,
            artifact_type: None,
            annotations: None,
            platform: None,
        }))
    }

    /// Uploads `bytes` as a blob unless the repository holds it already; its digest.
    pub async fn push_bytes(&self, repository: &str, bytes: Bytes) -> Result<Digest> {
        let digest = Digest::sha256_of(&bytes);
        if self.blob_size(repository, &digest).await?.is_none() {
            let size = bytes.len() as u64;
            let body: BlobStream = Box::pin(futures::stream::once(async { Ok(bytes) }));
            self.push_blob(repository, &digest, size, body).await?;
        }
        Ok(digest)
    }

    /// The descriptors of the manifests whose subject is `subject` (distribution-spec
    /// "Listing Referrers"); `None` when the registry has no referrers API (a 404).
    pub async fn referrers(
        &self,
        repository: &str,
        subject: &Digest,
    ) -> Result<Option<Vec<gantry_oci::Descriptor>>> {
        let url = self
            .url(&format!("/v2/{repository}/referrers/{subject}"))
            .await?;
        let response = self.send(self.request(Method::GET, &url)).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = self.check(Method::GET, response).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::Protocol(format!("referrers download failed: {e}")))?;
        let index = gantry_oci::manifest::parse(&bytes, Some(gantry_oci::media_type::OCI_INDEX))
            .map_err(|e| ClientError::Protocol(format!("GET {url}: not an index: {e}")))?;
        Ok(Some(index.manifests))
    }

    /// Every tag of `repository`, following the registry's `Link` pages (at most 100).
    pub async fn tags(&self, repository: &str) -> Result<Vec<String>> {
        self.paged_list(&format!("/v2/{repository}/tags/list"), "tags")
            .await
    }

    /// Every repository the registry's catalog (`/v2/_catalog`) lists to these credentials,
    /// following its `Link` pages (at most 100). Registries without a catalog (Docker Hub)
    /// answer with an error status.
    pub async fn catalog(&self) -> Result<Vec<String>> {
        self.paged_list("/v2/_catalog?n=1000", "repositories").await
    }

    /// The strings of `field` in the JSON pages from `path` on, following `Link` headers.
    async fn paged_list(&self, path: &str, field: &str) -> Result<Vec<String>> {
        let mut next = Some(self.url(path).await?);
        let mut items = Vec::new();
        for _ in 0..100 {
            let Some(url) = next.take() else { break };
            let response = self.send(self.request(Method::GET, &url)).await?;
            let response = self.check(Method::GET, response).await?;
            let link = response
                .headers()
                .get(header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    v.split_once('<')?
                        .1
                        .split_once('>')
                        .map(|(u, _)| u.to_string())
                });
            let body: serde_json::Value = response.json().await.map_err(|e| {
                ClientError::Protocol(format!("GET {url}: not a list of {field}: {e}"))
            })?;
            items.extend(
                body[field]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.as_str().map(str::to_string)),
            );
            next = match link {
                Some(link) => Some(self.resolve(&link).await?),
                None => None,
            };
        }
        Ok(items)
    }

    /// Asks the registry to mount a blob from another repository; true when it did.
    pub async fn mount_blob(&self, repository: &str, digest: &Digest, from: &str) -> Result<bool> {
        let url = self
            .url(&format!(
                "/v2/{repository}/blobs/uploads/?mount={digest}&from={from}"
            ))
            .await?;
        let response = self.send(self.request(Method::POST, &url)).await?;
        let response = self.check(Method::POST, response).await?;
        if response.status() == StatusCode::CREATED {
            return Ok(true);
        }
        // The registry opened an upload session instead: close it, the caller will upload.
        if let Some(location) = response
            .headers()
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
        {
            let url = self.resolve(location).await?;
            let _ = self.send(self.request(Method::DELETE, &url)).await;
        }
        Ok(false)
    }

    async fn resolve(&self, location: &str) -> Result<String> {
        if location.starts_with("http://") || location.starts_with("https://") {
            Ok(location.to_string())
        } else {
            self.url(location).await
        }
    }

    /// Uploads a blob in two requests (POST, then PUT with the bytes), streaming `body`.
    pub async fn push_blob(
        &self,
        repository: &str,
        digest: &Digest,
        size: u64,
        body: BlobStream,
    ) -> Result<()> {
        let location = self.start_upload(repository).await?;
        let separator = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{separator}digest={digest}");
        let request = self
            .request(Method::PUT, &url)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, size)
            .body(reqwest::Body::wrap_stream(body));
        let response = self.send(request).await?;
        self.check(Method::PUT, response).await?;
        Ok(())
    }

    async fn start_upload(&self, repository: &str) -> Result<String> {
        let url = self
            .url(&format!("/v2/{repository}/blobs/uploads/"))
            .await?;
        let response = self.send(self.request(Method::POST, &url)).await?;
        let response = self.check(Method::POST, response).await?;
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .ok_or_else(|| {
                ClientError::Protocol("upload session response has no Location header".into())
            })?;
        self.resolve(location).await
    }

    /// Streams a blob; every chunk passes through `verify`, which fails the stream's end if
    /// the bytes do not match the digest.
    pub async fn get_blob(&self, repository: &str, digest: &Digest) -> Result<BlobStream> {
        let (_, stream) = self.open_blob(repository, digest).await?;
        Ok(verify(digest.clone(), stream))
    }

    /// A blob's bytes as the registry sends them, NOT checked against the digest (the caller
    /// checks it, e.g. off the path the bytes take), with the blob's size when the registry
    /// sent a `Content-Length`.
    pub async fn open_blob(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<(Option<u64>, BlobStream)> {
        let url = self
            .url(&format!("/v2/{repository}/blobs/{digest}"))
            .await?;
        let response = self
            .check(
                Method::GET,
                self.send(self.request(Method::GET, &url)).await?,
            )
            .await?;
        let size = response.content_length();
        let stream = response
            .bytes_stream()
            .map_err(|e| ClientError::Protocol(format!("blob download failed: {e}")));
        Ok((size, Box::pin(stream)))
    }

    pub async fn get_manifest(&self, repository: &str, reference: &str) -> Result<FetchedManifest> {
        let url = self
            .url(&format!("/v2/{repository}/manifests/{reference}"))
            .await?;
        let request = self
            .request(Method::GET, &url)
            .header(header::ACCEPT, ACCEPT_MANIFESTS);
        let response = self.check(Method::GET, self.send(request).await?).await?;
        let media_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| gantry_oci::media_type::essence(v).to_string())
            .unwrap_or_default();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::Protocol(format!("manifest download failed: {e}")))?;
        let digest = match reference.parse::<Digest>() {
            Ok(expected) => {
                let actual = Digest::of(expected.algorithm(), &bytes);
                if actual != expected {
                    return Err(ClientError::DigestMismatch {
                        what: format!("manifest {repository}@{reference}"),
                        expected,
                        actual,
                    });
                }
                actual
            }
            Err(_) => Digest::sha256_of(&bytes),
        };
        Ok(FetchedManifest {
            media_type,
            digest,
            bytes,
        })
    }

    /// [`RegistryClient::get_manifest`], or `None` when the registry answers 404.
    pub async fn find_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<FetchedManifest>> {
        match self.get_manifest(repository, reference).await {
            Ok(fetched) => Ok(Some(fetched)),
            Err(ClientError::Status { status, .. }) if status == StatusCode::NOT_FOUND => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Waits up to `limit` until a Gantry registry lists `reference` of `repository` among its
    /// artifacts (`GET /api/v1/repositories/{repository}/artifacts/{reference}`): `true` once
    /// it does, `false` at once for a registry that is not a Gantry (it answers that path
    /// with anything but Gantry's JSON). Errors: a Gantry that has not listed it by then.
    pub async fn until_listed(
        &self,
        repository: &str,
        reference: &str,
        limit: Duration,
    ) -> Result<bool> {
        let url = self
            .url(&format!(
                "/api/v1/repositories/{}/artifacts/{reference}",
                repository.replace('/', "%2F")
            ))
            .await?;
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let response = self.send(self.request(Method::GET, &url)).await?;
            if response.status().is_success() {
                return Ok(true);
            }
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            let code = body["errors"][0]["code"].as_str().unwrap_or_default();
            if !matches!(code, "NOT_FOUND" | "NAME_UNKNOWN" | "MANIFEST_UNKNOWN") {
                return Ok(false);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClientError::Protocol(format!(
                    "{} did not list {repository}:{reference} within {limit:?}",
                    self.host
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Deletes manifest `digest` of `repository` (with the tags naming it, as registries do);
    /// `false` when the registry did not hold it.
    pub async fn delete_manifest(&self, repository: &str, digest: &Digest) -> Result<bool> {
        let url = self
            .url(&format!("/v2/{repository}/manifests/{digest}"))
            .await?;
        let response = self.send(self.request(Method::DELETE, &url)).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        self.check(Method::DELETE, response).await?;
        Ok(true)
    }

    /// Pushes manifest bytes unchanged under `reference` (a tag or their digest).
    pub async fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<Digest> {
        let url = self
            .url(&format!("/v2/{repository}/manifests/{reference}"))
            .await?;
        let request = self
            .request(Method::PUT, &url)
            .header(header::CONTENT_TYPE, media_type)
            .body(bytes.clone());
        self.check(Method::PUT, self.send(request).await?).await?;
        Ok(Digest::sha256_of(&bytes))
    }
}

/// The CA certificates of a PEM file.
fn ca_certificates(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>> {
    let fail = |reason: String| ClientError::CaCertificates {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let certificates =
        reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| fail(e.to_string()))?;
    if certificates.is_empty() {
        return Err(fail(
            "the file holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(certificates)
}

/// A failed request as an error: a refused certificate is told apart from an unreachable host,
/// with what to do about it.
fn connect_error(registry: &str, source: reqwest::Error) -> ClientError {
    let Some(refusal) = certificate_refusal(&source) else {
        return ClientError::Connect {
            registry: registry.to_string(),
            source,
        };
    };
    let reason = match refusal {
        rustls::CertificateError::UnknownIssuer => "it is signed by a CA this machine does not \
            trust; give that CA's certificate with --ca-cert FILE (or GANTRY_CA_CERT), or add it \
            to the system's trust store"
            .to_string(),
        rustls::CertificateError::NotValidForName
        | rustls::CertificateError::NotValidForNameContext { .. } => {
            "it does not name this host; use a name (or address) the certificate was issued for"
                .to_string()
        }
        other => format!("{other:?}"),
    };
    ClientError::UntrustedCertificate {
        registry: registry.to_string(),
        reason,
    }
}

/// The certificate problem rustls found, wherever in the error's chain it is.
fn certificate_refusal(error: &reqwest::Error) -> Option<&rustls::CertificateError> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = next {
        if let Some(rustls::Error::InvalidCertificate(refusal)) = error.downcast_ref() {
            return Some(refusal);
        }
        // An I/O error's `source` skips the error it wraps (TLS errors come wrapped twice).
        next = match error
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(wrapped) => Some(wrapped),
            None => error.source(),
        };
    }
    None
}

/// Passes chunks through while hashing them; at the end, errors if the digest differs.
pub fn verify(expected: Digest, stream: BlobStream) -> BlobStream {
    let hasher = Some(Hasher::new(expected.algorithm()));
    Box::pin(futures::stream::unfold(
        (stream, hasher, expected),
        |(mut stream, mut hasher, expected)| async move {
            let h = hasher.as_mut()?;
            match stream.next().await {
                Some(Ok(chunk)) => {
                    h.update(&chunk);
                    Some((Ok(chunk), (stream, hasher, expected)))
                }
                Some(Err(e)) => Some((Err(e), (stream, None, expected))),
                None => {
                    let actual = hasher.take()?.finish();
                    if actual == expected {
                        None
                    } else {
                        let error = ClientError::DigestMismatch {
                            what: "blob".into(),
                            expected: expected.clone(),
                            actual,
                        };
                        Some((Err(error), (stream, None, expected)))
                    }
                }
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_are_spoken_to_over_https_unless_loopback_or_told() {
        assert_eq!(
            scheme_of("registry.example.com", false),
            ("registry.example.com", Scheme::Https)
        );
        assert_eq!(
            scheme_of("registry.example.com:5000", true),
            ("registry.example.com:5000", Scheme::Http)
        );
        for loopback in ["127.0.0.1:5000", "localhost:5000", "[::1]:5000", "[::1]"] {
            assert_eq!(
                scheme_of(loopback, false),
                (loopback, Scheme::HttpsThenHttp),
                "{loopback}"
            );
        }
        // An explicit scheme wins over the rest.
        assert_eq!(
            scheme_of("https://127.0.0.1:5000/", true),
            ("127.0.0.1:5000", Scheme::Https)
        );
        assert_eq!(
            scheme_of("http://registry.example.com", false),
            ("registry.example.com", Scheme::Http)
        );
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let transport = Transport {
            plain_http: false,
            ca_cert: Some(path),
            ..Transport::default()
        };
        let err = RegistryClient::new("registry.example.com", &transport, None).unwrap_err();
        assert!(
            err.to_string().contains("ca.pem") && err.to_string().contains("no PEM certificate"),
            "{err}"
        );
    }
}
