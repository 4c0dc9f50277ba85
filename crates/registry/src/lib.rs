//! The registry service: everything the Distribution API does, without HTTP. The server
//! crate translates requests into these calls and `RegistryError`s into OCI errors.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use gantry_lifecycle::{TagRules, TagWrite};
use gantry_meta::{
    MetaError, MetaStore, NewManifest, Page, Quota, Recount, StoredManifest, TagRef,
};
use gantry_metrics::{Job, Metrics, MetricsOptions, ProjectUsage};
use gantry_oci::manifest::{self, MAX_MANIFEST_BYTES};
use gantry_oci::{media_type, Algorithm, Digest, Hasher, Reference, RepositoryName, Tag};
use gantry_storage::{ArchiveLocation, BlobStore, ByteStream};
use serde_json::json;

mod archive;
mod browse;
mod deletion;
mod deletion_lock;
mod error;
mod gate;
mod gc;
mod images;
mod jobs;
mod pulls;
mod retention;
mod scan;
mod signing;
mod tag_policy;
mod tarball;
mod usage;

pub use archive::{ArchiveReport, ArchivedArtifact, RestoreReport};
pub use browse::{
    ArtifactView, BrowseOptions, BrowseSort, Browsed, PlatformView, ProjectFigures, ReferrerView,
    RepositoryView, VulnerabilityView, BROWSE_DEFAULT_PAGE, BROWSE_MAX_PAGE,
};
pub use deletion::{ProjectContentDeletion, RepositoryDeletion};
pub use deletion_lock::{BlobDeletionGuard, BlobDeletionLock, BLOB_DELETION_LOCK_FILE};
pub use gantry_scanner::gate::{Allowed, GatePolicy, MAX_WAIT_SECS as GATE_MAX_WAIT_SECS};
pub use gantry_signing::SigningPolicy;
pub use gc::{GcOptions, GcReport};
pub use images::{HistoryStep, ImageDetails, LayerDetails};
pub use jobs::{JobView, Schedules};
pub use retention::RetentionReport;
pub use scan::{known_advisories, ArtifactScan, ImageScan, SbomFormat, SCAN};
pub use usage::{day_of, SnapshotTaken, UsageReport};
mod upload;

pub use error::{RegistryError, Result};

/// The largest page of tags or repositories returned when the client does not ask for less.
pub const MAX_PAGE: u32 = 10_000;

/// Layer media types whose bytes live elsewhere and are never pushed.
const FOREIGN_LAYERS: [&str; 3] = [
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
];

/// Per-upload state kept between requests: a lock so that requests on one session run one at
/// a time, and the SHA-256 state of the bytes received so far (rebuilt from storage if lost).
#[derive(Default)]
struct UploadProgress {
    hashed: Option<(u64, Hasher)>,
}

type UploadSlot = Arc<tokio::sync::Mutex<UploadProgress>>;

pub struct Registry {
    blobs: Arc<dyn BlobStore>,
    meta: MetaStore,
    uploads: parking_lot::Mutex<HashMap<String, UploadSlot>>,
    tag_policy: tag_policy::TagPolicy,
    pulls: pulls::PullTracker,
    /// Serializes, per digest, making a blob visible (commit + link, mount) with garbage
    /// collection deleting it.
    blob_locks: gc::BlobLocks,
    /// This server among those sharing the database (process id and a random suffix), as
    /// job leases name their holder.
    instance: String,
    /// Where archived artifacts go; archiving is unavailable without one.
    archive: Option<ArchiveLocation>,
    /// Held by garbage collection while it deletes blobs, so that a backup in another process
    /// never loses a blob between its snapshot and its copy; `None`: no backups to respect.
    deletion_lock: Option<BlobDeletionLock>,
    /// Pushes, pulls and job runs are counted here.
    metrics: Arc<Metrics>,
    /// Blob GETs answer a redirect to the blob store's own URL, valid this long, instead of
    /// streaming the bytes; `None`: always streamed.
    blob_redirect: Option<std::time::Duration>,
    /// The pull gate's cached policies.
    gate: gate::GateCache,
    /// The signature gate's cached verdicts.
    signing: signing::VerdictCache,
    /// Wakes this server's job runner after a request enqueued a job (a scan), once set.
    job_waker: std::sync::OnceLock<gantry_jobs::Waker>,
}

/// A manifest's identity once stored.
#[derive(Debug, Clone)]
pub struct PutManifest {
    pub digest: Digest,
    pub subject: Option<Digest>,
}

/// One page of a sorted listing and whether more follow.
#[derive(Debug, Clone)]
pub struct Listing {
    pub items: Vec<String>,
    pub more: bool,
}

pub fn parse_name(name: &str) -> Result<RepositoryName> {
    RepositoryName::parse(name).map_err(RegistryError::Name)
}

pub fn parse_reference(reference: &str) -> Result<Reference> {
    Reference::parse(reference).map_err(|e| match e {
        gantry_oci::ReferenceError::Digest(d) => RegistryError::Digest(d),
        gantry_oci::ReferenceError::Tag(t) => RegistryError::Tag(t),
    })
}

pub fn parse_tag(tag: &str) -> Result<Tag> {
    Tag::parse(tag).map_err(RegistryError::Tag)
}

/// Whether a manifest of `stored` type may be served to a client sending `accept` (the
/// header's comma-separated entries). A client that names no manifest type at all, or a
/// wildcard, gets whatever is stored; one that names manifest types gets only those.
pub fn accepts(accept: &[&str], stored: &str) -> bool {
    let types: Vec<&str> = accept
        .iter()
        .flat_map(|h| h.split(','))
        .map(media_type::essence)
        .filter(|t| !t.is_empty())
        .collect();
    let names_manifest_type = types.iter().any(|t| media_type::MANIFEST_TYPES.contains(t));
    !names_manifest_type
        || types
            .iter()
            .any(|t| *t == stored || *t == "*/*" || *t == "application/*")
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Registry {
    pub fn new(blobs: Arc<dyn BlobStore>, meta: MetaStore) -> Registry {
        Registry {
            blobs,
            meta,
            uploads: parking_lot::Mutex::new(HashMap::new()),
            tag_policy: tag_policy::TagPolicy::default(),
            pulls: pulls::PullTracker::default(),
            blob_locks: gc::BlobLocks::default(),
            instance: format!(
                "{}-{}",
                std::process::id(),
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
            archive: None,
            deletion_lock: None,
            metrics: Arc::new(
                Metrics::new(MetricsOptions::default()).expect("metric families are distinct"),
            ),
            blob_redirect: None,
            gate: gate::GateCache::default(),
            signing: signing::VerdictCache::default(),
            job_waker: std::sync::OnceLock::new(),
        }
    }

    /// Lets requests that enqueue jobs (a scan asked for, a pull waiting for a scan) wake
    /// this server's job runner rather than wait for its next look.
    /// The metadata store.
    pub fn meta(&self) -> &MetaStore {
        &self.meta
    }

    /// The process's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn set_job_waker(&self, waker: gantry_jobs::Waker) {
        let _ = self.job_waker.set(waker);
    }

    fn wake_jobs(&self) {
        if let Some(waker) = self.job_waker.get() {
            waker.wake();
        }
    }

    /// This process's name among the servers sharing the store (its pid and a random part),
    /// as job leases name their holder.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Makes blob GETs answer with a URL of the blob store valid for `valid_for` (a presigned
    /// S3 URL), where the backend has one, instead of streaming through the registry.
    pub fn with_blob_redirect(mut self, valid_for: std::time::Duration) -> Registry {
        self.blob_redirect = Some(valid_for);
        self
    }

    /// Where a client should GET the blob `digest` itself, when redirects are on and the
    /// blob store can hand one out; `None`: the registry streams it.
    pub async fn blob_redirect_url(&self, digest: &Digest) -> Result<Option<String>> {
        match self.blob_redirect {
            Some(valid_for) => Ok(self.blobs.direct_read_url(digest, valid_for).await?),
            None => Ok(None),
        }
    }

    /// Makes garbage collection take `lock` while it deletes blobs (see [`BlobDeletionLock`]).
    pub fn with_blob_deletion_lock(mut self, lock: BlobDeletionLock) -> Registry {
        self.deletion_lock = Some(lock);
        self
    }

    pub fn with_archive(mut self, location: ArchiveLocation) -> Registry {
        self.archive = Some(location);
        self
    }

    /// Records pushes, pulls and job runs in `metrics` (the process's, which `/metrics`
    /// shows) instead of a private set.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Registry {
        self.metrics = metrics;
        self
    }

    /// Times `run` as a run of `job` in the metrics; `freed` says how many bytes a successful
    /// run freed.
    async fn timed_job<T>(
        &self,
        job: Job,
        freed: impl FnOnce(&T) -> u64,
        run: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let started = std::time::Instant::now();
        let outcome = run.await;
        let seconds = started.elapsed().as_secs_f64();
        let freed_bytes = outcome.as_ref().map(freed).unwrap_or(0);
        self.metrics
            .job_finished(job, outcome.is_ok(), seconds, freed_bytes);
        outcome
    }

    /// Every metric in the Prometheus text format, with the per-project storage gauges and
    /// the metadata pool's use read now.
    pub async fn metrics_text(&self) -> Result<String> {
        let projects: Vec<ProjectUsage> = self
            .meta
            .quotas()
            .await?
            .into_iter()
            .map(|quota| ProjectUsage {
                project: quota.project,
                stored_bytes: quota.used.bytes.max(0) as u64,
                artifacts: quota.used.artifacts.max(0) as u64,
            })
            .collect();
        self.metrics.set_project_usage(&projects);
        self.metrics.set_pool_use(&self.meta.pool_use());
        Ok(self.metrics.encode()?)
    }

    /// Whether the metadata store and the blob store answer (for `/readyz`).
    ///
    /// Errors: the first store that does not, with its reason.
    pub async fn check_ready(&self) -> Result<()> {
        self.meta.check_ready().await?;
        self.blobs.check_ready().await?;
        Ok(())
    }

    // ---- pull tracking ----------------------------------------------------------------

    /// Records an access to a manifest: `counted` for a real pull (GET), by tag when the
    /// client named one (HEAD by tag is how docker and containerd start a pull).
    pub fn note_pull(
        &self,
        name: &RepositoryName,
        reference: &Reference,
        digest: &Digest,
        counted: bool,
    ) {
        let tag = match reference {
            Reference::Tag(tag) => Some(tag.as_str()),
            Reference::Digest(_) => None,
        };
        if counted {
            self.metrics.pull(name.project(), name.as_str());
        }
        let digest = digest.to_string();
        self.pulls.note(
            name.as_str(),
            counted.then_some(digest.as_str()),
            tag,
            unix_now(),
        );
    }

    /// Writes the pull counts gathered in memory.
    pub async fn flush_pulls(&self) -> Result<()> {
        self.pulls.flush(&self.meta).await
    }

    // ---- tag rules --------------------------------------------------------------------

    /// The project's tag rules for a push (cached up to 2 s).
    pub async fn tag_rules(&self, project: &str) -> Result<TagRules> {
        self.tag_policy.rules(&self.meta, project).await
    }

    /// The project's tag rules read now, for what deletes tags (whichever replica changed
    /// them a moment ago).
    pub async fn current_tag_rules(&self, project: &str) -> Result<TagRules> {
        self.tag_policy.current(&self.meta, project).await
    }

    pub async fn set_tag_rules(&self, project: &str, rules: &TagRules) -> Result<()> {
        self.tag_policy.set(&self.meta, project, rules).await
    }

    // ---- quotas -----------------------------------------------------------------------

    /// A project's usage and limits.
    pub async fn quota(&self, project: &str) -> Result<Quota> {
        Ok(self.meta.quota(project).await?)
    }

    /// The vulnerability database: each source imported (where from, when, how many
    /// records) and the generation every import bumps.
    pub async fn vulndb_status(&self) -> Result<gantry_meta::VulnDbStatus> {
        Ok(self.meta.vulndb_status().await?)
    }

    /// Usage and limits of every project, by project name.
    pub async fn quotas(&self) -> Result<Vec<Quota>> {
        Ok(self.meta.quotas().await?)
    }

    /// Sets a project's limits (bytes of storage, artifacts); `None` is unlimited.
    pub async fn set_quota_limits(
        &self,
        project: &str,
        bytes_limit: Option<i64>,
        artifacts_limit: Option<i64>,
    ) -> Result<Quota> {
        Ok(self
            .meta
            .set_quota_limits(project, bytes_limit, artifacts_limit)
            .await?)
    }

    /// Adds a project's usage up from its rows and compares it with the live figures (which
    /// it corrects, should they differ).
    pub async fn recount_usage(&self, project: &str) -> Result<Recount> {
        Ok(self.meta.recount_usage(project).await?)
    }

    // ---- blobs ------------------------------------------------------------------------

    /// Size of a blob the repository holds.
    pub async fn stat_blob(&self, name: &RepositoryName, digest: &Digest) -> Result<u64> {
        self.meta
            .blob_in_repository(name.as_str(), digest)
            .await?
            .ok_or_else(|| RegistryError::BlobUnknown(digest.clone()))
    }

    pub async fn read_blob(&self, digest: &Digest, range: Range<u64>) -> Result<ByteStream> {
        Ok(self.blobs.read(digest, range).await?)
    }

    /// Opens ranges of a blob one after another, each only once the stream before it has been
    /// read to its end (one open file or backend request at a time, however many ranges a
    /// `multipart/byteranges` answer has).
    pub fn read_blob_ranges(
        &self,
        digest: &Digest,
        ranges: Vec<Range<u64>>,
    ) -> futures::stream::BoxStream<'static, Result<ByteStream>> {
        let blobs = self.blobs.clone();
        let digest = digest.clone();
        Box::pin(futures::StreamExt::then(
            futures::stream::iter(ranges),
            move |range| {
                let blobs = blobs.clone();
                let digest = digest.clone();
                async move { Ok(blobs.read(&digest, range).await?) }
            },
        ))
    }

    /// Removes the repository's link to the blob; garbage collection frees the bytes.
    pub async fn delete_blob(&self, name: &RepositoryName, digest: &Digest) -> Result<()> {
        if self.meta.unlink_blob(name.as_str(), digest).await? {
            Ok(())
        } else {
            Err(RegistryError::BlobUnknown(digest.clone()))
        }
    }

    /// Links a blob held elsewhere into `name`: from repository `from` when given, else from
    /// any repository (the spec's automatic mount). Returns the size, or `None` when the blob
    /// is not available and the client must upload it.
    pub async fn mount_blob(
        &self,
        name: &RepositoryName,
        digest: &Digest,
        from: Option<&RepositoryName>,
    ) -> Result<Option<u64>> {
        // Under the blob's lock: a collection cannot delete it between the check and the link.
        self.under_blob_lock(digest, async {
            let size = match from {
                Some(from) => self.meta.blob_in_repository(from.as_str(), digest).await?,
                None => self.meta.blob_anywhere(digest).await?,
            };
            let Some(size) = size else { return Ok(None) };
            if self.blobs.stat(digest).await?.is_none() {
                tracing::warn!(%digest, "blob is linked in metadata but missing from storage; not mounting");
                return Ok(None);
            }
            let linked = self.meta.link_blob(name.as_str(), digest, size).await;
            self.noting_refusal(name, linked).await?;
            Ok(Some(size))
        })
        .await
    }

    /// Runs `work` holding `digest`'s blob lock (in this process and, on PostgreSQL, across
    /// every replica).
    async fn under_blob_lock<T>(
        &self,
        digest: &Digest,
        work: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let lock = self.blob_locks.lock(&self.meta, digest).await?;
        let outcome = work.await;
        lock.release().await;
        outcome
    }

    // ---- uploads ----------------------------------------------------------------------

    /// Refuses to start an upload into a project that is already at a quota limit, so that a
    /// client does not send a whole blob only to have it refused at the end.
    async fn refuse_if_full(&self, name: &RepositoryName) -> Result<()> {
        match self.meta.quota_full(name.project()).await? {
            Some(full) => {
                self.noting_refusal(name, Err(RegistryError::Quota(full)))
                    .await
            }
            None => Ok(()),
        }
    }

    /// Passes `outcome` on, after recording a quota refusal in it as a `quota.exceeded` event
    /// of `name` (on its own: the refused write rolled back); other errors are not events. A
    /// failure to record is logged: the refusal stands either way.
    async fn noting_refusal<T, E: Into<RegistryError>>(
        &self,
        name: &RepositoryName,
        outcome: std::result::Result<T, E>,
    ) -> Result<T> {
        let outcome = outcome.map_err(Into::into);
        let Err(RegistryError::Quota(refused)) = &outcome else {
            return outcome;
        };
        let event = gantry_meta::NewEvent::in_repository(
            "quota.exceeded",
            name.as_str(),
            serde_json::json!({
                "repository": name.as_str(),
                "project": refused.project,
                "resource": match refused.resource {
                    gantry_meta::QuotaResource::Storage => "storage",
                    gantry_meta::QuotaResource::Artifacts => "artifacts",
                },
                "needed": refused.needed,
                "used": refused.used,
                "limit": refused.limit,
                "message": refused.to_string(),
            }),
        );
        if let Err(e) = self.meta.record_event(&event).await {
            tracing::warn!(repository = name.as_str(), error = %e, "cannot record a quota refusal event");
        }
        outcome
    }

    /// Makes verified upload bytes durable and runs `link` (which records them), under the
    /// blob's lock. Should `link` fail (a quota refusal, say), bytes that no row accounts for
    /// are deleted again.
    async fn commit_and_link(
        &self,
        name: &RepositoryName,
        id: &str,
        digest: &Digest,
        link: impl std::future::Future<Output = gantry_meta::Result<()>>,
    ) -> Result<()> {
        self.under_blob_lock(digest, async {
            self.blobs.commit_upload(id, digest).await?;
            if let Err(e) = link.await {
                // The failed link rolled back, and under the lock nobody else records this
                // digest: a row now means the bytes were stored before, and belong to it.
                if !self.meta.blob_recorded(digest).await? {
                    if let Err(delete) = self.blobs.delete(digest).await {
                        tracing::warn!(%digest, error = %delete, "cannot delete the bytes of a refused blob; garbage collection will not see them");
                    }
                }
                return self.noting_refusal(name, Err(e)).await;
            }
            Ok(())
        })
        .await
    }

    pub async fn start_upload(&self, name: &RepositoryName) -> Result<String> {
        self.refuse_if_full(name).await?;
        let id = uuid::Uuid::new_v4().to_string();
        self.blobs.create_upload(&id).await?;
        self.meta.create_upload(&id, name.as_str()).await?;
        Ok(id)
    }

    /// The session's lock, after checking that it exists and belongs to `name`.
    async fn upload_slot(&self, name: &RepositoryName, id: &str) -> Result<UploadSlot> {
        let owner = self.meta.upload_repository(id).await?;
        if owner.as_deref() != Some(name.as_str()) {
            return Err(RegistryError::UploadUnknown(id.to_string()));
        }
        Ok(self
            .uploads
            .lock()
            .entry(id.to_string())
            .or_default()
            .clone())
    }

    async fn current_size(&self, id: &str) -> Result<u64> {
        self.blobs
            .upload_size(id)
            .await?
            .ok_or_else(|| RegistryError::UploadUnknown(id.to_string()))
    }

    /// Bytes the session has received.
    pub async fn upload_status(&self, name: &RepositoryName, id: &str) -> Result<u64> {
        let slot = self.upload_slot(name, id).await?;
        let _guard = slot.lock().await;
        self.current_size(id).await
    }

    async fn append_locked(
        &self,
        progress: &mut UploadProgress,
        id: &str,
        start: Option<u64>,
        body: ByteStream,
    ) -> Result<u64> {
        let size = self.current_size(id).await?;
        if let Some(start) = start {
            if start != size {
                return Err(RegistryError::UploadOutOfOrder {
                    expected: size,
                    got: start,
                });
            }
        }
        let hasher = match progress.hashed.take() {
            Some((hashed, hasher)) if hashed == size => hasher,
            _ => self.resume_hash(id, size).await?,
        };
        let (result, state) = upload::append(self.blobs.as_ref(), id, hasher, body).await;
        progress.hashed = state;
        result
    }

    /// The SHA-256 of an upload's first `size` bytes: a fresh one for none, the state a chunk
    /// saved when it covers exactly those bytes (another process, or this one before a
    /// restart, received them), else hashed again from storage.
    async fn resume_hash(&self, id: &str, size: u64) -> Result<Hasher> {
        if size == 0 {
            return Ok(Hasher::new(Algorithm::Sha256));
        }
        if let Some((hashed, saved)) = self.meta.upload_hash(id).await? {
            match Hasher::resume_sha256(&saved) {
                Ok(hasher) if hashed == size => return Ok(hasher),
                Ok(_) => {}
                Err(e) => tracing::warn!(upload = id, error = %e, "ignoring a saved upload hash"),
            }
        }
        Ok(upload::rehash(self.blobs.as_ref(), id, Algorithm::Sha256)
            .await?
            .1)
    }

    /// Appends a chunk; `start` is the first byte's offset from Content-Range, if sent.
    pub async fn append_upload(
        &self,
        name: &RepositoryName,
        id: &str,
        start: Option<u64>,
        body: ByteStream,
    ) -> Result<u64> {
        let slot = self.upload_slot(name, id).await?;
        let mut progress = slot.lock().await;
        let size = self.append_locked(&mut progress, id, start, body).await?;
        // Saved, so that the next chunk may go to any replica without the bytes being read
        // again there.
        if let Some((hashed, state)) = &progress.hashed {
            if let Some(saved) = state.save() {
                self.meta.save_upload_hash(id, *hashed, &saved).await?;
            }
        }
        Ok(size)
    }

    /// Appends the optional last chunk, verifies the digest and makes the blob durable and
    /// visible in `name`. On a digest mismatch the session stays open.
    pub async fn finish_upload(
        &self,
        name: &RepositoryName,
        id: &str,
        digest: &Digest,
        last_chunk: Option<(Option<u64>, ByteStream)>,
    ) -> Result<u64> {
        let slot = self.upload_slot(name, id).await?;
        let mut progress = slot.lock().await;
        let size = self.verify(&mut progress, id, digest, last_chunk).await?;
        let linked = self
            .commit_and_link(
                name,
                id,
                digest,
                self.meta.complete_upload(id, name.as_str(), digest, size),
            )
            .await;
        if linked.is_err() {
            // The session's bytes are gone (committed, then deleted): it cannot go on.
            let _ = self.meta.delete_upload(id).await;
        }
        drop(progress);
        self.uploads.lock().remove(id);
        linked.map(|()| size)
    }

    /// Appends the last chunk and checks the digest. The caller commits the bytes and links
    /// them under the blob's lock, so garbage collection never sees one without the other.
    async fn verify(
        &self,
        progress: &mut UploadProgress,
        id: &str,
        digest: &Digest,
        last_chunk: Option<(Option<u64>, ByteStream)>,
    ) -> Result<u64> {
        let size = match last_chunk {
            Some((start, body)) => self.append_locked(progress, id, start, body).await?,
            None => self.current_size(id).await?,
        };
        let actual = match (&progress.hashed, digest.algorithm()) {
            (Some((hashed, hasher)), Algorithm::Sha256) if *hashed == size => {
                hasher.clone().finish()
            }
            (_, algorithm) => upload::rehash(self.blobs.as_ref(), id, algorithm)
                .await?
                .1
                .finish(),
        };
        if actual != *digest {
            return Err(RegistryError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        Ok(size)
    }

    /// A single-request upload (`POST …/blobs/uploads/?digest=`). Its session is never
    /// visible to a client, so it has no metadata row: the blob link is the only write.
    pub async fn upload_monolithic(
        &self,
        name: &RepositoryName,
        digest: &Digest,
        body: ByteStream,
    ) -> Result<u64> {
        self.refuse_if_full(name).await?;
        let id = uuid::Uuid::new_v4().to_string();
        self.blobs.create_upload(&id).await?;
        let mut progress = UploadProgress::default();
        match self
            .verify(&mut progress, &id, digest, Some((None, body)))
            .await
        {
            Ok(size) => {
                self.commit_and_link(
                    name,
                    &id,
                    digest,
                    self.meta.link_blob(name.as_str(), digest, size),
                )
                .await?;
                Ok(size)
            }
            Err(e) => {
                // Nobody knows this session's id, so it cannot be resumed: drop its bytes.
                let _ = self.blobs.delete_upload(&id).await;
                Err(e)
            }
        }
    }

    pub async fn cancel_upload(&self, name: &RepositoryName, id: &str) -> Result<()> {
        let slot = self.upload_slot(name, id).await?;
        let _guard = slot.lock().await;
        self.blobs.delete_upload(id).await?;
        self.meta.delete_upload(id).await?;
        self.uploads.lock().remove(id);
        Ok(())
    }

    // ---- manifests --------------------------------------------------------------------

    pub async fn get_manifest(
        &self,
        name: &RepositoryName,
        reference: &Reference,
    ) -> Result<StoredManifest> {
        let found = match reference {
            Reference::Tag(tag) => {
                self.meta
                    .manifest_by_tag(name.as_str(), tag.as_str())
                    .await?
            }
            Reference::Digest(digest) => {
                self.meta.manifest_by_digest(name.as_str(), digest).await?
            }
        };
        found.ok_or_else(|| RegistryError::ManifestUnknown(reference.to_string()))
    }

    /// Validates and stores a manifest's exact bytes, tagging it when `reference` is a tag.
    pub async fn put_manifest(
        &self,
        name: &RepositoryName,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: &[u8],
        actor: &str,
    ) -> Result<PutManifest> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(RegistryError::ManifestTooLarge {
                limit: MAX_MANIFEST_BYTES,
            });
        }
        let parsed = manifest::parse(bytes, content_type)?;
        let (digest, tag) = match reference {
            Reference::Digest(expected) => {
                let actual = Digest::of(expected.algorithm(), bytes);
                if actual != *expected {
                    return Err(RegistryError::DigestMismatch {
                        expected: expected.clone(),
                        actual,
                    });
                }
                (actual, None)
            }
            Reference::Tag(tag) => (Digest::sha256_of(bytes), Some(tag)),
        };
        let blobs = parsed
            .config
            .iter()
            .chain(
                parsed
                    .layers
                    .iter()
                    .filter(|l| !FOREIGN_LAYERS.contains(&l.media_type.as_str())),
            )
            .map(|d| &d.digest)
            .collect();
        let subject = parsed.subject.as_ref().map(|s| &s.digest);
        let new = NewManifest {
            digest: &digest,
            media_type: &parsed.media_type,
            artifact_type: parsed.artifact_type.as_deref(),
            subject,
            annotations: parsed
                .annotations
                .as_ref()
                .map(|a| serde_json::Value::Object(a.clone()).to_string()),
            content: bytes,
            blobs,
            children: parsed.manifests.iter().map(|m| &m.digest).collect(),
            pushed_by: actor,
        };
        let tag_ref = match tag {
            Some(tag) => {
                let rules = self.tag_rules(name.project()).await?;
                let write = rules.check_push(name.project(), tag.as_str())?;
                if write == TagWrite::Immutable {
                    // Archiving an immutable tag does not free it for other content.
                    let archived = self.meta.archived_tag(name.as_str(), tag.as_str()).await?;
                    if archived.is_some_and(|a| a.digest != digest.to_string()) {
                        rules.check_change(
                            name.project(),
                            tag.as_str(),
                            "pushed with other content while it is archived (restore it instead)",
                        )?;
                    }
                }
                Some((
                    rules,
                    TagRef {
                        name: tag.as_str(),
                        immutable: write == TagWrite::Immutable,
                    },
                ))
            }
            None => None,
        };
        let stored = self
            .meta
            .put_manifest(name.as_str(), &new, tag_ref.as_ref().map(|(_, t)| *t))
            .await;
        if let (Err(MetaError::TagImmutable { tag, .. }), Some((rules, _))) = (&stored, &tag_ref) {
            rules.check_change(name.project(), tag, "moved to another digest")?;
        }
        self.noting_refusal(name, stored).await?;
        self.metrics.push(name.project(), name.as_str());
        // A signature may have arrived: a referrer (a bundle), a `.sig` manifest or a
        // referrers fallback index (tags `sha256-<hex>[.sig]`).
        if subject.is_some()
            || tag
                .as_ref()
                .is_some_and(|t| t.as_str().starts_with("sha256-"))
        {
            self.signing.forget_repository(name.as_str());
        }
        Ok(PutManifest {
            subject: subject.cloned(),
            digest,
        })
    }

    /// Deleting by tag removes the tag only; by digest, the manifest and all its tags.
    /// `actor` is who deletes, for the event.
    pub async fn delete_manifest(
        &self,
        name: &RepositoryName,
        reference: &Reference,
        actor: &str,
    ) -> Result<()> {
        let rules = self.current_tag_rules(name.project()).await?;
        let deleted = match reference {
            Reference::Tag(tag) => {
                rules.check_change(name.project(), tag.as_str(), "deleted")?;
                self.meta
                    .delete_tag(name.as_str(), tag.as_str(), actor)
                    .await?
            }
            Reference::Digest(digest) => {
                for tag in self.meta.tags_of(name.as_str(), digest).await? {
                    rules.check_change(name.project(), &tag, "deleted (with its digest)")?;
                }
                self.meta
                    .delete_manifest(name.as_str(), digest, actor)
                    .await?
            }
        };
        if deleted {
            // It may have been a signature (a .sig tag, or the manifest holding one).
            self.signing.forget_repository(name.as_str());
            Ok(())
        } else {
            Err(RegistryError::ManifestUnknown(reference.to_string()))
        }
    }

    /// Deletes the artifact `reference` names (a tag names the manifest it points to) with
    /// all its tags, as Harbor's artifact delete does; returns its digest. Tag rules apply to
    /// each of its tags.
    ///
    /// Errors: `ManifestUnknown` when nothing is found; `TagRule` when a rule protects a tag.
    pub async fn delete_artifact(
        &self,
        name: &RepositoryName,
        reference: &Reference,
        actor: &str,
    ) -> Result<Digest> {
        let digest = self.get_manifest(name, reference).await?.digest;
        self.delete_manifest(name, &Reference::Digest(digest.clone()), actor)
            .await?;
        Ok(digest)
    }

    /// Removes tag `tag` of the artifact `reference` names (the artifact stays).
    ///
    /// Errors: `ManifestUnknown` when the artifact is not found or `tag` is not one of its
    /// tags; `TagRule` when a rule protects the tag.
    pub async fn remove_artifact_tag(
        &self,
        name: &RepositoryName,
        reference: &Reference,
        tag: &Tag,
        actor: &str,
    ) -> Result<()> {
        let artifact = self.get_manifest(name, reference).await?.digest;
        let tagged = self
            .meta
            .manifest_by_tag(name.as_str(), tag.as_str())
            .await?;
        if tagged.is_none_or(|m| m.digest != artifact) {
            return Err(RegistryError::ManifestUnknown(format!(
                "{tag} is not a tag of {artifact}"
            )));
        }
        self.delete_manifest(name, &Reference::Tag(tag.clone()), actor)
            .await
    }

    // ---- listings ---------------------------------------------------------------------

    pub async fn tags(
        &self,
        name: &RepositoryName,
        n: Option<u32>,
        last: Option<&str>,
    ) -> Result<Listing> {
        let limit = n.unwrap_or(MAX_PAGE).min(MAX_PAGE);
        let page = Page {
            last,
            limit: limit + 1,
        };
        let items = self
            .meta
            .tags(name.as_str(), page)
            .await?
            .ok_or_else(|| RegistryError::NameUnknown(name.to_string()))?;
        Ok(paged(items, limit))
    }

    pub async fn catalog(&self, n: Option<u32>, last: Option<&str>) -> Result<Listing> {
        let limit = n.unwrap_or(MAX_PAGE).min(MAX_PAGE);
        let items = self
            .meta
            .catalog(Page {
                last,
                limit: limit + 1,
            })
            .await?;
        Ok(paged(items, limit))
    }

    /// The referrers of `subject` as an OCI image index (the body of the referrers API).
    pub async fn referrers(
        &self,
        name: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<u8>> {
        let referrers = self
            .meta
            .referrers(name.as_str(), subject, artifact_type)
            .await?;
        let manifests: Vec<serde_json::Value> = referrers
            .into_iter()
            .map(|r| {
                let mut d = json!({"mediaType": r.media_type, "digest": r.digest, "size": r.size});
                if let Some(t) = r.artifact_type {
                    d["artifactType"] = t.into();
                }
                if let Some(a) = r
                    .annotations
                    .and_then(|a| serde_json::from_str::<serde_json::Value>(&a).ok())
                {
                    d["annotations"] = a;
                }
                d
            })
            .collect();
        let index =
            json!({"schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": manifests});
        Ok(serde_json::to_vec(&index).expect("index serializes"))
    }
}

/// `items` were fetched with one extra row to learn whether another page follows.
fn paged(mut items: Vec<String>, limit: u32) -> Listing {
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    Listing { items, more }
}

impl Listing {
    /// The page of `items` (any order) after `last`, at most `n` (capped at [`MAX_PAGE`]),
    /// sorted: what a tag listing answers for a list held whole.
    pub fn page_of(mut items: Vec<String>, n: Option<u32>, last: Option<&str>) -> Listing {
        items.sort();
        items.dedup();
        if let Some(last) = last {
            items.retain(|item| item.as_str() > last);
        }
        paged(items, n.unwrap_or(MAX_PAGE).min(MAX_PAGE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_storage::StorageError;

    #[test]
    fn accept_negotiation() {
        let oci = media_type::OCI_MANIFEST;
        assert!(accepts(&[], oci));
        assert!(accepts(&["application/json"], oci));
        assert!(accepts(&["*/*"], oci));
        assert!(accepts(
            &[&format!("{}, {}", media_type::DOCKER_MANIFEST, oci)],
            oci
        ));
        assert!(accepts(&[media_type::DOCKER_MANIFEST, oci], oci));
        assert!(!accepts(&[media_type::DOCKER_MANIFEST], oci));
        assert!(!accepts(
            &[&format!("{};q=0.9", media_type::OCI_INDEX)],
            oci
        ));
    }

    /// A blob store that counts how often an upload's bytes are read back.
    struct CountingReads {
        inner: gantry_storage::FsBlobStore,
        upload_reads: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl BlobStore for CountingReads {
        async fn stat(&self, digest: &Digest) -> std::result::Result<Option<u64>, StorageError> {
            self.inner.stat(digest).await
        }
        async fn read(
            &self,
            digest: &Digest,
            range: Range<u64>,
        ) -> std::result::Result<ByteStream, StorageError> {
            self.inner.read(digest, range).await
        }
        async fn delete(&self, digest: &Digest) -> std::result::Result<(), StorageError> {
            self.inner.delete(digest).await
        }
        async fn create_upload(&self, id: &str) -> std::result::Result<(), StorageError> {
            self.inner.create_upload(id).await
        }
        async fn upload_size(&self, id: &str) -> std::result::Result<Option<u64>, StorageError> {
            self.inner.upload_size(id).await
        }
        async fn append_upload(
            &self,
            id: &str,
        ) -> std::result::Result<Box<dyn gantry_storage::UploadWriter>, StorageError> {
            self.inner.append_upload(id).await
        }
        async fn read_upload(&self, id: &str) -> std::result::Result<ByteStream, StorageError> {
            self.upload_reads
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.inner.read_upload(id).await
        }
        async fn commit_upload(
            &self,
            id: &str,
            digest: &Digest,
        ) -> std::result::Result<(), StorageError> {
            self.inner.commit_upload(id, digest).await
        }
        async fn delete_upload(&self, id: &str) -> std::result::Result<(), StorageError> {
            self.inner.delete_upload(id).await
        }
        async fn check_ready(&self) -> std::result::Result<(), StorageError> {
            self.inner.check_ready().await
        }
    }

    fn chunk(bytes: &'static [u8]) -> ByteStream {
        Box::pin(futures::stream::once(async move {
            Ok(bytes::Bytes::from_static(bytes))
        }))
    }

    /// Issue 12: an upload's running hash lived only in the memory of the process that
    /// received the chunk, so a chunk that reached another replica (or the same server after
    /// a restart) read every byte received so far back from storage to hash it again.
    /// Issue 12: tag rules were cached for 2 s per process for deletes too, so a tag made
    /// immutable through one replica could be deleted through another in the next 2 s (the
    /// repository delete test did it through the balancer). What deletes tags reads the rules
    /// afresh.
    #[tokio::test]
    async fn a_tag_made_immutable_through_one_replica_cannot_be_deleted_through_another_at_once() {
        let (dir, _, meta) = gantry_meta::testing::fresh_store().await;
        let blobs: Arc<dyn BlobStore> =
            Arc::new(gantry_storage::FsBlobStore::open(dir.path().join("blobs")).unwrap());
        let (one, other) = (
            Registry::new(blobs.clone(), meta.clone()),
            Registry::new(blobs, meta),
        );
        // The other replica has the (empty) rules cached.
        assert_eq!(other.tag_rules("team").await.unwrap(), TagRules::default());
        let rules = TagRules {
            immutable: vec![gantry_lifecycle::Pattern::parse("v*").unwrap()],
            ..TagRules::default()
        };
        one.set_tag_rules("team", &rules).await.unwrap();
        let name = RepositoryName::parse("team/app").unwrap();
        let v1 = Reference::parse("v1").unwrap();
        assert!(
            matches!(
                other.delete_manifest(&name, &v1, "admin").await,
                Err(RegistryError::TagRule(_))
            ),
            "the other replica deleted an immutable tag"
        );
    }

    #[tokio::test]
    async fn a_chunk_on_another_replica_resumes_the_saved_hash_without_reading_the_upload_again() {
        let (dir, _, meta) = gantry_meta::testing::fresh_store().await;
        let blobs = Arc::new(CountingReads {
            inner: gantry_storage::FsBlobStore::open(dir.path().join("blobs")).unwrap(),
            upload_reads: Default::default(),
        });
        let name = RepositoryName::parse("team/app").unwrap();
        let first = Registry::new(blobs.clone(), meta.clone());
        let id = first.start_upload(&name).await.unwrap();
        let (head, tail) = (
            b"the first chunk, of an odd length".as_slice(),
            b"and the rest".as_slice(),
        );
        assert_eq!(
            first
                .append_upload(&name, &id, Some(0), chunk(head))
                .await
                .unwrap(),
            head.len() as u64
        );
        // Another replica: the same stores, nothing of the first one's memory.
        let second = Registry::new(blobs.clone(), meta);
        let whole = [head, tail].concat();
        let digest = Digest::sha256_of(&whole);
        let size = second
            .finish_upload(
                &name,
                &id,
                &digest,
                Some((Some(head.len() as u64), chunk(tail))),
            )
            .await
            .unwrap();
        assert_eq!(size, whole.len() as u64);
        assert_eq!(second.stat_blob(&name, &digest).await.unwrap(), size);
        assert_eq!(
            blobs.upload_reads.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "the received bytes were read back to hash them again"
        );
    }

    #[test]
    fn paging_reports_more() {
        let l = paged(vec!["a".into(), "b".into(), "c".into()], 2);
        assert_eq!(l.items, ["a", "b"]);
        assert!(l.more);
        assert!(!paged(vec!["a".into()], 2).more);
    }
}
