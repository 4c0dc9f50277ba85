//! The signature gate: in a project whose signing policy enforces, a manifest GET of a
//! container image or an index is refused unless a key the project trusts signed its digest,
//! in either of cosign's schemes (the payloads of the `sha256-<hex>.sig` manifest in the same
//! repository, or Sigstore bundles among its referrers or in its referrers fallback tag; see
//! `gantry_signing::sources`). With `index_covers_children`, an image listed by an index in
//! the repository that has a trusted signature passes too (clients pull a multi-platform
//! image's images by digest).
//!
//! Never refused, as by the vulnerability gate: HEAD, and everything that is not a container
//! image or an index of images — signatures, attestations and SBOMs (tag scheme or
//! referrers) and referrers fallback indexes, which a signer and a verifier must read before
//! anything is signed.
//!
//! Verdicts are cached per (repository, digest) with the digests of the signatures they were
//! made from and the policy they were made under: a signature appended, attached or removed
//! changes what is found, a policy change gives another policy, and either makes the verdict
//! be made again. A verdict younger than two seconds is used without looking for signatures
//! (queries less per GET); a referrer or `sha256-…` tag written or a manifest deleted through
//! this server forgets the repository's verdicts at once, and through another replica
//! applies within those two seconds, as policies do (read through the pull gate's two-second
//! cache).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gantry_oci::manifest::{self, Descriptor, ManifestKind, ParsedManifest};
use gantry_oci::{Digest, RepositoryName};
use gantry_signing::sources::{self, Located, SignatureStore};
use gantry_signing::{verdict, SigningPolicy, Subject, TrustedKey, Verdict};
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

/// A verdict with what it was made from: the signatures found, the policy, and when they
/// were last looked for.
struct CachedVerdict {
    judged: Judged,
    found: Located,
    policy: Arc<TrustPolicy>,
    checked: Instant,
}

/// What a policy makes of an image's signatures.
#[derive(Debug, Clone)]
pub(crate) struct Judged {
    pub(crate) verdict: Verdict,
    /// The manifest that holds the trusted signature, when the verdict is trusted.
    pub(crate) holder: Option<Digest>,
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
        let judged = self
            .signature_verdict(name, &manifest.digest, &manifest.content, &trust)
            .await?;
        let Some(reason) = judged.verdict.refusal() else {
            return Ok(());
        };
        if trust.policy.index_covers_children && parsed.kind == ManifestKind::Image {
            for parent in self
                .meta
                .index_parents(name.as_str(), &manifest.digest)
                .await?
            {
                let Some(index) = self.meta.manifest_by_digest(name.as_str(), &parent).await?
                else {
                    continue;
                };
                let judged = self
                    .signature_verdict(name, &parent, &index.content, &trust)
                    .await?;
                if matches!(judged.verdict, Verdict::Trusted { .. }) {
                    return Ok(());
                }
            }
        }
        Err(RegistryError::PullBlocked {
            project: project.to_string(),
            policy: "signing",
            reason: format!(
                "{reason} ({}); sign it with one of the keys `gantry signing-policy show \
                 {project}` lists",
                manifest.digest
            ),
        })
    }

    /// What `trust` makes of the signatures of `digest` (whose manifest is `manifest`) in
    /// `name`: a verdict younger than [`VERDICT_TTL`] as it is, else the signatures are
    /// looked for and judged ([`Registry::judge_signatures`]).
    async fn signature_verdict(
        &self,
        name: &RepositoryName,
        digest: &Digest,
        manifest: &[u8],
        trust: &Arc<TrustPolicy>,
    ) -> Result<Judged> {
        let key = (name.as_str().to_string(), digest.clone());
        if let Some(cached) = self.signing.entries.lock().get(&key) {
            if Arc::ptr_eq(&cached.policy, trust) && cached.checked.elapsed() < VERDICT_TTL {
                return Ok(cached.judged.clone());
            }
        }
        let store = RepositorySignatures::new(self, name);
        let located = sources::locate(&store, digest).await?;
        self.judge_signatures(name, digest, manifest, located, trust)
            .await
    }

    /// What `trust` makes of the signatures `located` found for `digest` (whose manifest is
    /// `manifest`) in `name`: from the cache while they are the signatures a verdict was made
    /// from under the same policy, else read and judged. No signature is read when the policy
    /// trusts no key.
    pub(crate) async fn judge_signatures(
        &self,
        name: &RepositoryName,
        digest: &Digest,
        manifest: &[u8],
        located: Located,
        trust: &Arc<TrustPolicy>,
    ) -> Result<Judged> {
        let key = (name.as_str().to_string(), digest.clone());
        if let Some(cached) = self.signing.entries.lock().get_mut(&key) {
            if cached.found == located && Arc::ptr_eq(&cached.policy, trust) {
                cached.checked = Instant::now();
                return Ok(cached.judged.clone());
            }
        }
        let judged = if located.is_empty() {
            Judged {
                verdict: Verdict::Unsigned,
                holder: None,
            }
        } else if trust.keys.is_empty() {
            Judged {
                verdict: Verdict::Untrusted,
                holder: None,
            }
        } else {
            let store = RepositorySignatures::new(self, name);
            let signatures = sources::candidates(&store, &located).await?;
            let subject = Subject {
                digest: &digest.to_string(),
                manifest: Some(manifest),
            };
            let verdict = verdict(&subject, &signatures.candidates, &trust.keys);
            let holder = match &verdict {
                Verdict::Trusted { candidate, .. } => signatures.holders.get(*candidate).cloned(),
                _ => None,
            };
            Judged { verdict, holder }
        };
        let mut entries = self.signing.entries.lock();
        if entries.len() >= VERDICT_LIMIT {
            entries.clear();
        }
        entries.insert(
            key,
            CachedVerdict {
                judged: judged.clone(),
                found: located,
                policy: trust.clone(),
                checked: Instant::now(),
            },
        );
        Ok(judged)
    }

    /// Whether one of the keys `name`'s project trusts made a valid signature of manifest
    /// `digest` itself, whether or not the policy enforces (what "signed only" replication
    /// asks); `false` for a manifest `name` does not hold.
    pub async fn signed_by_trusted_key(
        &self,
        name: &RepositoryName,
        digest: &Digest,
    ) -> Result<bool> {
        let trust = self.gate.signing_policy(&self.meta, name.project()).await?;
        let Some(manifest) = self.meta.manifest_by_digest(name.as_str(), digest).await? else {
            return Ok(false);
        };
        let judged = self
            .signature_verdict(name, digest, &manifest.content, &trust)
            .await?;
        Ok(matches!(judged.verdict, Verdict::Trusted { .. }))
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
    pub async fn blob_bytes(&self, digest: &Digest, size: u64) -> Result<Vec<u8>> {
        let mut bytes = Vec::with_capacity(size.min(manifest::MAX_MANIFEST_BYTES as u64) as usize);
        let mut stream = self.read_blob(digest, 0..size).await?;
        while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
            bytes.extend_from_slice(&chunk.map_err(RegistryError::Body)?);
        }
        Ok(bytes)
    }
}

/// What a signing policy checks: container images and indexes of images (not referrers,
/// signatures, attestations, other artifacts, or a referrers fallback index, whose entries
/// all carry an artifact type).
pub(crate) fn is_signable(parsed: &ParsedManifest) -> bool {
    parsed.is_container_image()
        || (parsed.kind == ManifestKind::Index
            && parsed.subject.is_none()
            && parsed.manifests.iter().any(|m| m.artifact_type.is_none()))
}

/// A repository's signatures as this registry holds them.
pub(crate) struct RepositorySignatures<'a> {
    registry: &'a Registry,
    name: &'a RepositoryName,
}

impl<'a> RepositorySignatures<'a> {
    pub(crate) fn new(registry: &'a Registry, name: &'a RepositoryName) -> Self {
        RepositorySignatures { registry, name }
    }
}

impl SignatureStore for RepositorySignatures<'_> {
    type Error = RegistryError;

    async fn manifest(&self, reference: &str) -> Result<Option<sources::Manifest>> {
        let meta = &self.registry.meta;
        let name = self.name.as_str();
        let held = match reference.parse::<Digest>() {
            Ok(digest) => meta.manifest_by_digest(name, &digest).await?,
            Err(_) => meta.manifest_by_tag(name, reference).await?,
        };
        Ok(held.map(|m| sources::Manifest {
            digest: m.digest,
            media_type: m.media_type,
            bytes: m.content,
        }))
    }

    async fn referrers(&self, subject: &Digest) -> Result<Vec<Descriptor>> {
        let referrers = self
            .registry
            .meta
            .referrers(self.name.as_str(), subject, None)
            .await?;
        Ok(referrers
            .into_iter()
            .map(|r| Descriptor {
                media_type: r.media_type,
                digest: r.digest,
                size: r.size,
                artifact_type: r.artifact_type,
                annotations: None,
                platform: None,
            })
            .collect())
    }

    async fn blob(&self, digest: &Digest, size: u64) -> Result<Vec<u8>> {
        self.registry.blob_bytes(digest, size).await
    }
}
