//! Online garbage collection: unreachable manifests, then repository links no manifest
//! references, then blobs no repository links (bytes and row), then abandoned upload sessions,
//! then repositories that hold nothing any more.
//! Pushes and pulls go on meanwhile: only things older than the grace window are touched, every
//! deletion re-checks its condition in the database, and a blob is deleted under the same
//! per-digest lock that uploads and mounts take to make one visible.

use std::time::{Duration, Instant};

use gantry_meta::Reckoning;
use gantry_metrics::Job;
use gantry_oci::Digest;
use gantry_storage::StorageError;
use serde::Serialize;

use crate::{Registry, RegistryError, Result};

/// Per-digest locks (striped: 256 locks for every digest), taken by garbage collection while
/// it deletes blobs and by upload commits and mounts while they make one visible. In-process
/// mutexes, and on PostgreSQL the database's shared locks of the same stripes too, so that
/// replicas exclude each other as well ([`gantry_meta::SharedBlobLock`]).
pub struct BlobLocks {
    stripes: Vec<tokio::sync::Mutex<()>>,
}

/// Held blob locks; [`release`](Self::release) them (dropping releases too, closing the
/// database connection that holds the shared ones).
pub struct BlobGuard<'a> {
    _local: Vec<tokio::sync::MutexGuard<'a, ()>>,
    shared: Option<gantry_meta::SharedBlobLock>,
}

impl BlobGuard<'_> {
    pub async fn release(self) {
        if let Some(shared) = self.shared {
            shared.release().await;
        }
    }
}

impl Default for BlobLocks {
    fn default() -> Self {
        BlobLocks {
            stripes: (0..256).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }
}

impl BlobLocks {
    fn stripe(digest: &Digest) -> u8 {
        u8::from_str_radix(&digest.hex()[..2], 16).unwrap_or(0)
    }

    /// The lock of `digest`.
    pub async fn lock(
        &self,
        meta: &gantry_meta::MetaStore,
        digest: &Digest,
    ) -> Result<BlobGuard<'_>> {
        self.lock_all(meta, std::slice::from_ref(digest)).await
    }

    /// The locks of all `digests`, taken in stripe order, in-process ones first (everyone
    /// takes them in that order, so no deadlock).
    pub async fn lock_all(
        &self,
        meta: &gantry_meta::MetaStore,
        digests: &[Digest],
    ) -> Result<BlobGuard<'_>> {
        let stripes: std::collections::BTreeSet<u8> = digests.iter().map(Self::stripe).collect();
        let mut local = Vec::with_capacity(stripes.len());
        for &stripe in &stripes {
            local.push(self.stripes[usize::from(stripe)].lock().await);
        }
        let stripes: Vec<u8> = stripes.into_iter().collect();
        let shared = meta.lock_blob_stripes(&stripes).await?;
        Ok(BlobGuard {
            _local: local,
            shared,
        })
    }
}

#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Only what is older than this is collected: pushes in flight stay safe.
    pub grace: Duration,
    /// Abandoned upload sessions older than this are removed.
    pub upload_expiry: Duration,
    pub dry_run: bool,
    /// Items per batch, and the pause between batches (throttling).
    pub batch: u32,
    pub pause: Duration,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            grace: Duration::from_secs(3600),
            upload_expiry: Duration::from_secs(24 * 3600),
            dry_run: false,
            batch: 1000,
            pause: Duration::ZERO,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    /// (repository, digest)
    pub manifests: Vec<(String, String)>,
    pub manifest_bytes: u64,
    pub links: u64,
    pub blobs: u64,
    pub blob_bytes: u64,
    pub uploads: u64,
    /// Repositories forgotten because they hold nothing any more (no manifest, tag, blob
    /// link or upload session): their names no longer keep a project from being deleted.
    pub repositories: u64,
    pub millis: u64,
}

impl Registry {
    /// Collects garbage older than the grace window at `now` (Unix seconds).
    pub async fn collect_garbage(&self, now: i64, options: &GcOptions) -> Result<GcReport> {
        let freed = |report: &GcReport| if report.dry_run { 0 } else { report.blob_bytes };
        self.timed_job(Job::GarbageCollection, freed, self.sweep(now, options))
            .await
    }

    async fn sweep(&self, now: i64, options: &GcOptions) -> Result<GcReport> {
        let started = Instant::now();
        if options.grace.is_zero() && !options.dry_run {
            // Allowed (an administrator who stopped every push may want everything back now),
            // but blobs of a push whose manifest has not arrived yet go too.
            tracing::warn!("garbage collection with a zero grace window: layers of pushes under way are collected too");
        }
        let cutoff = now - options.grace.as_secs() as i64;
        let mut report = GcReport {
            dry_run: options.dry_run,
            ..GcReport::default()
        };
        // 1. Manifests nothing keeps alive, walked once in key order.
        let mut after: Option<(String, String)> = None;
        loop {
            let dead = self
                .meta
                .unreachable_manifests(cutoff, after.as_ref(), options.batch)
                .await?;
            let Some(last) = dead.last() else { break };
            after = Some((last.repository.clone(), last.digest.clone()));
            report.manifest_bytes += dead.iter().map(|m| m.size.max(0) as u64).sum::<u64>();
            let batch: Vec<(String, String)> =
                dead.into_iter().map(|m| (m.repository, m.digest)).collect();
            if !options.dry_run {
                // Tag rules do not apply: an unreachable manifest has no tag.
                self.meta.delete_manifests(&batch, GC_ACTOR).await?;
                tokio::time::sleep(options.pause).await;
            }
            report.manifests.extend(batch);
        }
        // 2. Repository links nothing references any more, walked once in key order. A dry
        // run counts those only the manifests above reference too, as a real run would.
        let reckoning = if options.dry_run {
            Reckoning::AfterCollection
        } else {
            Reckoning::AsItIs
        };
        let mut after: Option<(String, String)> = None;
        loop {
            let links = self
                .meta
                .collectable_links(reckoning, cutoff, after.as_ref(), options.batch)
                .await?;
            let Some(last) = links.last().cloned() else {
                break;
            };
            report.links += if options.dry_run {
                links.len() as u64
            } else {
                self.meta.unlink_unreferenced(&links, cutoff).await?
            };
            after = Some(last);
            tokio::time::sleep(options.pause).await;
        }
        // 3. Blobs no repository links: rows (re-checked), then bytes, under their locks, and
        // under the deletion lock, which a backup holds from its snapshot to its last copy.
        let _deleting = match (&self.deletion_lock, options.dry_run) {
            (Some(lock), false) => Some(lock.acquire().await.map_err(StorageError::Io)?),
            _ => None,
        };
        let mut after: Option<String> = None;
        loop {
            let orphans = self
                .meta
                .collectable_blobs(reckoning, cutoff, after.as_deref(), options.batch)
                .await?;
            let Some((last, _)) = orphans.last().cloned() else {
                break;
            };
            after = Some(last);
            if options.dry_run {
                report.blobs += orphans.len() as u64;
                report.blob_bytes += orphans.iter().map(|(_, s)| (*s).max(0) as u64).sum::<u64>();
                continue;
            }
            let digests: Vec<Digest> = orphans
                .iter()
                .map(|(d, _)| d.parse())
                .collect::<std::result::Result<_, _>>()?;
            // Every stripe the batch touches, in order (everyone else takes one lock at a
            // time, so no deadlock), held across the row and the byte deletions.
            let locks = self.blob_locks.lock_all(&self.meta, &digests).await?;
            let names: Vec<String> = orphans.iter().map(|(d, _)| d.clone()).collect();
            let deleted = self.meta.delete_orphan_blobs(&names).await?;
            for ((name, size), digest) in orphans.iter().zip(&digests) {
                if !deleted.contains(name) {
                    continue;
                }
                if let Err(e) = self.blobs.delete(digest).await {
                    tracing::warn!(%digest, error = %e, "blob row deleted but its bytes were not");
                }
                report.blobs += 1;
                report.blob_bytes += (*size).max(0) as u64;
            }
            locks.release().await;
            tokio::time::sleep(options.pause).await;
        }
        drop(_deleting);
        // 4. Abandoned upload sessions.
        let upload_cutoff = now - options.upload_expiry.as_secs() as i64;
        for id in self.meta.stale_uploads(upload_cutoff).await? {
            report.uploads += 1;
            if !options.dry_run {
                self.blobs
                    .delete_upload(&id)
                    .await
                    .map_err(RegistryError::from)?;
                self.meta.delete_upload(&id).await?;
                self.uploads.lock().remove(&id);
            }
        }
        // 5. Repositories that hold nothing any more (re-checked in the deleting statement).
        if !options.dry_run {
            report.repositories = self.meta.forget_empty_repositories(cutoff).await?;
        }
        report.millis = started.elapsed().as_millis() as u64;
        if !options.dry_run {
            let event = gantry_meta::NewEvent {
                event_type: "gc.completed",
                project: None,
                repository: None,
                data: serde_json::json!({
                    "manifests": report.manifests.len(),
                    "blobs": report.blobs,
                    "blob_bytes": report.blob_bytes,
                    "uploads": report.uploads,
                    "repositories": report.repositories,
                    "millis": report.millis,
                }),
            };
            self.meta.record_event(&event).await?;
        }
        tracing::info!(
            dry_run = options.dry_run,
            manifests = report.manifests.len(),
            links = report.links,
            blobs = report.blobs,
            blob_bytes = report.blob_bytes,
            uploads = report.uploads,
            repositories = report.repositories,
            millis = report.millis,
            "garbage collection finished"
        );
        Ok(report)
    }
}

/// Who deletes what a collection deletes, in events.
const GC_ACTOR: &str = "garbage-collection";

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Issue 12: blob locks were in-process mutexes only, so garbage collection on one
    /// replica could delete a blob that an upload commit on another was making visible.
    /// On PostgreSQL a lock held by one process's `BlobLocks` makes another's wait, and one
    /// dropped without release (an error path) is released all the same. (SQLite serves one
    /// process per database, where the in-process mutexes are the whole lock.)
    #[tokio::test]
    async fn a_blob_lock_held_by_one_replica_makes_another_wait_until_released_or_dropped() {
        let (_dir, _, meta) = gantry_meta::testing::fresh_store().await;
        if meta.backend() == gantry_meta::Backend::Sqlite {
            return;
        }
        let digest = Digest::sha256_of(b"a layer");
        let first = BlobLocks::default();
        for let_go in ["release", "drop"] {
            let held = first.lock(&meta, &digest).await.unwrap();
            let (acquired, mut told) = tokio::sync::oneshot::channel();
            let other = tokio::spawn({
                let (meta, digest) = (meta.clone(), digest.clone());
                async move {
                    let second = BlobLocks::default();
                    let lock = second.lock(&meta, &digest).await.unwrap();
                    acquired.send(()).unwrap();
                    lock.release().await;
                }
            });
            assert!(
                tokio::time::timeout(Duration::from_millis(300), &mut told)
                    .await
                    .is_err(),
                "another replica took a held blob lock"
            );
            match let_go {
                "release" => held.release().await,
                _ => drop(held),
            }
            tokio::time::timeout(Duration::from_secs(10), told)
                .await
                .unwrap_or_else(|_| panic!("the lock was not free after {let_go}"))
                .unwrap();
            other.await.unwrap();
        }
    }

    /// Issue 12: the scheduled collection and retention ran in every server, so three
    /// replicas ran each firing three times; then a firing claimed by a server that died was
    /// missed. Three registries over one store (as three replicas over one database) look at
    /// the same firings: each firing is one job (one history row), and the three runners run
    /// each job once; the day's usage snapshot is taken once (each start looks for it). A
    /// project's retention runs never overlap (they did, planning from the same state).
    #[tokio::test]
    async fn a_schedule_fires_once_across_three_replicas() {
        let (dir, _, meta) = gantry_meta::testing::fresh_store().await;
        let blobs: std::sync::Arc<dyn gantry_storage::BlobStore> = std::sync::Arc::new(
            gantry_storage::FsBlobStore::open(dir.path().join("blobs")).unwrap(),
        );
        let replicas: Vec<std::sync::Arc<Registry>> = (0..3)
            .map(|_| std::sync::Arc::new(Registry::new(blobs.clone(), meta.clone())))
            .collect();
        let policy: gantry_lifecycle::retention::Policy =
            serde_json::from_value(serde_json::json!({"rules": [], "schedule": "* * * * * *"}))
                .unwrap();
        replicas[0]
            .set_retention_policy("team", &policy)
            .await
            .unwrap();
        let started = 1_800_000_000;
        let schedules = crate::Schedules {
            gc_interval: Some(Duration::from_secs(60)),
            gc_grace: Duration::from_secs(3600),
            started,
        };
        // The first look (usage snapshot), then three one-second windows an hour later (one GC
        // firing at its start, three retention firings).
        let now = started + 3600;
        let mut windows = vec![(started - 1, started)];
        windows.extend((0..3).map(|n| (now + n - 1, now + n)));
        let mut added = 0;
        for (after, until) in windows {
            for replica in &replicas {
                added += replica
                    .enqueue_due_firings(&schedules, after, until)
                    .await
                    .unwrap();
            }
        }
        assert_eq!(
            added, 7,
            "3 usage snapshot looks at start + 1 GC + 3 retention firings"
        );
        let mut runners = Vec::new();
        for replica in &replicas {
            let options = gantry_jobs::RunnerOptions {
                poll: Duration::from_millis(20),
                ..gantry_jobs::RunnerOptions::for_owner(replica.instance())
            };
            let runner = replica.job_handlers().into_iter().fold(
                gantry_jobs::JobRunner::new(meta.clone(), options),
                |r, h| r.handle(h),
            );
            runners.push(runner.start().await);
        }
        let all = gantry_meta::JobFilter {
            limit: 100,
            ..Default::default()
        };
        let mut jobs = Vec::new();
        for _ in 0..1500 {
            jobs = meta.jobs(&all).await.unwrap();
            if jobs
                .iter()
                .all(|j| j.state == gantry_meta::JobState::Succeeded)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for runner in runners {
            runner.shutdown().await;
        }
        let count = |kind: &str| jobs.iter().filter(|j| j.kind == kind).count();
        assert_eq!(
            (count("gc"), count("retention"), count("usage-snapshot")),
            (1, 3, 3),
            "{jobs:#?}"
        );
        for job in &jobs {
            assert_eq!(job.state, gantry_meta::JobState::Succeeded, "{job:#?}");
            assert_eq!(job.attempts, 1, "{job:#?}");
        }
        let history = replicas[0].retention_runs("team", 10).await.unwrap();
        assert_eq!(history.len(), 3, "one retention run per firing");
        let mut runs: Vec<(i64, i64)> = jobs
            .iter()
            .filter(|j| j.kind == "retention")
            .map(|j| (j.started_ms.unwrap(), j.finished_ms.unwrap()))
            .collect();
        runs.sort_unstable();
        assert!(
            runs.windows(2).all(|pair| pair[1].0 >= pair[0].1),
            "a project's retention runs one at a time: {runs:?}"
        );
        let snapshots_taken = jobs
            .iter()
            .filter(|j| j.kind == "usage-snapshot")
            .filter(|j| j.result.as_deref() != Some("{\"already_taken\":true}"))
            .count();
        assert_eq!(
            snapshots_taken, 1,
            "the day's snapshot is taken once: {jobs:#?}"
        );
    }
}
