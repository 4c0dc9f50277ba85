//! A registry client for the Distribution API and OCI image layouts. Every transfer streams:
//! blobs go from source to destination chunk by chunk, verified against their digest.

use std::fmt;

mod api;
mod docker_config;
mod layout;
mod reference;
mod transfer;

pub use docker_config::DockerConfig;
pub use layout::Layout;
pub use reference::{ImageRef, RefError};
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
    #[error("{method} {url} failed with {status}: {message}")]
    Status {
        method: Method,
        url: String,
        status: StatusCode,
        message: String,
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

/// A connection to one registry host.
#[derive(Clone, Debug)]
pub struct RegistryClient {
    http: reqwest::Client,
    base: String,
    credentials: Option<Credentials>,
}

impl RegistryClient {
    /// `registry` is `host[:port]`; plain HTTP is used when `plain_http` is set.
    pub fn new(
        registry: &str,
        plain_http: bool,
        credentials: Option<Credentials>,
    ) -> RegistryClient {
        let scheme = if plain_http { "http" } else { "https" };
        RegistryClient {
            http: reqwest::Client::builder()
                .user_agent(concat!("gantry/", env!("CARGO_PKG_VERSION")))
                .pool_max_idle_per_host(16)
                .build()
                .expect("HTTP client builds"),
            base: format!("{scheme}://{registry}"),
            credentials,
        }
    }

    /// Client for the registry an image reference names; loopback hosts speak plain HTTP.
    pub fn for_ref(
        image: &ImageRef,
        plain_http: bool,
        credentials: Option<Credentials>,
    ) -> RegistryClient {
        RegistryClient::new(
            &image.registry,
            plain_http || image.is_loopback(),
            credentials,
        )
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn request(&self, method: Method, url: &str) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, url);
        match &self.credentials {
            Some(c) => builder.basic_auth(&c.username, Some(&c.password)),
            None => builder,
        }
    }

    async fn send(&self, builder: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        builder.send().await.map_err(|source| ClientError::Connect {
            registry: self.base.clone(),
            source,
        })
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
        })
    }

    /// Size of the blob in `repository`, or `None` when the registry does not hold it there.
    pub async fn blob_size(&self, repository: &str, digest: &Digest) -> Result<Option<u64>> {
        let url = self.url(&format!("/v2/{repository}/blobs/{digest}"));
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

    /// Asks the registry to mount a blob from another repository; true when it did.
    pub async fn mount_blob(&self, repository: &str, digest: &Digest, from: &str) -> Result<bool> {
        let url = self.url(&format!(
            "/v2/{repository}/blobs/uploads/?mount={digest}&from={from}"
        ));
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
            let url = self.resolve(location);
            let _ = self.send(self.request(Method::DELETE, &url)).await;
        }
        Ok(false)
    }

    fn resolve(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else {
            self.url(location)
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
        let url = self.url(&format!("/v2/{repository}/blobs/uploads/"));
        let response = self.send(self.request(Method::POST, &url)).await?;
        let response = self.check(Method::POST, response).await?;
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .ok_or_else(|| {
                ClientError::Protocol("upload session response has no Location header".into())
            })?;
        Ok(self.resolve(location))
    }

    /// Streams a blob; every chunk passes through `verify`, which fails the stream's end if
    /// the bytes do not match the digest.
    pub async fn get_blob(&self, repository: &str, digest: &Digest) -> Result<BlobStream> {
        let url = self.url(&format!("/v2/{repository}/blobs/{digest}"));
        let response = self
            .check(
                Method::GET,
                self.send(self.request(Method::GET, &url)).await?,
            )
            .await?;
        let stream = response
            .bytes_stream()
            .map_err(|e| ClientError::Protocol(format!("blob download failed: {e}")));
        Ok(verify(digest.clone(), Box::pin(stream)))
    }

    pub async fn get_manifest(&self, repository: &str, reference: &str) -> Result<FetchedManifest> {
        let url = self.url(&format!("/v2/{repository}/manifests/{reference}"));
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

    /// Pushes manifest bytes unchanged under `reference` (a tag or their digest).
    pub async fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<Digest> {
        let url = self.url(&format!("/v2/{repository}/manifests/{reference}"));
        let request = self
            .request(Method::PUT, &url)
            .header(header::CONTENT_TYPE, media_type)
            .body(bytes.clone());
        self.check(Method::PUT, self.send(request).await?).await?;
        Ok(Digest::sha256_of(&bytes))
    }
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
