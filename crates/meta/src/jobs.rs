//! Durable background jobs: the queue every server of a deployment shares.
//!
//! A job is a row. A server claims a due one by setting its lease (`lease_owner`,
//! `lease_until_ms`) and renews the lease while it runs it; when the server dies the lease
//! runs out and any server claims the job again, as another attempt. On PostgreSQL the claim
//! skips rows another server is claiming at that moment (`FOR UPDATE SKIP LOCKED`), so
//! replicas never wait on each other's claims; on SQLite the one writer serializes claims.
//! Finished rows stay, as the history `gantry jobs list` shows.
//!
//! Jobs with the same `queue` run one at a time, oldest first: a later one is not claimed
//! while an earlier one is queued or running (a webhook's deliveries for one repository
//! arrive in order). A job with a `unique_key` is enqueued once: the first enqueue wins and
//! later ones add nothing (one job per schedule firing, whichever server notices it).

use sqlx::Row;

use crate::{Backend, MetaStore, Result};

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// What runs it (`gc`, `retention`, `usage-snapshot`, `webhook`, ...).
    pub kind: String,
    /// Enqueue once: a second job with this key is not added.
    pub unique_key: Option<String>,
    /// Run after every earlier job of this queue has finished.
    pub queue: Option<String>,
    /// What the job is about, for listings (`project:NAME`, `webhook:ID`).
    pub subject: Option<String>,
    /// The job's input as JSON text, as its kind reads it.
    pub payload: String,
    /// Attempts before it fails for good (at least 1).
    pub max_attempts: u32,
    /// Unix milliseconds before which it is not claimed.
    pub run_after_ms: i64,
}

impl NewJob {
    /// A job of `kind` with `payload` (JSON text), due now, one attempt, on no queue.
    pub fn of(kind: &str, payload: String) -> NewJob {
        NewJob {
            kind: kind.to_string(),
            unique_key: None,
            queue: None,
            subject: None,
            payload,
            max_attempts: 1,
            run_after_ms: 0,
        }
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Waiting to be claimed (first time, or again after a failed attempt).
    Queued,
    /// Claimed by a server whose lease has not run out (or whose server died; it is claimed
    /// again once the lease runs out).
    Running,
    Succeeded,
    /// Its last attempt failed and no attempt is left.
    Failed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
        }
    }

    /// The state named `name` (as [`JobState::as_str`] writes it).
    pub fn parse(name: &str) -> Option<JobState> {
        [
            JobState::Queued,
            JobState::Running,
            JobState::Succeeded,
            JobState::Failed,
        ]
        .into_iter()
        .find(|state| state.as_str() == name)
    }
}

/// A job as stored: its definition, state and history figures (times in Unix milliseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    pub id: i64,
    pub kind: String,
    pub unique_key: Option<String>,
    pub queue: Option<String>,
    pub subject: Option<String>,
    pub payload: String,
    pub state: JobState,
    /// Attempts started so far (the running one included).
    pub attempts: u32,
    pub max_attempts: u32,
    pub run_after_ms: i64,
    pub lease_owner: Option<String>,
    pub lease_until_ms: Option<i64>,
    /// What the running attempt last reported.
    pub progress: Option<String>,
    /// JSON, once it succeeded.
    pub result: Option<String>,
    /// Why the last failed attempt failed.
    pub last_error: Option<String>,
    pub created_ms: i64,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// Done; `result` is JSON text.
    Succeeded { result: String },
    /// Failed; try again from `run_after_ms` (when attempts are left, else it fails).
    Retry { error: String, run_after_ms: i64 },
    /// Failed, and trying again would not help.
    Failed { error: String },
    /// Not run to its end: its server is stopping. Queued again as it was before the claim.
    Released,
}

/// Which jobs a listing shows, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    pub kind: Option<String>,
    pub state: Option<JobState>,
    pub subject: Option<String>,
    /// Only jobs whose subject starts with this.
    pub subject_prefix: Option<String>,
    /// Only jobs with a smaller id (the next page after the last id seen).
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// Jobs of one state, as [`MetaStore::job_state_counts`] counts them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobTally {
    pub state: JobState,
    pub count: u64,
    /// Unix milliseconds; `None` while none of them finished.
    pub last_finished_ms: Option<i64>,
}

const COLUMNS: &str = "id, kind, unique_key, queue, subject, payload, state, attempts, \
     max_attempts, run_after_ms, lease_owner, lease_until_ms, progress, result, last_error, \
     created_ms, started_ms, finished_ms";

fn record(row: &sqlx::any::AnyRow) -> Result<JobRecord> {
    let state: String = row.get(6);
    Ok(JobRecord {
        id: row.get(0),
        kind: row.get(1),
        unique_key: row.get(2),
        queue: row.get(3),
        subject: row.get(4),
        payload: row.get(5),
        state: JobState::parse(&state)
            .ok_or_else(|| crate::MetaError::Corrupt(format!("job state {state:?}")))?,
        attempts: row.get::<i64, _>(7) as u32,
        max_attempts: row.get::<i64, _>(8) as u32,
        run_after_ms: row.get(9),
        lease_owner: row.get(10),
        lease_until_ms: row.get(11),
        progress: row.get(12),
        result: row.get(13),
        last_error: row.get(14),
        created_ms: row.get(15),
        started_ms: row.get(16),
        finished_ms: row.get(17),
    })
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    crate::now_us() / 1000
}

impl MetaStore {
    /// Adds a job; returns its id, or `None` when a job with its `unique_key` exists already.
    pub async fn enqueue_job(&self, job: &NewJob) -> Result<Option<i64>> {
        let mut tx = self.writer.begin().await?;
        let id = enqueue_in(&mut tx, job).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Claims the oldest due job for `owner` until `lease_until_ms`: a queued job whose time
    /// has come, or a running one whose lease ran out (its server died), that no earlier job
    /// of its queue holds back. `None` when no job is due.
    pub async fn claim_job(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Option<JobRecord>> {
        let skip_locked = match self.backend {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let claim = format!(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_owner = $1, \
             lease_until_ms = $2, progress = NULL, started_ms = COALESCE(started_ms, $3) \
             WHERE id = (SELECT j.id FROM jobs j \
                 WHERE ((j.state = 'queued' AND j.run_after_ms <= $3) \
                     OR (j.state = 'running' AND j.lease_until_ms < $3)) \
                 AND (j.queue IS NULL OR NOT EXISTS (SELECT 1 FROM jobs e \
                     WHERE e.queue = j.queue AND e.id < j.id \
                     AND e.state IN ('queued', 'running'))) \
                 ORDER BY j.run_after_ms, j.id LIMIT 1 {skip_locked}) \
             RETURNING {COLUMNS}"
        );
        let mut tx = self.writer.begin().await?;
        let row = sqlx::query(&claim)
            .bind(owner)
            .bind(lease_until_ms)
            .bind(now_ms)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        row.as_ref().map(record).transpose()
    }

    /// Extends `owner`'s lease on job `id`; `false` when the job is no longer `owner`'s (its
    /// lease ran out and another server claimed it).
    pub async fn renew_job_lease(&self, id: i64, owner: &str, until_ms: i64) -> Result<bool> {
        let renewed = sqlx::query(
            "UPDATE jobs SET lease_until_ms = $3 \
             WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
        )
        .bind(id)
        .bind(owner)
        .bind(until_ms)
        .execute(&self.writer)
        .await?;
        Ok(renewed.rows_affected() == 1)
    }

    /// Records what `owner`'s attempt at job `id` is doing.
    pub async fn set_job_progress(&self, id: i64, owner: &str, progress: &str) -> Result<()> {
        sqlx::query(
            "UPDATE jobs SET progress = $3 WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
        )
        .bind(id)
        .bind(owner)
        .bind(progress)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Ends `owner`'s attempt at job `id`. `false` when the job is no longer `owner`'s (the
    /// outcome is dropped: another server's attempt counts).
    pub async fn finish_job(&self, id: i64, owner: &str, outcome: &JobOutcome) -> Result<bool> {
        let now = now_ms();
        let query = match outcome {
            JobOutcome::Succeeded { result } => sqlx::query(
                "UPDATE jobs SET state = 'succeeded', result = $3, finished_ms = $4, \
                 lease_until_ms = NULL WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
            )
            .bind(id)
            .bind(owner)
            .bind(result.as_str())
            .bind(now),
            JobOutcome::Retry {
                error,
                run_after_ms,
            } => sqlx::query(
                "UPDATE jobs SET last_error = $3, lease_until_ms = NULL, \
                 state = CASE WHEN attempts < max_attempts THEN 'queued' ELSE 'failed' END, \
                 run_after_ms = $5, \
                 finished_ms = CASE WHEN attempts < max_attempts THEN NULL ELSE $4 END \
                 WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
            )
            .bind(id)
            .bind(owner)
            .bind(error.as_str())
            .bind(now)
            .bind(*run_after_ms),
            JobOutcome::Failed { error } => sqlx::query(
                "UPDATE jobs SET state = 'failed', last_error = $3, finished_ms = $4, \
                 lease_until_ms = NULL WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
            )
            .bind(id)
            .bind(owner)
            .bind(error.as_str())
            .bind(now),
            JobOutcome::Released => sqlx::query(
                "UPDATE jobs SET state = 'queued', attempts = attempts - 1, lease_owner = NULL, \
                 lease_until_ms = NULL WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
            )
            .bind(id)
            .bind(owner),
        };
        Ok(query.execute(&self.writer).await?.rows_affected() == 1)
    }

    /// Job `id`, if it exists.
    pub async fn job(&self, id: i64) -> Result<Option<JobRecord>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.readers)
            .await?;
        row.as_ref().map(record).transpose()
    }

    /// The jobs `filter` selects, newest first.
    pub async fn jobs(&self, filter: &JobFilter) -> Result<Vec<JobRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM jobs \
             WHERE ($1 IS NULL OR kind = $1) AND ($2 IS NULL OR state = $2) \
             AND ($3 IS NULL OR subject = $3) AND ($4 IS NULL OR id < $4) \
             AND ($6 IS NULL OR substr(subject, 1, length($6)) = $6) \
             ORDER BY id DESC LIMIT $5"
        ))
        .bind(filter.kind.as_deref())
        .bind(filter.state.map(JobState::as_str))
        .bind(filter.subject.as_deref())
        .bind(filter.before_id)
        .bind(i64::from(filter.limit))
        .bind(filter.subject_prefix.as_deref())
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(record).collect()
    }

    /// How many jobs of `kind` about `subject` are in each state, and when the last of them
    /// finished (states without any are left out).
    pub async fn job_state_counts(&self, kind: &str, subject: &str) -> Result<Vec<JobTally>> {
        let rows: Vec<(String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT state, COUNT(*), MAX(finished_ms) FROM jobs WHERE kind = $1 AND subject = $2 \
             GROUP BY state",
        )
        .bind(kind)
        .bind(subject)
        .fetch_all(&self.readers)
        .await?;
        rows.into_iter()
            .map(|(state, count, last_finished_ms)| {
                let state = JobState::parse(&state)
                    .ok_or_else(|| crate::MetaError::Corrupt(format!("job state {state:?}")))?;
                Ok(JobTally {
                    state,
                    count: count as u64,
                    last_finished_ms,
                })
            })
            .collect()
    }

    /// Forgets jobs that finished before `before_ms`; returns how many.
    pub async fn prune_jobs(&self, before_ms: i64) -> Result<u64> {
        Ok(sqlx::query(
            "DELETE FROM jobs WHERE state IN ('succeeded', 'failed') AND finished_ms < $1",
        )
        .bind(before_ms)
        .execute(&self.writer)
        .await?
        .rows_affected())
    }
}

/// Adds `job` inside `tx` (see [`MetaStore::enqueue_job`]).
pub(crate) async fn enqueue_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    job: &NewJob,
) -> Result<Option<i64>> {
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO jobs (kind, unique_key, queue, subject, payload, state, max_attempts, \
         run_after_ms, created_ms) VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7, $8) \
         ON CONFLICT (unique_key) DO NOTHING RETURNING id",
    )
    .bind(&job.kind)
    .bind(job.unique_key.as_deref())
    .bind(job.queue.as_deref())
    .bind(job.subject.as_deref())
    .bind(&job.payload)
    .bind(i64::from(job.max_attempts.max(1)))
    .bind(job.run_after_ms)
    .bind(now_ms())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fresh_store;

    fn job(kind: &str) -> NewJob {
        NewJob {
            max_attempts: 3,
            ..NewJob::of(kind, "{}".into())
        }
    }

    /// Issue 12: a job is claimed by one server at a time, however many claim at once: eight
    /// claimers racing over 40 jobs claim each exactly once.
    #[tokio::test]
    async fn racing_claimers_claim_each_job_once() {
        let (_dir, _, store) = fresh_store().await;
        for _ in 0..40 {
            store.enqueue_job(&job("work")).await.unwrap();
        }
        let now = now_ms();
        let claimers = (0..8).map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut claimed = Vec::new();
                while let Some(job) = store
                    .claim_job(&format!("server-{n}"), now, now + 60_000)
                    .await
                    .unwrap()
                {
                    claimed.push(job.id);
                }
                claimed
            })
        });
        let mut all: Vec<i64> = Vec::new();
        for claimer in claimers {
            all.extend(claimer.await.unwrap());
        }
        all.sort();
        let before = all.len();
        all.dedup();
        assert_eq!(before, 40, "every job claimed");
        assert_eq!(all.len(), 40, "no job claimed twice");
    }

    /// Issue 12: a claimed firing whose server died was missed. A job whose lease runs out is
    /// claimed again by another server as its next attempt, and the dead server's late outcome
    /// is dropped.
    #[tokio::test]
    async fn a_job_whose_server_died_is_claimed_again_when_its_lease_runs_out() {
        let (_dir, _, store) = fresh_store().await;
        let id = store.enqueue_job(&job("gc")).await.unwrap().unwrap();
        let first = store
            .claim_job("dead", 1_000, 31_000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((first.id, first.attempts), (id, 1));
        assert!(store
            .claim_job("alive", 30_000, 90_000)
            .await
            .unwrap()
            .is_none());
        let again = store
            .claim_job("alive", 31_001, 91_000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((again.id, again.attempts), (id, 2));
        let late = JobOutcome::Succeeded {
            result: "{\"from\":\"dead\"}".into(),
        };
        assert!(!store.finish_job(id, "dead", &late).await.unwrap());
        let done = JobOutcome::Succeeded {
            result: "{}".into(),
        };
        assert!(store.finish_job(id, "alive", &done).await.unwrap());
        let stored = store.job(id).await.unwrap().unwrap();
        assert_eq!(stored.state, JobState::Succeeded);
        assert_eq!(stored.result.as_deref(), Some("{}"));
    }

    /// Retries wait for their time and stop after the last attempt, keeping the last error.
    #[tokio::test]
    async fn a_failed_attempt_is_retried_at_its_time_until_attempts_run_out() {
        let (_dir, _, store) = fresh_store().await;
        let id = store
            .enqueue_job(&NewJob {
                max_attempts: 2,
                ..job("webhook")
            })
            .await
            .unwrap()
            .unwrap();
        let retry = |error: &str, at| JobOutcome::Retry {
            error: error.into(),
            run_after_ms: at,
        };
        store.claim_job("s", 0, 60_000).await.unwrap().unwrap();
        assert!(store
            .finish_job(id, "s", &retry("503", 5_000))
            .await
            .unwrap());
        assert_eq!(
            store.job(id).await.unwrap().unwrap().state,
            JobState::Queued
        );
        assert!(store.claim_job("s", 4_999, 60_000).await.unwrap().is_none());
        let second = store.claim_job("s", 5_000, 60_000).await.unwrap().unwrap();
        assert_eq!(second.attempts, 2);
        assert!(store
            .finish_job(id, "s", &retry("refused", 9_000))
            .await
            .unwrap());
        let failed = store.job(id).await.unwrap().unwrap();
        assert_eq!(failed.state, JobState::Failed);
        assert_eq!(failed.last_error.as_deref(), Some("refused"));
        assert!(failed.finished_ms.is_some());
        assert!(store
            .claim_job("s", 10_000, 60_000)
            .await
            .unwrap()
            .is_none());
    }

    /// Jobs of one queue run one at a time in order; other queues are not held back, and a
    /// unique key enqueues once.
    #[tokio::test]
    async fn a_queue_runs_its_jobs_in_order_and_a_unique_key_enqueues_once() {
        let (_dir, _, store) = fresh_store().await;
        let queued = |queue: &str| NewJob {
            queue: Some(queue.to_string()),
            ..job("webhook")
        };
        let a1 = store.enqueue_job(&queued("a")).await.unwrap().unwrap();
        let a2 = store.enqueue_job(&queued("a")).await.unwrap().unwrap();
        let b1 = store.enqueue_job(&queued("b")).await.unwrap().unwrap();
        let claim = || store.claim_job("s", 1, 60_000);
        assert_eq!(claim().await.unwrap().unwrap().id, a1);
        assert_eq!(claim().await.unwrap().unwrap().id, b1, "a2 waits for a1");
        assert!(claim().await.unwrap().is_none());
        let done = JobOutcome::Succeeded {
            result: "{}".into(),
        };
        store.finish_job(a1, "s", &done).await.unwrap();
        assert_eq!(claim().await.unwrap().unwrap().id, a2);

        let firing = NewJob {
            unique_key: Some("gc@1800000000".into()),
            ..job("gc")
        };
        assert!(store.enqueue_job(&firing).await.unwrap().is_some());
        assert!(store.enqueue_job(&firing).await.unwrap().is_none());
        let gc_jobs = store
            .jobs(&JobFilter {
                kind: Some("gc".into()),
                limit: 10,
                ..JobFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(gc_jobs.len(), 1);
    }

    /// Jobs are found by a subject's prefix, and counted by state per subject.
    #[tokio::test]
    async fn jobs_are_listed_by_subject_prefix_and_counted_by_state() {
        let (_dir, _, store) = fresh_store().await;
        let about = |subject: &str| NewJob {
            subject: Some(subject.to_string()),
            ..job("replication")
        };
        let first = store
            .enqueue_job(&about("r:a:run:1"))
            .await
            .unwrap()
            .unwrap();
        store.enqueue_job(&about("r:a:run:1")).await.unwrap();
        store.enqueue_job(&about("r:a:events")).await.unwrap();
        store.enqueue_job(&about("r:ab:events")).await.unwrap();
        let claimed = store.claim_job("s", 1, 60_000).await.unwrap().unwrap();
        assert_eq!(claimed.id, first);
        let listed = store
            .jobs(&JobFilter {
                subject_prefix: Some("r:a:".into()),
                limit: 10,
                ..JobFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(listed.len(), 3);
        let mut counts = store
            .job_state_counts("replication", "r:a:run:1")
            .await
            .unwrap();
        counts.sort_by_key(|t| t.state.as_str());
        let counted: Vec<(JobState, u64)> = counts.iter().map(|t| (t.state, t.count)).collect();
        assert_eq!(counted, [(JobState::Queued, 1), (JobState::Running, 1)]);
        assert!(counts.iter().all(|t| t.last_finished_ms.is_none()));
    }
}
