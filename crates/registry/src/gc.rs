//! Online garbage collection: unreachable manifests, then repository links no manifest
//! references, then blobs no repository links (bytes and row), then abandoned upload sessions.
//! Pushes and pulls go on meanwhile: only things older than the grace window are touched, every
//! deletion re-checks its condition in the database, and a blob is deleted under the same
//! per-digest lock that uploads and mounts take to make one visible.

use std::time::{Duration, Instant};

use gantry_oci::Digest;
use serde::Serialize;

use crate::{parse_name, Registry, RegistryError, Result};

/// Per-digest locks (striped: 256 locks for every digest).
pub struct BlobLocks {
    stripes: Vec<tokio::sync::Mutex<()>>,
}

impl Default for BlobLocks {
    fn default() -> Self {
        BlobLocks {
            stripes: (0..256).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }
}

impl BlobLocks {
    pub async fn lock(&self, digest: &Digest) -> tokio::sync::MutexGuard<'_, ()> {
        let stripe = u8::from_str_radix(&digest.hex()[..2], 16).unwrap_or(0);
        self.stripes[stripe as usize].lock().await
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
    pub millis: u64,
}

impl Registry {
    /// Collects garbage older than the grace window at `now` (Unix seconds).
    pub async fn collect_garbage(&self, now: i64, options: &GcOptions) -> Result<GcReport> {
        let started = Instant::now();
        let cutoff = now - options.grace.as_secs() as i64;
        let mut report = GcReport {
            dry_run: options.dry_run,
            ..GcReport::default()
        };
        // 1. Manifests. Deleting one can make others unreachable (an index's children), so
        // repeat until a pass finds nothing.
        loop {
            let dead = self
                .meta
                .unreachable_manifests(cutoff, options.batch)
                .await?;
            let fresh: Vec<_> = dead
                .into_iter()
                .filter(|m| {
                    !report
                        .manifests
                        .contains(&(m.repository.clone(), m.digest.clone()))
                })
                .collect();
            if fresh.is_empty() {
                break;
            }
            for m in &fresh {
                report
                    .manifests
                    .push((m.repository.clone(), m.digest.clone()));
                report.manifest_bytes += m.size.max(0) as u64;
                if !options.dry_run {
                    let name = parse_name(&m.repository)?;
                    let digest: Digest = m.digest.parse()?;
                    // Tag rules do not apply: an unreachable manifest has no tag.
                    self.meta.delete_manifest(name.as_str(), &digest).await?;
                }
            }
            if options.dry_run {
                break;
            }
            tokio::time::sleep(options.pause).await;
        }
        // 2. Repository links nothing references any more.
        loop {
            let links = self.meta.unreferenced_links(cutoff, options.batch).await?;
            if links.is_empty() || options.dry_run {
                report.links += links.len() as u64;
                break;
            }
            for (repository, digest) in &links {
                if self
                    .meta
                    .unlink_if_unreferenced(repository, digest, cutoff)
                    .await?
                {
                    report.links += 1;
                }
            }
            tokio::time::sleep(options.pause).await;
        }
        // 3. Blobs no repository links: row first (re-checked), then bytes, under the lock.
        loop {
            let orphans = self.meta.orphan_blobs(options.batch).await?;
            if orphans.is_empty() || options.dry_run {
                report.blobs += orphans.len() as u64;
                report.blob_bytes += orphans
                    .iter()
                    .map(|(_, s)| s.max(&0))
                    .map(|s| *s as u64)
                    .sum::<u64>();
                break;
            }
            let mut progressed = false;
            for (digest, size) in &orphans {
                let digest: Digest = digest.parse()?;
                let _blob = self.blob_locks.lock(&digest).await;
                if self.meta.delete_orphan_blob(&digest.to_string()).await? {
                    match self.blobs.delete(&digest).await {
                        Ok(()) => {}
                        Err(e) => {
                            tracing::warn!(%digest, error = %e, "blob row deleted but its bytes were not")
                        }
                    }
                    report.blobs += 1;
                    report.blob_bytes += (*size).max(0) as u64;
                    progressed = true;
                }
            }
            if !progressed {
                break;
            }
            tokio::time::sleep(options.pause).await;
        }
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
        report.millis = started.elapsed().as_millis() as u64;
        tracing::info!(
            dry_run = options.dry_run,
            manifests = report.manifests.len(),
            links = report.links,
            blobs = report.blobs,
            blob_bytes = report.blob_bytes,
            uploads = report.uploads,
            millis = report.millis,
            "garbage collection finished"
        );
        Ok(report)
    }
}
