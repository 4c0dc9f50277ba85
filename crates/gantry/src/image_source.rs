//! Where `gantry analyze` and `gantry scan` read an image from: a registry
//! (`REGISTRY/REPOSITORY[:TAG|@DIGEST]`) or an OCI layout (`oci:DIR[:TAG]`). Manifests are
//! fetched, and layer and config blobs are downloaded (verified against their digests) to a
//! temporary directory, or read in place from a layout, so the layer walker reads files.

use std::path::{Path, PathBuf};

use anyhow::Context;
use futures::StreamExt;
use gantry_client::{FetchedManifest, ImageRef, Layout, RegistryClient};
use gantry_inspect::walk::LayerInput;
use gantry_oci::manifest::{ManifestKind, ParsedManifest};
use gantry_oci::{Descriptor, Digest};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::RemoteArgs;

/// An image manifest's config and layer files, ready to read.
pub struct FetchedImage {
    /// The image as the user named it.
    pub name: String,
    /// The image manifest's digest (the platform's, for an index).
    pub digest: Digest,
    pub config: Value,
    /// Each layer's descriptor and the file holding its blob.
    pub layers: Vec<(Descriptor, PathBuf)>,
}

impl FetchedImage {
    /// The layers as the walker takes them, bottom first, with what the config's history says
    /// made each.
    pub fn layer_inputs(
        &self,
    ) -> anyhow::Result<Vec<LayerInput<std::io::BufReader<std::fs::File>>>> {
        let history: Vec<Option<String>> = self.config["history"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|h| h["empty_layer"] != true)
            .map(|h| h["created_by"].as_str().map(str::to_string))
            .collect();
        self.layers
            .iter()
            .enumerate()
            .map(|(i, (layer, path))| {
                let file = std::fs::File::open(path).with_context(|| {
                    format!("cannot read layer {} at {}", layer.digest, path.display())
                })?;
                Ok(LayerInput {
                    digest: layer.digest.to_string(),
                    media_type: layer.media_type.clone(),
                    compressed: layer.size,
                    created_by: history.get(i).cloned().flatten(),
                    blob: std::io::BufReader::new(file),
                })
            })
            .collect()
    }
}

/// A manifest as fetched, with what it references.
pub struct ManifestAt {
    pub manifest: FetchedManifest,
    pub parsed: ParsedManifest,
}

/// Where an image is read from.
pub enum Source {
    Layout(Layout),
    Registry {
        client: RegistryClient,
        repository: String,
    },
}

/// An opened image argument: where it is, and its top manifest.
pub struct Opened {
    pub source: Source,
    pub top: ManifestAt,
}

impl Source {
    /// Opens `arg` (a registry reference or an OCI layout) and fetches its top manifest.
    pub async fn open(arg: &str, remote: &RemoteArgs) -> anyhow::Result<Opened> {
        let (source, reference, claimed_type) = match layout_source(arg) {
            Some((dir, tag)) => {
                let layout = Layout::open(&dir)?;
                let top = layout.find(tag.as_deref())?;
                (
                    Source::Layout(layout),
                    top.digest.to_string(),
                    Some(top.media_type),
                )
            }
            None => {
                let image = ImageRef::parse(arg)?;
                let client = remote.client(&image)?;
                let source = Source::Registry {
                    client,
                    repository: image.repository.as_str().to_string(),
                };
                (source, image.reference.clone(), None)
            }
        };
        let top = source.manifest(&reference, claimed_type.as_deref()).await?;
        Ok(Opened { source, top })
    }

    /// The manifest `reference`; `claimed_type` is the media type of the descriptor that named
    /// it (a layout's index.json, an index's child), which says what a manifest without a
    /// `mediaType` field is.
    pub async fn manifest(
        &self,
        reference: &str,
        claimed_type: Option<&str>,
    ) -> anyhow::Result<ManifestAt> {
        let mut manifest = match self {
            Source::Layout(layout) => {
                layout
                    .read_manifest(&reference.parse()?, claimed_type)
                    .await?
            }
            Source::Registry { client, repository } => {
                client.get_manifest(repository, reference).await?
            }
        };
        let parsed = manifest
            .parse(claimed_type)
            .with_context(|| format!("manifest {}", manifest.digest))?;
        Ok(ManifestAt { manifest, parsed })
    }

    /// A blob as a file: the layout's own, or downloaded (verified) to `path`.
    async fn blob_file(&self, digest: &Digest, path: PathBuf) -> anyhow::Result<PathBuf> {
        match self {
            Source::Layout(layout) => Ok(layout.blob_path(digest)),
            Source::Registry { client, repository } => {
                download(client, repository, digest, &path).await?;
                Ok(path)
            }
        }
    }

    /// The config and layers of the image manifest `image`, blobs downloaded under `temp`.
    pub async fn fetch_image(
        &self,
        name: &str,
        image: &ManifestAt,
        temp: &Path,
    ) -> anyhow::Result<FetchedImage> {
        let config = image
            .parsed
            .config
            .as_ref()
            .context("the manifest has no config")?;
        let config = self.blob_file(&config.digest, temp.join("config")).await?;
        let config = serde_json::from_slice(&std::fs::read(config)?)?;
        let mut layers = Vec::new();
        for (i, layer) in image.parsed.layers.iter().enumerate() {
            let path = self
                .blob_file(&layer.digest, temp.join(format!("layer{i}")))
                .await?;
            layers.push((layer.clone(), path));
        }
        Ok(FetchedImage {
            name: name.to_string(),
            digest: image.manifest.digest.clone(),
            config,
            layers,
        })
    }

    /// The child manifests of index `index` (each with its platform, `os/arch[/variant]`),
    /// or `index` itself when it is an image manifest.
    pub async fn platforms(
        &self,
        top: ManifestAt,
    ) -> anyhow::Result<Vec<(Option<String>, ManifestAt)>> {
        if top.parsed.kind != ManifestKind::Index {
            return Ok(vec![(None, top)]);
        }
        let doc: Value = serde_json::from_slice(&top.manifest.bytes)?;
        let mut children = Vec::new();
        for entry in doc["manifests"].as_array().into_iter().flatten() {
            let digest = entry["digest"]
                .as_str()
                .context("an index entry has no digest")?;
            let platform = gantry_inspect::Platform::of_index_entry(entry).map(|p| p.to_string());
            let manifest = self.manifest(digest, entry["mediaType"].as_str()).await?;
            children.push((platform, manifest));
        }
        Ok(children)
    }
}

/// The child of an image index for `platform`, as its descriptor.
pub fn pick_platform(index: &ManifestAt, platform: &str) -> anyhow::Result<Descriptor> {
    let wanted: gantry_inspect::Platform = platform.parse()?;
    let doc: Value = serde_json::from_slice(&index.manifest.bytes)?;
    let digest = gantry_inspect::select_platform(&doc, &wanted).with_context(|| {
        format!("the image has no {platform} manifest; choose one with --platform")
    })?;
    index
        .parsed
        .manifests
        .iter()
        .find(|child| child.digest == digest)
        .cloned()
        .context("the index's platform entry is not one of its manifests")
}

/// Splits `oci:DIR[:TAG]` (or an existing directory, `DIR[:TAG]` as `gantry push` takes it)
/// from registry references.
fn layout_source(arg: &str) -> Option<(PathBuf, Option<String>)> {
    let existing_dir = |path: &str| Path::new(path).is_dir();
    let rest = match arg.strip_prefix("oci:") {
        Some(rest) => rest,
        None if existing_dir(arg)
            || arg
                .rsplit_once(':')
                .is_some_and(|(dir, _)| existing_dir(dir)) =>
        {
            arg
        }
        None => return None,
    };
    match rest.rsplit_once(':') {
        Some((dir, tag)) if !tag.contains('/') && !dir.is_empty() => {
            Some((PathBuf::from(dir), Some(tag.to_string())))
        }
        _ => Some((PathBuf::from(rest), None)),
    }
}

/// Streams a blob (verified against its digest) to a file.
async fn download(
    client: &RegistryClient,
    repo: &str,
    digest: &Digest,
    path: &Path,
) -> anyhow::Result<PathBuf> {
    let mut stream = gantry_client::verify(digest.clone(), client.get_blob(repo, digest).await?);
    let mut file = tokio::fs::File::create(path).await?;
    while let Some(chunk) = stream.next().await {
        file.write_all(&chunk?).await?;
    }
    file.flush().await?;
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `gantry analyze ./layout:v1` was taken for a registry named "." ("cannot reach
    /// registry https://."), although `gantry push` takes the same argument as a layout.
    #[test]
    fn existing_layout_directory_with_a_tag_is_read_as_a_layout() {
        let dir = tempfile::tempdir().unwrap();
        let layout = dir.path().join("layout");
        std::fs::create_dir(&layout).unwrap();
        let with_tag = format!("{}:v1", layout.display());
        assert_eq!(
            layout_source(&with_tag),
            Some((layout.clone(), Some("v1".to_string())))
        );
        assert_eq!(
            layout_source(layout.to_str().unwrap()),
            Some((layout.clone(), None))
        );
        assert_eq!(layout_source("127.0.0.1:5000/team/app:v1"), None);
    }
}
