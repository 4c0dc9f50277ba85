//! Where an image's signatures are, in both schemes, read through whatever reads the
//! repository ([`SignatureStore`]: the registry's own store, or a registry over HTTP):
//! - the tag scheme: the layers of the `sha256-<hex>.sig` manifest;
//! - Sigstore bundles: the referrers of the image whose artifact type is a bundle's, and those
//!   listed by the referrers fallback tag `sha256-<hex>` (an index, as a client writes it where
//!   a registry has no referrers API; distribution-spec "Referrers Tag Schema").
//!
//! Finding ([`locate`]) is apart from reading ([`candidates`]), so a reader that remembers
//! verdicts can compare what it found with what a verdict was made from before reading
//! anything. What cannot be read as a signature (a manifest or bundle that does not parse, a
//! layer too large) is passed over: a bad signature spoils nothing.

use gantry_oci::manifest::{self, Descriptor, ManifestKind};
use gantry_oci::Digest;

use crate::{bundle, cosign, Candidate};

/// A manifest as a store holds it.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

/// What the signatures of one repository are read through.
#[allow(async_fn_in_trait)] // implemented and called with concrete types only
pub trait SignatureStore {
    type Error;
    /// The manifest `reference` (a tag or a digest) of the repository; `None` when there is
    /// none.
    async fn manifest(&self, reference: &str) -> Result<Option<Manifest>, Self::Error>;
    /// The descriptors of the manifests whose subject is `subject` (the referrers API's
    /// index); empty where there is no referrers API.
    async fn referrers(&self, subject: &Digest) -> Result<Vec<Descriptor>, Self::Error>;
    /// A small blob's bytes (`size` as its descriptor says; at most
    /// [`bundle::MAX_BUNDLE_BYTES`]).
    async fn blob(&self, digest: &Digest, size: u64) -> Result<Vec<u8>, Self::Error>;
}

/// The signatures found for an image, not yet read: the manifests that hold them, by digest
/// (manifests are content-addressed, so equal [`Located`], equal signatures).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Located {
    /// The `.sig` manifest of the tag scheme.
    pub tag_scheme: Option<Digest>,
    /// The bundle manifests, sorted, without repeats.
    pub bundles: Vec<Digest>,
}

impl Located {
    /// The signatures among what refers to an image: its `.sig` manifest, and of its
    /// referrers (the referrers API's, the fallback index's entries), given as (artifact
    /// type, digest), those whose artifact type is a bundle's.
    pub fn new<'a>(
        tag_scheme: Option<Digest>,
        referrers: impl IntoIterator<Item = (Option<&'a str>, &'a Digest)>,
    ) -> Located {
        let mut bundles: Vec<Digest> = referrers
            .into_iter()
            .filter(|(artifact_type, _)| artifact_type.is_some_and(bundle::is_bundle))
            .map(|(_, digest)| digest.clone())
            .collect();
        bundles.sort_by_key(|d| d.to_string());
        bundles.dedup();
        Located {
            tag_scheme,
            bundles,
        }
    }

    /// No signature was found.
    pub fn is_empty(&self) -> bool {
        self.tag_scheme.is_none() && self.bundles.is_empty()
    }
}

/// The signatures [`candidates`] read, each with the manifest that holds it.
#[derive(Debug, Clone, Default)]
pub struct Signatures {
    pub candidates: Vec<Candidate>,
    /// `holders[i]` is the digest of the manifest `candidates[i]` came from.
    pub holders: Vec<Digest>,
}

fn artifact_typed(descriptors: &[Descriptor]) -> impl Iterator<Item = (Option<&str>, &Digest)> {
    descriptors
        .iter()
        .map(|d| (d.artifact_type.as_deref(), &d.digest))
}

/// The referrers fallback tag of `digest` (`sha256:<hex>` → `sha256-<hex>`; distribution-spec
/// "Referrers Tag Schema"), which cosign's tag scheme extends with `.sig`.
pub fn fallback_tag(digest: &Digest) -> String {
    format!("{}-{}", digest.algorithm().as_str(), digest.hex())
}

/// Finds the signatures of image `digest`: the `.sig` manifest, the bundle referrers, and the
/// bundles the fallback tag's index lists.
///
/// Errors: the store's.
pub async fn locate<S: SignatureStore>(store: &S, digest: &Digest) -> Result<Located, S::Error> {
    let stem = fallback_tag(digest);
    let tag_scheme = store.manifest(&format!("{stem}.sig")).await?;
    let referrers = store.referrers(digest).await?;
    let mut fallback_entries = Vec::new();
    if let Some(fallback) = store.manifest(&stem).await? {
        if let Ok(index) = manifest::parse(&fallback.bytes, Some(&fallback.media_type)) {
            if index.kind == ManifestKind::Index {
                fallback_entries = index.manifests;
            }
        }
    }
    Ok(Located::new(
        tag_scheme.map(|m| m.digest),
        artifact_typed(&referrers).chain(artifact_typed(&fallback_entries)),
    ))
}

/// Reads the signatures `located` found.
///
/// Errors: the store's.
pub async fn candidates<S: SignatureStore>(
    store: &S,
    located: &Located,
) -> Result<Signatures, S::Error> {
    let mut found = Signatures::default();
    if let Some(digest) = &located.tag_scheme {
        if let Some(signatures) = store.manifest(&digest.to_string()).await? {
            if let Ok(parsed) = manifest::parse(&signatures.bytes, Some(&signatures.media_type)) {
                for layer in &parsed.layers {
                    let Some(signature) = cosign::layer_signature(
                        &layer.media_type,
                        layer.size,
                        layer.annotations.as_ref(),
                    ) else {
                        continue;
                    };
                    found.candidates.push(Candidate::SimpleSigning {
                        payload: store.blob(&layer.digest, layer.size).await?,
                        signature_base64: signature.to_string(),
                    });
                    found.holders.push(digest.clone());
                }
            }
        }
    }
    for digest in &located.bundles {
        let Some(held) = store.manifest(&digest.to_string()).await? else {
            continue;
        };
        let Ok(parsed) = manifest::parse(&held.bytes, Some(&held.media_type)) else {
            continue;
        };
        for layer in &parsed.layers {
            if !bundle::is_readable_layer(&layer.media_type, layer.size) {
                continue;
            }
            if let Ok(content) = bundle::parse(&store.blob(&layer.digest, layer.size).await?) {
                found.candidates.push(Candidate::Bundle(content));
                found.holders.push(digest.clone());
            }
        }
    }
    Ok(found)
}
