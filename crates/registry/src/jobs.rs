//! The registry's scheduled work as jobs: every server notices schedule firings and enqueues
//! one job per firing (its unique key makes the first enqueue the only one), and whichever
//! server's runner claims the job runs it. A server that dies mid-run leaves a lease that runs
//! out, and another server runs the firing again: a firing is neither run twice at once nor
//! missed.

use std::sync::Arc;
use std::time::Duration;

use gantry_jobs::{JobError, JobHandler, Progress};
use gantry_meta::{JobRecord, NewJob};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::retention::SCHEDULER;
use crate::{unix_now, GcOptions, Registry, Result};

/// Attempts a scheduled run gets before it is recorded as failed.
const SCHEDULED_ATTEMPTS: u32 = 3;

/// The schedules whose firings a server enqueues.
#[derive(Debug, Clone)]
pub struct Schedules {
    /// Scheduled garbage collection: at every multiple of this since the Unix epoch (UTC).
    pub gc_interval: Option<Duration>,
    /// The grace window of scheduled collections.
    pub gc_grace: Duration,
    /// When this server started (Unix seconds): earlier firings are not run afterwards.
    pub started: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct GcPayload {
    fired_at: i64,
    grace_secs: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct RetentionPayload {
    project: String,
    fired_at: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct SnapshotPayload {
    day_start: i64,
}

const DAY: i64 = 86_400;

fn scheduled(kind: &str, key: String, subject: Option<String>, payload: &impl Serialize) -> NewJob {
    NewJob {
        unique_key: Some(key),
        subject,
        max_attempts: SCHEDULED_ATTEMPTS,
        ..NewJob::of(
            kind,
            serde_json::to_string(payload).expect("payloads serialize"),
        )
    }
}

impl Registry {
    /// Enqueues a job for every firing in `(after, until]` (Unix seconds) of the schedules:
    /// the garbage collection, each project's retention and the day's usage snapshot (at the
    /// first look, whose `after` is before `schedules.started`, and when a new UTC day begins).
    /// Firings before the server started are not enqueued. Returns how many jobs were added (0 for firings
    /// another server enqueued first).
    pub async fn enqueue_due_firings(
        &self,
        schedules: &Schedules,
        after: i64,
        until: i64,
    ) -> Result<usize> {
        let mut jobs = Vec::new();
        if let Some(interval) = schedules.gc_interval {
            let every = interval.as_secs().max(1) as i64;
            let fired_at = until - until.rem_euclid(every);
            if fired_at > after && fired_at > schedules.started {
                let payload = GcPayload {
                    fired_at,
                    grace_secs: schedules.gc_grace.as_secs(),
                };
                jobs.push(scheduled(GC, format!("gc@{fired_at}"), None, &payload));
            }
        }
        for (project, policy) in self.retention_policies().await? {
            let fired = policy
                .schedule
                .as_ref()
                .and_then(|s| s.firing_between(after.max(schedules.started), until));
            if let Some(fired_at) = fired {
                // One run of a project at a time, across servers: runs that overlapped (a
                // frequent schedule, a slow store) planned from the same state and raced
                // to delete the same tags.
                jobs.push(NewJob {
                    queue: Some(format!("retention:{project}")),
                    ..scheduled(
                        RETENTION,
                        format!("retention:{project}@{fired_at}"),
                        Some(format!("project:{project}")),
                        &RetentionPayload {
                            project: project.clone(),
                            fired_at,
                        },
                    )
                });
            }
        }
        // The day's snapshot when a day begins (once across servers), and at each server's
        // start should the day's be missing (the job looks; it takes one only then).
        let day_start = until - until.rem_euclid(DAY);
        let snapshot_key = if after < schedules.started {
            Some(format!(
                "usage-snapshot@{day_start}:start:{}",
                self.instance
            ))
        } else {
            (day_start > after).then(|| format!("usage-snapshot@{day_start}"))
        };
        if let Some(key) = snapshot_key {
            // One at a time: a look that comes after a snapshot finds it taken.
            jobs.push(NewJob {
                queue: Some(USAGE_SNAPSHOT.to_string()),
                ..scheduled(USAGE_SNAPSHOT, key, None, &SnapshotPayload { day_start })
            });
        }
        let mut added = 0;
        for job in &jobs {
            added += usize::from(self.meta.enqueue_job(job).await?.is_some());
        }
        Ok(added)
    }

    /// The handlers of the registry's jobs, for the server's runner.
    pub fn job_handlers(self: &Arc<Registry>) -> Vec<Arc<dyn JobHandler>> {
        vec![
            Arc::new(GcJob(self.clone())),
            Arc::new(RetentionJob(self.clone())),
            Arc::new(UsageSnapshotJob(self.clone())),
            self.scan_handler(),
        ]
    }
}

/// Job kinds.
const GC: &str = "gc";
const RETENTION: &str = "retention";
const USAGE_SNAPSHOT: &str = "usage-snapshot";

fn payload<T: for<'de> Deserialize<'de>>(job: &JobRecord) -> std::result::Result<T, JobError> {
    serde_json::from_str(&job.payload)
        .map_err(|e| JobError::permanent(format!("unreadable {} job payload: {e}", job.kind)))
}

fn failed(e: crate::RegistryError) -> JobError {
    JobError::transient(e.to_string())
}

/// A scheduled garbage collection.
struct GcJob(Arc<Registry>);

#[async_trait::async_trait]
impl JobHandler for GcJob {
    fn kind(&self) -> &'static str {
        GC
    }

    async fn run(
        &self,
        job: &JobRecord,
        progress: &Progress,
    ) -> std::result::Result<Value, JobError> {
        let payload: GcPayload = payload(job)?;
        progress.report("collecting").await;
        let options = GcOptions {
            grace: Duration::from_secs(payload.grace_secs),
            ..GcOptions::default()
        };
        let report = self
            .0
            .collect_garbage(unix_now(), &options)
            .await
            .map_err(failed)?;
        Ok(json!({
            "manifests": report.manifests.len(),
            "manifest_bytes": report.manifest_bytes,
            "links": report.links,
            "blobs": report.blobs,
            "blob_bytes": report.blob_bytes,
            "uploads": report.uploads,
            "repositories": report.repositories,
            "millis": report.millis,
        }))
    }
}

/// A project's scheduled retention run.
struct RetentionJob(Arc<Registry>);

#[async_trait::async_trait]
impl JobHandler for RetentionJob {
    fn kind(&self) -> &'static str {
        RETENTION
    }

    async fn run(
        &self,
        job: &JobRecord,
        progress: &Progress,
    ) -> std::result::Result<Value, JobError> {
        let payload: RetentionPayload = payload(job)?;
        progress.report("evaluating and deleting").await;
        let report = self
            .0
            .run_retention(&payload.project, SCHEDULER, unix_now(), false)
            .await
            .map_err(failed)?;
        Ok(json!({
            "project": payload.project,
            "deleted_tags": report.plan.delete_tags.len(),
            "deleted_manifests": report.plan.delete_manifests.len(),
            "freed_bytes": report.plan.freed_bytes,
        }))
    }
}

/// The day's usage snapshot, unless the day has one.
struct UsageSnapshotJob(Arc<Registry>);

#[async_trait::async_trait]
impl JobHandler for UsageSnapshotJob {
    fn kind(&self) -> &'static str {
        USAGE_SNAPSHOT
    }

    async fn run(
        &self,
        job: &JobRecord,
        _progress: &Progress,
    ) -> std::result::Result<Value, JobError> {
        let payload: SnapshotPayload = payload(job)?;
        let now = unix_now();
        if now >= payload.day_start + DAY {
            // A snapshot records what is, so a day that is over is not taken afterwards.
            return Ok(json!({ "skipped": "the day is over" }));
        }
        match self
            .0
            .take_missing_usage_snapshot(now)
            .await
            .map_err(failed)?
        {
            Some(taken) => Ok(serde_json::to_value(taken).expect("snapshots serialize")),
            None => Ok(json!({ "already_taken": true })),
        }
    }
}

/// A job as the API and `gantry jobs` show it (times in Unix milliseconds).
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    pub id: i64,
    pub kind: String,
    pub subject: Option<String>,
    /// `queued`, `running`, `succeeded` or `failed`.
    pub state: &'static str,
    pub attempts: u32,
    pub max_attempts: u32,
    /// The server running it (or that ran it last).
    pub lease_owner: Option<String>,
    pub progress: Option<String>,
    pub payload: Value,
    pub result: Option<Value>,
    pub last_error: Option<String>,
    pub created_ms: i64,
    pub run_after_ms: i64,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
}

impl From<JobRecord> for JobView {
    fn from(job: JobRecord) -> Self {
        let json = |text: &str| serde_json::from_str(text).unwrap_or_else(|_| Value::from(text));
        JobView {
            id: job.id,
            kind: job.kind,
            subject: job.subject,
            state: job.state.as_str(),
            attempts: job.attempts,
            max_attempts: job.max_attempts,
            lease_owner: job.lease_owner,
            progress: job.progress,
            payload: json(&job.payload),
            result: job.result.as_deref().map(json),
            last_error: job.last_error,
            created_ms: job.created_ms,
            run_after_ms: job.run_after_ms,
            started_ms: job.started_ms,
            finished_ms: job.finished_ms,
        }
    }
}

impl Registry {
    /// The jobs `filter` selects, newest first.
    pub async fn jobs(&self, filter: &gantry_meta::JobFilter) -> Result<Vec<JobView>> {
        Ok(self
            .meta
            .jobs(filter)
            .await?
            .into_iter()
            .map(JobView::from)
            .collect())
    }

    /// Job `id`, if it exists.
    pub async fn job(&self, id: i64) -> Result<Option<JobView>> {
        Ok(self.meta.job(id).await?.map(JobView::from))
    }
}
