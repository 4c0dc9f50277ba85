//! The pull gate: a manifest GET of an image whose scan has findings the project's
//! vulnerability policy blocks is refused, naming the blocking IDs and their fixes.
//!
//! Never refused: HEAD (clients check existence with it, and CI breaks when it fails),
//! referrers (a manifest with a `subject`: signatures, SBOMs, attestations), indexes (each of
//! their images is gated when fetched), and anything that is not a container image. The
//! scanner reads blobs from the store directly, so its reads never meet the gate. An image
//! not scanned yet waits for its scan (or is refused until scanned, as the policy says): the
//! first pull cannot slip past.
//!
//! Policies and the system-wide allowlist are read through a two-second cache, as tag rules
//! are: a change through another replica applies within that.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use gantry_meta::{MetaStore, StoredManifest};
use gantry_oci::manifest::{self, ParsedManifest};
use gantry_oci::{Reference, RepositoryName};
use gantry_scanner::gate::{self, Allowed, GatePolicy, Unscanned};
use gantry_scanner::ScanReport;
use gantry_signing::SigningPolicy;
use parking_lot::Mutex;

use crate::scan::{FAILED, NOT_AN_IMAGE};
use crate::signing::TrustPolicy;
use crate::{unix_now, Registry, RegistryError, Result};

/// How long another replica may apply a policy that was just changed.
const POLICY_TTL: Duration = Duration::from_secs(2);
/// Projects remembered at most; the cache is emptied when full.
const CACHE_LIMIT: usize = 10_000;
/// How often a waiting pull looks for the scan.
const SCAN_POLL: Duration = Duration::from_millis(250);
/// The system setting holding the system-wide allowlist.
const SYSTEM_ALLOWLIST: &str = "vulnerability-allowlist";
/// The cache key of the system-wide allowlist (no project is named so).
const SYSTEM_KEY: &str = "";

#[derive(Clone)]
enum Cached {
    Policy(GatePolicy),
    Allowlist(Vec<Allowed>),
    Signing(Arc<TrustPolicy>),
}

/// The cache key of a project's signing policy (project names hold no NUL).
fn signing_key(project: &str) -> String {
    format!("signing\0{project}")
}

#[derive(Default)]
pub(crate) struct GateCache {
    entries: Mutex<HashMap<String, (Cached, Instant)>>,
}

fn corrupt(what: &str, e: serde_json::Error) -> RegistryError {
    RegistryError::Meta(gantry_meta::MetaError::Corrupt(format!("{what}: {e}")))
}

impl GateCache {
    fn cached(&self, key: &str) -> Option<Cached> {
        let entries = self.entries.lock();
        let (value, at) = entries.get(key)?;
        (at.elapsed() < POLICY_TTL).then(|| value.clone())
    }

    fn remember(&self, key: &str, value: Cached) {
        let mut entries = self.entries.lock();
        if entries.len() >= CACHE_LIMIT {
            entries.clear();
        }
        entries.insert(key.to_string(), (value, Instant::now()));
    }

    pub(crate) fn forget(&self, key: &str) {
        self.entries.lock().remove(key);
    }

    pub(crate) async fn policy(&self, meta: &MetaStore, project: &str) -> Result<GatePolicy> {
        if let Some(Cached::Policy(policy)) = self.cached(project) {
            return Ok(policy);
        }
        let policy = match meta.vulnerability_policy(project).await? {
            Some(json) => serde_json::from_str(&json)
                .map_err(|e| corrupt(&format!("vulnerability policy of {project}"), e))?,
            None => GatePolicy::default(),
        };
        self.remember(project, Cached::Policy(policy.clone()));
        Ok(policy)
    }

    /// The project's signing policy with its keys read; one shared value while cached, so
    /// verdicts made under it can tell it is still the same.
    pub(crate) async fn signing_policy(
        &self,
        meta: &MetaStore,
        project: &str,
    ) -> Result<Arc<TrustPolicy>> {
        let key = signing_key(project);
        if let Some(Cached::Signing(policy)) = self.cached(&key) {
            return Ok(policy);
        }
        let policy: SigningPolicy = match meta.signing_policy(project).await? {
            Some(json) => serde_json::from_str(&json)
                .map_err(|e| corrupt(&format!("signing policy of {project}"), e))?,
            None => SigningPolicy::default(),
        };
        let policy = Arc::new(TrustPolicy::new(policy)?);
        self.remember(&key, Cached::Signing(policy.clone()));
        Ok(policy)
    }

    pub(crate) fn forget_signing(&self, project: &str) {
        self.forget(&signing_key(project));
    }

    async fn allowlist(&self, meta: &MetaStore) -> Result<Vec<Allowed>> {
        if let Some(Cached::Allowlist(list)) = self.cached(SYSTEM_KEY) {
            return Ok(list);
        }
        let list = match meta.system_setting(SYSTEM_ALLOWLIST).await? {
            Some(json) => serde_json::from_str(&json)
                .map_err(|e| corrupt("the system-wide vulnerability allowlist", e))?,
            None => Vec::new(),
        };
        self.remember(SYSTEM_KEY, Cached::Allowlist(list.clone()));
        Ok(list)
    }
}

/// A manifest being pulled, parsed at most once, by the first gate whose policy needs it.
pub(crate) struct Pulled<'a> {
    pub(crate) stored: &'a StoredManifest,
    parsed: OnceLock<Option<ParsedManifest>>,
}

impl<'a> Pulled<'a> {
    fn new(stored: &'a StoredManifest) -> Pulled<'a> {
        Pulled {
            stored,
            parsed: OnceLock::new(),
        }
    }

    /// The manifest parsed; `None` when it does not parse (no gate checks such a manifest).
    pub(crate) fn parsed(&self) -> Option<&ParsedManifest> {
        self.parsed
            .get_or_init(|| {
                manifest::parse(&self.stored.content, Some(&self.stored.media_type)).ok()
            })
            .as_ref()
    }
}

impl Registry {
    /// Whether a GET in `project` passes a gate (a vulnerability policy that blocks, or a
    /// signing policy that enforces): a pull-through cache then stores what it fetches before
    /// serving it, so the gates judge it.
    pub async fn pulls_are_gated(&self, project: &str) -> Result<bool> {
        Ok(self
            .gate
            .policy(&self.meta, project)
            .await?
            .block_severity
            .is_some()
            || self
                .gate
                .signing_policy(&self.meta, project)
                .await?
                .policy
                .enforce)
    }

    /// A manifest for a client's GET or HEAD: the manifest, after the pull gate let it
    /// through (GETs only), with the pull noted.
    ///
    /// Errors: those of [`Registry::get_manifest`]; `PullBlocked` when the project's
    /// vulnerability policy refuses the image.
    pub async fn pull_manifest(
        &self,
        name: &RepositoryName,
        reference: &Reference,
        head: bool,
    ) -> Result<StoredManifest> {
        let manifest = self.get_manifest(name, reference).await?;
        if !head {
            let pulled = Pulled::new(&manifest);
            self.check_pull_gate(name, &pulled).await?;
            self.check_signature(name, &pulled).await?;
        }
        self.note_pull(name, reference, &manifest.digest, !head);
        Ok(manifest)
    }

    async fn check_pull_gate(&self, name: &RepositoryName, pulled: &Pulled<'_>) -> Result<()> {
        let project = name.project();
        let policy = self.gate.policy(&self.meta, project).await?;
        if policy.block_severity.is_none() {
            return Ok(());
        }
        if !pulled.parsed().is_some_and(|p| p.is_container_image()) {
            return Ok(());
        }
        let manifest = pulled.stored;
        let refused = |reason: String| RegistryError::PullBlocked {
            policy: "vulnerability",
            project: project.to_string(),
            reason,
        };
        let waited_until = Instant::now()
            + match policy.unscanned {
                Unscanned::Wait => Duration::from_secs(policy.wait_secs),
                Unscanned::Refuse => Duration::ZERO,
            };
        let mut asked = false;
        let record = loop {
            let found = self
                .meta
                .scan_results(std::slice::from_ref(&manifest.digest))
                .await?;
            if let Some(record) = found.into_iter().next() {
                break record;
            }
            if Instant::now() >= waited_until {
                return Err(refused(format!(
                    "{} has not been scanned yet; pull it again once its scan is done",
                    manifest.digest
                )));
            }
            if !asked {
                self.enqueue_push_scan(name.as_str(), &manifest.digest)
                    .await?;
                asked = true;
            }
            tokio::time::sleep(SCAN_POLL).await;
        };
        match record.status.as_str() {
            NOT_AN_IMAGE => return Ok(()),
            FAILED => {
                return Err(refused(format!(
                "the scan of {} failed, so it cannot be checked; ask for a new scan (POST …/scan)",
                manifest.digest
            )))
            }
            _ => {}
        }
        let report: ScanReport = serde_json::from_str(&record.report)
            .map_err(|e| corrupt(&format!("scan of {}", manifest.digest), e))?;
        let system = self.gate.allowlist(&self.meta).await?;
        let blocking = gate::blocking(&policy, &system, &report.vulnerabilities, unix_now());
        if blocking.is_empty() {
            return Ok(());
        }
        let threshold = policy.block_severity.expect("checked above");
        Err(refused(format!(
            "{} has {} vulnerabilit{} at or above {threshold}{}: {}",
            manifest.digest,
            blocking.len(),
            if blocking.len() == 1 { "y" } else { "ies" },
            if policy.reachable_only {
                " with vulnerable code in the binary"
            } else {
                ""
            },
            gate::describe(&blocking)
        )))
    }

    /// The project's vulnerability policy for pulls (the default, gate off, when none was set).
    pub async fn vulnerability_policy(&self, project: &str) -> Result<GatePolicy> {
        self.gate.forget(project);
        self.gate.policy(&self.meta, project).await
    }

    /// Replaces the project's vulnerability policy. Errors: `PolicyInvalid` for a policy
    /// that cannot be kept.
    pub async fn set_vulnerability_policy(&self, project: &str, policy: &GatePolicy) -> Result<()> {
        policy
            .validate()
            .map_err(|e| RegistryError::PolicyInvalid(e.to_string()))?;
        let json = serde_json::to_string(policy).expect("policies serialize");
        self.meta.set_vulnerability_policy(project, &json).await?;
        self.gate.forget(project);
        Ok(())
    }

    /// The system-wide allowlist every project's pull gate honours.
    pub async fn system_allowlist(&self) -> Result<Vec<Allowed>> {
        self.gate.forget(SYSTEM_KEY);
        self.gate.allowlist(&self.meta).await
    }

    /// Replaces the system-wide allowlist.
    pub async fn set_system_allowlist(&self, allowlist: &[Allowed]) -> Result<()> {
        gate::validate_allowlist(allowlist)
            .map_err(|e| RegistryError::PolicyInvalid(e.to_string()))?;
        let json = serde_json::to_string(allowlist).expect("allowlists serialize");
        self.meta
            .set_system_setting(SYSTEM_ALLOWLIST, &json)
            .await?;
        self.gate.forget(SYSTEM_KEY);
        Ok(())
    }
}
