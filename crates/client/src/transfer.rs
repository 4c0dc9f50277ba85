//! Moving an image (a manifest, its children and blobs) between registries and layouts.
//! One walk serves push, pull and copy: children first, then blobs, then the manifest, so a
//! destination never holds a manifest whose content is missing.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use gantry_oci::manifest::{ManifestKind, ParsedManifest};
use gantry_oci::{Descriptor, Digest};

use crate::{BlobStream, ClientError, FetchedManifest, ImageRef, Layout, RegistryClient, Result};

/// Reports transfer progress; the CLI draws bars, tests stay silent.
pub trait Progress: Send + Sync {
    fn blob_started(&self, _digest: &Digest, _size: u64) {}
    fn blob_skipped(&self, _digest: &Digest, _size: u64) {}
    fn bytes(&self, _n: u64) {}
    fn manifest_done(&self, _digest: &Digest, _reference: &str) {}
}

/// A `Progress` that reports nothing.
pub struct Silent;
impl Progress for Silent {}

/// Where an image is read from or written to.
enum Endpoint<'a> {
    Registry {
        client: &'a RegistryClient,
        repository: &'a str,
    },
    Layout(&'a Layout),
}

impl Endpoint<'_> {
    /// The manifest `reference` with everything it references parsed. `claimed_type` is the
    /// media type of the descriptor that named it, if one did; the returned manifest carries
    /// the resolved type (what a destination is told), whatever the source said.
    async fn manifest(
        &self,
        reference: &str,
        claimed_type: Option<&str>,
    ) -> Result<(FetchedManifest, ParsedManifest)> {
        let mut fetched = match self {
            Endpoint::Registry { client, repository } => {
                client.get_manifest(repository, reference).await?
            }
            Endpoint::Layout(layout) => {
                let digest: Digest = reference.parse().map_err(|e| {
                    ClientError::Protocol(format!("layout manifests are addressed by digest: {e}"))
                })?;
                layout.read_manifest(&digest, claimed_type).await?
            }
        };
        let parsed = fetched
            .parse(claimed_type)
            .map_err(|e| ClientError::Protocol(format!("manifest {}: {e}", fetched.digest)))?;
        Ok((fetched, parsed))
    }

    async fn has_blob(&self, digest: &Digest) -> Result<bool> {
        match self {
            Endpoint::Registry { client, repository } => {
                Ok(client.blob_size(repository, digest).await?.is_some())
            }
            Endpoint::Layout(layout) => Ok(layout.has_blob(digest)),
        }
    }

    async fn read_blob(&self, digest: &Digest) -> Result<BlobStream> {
        match self {
            Endpoint::Registry { client, repository } => client.get_blob(repository, digest).await,
            Endpoint::Layout(layout) => layout.blob_stream(digest).await,
        }
    }

    async fn write_blob(&self, digest: &Digest, size: u64, stream: BlobStream) -> Result<()> {
        match self {
            Endpoint::Registry { client, repository } => {
                client.push_blob(repository, digest, size, stream).await
            }
            Endpoint::Layout(layout) => layout.write_blob(digest, stream).await,
        }
    }

    /// Stores manifest bytes; `tag` names the top-level one.
    async fn write_manifest(&self, m: &FetchedManifest, tag: Option<&str>) -> Result<()> {
        match self {
            Endpoint::Registry { client, repository } => {
                let reference = tag.map_or_else(|| m.digest.to_string(), str::to_string);
                client
                    .put_manifest(repository, &reference, &m.media_type, m.bytes.clone())
                    .await?;
            }
            Endpoint::Layout(layout) => {
                let stream: BlobStream = Box::pin(futures::stream::once({
                    let b = m.bytes.clone();
                    async move { Ok::<Bytes, ClientError>(b) }
                }));
                if !layout.has_blob(&m.digest) {
                    layout.write_blob(&m.digest, stream).await?;
                }
                if let Some(tag) = tag {
                    let descriptor = Descriptor {
                        media_type: m.media_type.clone(),
                        digest: m.digest.clone(),
                        size: m.bytes.len() as u64,
                        artifact_type: None,
                        annotations: None,
                        platform: None,
                    };
                    layout.add_to_index(descriptor, tag)?;
                }
            }
        }
        Ok(())
    }
}

/// Copies the manifest `reference` from `source` to `destination`, with everything it
/// references, and returns the top manifest's digest. `mount_from` names a repository of the
/// destination registry that holds the blobs already (a copy inside one registry).
async fn transfer(
    source: &Endpoint<'_>,
    destination: &Endpoint<'_>,
    reference: &str,
    claimed_type: Option<&str>,
    tag: Option<&str>,
    mount_from: Option<&str>,
    progress: Arc<dyn Progress>,
) -> Result<Digest> {
    let (top, parsed) = source.manifest(reference, claimed_type).await?;
    // An explicit stack instead of recursion: (manifest, children already queued). Children
    // are written before their index, and the top manifest last.
    let mut pending = vec![(top, parsed, false)];
    while let Some((m, parsed, expanded)) = pending.pop() {
        if parsed.kind == ManifestKind::Index && !expanded {
            let children = parsed.manifests.clone();
            pending.push((m, parsed, true));
            for child in &children {
                let (child_manifest, child_parsed) = source
                    .manifest(&child.digest.to_string(), Some(&child.media_type))
                    .await?;
                pending.push((child_manifest, child_parsed, false));
            }
            continue;
        }
        for blob in parsed.config.iter().chain(parsed.layers.iter()) {
            copy_blob(source, destination, blob, mount_from, &progress).await?;
        }
        let is_top = pending.is_empty();
        destination
            .write_manifest(&m, if is_top { tag } else { None })
            .await?;
        progress.manifest_done(&m.digest, if is_top { tag.unwrap_or("") } else { "" });
        if is_top {
            return Ok(m.digest);
        }
    }
    unreachable!("the top manifest is the last one written")
}

async fn copy_blob(
    source: &Endpoint<'_>,
    destination: &Endpoint<'_>,
    blob: &Descriptor,
    mount_from: Option<&str>,
    progress: &Arc<dyn Progress>,
) -> Result<()> {
    if destination.has_blob(&blob.digest).await? {
        progress.blob_skipped(&blob.digest, blob.size);
        return Ok(());
    }
    if let (Some(from), Endpoint::Registry { client, repository }) = (mount_from, destination) {
        if client.mount_blob(repository, &blob.digest, from).await? {
            progress.blob_skipped(&blob.digest, blob.size);
            return Ok(());
        }
    }
    progress.blob_started(&blob.digest, blob.size);
    let counter = progress.clone();
    let stream: BlobStream =
        Box::pin(source.read_blob(&blob.digest).await?.inspect(move |chunk| {
            if let Ok(c) = chunk {
                counter.bytes(c.len() as u64);
            }
        }));
    destination
        .write_blob(&blob.digest, blob.size, stream)
        .await
}

/// Pushes the manifest named `layout_tag` (or the only one) of an OCI layout to `destination`.
pub async fn push_layout(
    layout: &Layout,
    layout_tag: Option<&str>,
    client: &RegistryClient,
    destination: &ImageRef,
    progress: Arc<dyn Progress>,
) -> Result<Digest> {
    let top = layout.find(layout_tag)?;
    let to = Endpoint::Registry {
        client,
        repository: destination.repository.as_str(),
    };
    transfer(
        &Endpoint::Layout(layout),
        &to,
        &top.digest.to_string(),
        Some(&top.media_type),
        destination.tag(),
        None,
        progress,
    )
    .await
}

/// Pulls `source` into an OCI layout, naming it `tag` in the layout's index.
pub async fn pull_to_layout(
    client: &RegistryClient,
    source: &ImageRef,
    layout: &Layout,
    tag: &str,
    progress: Arc<dyn Progress>,
) -> Result<Digest> {
    let from = Endpoint::Registry {
        client,
        repository: source.repository.as_str(),
    };
    transfer(
        &from,
        &Endpoint::Layout(layout),
        &source.reference,
        None,
        Some(tag),
        None,
        progress,
    )
    .await
}

/// Copies an image between repositories of the same or different registries; inside one
/// registry, blobs are mounted rather than transferred.
pub async fn copy(
    source_client: &RegistryClient,
    source: &ImageRef,
    destination_client: &RegistryClient,
    destination: &ImageRef,
    progress: Arc<dyn Progress>,
) -> Result<Digest> {
    let from = Endpoint::Registry {
        client: source_client,
        repository: source.repository.as_str(),
    };
    let to = Endpoint::Registry {
        client: destination_client,
        repository: destination.repository.as_str(),
    };
    let mount_from =
        (source.registry == destination.registry).then_some(source.repository.as_str());
    transfer(
        &from,
        &to,
        &source.reference,
        None,
        destination.tag(),
        mount_from,
        progress,
    )
    .await
}
