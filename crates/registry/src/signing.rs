//! The signature gate: in a project whose signing policy enforces, a manifest GET of a
//! container image or an index is refused unless a key the project trusts signed its digest
//! (cosign's tag scheme: the payloads of the `sha256-<hex>.sig` manifest in the same
//! repository). With `index_covers_children`, an image listed by an index in the repository
//! that has a trusted signature passes too (clients pull a multi-platform image's images by
//! digest).
//!
//! Never refused, as by the vulnerability gate: HEAD, and everything that is not a container
//! image or an index — signatures, attestations and SBOMs (tag scheme or referrers), which a
//! signer and a verifier must read before anything is signed.
//!
//! Verdicts are cached per (repository, digest) with the digest of the `.sig` manifest they
//! were made from and the policy they were made under: a signature appended or removed moves
//! the tag, a policy change gives another policy, and either makes the verdict be made again.
//! A verdict younger than two seconds is used without looking at the tag (one query less per
//! GET); a `.sig` tag written or a manifest deleted through this server forgets the
//! repository's verdicts at once, and through another replica applies within those two
//! seconds, as policies do (read through the pull gate's two-second cache).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gantry_oci::manifest::{self, ManifestKind, ParsedManifest};
use gantry_oci::{Digest, RepositoryName};
use gantry_signing::cosign;
use gantry_signing::{verdict, Candidate, SigningPolicy, TrustedKey, Verdict};
use parking_lot::Mutex;

use crate::gate::Pulled;
use crate::{Registry, RegistryError, Result};

/// Verdicts remembered at most; the cache is emptied when full.
const VERDICT_LIMIT: usize = 100_000;
/// How long a verdict is used without looking at the `.sig` tag again.
const VERDICT_TTL: Duration = Duration::from_secs(2);

/// A project's signing policy with its keys read, shared by the pulls that use it.
#[derive(Debug)]
pub(crate) struct TrustPolicy {
    pub(crate) policy: SigningPolicy,
    keys: Vec<TrustedKey>,
}

impl TrustPolicy {
    pub(crate) fn new(policy: SigningPolicy) -> Result<TrustPolicy> {
        let keys = policy
            .trusted_keys()
            .map_err(|e| RegistryError::PolicyInvalid(e.to_string()))?;
        Ok(TrustPolicy { policy, keys })
    }
}

/// A verdict with what it was made from: the `.sig` manifest, the policy, and when the tag
/// was last looked at.
struct CachedVerdict {
    verdict: Verdict,
    signatures: Option<Digest>,
    policy: Arc<TrustPolicy>,
    checked: Instant,
}

#[derive(Default)]
pub(crate) struct VerdictCache {
    entries: Mutex<HashMap<(String, Digest), CachedVerdict>>,
}

impl VerdictCache {
    /// Forgets the verdicts of repository `name` (its signatures changed).
    pub(crate) fn forget_repository(&self, name: &str) {
        self.entries
            .lock()
            .retain(|(repository, _), _| repository != name);
    }
}

impl Registry {
    /// Refuses `manifest` of `name` unless its project's signing policy lets it be pulled.
    ///
    /// Errors: `PullBlocked` naming the policy's reason; those of reading the store.
    pub(crate) async fn check_signature(
        &self,
        name: &RepositoryName,
        pulled: &Pulled<'_>,
    ) -> Result<()> {
        let project = name.project();
        let trust = self.gate.signing_policy(&self.meta, project).await?;
        if !trust.policy.enforce {
            return Ok(());
        }
        let Some(parsed) = pulled.parsed().filter(|p| is_signable(p)) else {
            return Ok(());
        };
        let manifest = pulled.stored;
        let verdict = self
            .signature_verdict(name, &manifest.digest, &trust)
            .await?;
        let Some(reason) = verdict.refusal() else {
            return Ok(());
        };
        if trust.policy.index_covers_children && parsed.kind == ManifestKind::Image {
            for parent in self
                .meta
                .index_parents(name.as_str(), &manifest.digest)
                .await?
            {
                let verdict = self.signature_verdict(name, &parent, &trust).await?;
                if matches!(verdict, Verdict::Trusted { .. }) {
                    return Ok(());
                }
            }
        }
        Err(RegistryError::PullBlocked {
            project: project.to_string(),
            reason: format!(
                "the signing policy requires a signature by a trusted key: {reason} ({}); \
                 sign it with one of the keys `gantry signing-policy show {project}` lists",
                manifest.digest
            ),
        })
    }

    /// What `trust` makes of the signatures of `digest` in `name`, from the cache while the
    /// `.sig` tag has not moved and the policy is the same.
    async fn signature_verdict(
        &self,
        name: &RepositoryName,
        digest: &Digest,
        trust: &Arc<TrustPolicy>,
    ) -> Result<Verdict> {
        let key = (name.as_str().to_string(), digest.clone());
        if let Some(cached) = self.signing.entries.lock().get(&key) {
            if Arc::ptr_eq(&cached.policy, trust) && cached.checked.elapsed() < VERDICT_TTL {
                return Ok(cached.verdict.clone());
            }
        }
        let signatures = match cosign::signature_tag(&digest.to_string()) {
            Some(tag) => self.meta.manifest_by_tag(name.as_str(), &tag).await?,
            None => None,
        };
        let signatures_digest = signatures.as_ref().map(|s| s.digest.clone());
        if let Some(cached) = self.signing.entries.lock().get_mut(&key) {
            if cached.signatures == signatures_digest && Arc::ptr_eq(&cached.policy, trust) {
                cached.checked = Instant::now();
                return Ok(cached.verdict.clone());
            }
        }
        let mut candidates = Vec::new();
        if let Some(signatures) = &signatures {
            let parsed = manifest::parse(&signatures.content, Some(&signatures.media_type))?;
            for layer in parsed.layers {
                let Some(signature) = cosign::layer_signature(
                    &layer.media_type,
                    layer.size,
                    layer.annotations.as_ref(),
                ) else {
                    continue;
                };
                candidates.push(Candidate {
                    payload: self.blob_bytes(&layer.digest, layer.size).await?,
                    signature_base64: signature.to_string(),
                });
            }
        }
        let verdict = verdict(&digest.to_string(), &candidates, &trust.keys);
        let mut entries = self.signing.entries.lock();
        if entries.len() >= VERDICT_LIMIT {
            entries.clear();
        }
        entries.insert(
            key,
            CachedVerdict {
                verdict: verdict.clone(),
                signatures: signatures_digest,
                policy: trust.clone(),
                checked: Instant::now(),
            },
        );
        Ok(verdict)
    }

    /// The project's signing policy (the default, nothing enforced, when none was set).
    pub async fn signing_policy(&self, project: &str) -> Result<SigningPolicy> {
        self.gate.forget_signing(project);
        Ok(self
            .gate
            .signing_policy(&self.meta, project)
            .await?
            .policy
            .clone())
    }

    /// Replaces the project's signing policy.
    ///
    /// Errors: `PolicyInvalid` when a key cannot be read or an enforcing policy has none.
    pub async fn set_signing_policy(&self, project: &str, policy: &SigningPolicy) -> Result<()> {
        TrustPolicy::new(policy.clone())?;
        let json = serde_json::to_string(policy).expect("policies serialize");
        self.meta.set_signing_policy(project, &json).await?;
        self.gate.forget_signing(project);
        Ok(())
    }

    /// The bytes of a small blob (`size` as its descriptor says, at most a manifest's
    /// limit).
    pub(crate) async fn blob_bytes(&self, digest: &Digest, size: u64) -> Result<Vec<u8>> {
        let mut bytes = Vec::with_capacity(size.min(manifest::MAX_MANIFEST_BYTES as u64) as usize);
        let mut stream = self.read_blob(digest, 0..size).await?;
        while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
            bytes.extend_from_slice(&chunk.map_err(RegistryError::Body)?);
        }
        Ok(bytes)
    }
}

/// What a signing policy checks: container images and indexes (not referrers, signatures,
/// attestations or other artifacts).
fn is_signable(parsed: &ParsedManifest) -> bool {
    parsed.is_container_image() || (parsed.kind == ManifestKind::Index && parsed.subject.is_none())
}
