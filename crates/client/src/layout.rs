//! OCI image layouts on disk (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`).

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use gantry_oci::{Descriptor, Digest};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::{BlobStream, ClientError, FetchedManifest, Result};

/// The annotation that names a manifest of a layout's index.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ClientError + '_ {
    move |source| ClientError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl Layout {
    /// Opens an existing layout, checking its `oci-layout` marker.
    pub fn open(root: impl Into<PathBuf>) -> Result<Layout> {
        let root = root.into();
        let marker = root.join("oci-layout");
        let text = std::fs::read_to_string(&marker).map_err(io_error(&marker))?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| ClientError::Protocol(format!("{} is not JSON: {e}", marker.display())))?;
        if value["imageLayoutVersion"].as_str().is_none() {
            return Err(ClientError::Protocol(format!(
                "{} has no imageLayoutVersion",
                marker.display()
            )));
        }
        Ok(Layout { root })
    }

    /// Opens the layout at `root`, creating an empty one if there is none.
    pub fn create(root: impl Into<PathBuf>) -> Result<Layout> {
        let root = root.into();
        if root.join("oci-layout").exists() {
            return Layout::open(root);
        }
        std::fs::create_dir_all(root.join("blobs")).map_err(io_error(&root))?;
        let marker = root.join("oci-layout");
        std::fs::write(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io_error(&marker))?;
        let layout = Layout { root };
        layout.write_index(&json!({"schemaVersion": 2, "mediaType": gantry_oci::media_type::OCI_INDEX, "manifests": []}))?;
        Ok(layout)
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    fn read_index(&self) -> Result<Value> {
        let path = self.index_path();
        let text = std::fs::read(&path).map_err(io_error(&path))?;
        serde_json::from_slice(&text)
            .map_err(|e| ClientError::Protocol(format!("{} is not JSON: {e}", path.display())))
    }

    fn write_index(&self, index: &Value) -> Result<()> {
        let path = self.index_path();
        let tmp = self.root.join("index.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(index).expect("serializes"))
            .map_err(io_error(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_error(&path))
    }

    /// The manifest descriptor named `tag` in index.json, or the only one when `tag` is None.
    pub fn find(&self, tag: Option<&str>) -> Result<Descriptor> {
        let index = self.read_index()?;
        let manifests: Vec<Descriptor> = serde_json::from_value(index["manifests"].clone())
            .map_err(|e| {
                ClientError::Protocol(format!("index.json manifests are malformed: {e}"))
            })?;
        let name_of = |d: &Descriptor| {
            d.annotations
                .as_ref()
                .and_then(|a| a.get(REF_NAME))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        match tag {
            Some(tag) => manifests
                .into_iter()
                .find(|d| name_of(d).as_deref() == Some(tag))
                .ok_or_else(|| {
                    ClientError::Protocol(format!(
                        "the layout at {} has no manifest named {tag:?}",
                        self.root.display()
                    ))
                }),
            None if manifests.len() == 1 => Ok(manifests.into_iter().next().expect("one")),
            None => Err(ClientError::Protocol(format!(
                "the layout at {} holds {} manifests; name one with LAYOUT:TAG",
                self.root.display(),
                manifests.len()
            ))),
        }
    }

    /// Forgets the name `tag` (the blobs stay).
    pub fn remove_from_index(&self, tag: &str) -> Result<()> {
        let mut index = self.read_index()?;
        if let Some(manifests) = index["manifests"].as_array_mut() {
            manifests.retain(|m| m["annotations"][REF_NAME].as_str() != Some(tag));
        }
        self.write_index(&index)
    }

    /// Records `descriptor` in index.json under `tag`, replacing any manifest of that name.
    pub fn add_to_index(&self, mut descriptor: Descriptor, tag: &str) -> Result<()> {
        let mut index = self.read_index()?;
        let manifests = index["manifests"]
            .as_array_mut()
            .ok_or_else(|| ClientError::Protocol("index.json has no manifests array".into()))?;
        manifests.retain(|m| m["annotations"][REF_NAME].as_str() != Some(tag));
        descriptor
            .annotations
            .get_or_insert_with(Default::default)
            .insert(REF_NAME.into(), Value::String(tag.into()));
        manifests.push(serde_json::to_value(descriptor).expect("serializes"));
        self.write_index(&index)
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).exists()
    }

    pub async fn read_blob(&self, digest: &Digest) -> Result<Bytes> {
        let path = self.blob_path(digest);
        tokio::fs::read(&path)
            .await
            .map(Bytes::from)
            .map_err(io_error(&path))
    }

    /// Reads the manifest `digest` (verified against it). `claimed_type` is the media type of
    /// the descriptor that pointed at it (`index.json`, or a parent index): it says what a
    /// manifest without a `mediaType` field is. The result carries the resolved media type.
    pub async fn read_manifest(
        &self,
        digest: &Digest,
        claimed_type: Option<&str>,
    ) -> Result<FetchedManifest> {
        let bytes = self.read_blob(digest).await?;
        let actual = Digest::of(digest.algorithm(), &bytes);
        if &actual != digest {
            return Err(ClientError::DigestMismatch {
                what: "layout manifest".into(),
                expected: digest.clone(),
                actual,
            });
        }
        let mut fetched = FetchedManifest {
            media_type: String::new(),
            digest: digest.clone(),
            bytes,
        };
        fetched.parse(claimed_type).map_err(|e| {
            ClientError::Protocol(format!(
                "manifest {digest} in the layout at {}: {e}",
                self.root.display()
            ))
        })?;
        Ok(fetched)
    }

    /// Streams a blob from disk in large chunks.
    pub async fn blob_stream(&self, digest: &Digest) -> Result<BlobStream> {
        let path = self.blob_path(digest);
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(io_error(&path))?;
        let display = path.display().to_string();
        Ok(Box::pin(
            tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).map_err(move |source| {
                ClientError::Io {
                    path: display.clone(),
                    source,
                }
            }),
        ))
    }

    /// A path inside the layout for a file that will become a blob (same filesystem, so
    /// `adopt` is a rename).
    pub fn scratch_path(&self, name: &str) -> PathBuf {
        self.root.join(format!(".{name}.partial"))
    }

    /// Makes a complete file (under `scratch_path`) the blob `digest`.
    pub fn adopt(&self, digest: &Digest, file: &Path) -> Result<()> {
        let path = self.blob_path(digest);
        let dir = path.parent().expect("blob path has a parent");
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        std::fs::rename(file, &path).map_err(io_error(&path))
    }

    /// Stores small bytes (a config, a manifest) as a blob; returns its digest.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::sha256_of(bytes);
        if !self.has_blob(&digest) {
            let tmp = self.scratch_path(digest.hex());
            std::fs::write(&tmp, bytes).map_err(io_error(&tmp))?;
            self.adopt(&digest, &tmp)?;
        }
        Ok(digest)
    }

    /// Writes a blob from a stream, verified against its digest, visible only once complete.
    pub async fn write_blob(&self, digest: &Digest, stream: BlobStream) -> Result<()> {
        let path = self.blob_path(digest);
        let dir = path.parent().expect("blob path has a parent");
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(io_error(dir))?;
        let tmp = dir.join(format!(".{}.partial", digest.hex()));
        let mut file = tokio::fs::File::create(&tmp)
            .await
            .map_err(io_error(&tmp))?;
        let mut stream = crate::verify(digest.clone(), stream);
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = tokio::fs::remove_file(&tmp).await;
                    return Err(e);
                }
            };
            file.write_all(&chunk).await.map_err(io_error(&tmp))?;
        }
        file.sync_all().await.map_err(io_error(&tmp))?;
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(io_error(&path))
    }
}
