//! The pull-through cache. Each upstream registry has a cache project; a pull from it is
//! answered from what the project holds, and what it lacks is fetched from the upstream as
//! the client asks for it:
//!
//! - a manifest by digest is served from the cache forever once stored; by tag, the cached
//!   one is served while younger than the revalidation interval, then checked with a HEAD
//!   at the upstream (the same digest: served, and young again);
//! - a manifest the cache lacks is fetched, served, and stored by a `mirror-fill` job that
//!   first stores what it references (an index's images, every blob), so the cache never
//!   holds a manifest whose content it cannot serve; where a pull gate applies (a blocking
//!   vulnerability policy, an enforcing signing policy) the fill runs before the answer, so
//!   the gates judge what is served;
//! - a blob the cache lacks is fetched once however many clients ask (see [`fetch`]),
//!   streamed to each as it arrives and stored;
//! - when the upstream fails (429, 5xx, a timeout, unreachable) the cached copy is served,
//!   and the failure logged and counted; only what the cache lacks reports the upstream's
//!   failure, as what it is;
//! - what refers to a cached image at the upstream (signatures, SBOMs: by the referrers API,
//!   the referrers fallback tag, cosign's `.sig`/`.att`/`.sbom` tags) is stored with it, and
//!   looked for again (at most hourly) when a pull revalidates a tag of it, so a signature
//!   made after the image was cached arrives too.
//!
//! What is cached is ordinary content of its project: quotas, retention, GC, scans and the
//! pull gates apply to it. The cache project takes no pushes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gantry_client::{ClientError, RegistryClient, Transport};
use gantry_jobs::{JobError, JobHandler, Progress as JobProgress};
use gantry_meta::{JobRecord, NewJob, StoredManifest};
use gantry_oci::{Digest, Reference, RepositoryName};
use gantry_registry::{Listing, Registry, RegistryError};
use gantry_storage::ByteStream;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::import::{Import, Origin};

mod fetch;
mod import;
pub mod replication;
pub mod upstream;

pub use upstream::Upstream;

/// The job kind that stores a fetched manifest with what it references.
pub const FILL_JOB: &str = "mirror-fill";
/// Who the audit log and events say stored cached content.
pub const CACHE_ACTOR: &str = "pull-through-cache";
/// How long a tag checked with the upstream is served without asking again, by default.
pub const DEFAULT_REVALIDATE_AFTER: Duration = Duration::from_secs(60);
/// Attempts a fill job gets.
const FILL_ATTEMPTS: u32 = 3;
/// Fills of one manifest enqueued within this many seconds are one job.
const FILL_KEY_WINDOW_SECS: i64 = 300;
/// What refers to a cached image at the upstream is looked for again at most this often (in
/// this window of the clock), when a pull revalidates a tag of it.
const REFERRERS_REFRESH_SECS: i64 = 3600;
/// Entries kept per in-memory table before it is emptied.
const MEMORY_LIMIT: usize = 100_000;
/// How long a project's existence is remembered when choosing a mirror request's project.
const PROJECT_TTL: Duration = Duration::from_secs(2);

/// Why the cache could not answer.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The upstream failed for something the cache does not hold.
    #[error(transparent)]
    Upstream(UpstreamFailure),
    /// The upstream does not have it either.
    #[error("{what} is not in the cache, and upstream {upstream} does not have it")]
    NotAtUpstream {
        upstream: String,
        what: String,
        blob: bool,
    },
    /// A write to a cache project.
    #[error(
        "project {project} is the pull-through cache of upstream {upstream}: it takes no \
         pushes; push to another project"
    )]
    ReadOnly { project: String, upstream: String },
    #[error("the configuration is invalid: {0}")]
    Config(String),
    /// No replication rule has this name.
    #[error("no replication rule is named {0:?}; `gantry replication list` shows them")]
    RuleUnknown(String),
    /// A replication rule given through the API is invalid.
    #[error("the replication rule is invalid: {0}")]
    RuleInvalid(String),
    /// A replication rule of this name exists.
    #[error("a rule named {0:?} exists: change that rule instead (gantry replication|preheat update, PUT /api/v1/replication/{0}, or its form in the web UI), or choose another name")]
    RuleExists(String),
    /// The rule is one of the config file's.
    #[error("replication rule {0:?} is defined in the config file: change it there")]
    RuleConfigured(String),
    /// A replication target failed (`refused`: it refused the rule's credentials, 401/403).
    #[error("the registry of replication rule {rule} failed: {reason}")]
    Target {
        rule: String,
        reason: String,
        refused: bool,
    },
    /// The rule has no run of this id.
    #[error(
        "replication rule {rule:?} has no run {run}; `gantry replication runs {rule}` lists them"
    )]
    RunUnknown { rule: String, run: i64 },
    #[error("the pull-through cache's spool directory cannot be used: {0}")]
    Spool(std::io::Error),
}

/// How an upstream failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamFailure {
    /// It answered with an error status.
    #[error("upstream {upstream} answered {status}: {message}")]
    Status {
        upstream: String,
        status: u16,
        message: String,
        /// Its `Retry-After`, passed on with a 429.
        retry_after: Option<String>,
    },
    /// No answer: unreachable, timed out, broken off, or content not matching its digest.
    #[error("upstream {upstream} cannot be used: {reason}")]
    Unreachable { upstream: String, reason: String },
}

impl UpstreamFailure {
    fn status(&self) -> Option<u16> {
        match self {
            UpstreamFailure::Status { status, .. } => Some(*status),
            UpstreamFailure::Unreachable { .. } => None,
        }
    }

    /// The metric label of this failure: `429`, `5xx`, `4xx` or `unreachable`.
    pub fn kind(&self) -> &'static str {
        match self.status() {
            Some(429) => "429",
            Some(s) if s >= 500 => "5xx",
            Some(_) => "4xx",
            None => "unreachable",
        }
    }
}

pub(crate) fn upstream_failure(upstream: &str, e: ClientError) -> UpstreamFailure {
    match e {
        ClientError::Status {
            status,
            message,
            retry_after,
            ..
        } => UpstreamFailure::Status {
            upstream: upstream.to_string(),
            status: status.as_u16(),
            message,
            retry_after,
        },
        other => UpstreamFailure::Unreachable {
            upstream: upstream.to_string(),
            reason: other.to_string(),
        },
    }
}

pub type Result<T, E = MirrorError> = std::result::Result<T, E>;

/// The pull-through cache's settings.
#[derive(Debug, Clone)]
pub struct MirrorConfig {
    pub upstreams: Vec<Upstream>,
    /// How long a tag's cached manifest is served before the upstream is asked again.
    pub revalidate_after: Duration,
    /// Where blobs being fetched are spooled (a directory of this server's own).
    pub spool: std::path::PathBuf,
    /// How upstreams are reached (timeouts, CA certificates).
    pub transport: Transport,
}

struct Bound {
    upstream: Upstream,
    client: RegistryClient,
}

/// A blob answer: from the cache (the registry serves it, ranges and all), or streaming
/// from the upstream as it arrives.
pub enum BlobAnswer {
    Cached,
    /// A HEAD of a blob the cache lacks: its size at the upstream.
    Head {
        size: u64,
    },
    Streaming {
        size: Option<u64>,
        body: ByteStream,
    },
}

/// The pull-through cache service.
pub struct Mirror {
    registry: Arc<Registry>,
    bound: Vec<Bound>,
    revalidate_after: Duration,
    fetches: Arc<fetch::Fetches>,
    /// `repository:tag` → the digest the upstream gave, and when.
    checked: Mutex<HashMap<String, (Digest, Instant)>>,
    /// Whether a project exists locally, and when that was read.
    projects: Mutex<HashMap<String, (bool, Instant)>>,
    job_waker: std::sync::OnceLock<gantry_jobs::Waker>,
}

impl Mirror {
    /// The cache over `registry` for `config`'s upstreams (none: every request is the
    /// registry's own). Errors: `Config` for an invalid upstream.
    pub fn new(registry: Arc<Registry>, config: MirrorConfig) -> Result<Mirror> {
        upstream::validate_all(&config.upstreams)?;
        // Spool files of a server that stopped mid-fetch: no fetch runs yet to own them.
        let _ = std::fs::remove_dir_all(&config.spool);
        let bound = config
            .upstreams
            .into_iter()
            .map(|upstream| {
                let client = upstream.client(&config.transport)?;
                Ok(Bound { upstream, client })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Mirror {
            registry,
            bound,
            revalidate_after: config.revalidate_after,
            fetches: Arc::new(fetch::Fetches::new(config.spool)),
            checked: Mutex::default(),
            projects: Mutex::default(),
            job_waker: std::sync::OnceLock::new(),
        })
    }

    /// The configured upstreams.
    pub fn upstreams(&self) -> impl Iterator<Item = &Upstream> {
        self.bound.iter().map(|b| &b.upstream)
    }

    /// Wakes the job runner when a fill is enqueued.
    pub fn set_job_waker(&self, waker: gantry_jobs::Waker) {
        let _ = self.job_waker.set(waker);
    }

    /// Creates each upstream's cache project when missing, public as configured.
    pub async fn ensure_projects(&self) -> Result<()> {
        let meta = self.registry.meta();
        for Bound { upstream, .. } in &self.bound {
            match meta
                .project(&upstream.project)
                .await
                .map_err(RegistryError::from)?
            {
                None => match meta
                    .create_project(&upstream.project, upstream.public, None)
                    .await
                {
                    Ok(_) => tracing::info!(project = %upstream.project, upstream = %upstream.name,
                        url = %upstream.url, "created the pull-through cache project"),
                    // Another replica starting at the same time made it.
                    Err(gantry_meta::MetaError::Conflict(_)) => {}
                    Err(e) => return Err(RegistryError::from(e).into()),
                },
                Some(project) if project.public != upstream.public => {
                    meta.set_project_public(&upstream.project, upstream.public)
                        .await
                        .map_err(RegistryError::from)?;
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    fn bound_for_project(&self, project: &str) -> Option<&Bound> {
        self.bound.iter().find(|b| b.upstream.project == project)
    }

    /// The upstream whose cache `project` is, if it is one.
    pub fn upstream_of_project(&self, project: &str) -> Option<&Upstream> {
        self.bound_for_project(project).map(|b| &b.upstream)
    }

    /// Refuses a write (push, upload) into a cache project.
    pub fn check_writable(&self, name: &RepositoryName) -> Result<()> {
        match self.upstream_of_project(name.project()) {
            Some(upstream) => Err(MirrorError::ReadOnly {
                project: upstream.project.clone(),
                upstream: upstream.name.clone(),
            }),
            None => Ok(()),
        }
    }

    /// The name a mirror request for `name` is served under: `PROJECT/name` when `ns` names
    /// an upstream, or when no `ns` is given, a default upstream exists and `name`'s first
    /// component is not a project here. `None`: the request is for `name` as it is.
    pub async fn mirrored_name(&self, name: &str, ns: Option<&str>) -> Result<Option<String>> {
        if self.bound.is_empty() {
            return Ok(None);
        }
        let first = name.split('/').next().unwrap_or(name);
        if self.bound_for_project(first).is_some() {
            return Ok(None);
        }
        let upstream = match ns {
            Some(ns) => self.bound.iter().find(|b| b.upstream.answers_to(ns)),
            None => match self.bound.iter().find(|b| b.upstream.default) {
                Some(default) if !self.project_exists(first).await? => Some(default),
                _ => None,
            },
        };
        Ok(upstream.map(|b| format!("{}/{name}", b.upstream.project)))
    }

    /// The names a token for `name` should also cover: what a mirror request for it is served
    /// under, for each upstream (the token request does not carry the `ns` the registry
    /// requests will), when `name`'s first component is not a project here.
    pub async fn token_aliases(&self, name: &str) -> Result<Vec<String>> {
        let first = name.split('/').next().unwrap_or(name);
        if self.bound.is_empty()
            || self.bound_for_project(first).is_some()
            || self.project_exists(first).await?
        {
            return Ok(Vec::new());
        }
        Ok(self
            .bound
            .iter()
            .map(|b| format!("{}/{name}", b.upstream.project))
            .collect())
    }

    async fn project_exists(&self, project: &str) -> Result<bool> {
        if let Some((exists, at)) = self.projects.lock().get(project) {
            if at.elapsed() < PROJECT_TTL {
                return Ok(*exists);
            }
        }
        let exists = self
            .registry
            .meta()
            .project(project)
            .await
            .map_err(RegistryError::from)?
            .is_some();
        remember(
            &self.projects,
            project.to_string(),
            (exists, Instant::now()),
        );
        Ok(exists)
    }

    /// The cache's upstream for `name` and the repository there.
    fn locate(&self, name: &RepositoryName) -> Option<(&Bound, String)> {
        let bound = self.bound_for_project(name.project())?;
        let rest = &name.as_str()[name.project().len() + 1..];
        Some((bound, bound.upstream.remote_name(rest)))
    }

    /// A manifest for a GET or HEAD: the registry's own outside cache projects; in a cache
    /// project, as the module documentation says.
    ///
    /// Errors: the registry's; `Upstream` when the upstream fails for a manifest not cached;
    /// `NotAtUpstream` when the upstream has no such manifest.
    pub async fn pull_manifest(
        &self,
        name: &RepositoryName,
        reference: &Reference,
        head: bool,
    ) -> Result<StoredManifest> {
        let Some((bound, remote)) = self.locate(name) else {
            return Ok(self.registry.pull_manifest(name, reference, head).await?);
        };
        let upstream = &bound.upstream.name;
        let answer = |how: &str| self.registry.metrics().cache_answer(upstream, how);
        let cached = match self.registry.get_manifest(name, reference).await {
            Ok(cached) => Some(cached),
            Err(RegistryError::ManifestUnknown(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let tag = match (reference, cached) {
            // Content addressed: what is cached is what the upstream has.
            (Reference::Digest(_), Some(_)) => {
                answer("cached");
                return Ok(self.registry.pull_manifest(name, reference, head).await?);
            }
            (Reference::Digest(_), None) => None,
            (Reference::Tag(tag), cached) => {
                let key = format!("{name}:{tag}");
                if let Some(cached) = &cached {
                    if self.fresh(&key, &cached.digest) {
                        answer("cached");
                        return Ok(self.registry.pull_manifest(name, reference, head).await?);
                    }
                    match bound
                        .client
                        .manifest_descriptor(&remote, tag.as_str())
                        .await
                    {
                        Ok(Some(found)) if found.digest == cached.digest => {
                            // Signatures and SBOMs may have reached the upstream since.
                            let refresh = Fill {
                                repository: name.to_string(),
                                digest: found.digest.to_string(),
                                tag: None,
                            };
                            self.enqueue_fill(&refresh, REFERRERS_REFRESH_SECS).await?;
                            remember(&self.checked, key, (found.digest, Instant::now()));
                            answer("cached");
                            return Ok(self.registry.pull_manifest(name, reference, head).await?);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            let failure = upstream_failure(upstream, e);
                            tracing::warn!(repository = %name, %tag, error = %failure,
                                "the upstream failed; serving the cached manifest");
                            self.registry
                                .metrics()
                                .upstream_failure(upstream, failure.kind());
                            answer("stale");
                            return Ok(self.registry.pull_manifest(name, reference, head).await?);
                        }
                    }
                }
                Some(tag.clone())
            }
        };
        let what = format!("manifest {name}:{reference}");
        let mut fetched = match bound
            .client
            .get_manifest(&remote, &reference.to_string())
            .await
        {
            Ok(fetched) => fetched,
            Err(e) => return Err(self.failed(upstream, what, false, e)),
        };
        answer("fetched");
        fetched
            .parse(None)
            .map_err(RegistryError::ManifestInvalid)?;
        let fill = Fill {
            repository: name.to_string(),
            digest: fetched.digest.to_string(),
            tag: tag.as_ref().map(|t| t.as_str().to_string()),
        };
        if self.registry.pulls_are_gated(name.project()).await? {
            // The gates judge stored content: store it all first.
            self.fill(&fill).await?;
            return Ok(self.registry.pull_manifest(name, reference, head).await?);
        }
        self.enqueue_fill(&fill, FILL_KEY_WINDOW_SECS).await?;
        Ok(StoredManifest {
            digest: fetched.digest,
            media_type: fetched.media_type,
            content: fetched.bytes.to_vec(),
        })
    }

    /// A tag listing: the registry's own outside cache projects; in a cache project the
    /// upstream's tags, or the cached ones when the upstream fails.
    ///
    /// Errors: `NameUnknown` when neither has the repository; `Upstream` when the upstream
    /// fails and nothing of the repository is cached.
    pub async fn tags(
        &self,
        name: &RepositoryName,
        n: Option<u32>,
        last: Option<&str>,
    ) -> Result<Listing> {
        let Some((bound, remote)) = self.locate(name) else {
            return Ok(self.registry.tags(name, n, last).await?);
        };
        let upstream = &bound.upstream.name;
        match bound.client.tags(&remote).await {
            Ok(tags) => Ok(Listing::page_of(tags, n, last)),
            Err(e) => {
                let failure = upstream_failure(upstream, e);
                if failure.status() == Some(404) {
                    return Err(RegistryError::NameUnknown(name.to_string()).into());
                }
                self.registry
                    .metrics()
                    .upstream_failure(upstream, failure.kind());
                match self.registry.tags(name, n, last).await {
                    Ok(cached) => {
                        tracing::warn!(repository = %name, error = %failure,
                            "the upstream failed; listing the cached tags");
                        Ok(cached)
                    }
                    Err(RegistryError::NameUnknown(_)) => Err(MirrorError::Upstream(failure)),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// The error for a failed upstream request about `what`, counted.
    fn failed(&self, upstream: &str, what: String, blob: bool, e: ClientError) -> MirrorError {
        let failure = upstream_failure(upstream, e);
        if failure.status() == Some(404) {
            return MirrorError::NotAtUpstream {
                upstream: upstream.to_string(),
                what,
                blob,
            };
        }
        tracing::warn!(error = %failure, "{what} is not cached and the upstream failed");
        self.registry
            .metrics()
            .upstream_failure(upstream, failure.kind());
        MirrorError::Upstream(failure)
    }

    fn fresh(&self, key: &str, digest: &Digest) -> bool {
        self.checked
            .lock()
            .get(key)
            .is_some_and(|(seen, at)| seen == digest && at.elapsed() < self.revalidate_after)
    }

    /// A blob for a GET or HEAD in a cache project: `Cached` when the registry holds it (or
    /// when the request is not in a cache project); otherwise its size (HEAD), or its bytes
    /// streaming from the fetch. A `ranged` GET waits for the whole blob to be stored, then is
    /// served from the cache.
    pub async fn pull_blob(
        &self,
        name: &RepositoryName,
        digest: &Digest,
        head: bool,
        ranged: bool,
    ) -> Result<BlobAnswer> {
        let Some((bound, remote)) = self.locate(name) else {
            return Ok(BlobAnswer::Cached);
        };
        match self.registry.stat_blob(name, digest).await {
            Ok(_) => return Ok(BlobAnswer::Cached),
            Err(RegistryError::BlobUnknown(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let upstream = &bound.upstream.name;
        let what = format!("blob {digest} of {name}");
        if head {
            return match bound.client.blob_size(&remote, digest).await {
                Ok(Some(size)) => Ok(BlobAnswer::Head { size }),
                Ok(None) => Err(MirrorError::NotAtUpstream {
                    upstream: upstream.clone(),
                    what,
                    blob: true,
                }),
                Err(e) => Err(self.failed(upstream, what, true, e)),
            };
        }
        let mut joined = self
            .fetches
            .join(digest, self.source(bound, &remote, name), !ranged)?;
        if ranged {
            fetch::stored(joined.progress)
                .await
                .map_err(|reason| self.stored_failure(upstream, reason))?;
            return Ok(BlobAnswer::Cached);
        }
        let started = match fetch::started(&mut joined.progress).await {
            Ok(started) => started,
            Err(failure) => return Err(self.blob_failure(failure, what)),
        };
        if !started.started {
            // Another server fetched and stored it.
            return Ok(BlobAnswer::Cached);
        }
        let file = joined.file.expect("opened when not ranged");
        Ok(BlobAnswer::Streaming {
            size: started.size,
            body: fetch::follow(file, joined.progress),
        })
    }

    fn blob_failure(&self, failure: UpstreamFailure, what: String) -> MirrorError {
        let upstream = match &failure {
            UpstreamFailure::Status { upstream, .. }
            | UpstreamFailure::Unreachable { upstream, .. } => upstream.clone(),
        };
        if failure.status() == Some(404) {
            return MirrorError::NotAtUpstream {
                upstream,
                what,
                blob: true,
            };
        }
        self.registry
            .metrics()
            .upstream_failure(&upstream, failure.kind());
        MirrorError::Upstream(failure)
    }

    fn stored_failure(&self, upstream: &str, reason: String) -> MirrorError {
        MirrorError::Upstream(UpstreamFailure::Unreachable {
            upstream: upstream.to_string(),
            reason,
        })
    }

    fn source(&self, bound: &Bound, remote: &str, name: &RepositoryName) -> fetch::Source {
        fetch::Source {
            registry: self.registry.clone(),
            client: bound.client.clone(),
            upstream: bound.upstream.name.clone(),
            remote: remote.to_string(),
            name: name.clone(),
        }
    }

    /// Enqueues `fill` once per `window_secs` of the clock.
    async fn enqueue_fill(&self, fill: &Fill, window_secs: i64) -> Result<()> {
        let window = gantry_registry::unix_now() / window_secs;
        let job = NewJob {
            unique_key: Some(format!(
                "{FILL_JOB}:{}@{}:{}:{window_secs}:{window}",
                fill.repository,
                fill.digest,
                fill.tag.as_deref().unwrap_or("")
            )),
            subject: Some(format!("repository:{}", fill.repository)),
            max_attempts: FILL_ATTEMPTS,
            ..NewJob::of(
                FILL_JOB,
                serde_json::to_string(fill).expect("fills serialize"),
            )
        };
        if self
            .registry
            .meta()
            .enqueue_job(&job)
            .await
            .map_err(RegistryError::from)?
            .is_some()
        {
            if let Some(waker) = self.job_waker.get() {
                waker.wake();
            }
        }
        Ok(())
    }

    /// Stores the manifest `fill` names with everything it references, then tags it.
    async fn fill(&self, fill: &Fill) -> Result<()> {
        let name = gantry_registry::parse_name(&fill.repository)?;
        let Some((bound, remote)) = self.locate(&name) else {
            return Err(MirrorError::Config(format!(
                "{} is not in a pull-through cache project (its upstream was removed?)",
                fill.repository
            )));
        };
        let digest: Digest = fill.digest.parse().map_err(RegistryError::from)?;
        let origin = CacheOrigin {
            mirror: self,
            bound,
        };
        let import = Import {
            registry: &self.registry,
            origin: &origin,
            remote: &remote,
            name: &name,
            actor: CACHE_ACTOR,
        };
        let stored = import.manifest(&digest).await?;
        import.referrers(&digest).await?;
        if let Some(tag) = &fill.tag {
            import.tag(tag, &stored).await?;
            remember(
                &self.checked,
                format!("{name}:{tag}"),
                (digest, Instant::now()),
            );
        }
        Ok(())
    }

    /// The fill job's handler.
    pub fn job_handler(self: &Arc<Self>) -> Arc<dyn JobHandler> {
        Arc::new(FillHandler(self.clone()))
    }
}

/// Empties `table` when it is full, then inserts: memory stays bounded, and a forgotten
/// entry costs one more upstream question.
fn remember<V>(table: &Mutex<HashMap<String, V>>, key: String, value: V) {
    let mut table = table.lock();
    if table.len() >= MEMORY_LIMIT {
        table.clear();
    }
    table.insert(key, value);
}

/// An upstream as the origin of a fill: blobs through the shared fetches (one upstream
/// request per digest however many clients and fills want it).
struct CacheOrigin<'a> {
    mirror: &'a Mirror,
    bound: &'a Bound,
}

#[async_trait::async_trait]
impl Origin for CacheOrigin<'_> {
    fn client(&self) -> &RegistryClient {
        &self.bound.client
    }

    fn failed(&self, what: String, blob: bool, e: ClientError) -> MirrorError {
        self.mirror.failed(&self.bound.upstream.name, what, blob, e)
    }

    async fn store_blob(&self, remote: &str, name: &RepositoryName, digest: &Digest) -> Result<()> {
        let joined = self.mirror.fetches.join(
            digest,
            self.mirror.source(self.bound, remote, name),
            false,
        )?;
        fetch::stored(joined.progress).await.map_err(|reason| {
            self.mirror
                .stored_failure(&self.bound.upstream.name, reason)
        })
    }
}

/// A `mirror-fill` job's payload.
#[derive(Debug, Serialize, Deserialize)]
struct Fill {
    repository: String,
    digest: String,
    tag: Option<String>,
}

struct FillHandler(Arc<Mirror>);

#[async_trait::async_trait]
impl JobHandler for FillHandler {
    fn kind(&self) -> &'static str {
        FILL_JOB
    }

    async fn run(
        &self,
        job: &JobRecord,
        progress: &JobProgress,
    ) -> std::result::Result<serde_json::Value, JobError> {
        let fill: Fill = serde_json::from_str(&job.payload)
            .map_err(|e| JobError::permanent(format!("malformed payload: {e}")))?;
        progress
            .report(&format!("caching {}@{}", fill.repository, fill.digest))
            .await;
        self.0
            .fill(&fill)
            .await
            .map_err(|e| JobError::transient(e.to_string()))?;
        Ok(serde_json::json!({
            "repository": fill.repository,
            "digest": fill.digest,
            "tag": fill.tag,
        }))
    }
}
