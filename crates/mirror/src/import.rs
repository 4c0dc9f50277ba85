//! Storing a manifest from another registry here with everything it references (an index's
//! images, every blob — first, so a manifest is never stored without them) and what refers to
//! it there (the referrers API, the referrers fallback tag, cosign's `.sig`/`.att`/`.sbom`
//! tags), through the registry's normal paths. The pull-through cache's fills and pull
//! replication both import; they differ in how a blob is fetched and how a failure reads.

use gantry_client::{ClientError, RegistryClient};
use gantry_meta::StoredManifest;
use gantry_oci::{Digest, Reference, RepositoryName, Tag};
use gantry_registry::{Registry, RegistryError};
use gantry_signing::sources::fallback_tag;

use crate::{MirrorError, Result};

/// The registry an import reads from.
#[async_trait::async_trait]
pub(crate) trait Origin: Send + Sync {
    fn client(&self) -> &RegistryClient;

    /// The error of a failed request to the origin about `what` (`blob`: a blob).
    fn failed(&self, what: String, blob: bool, e: ClientError) -> MirrorError;

    /// Stores blob `digest` of the origin's `remote` repository in `name`, which lacks it.
    async fn store_blob(&self, remote: &str, name: &RepositoryName, digest: &Digest) -> Result<()>;
}

/// One import: the origin's `remote` repository into `name` here, recorded as by `actor`.
pub(crate) struct Import<'a> {
    pub registry: &'a Registry,
    pub origin: &'a dyn Origin,
    pub remote: &'a str,
    pub name: &'a RepositoryName,
    pub actor: &'a str,
}

impl Import<'_> {
    /// Stores manifest `digest` unless it is stored: its blobs and child manifests first.
    pub async fn manifest(&self, digest: &Digest) -> Result<StoredManifest> {
        let reference = Reference::Digest(digest.clone());
        match self.registry.get_manifest(self.name, &reference).await {
            Ok(stored) => return Ok(stored),
            Err(RegistryError::ManifestUnknown(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let what = format!("manifest {}@{digest}", self.name);
        let mut fetched = self
            .origin
            .client()
            .get_manifest(self.remote, &digest.to_string())
            .await
            .map_err(|e| self.origin.failed(what, false, e))?;
        let parsed = fetched
            .parse(None)
            .map_err(RegistryError::ManifestInvalid)?;
        for child in &parsed.manifests {
            Box::pin(self.manifest(&child.digest)).await?;
        }
        for blob in parsed.config.iter().chain(&parsed.layers) {
            self.blob(&blob.digest).await?;
        }
        self.registry
            .put_manifest(
                self.name,
                &reference,
                Some(&fetched.media_type),
                &fetched.bytes,
                self.actor,
            )
            .await?;
        Ok(StoredManifest {
            digest: digest.clone(),
            media_type: fetched.media_type,
            content: fetched.bytes.to_vec(),
        })
    }

    /// Points `tag` here at `stored`.
    pub async fn tag(&self, tag: &str, stored: &StoredManifest) -> Result<()> {
        let tag = Tag::parse(tag).map_err(RegistryError::Tag)?;
        self.registry
            .put_manifest(
                self.name,
                &Reference::Tag(tag),
                Some(&stored.media_type),
                &stored.content,
                self.actor,
            )
            .await?;
        Ok(())
    }

    /// Stores what refers to `digest` at the origin: the manifests its referrers API lists,
    /// the referrers fallback tag's index (where the origin lacks the API), and cosign's
    /// `.sig`, `.att` and `.sbom` manifests, under their tags.
    pub async fn referrers(&self, digest: &Digest) -> Result<()> {
        let what = || format!("the referrers of {}@{digest}", self.name);
        let client = self.origin.client();
        let listed = client
            .referrers(self.remote, digest)
            .await
            .map_err(|e| self.origin.failed(what(), false, e))?;
        for referrer in listed.into_iter().flatten() {
            self.manifest(&referrer.digest).await?;
        }
        let stem = fallback_tag(digest);
        for tag in [
            stem.clone(),
            format!("{stem}.sig"),
            format!("{stem}.att"),
            format!("{stem}.sbom"),
        ] {
            let found = client
                .find_manifest(self.remote, &tag)
                .await
                .map_err(|e| self.origin.failed(what(), false, e))?;
            let Some(found) = found else { continue };
            let stored = self.manifest(&found.digest).await?;
            self.tag(&tag, &stored).await?;
        }
        Ok(())
    }

    async fn blob(&self, digest: &Digest) -> Result<()> {
        match self.registry.stat_blob(self.name, digest).await {
            Ok(_) => Ok(()),
            Err(RegistryError::BlobUnknown(_)) => {
                self.origin.store_blob(self.remote, self.name, digest).await
            }
            Err(e) => Err(e.into()),
        }
    }
}
