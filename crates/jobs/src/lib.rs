//! The job runner: all background work of a server, started and stopped in one place.
//!
//! Two kinds of work run on it:
//! - **Jobs**: durable rows in the metadata store (`gantry_meta::jobs`), shared by every
//!   server of a deployment. The runner claims due jobs with a lease, renews the lease while a
//!   job runs, and records the outcome: success with a result, a retry after a backoff, or a
//!   failure. A job whose server dies is claimed again by another once its lease runs out; a
//!   server that stops gives its running jobs back at once. At most `concurrency` jobs run at
//!   a time on one server (the throttle). Each kind of job has a [`JobHandler`].
//! - **Periodic workers**: work of this server alone, run every so often (flushing pull
//!   counts, noticing schedule firings and enqueueing them as jobs, consuming events); some
//!   run once more at shutdown.
//!
//! Modelled on Garage's background runner: named workers, one place that owns them.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use gantry_meta::{now_ms, JobOutcome, JobRecord, MetaStore};
use serde_json::Value;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Why an attempt at a job failed, and whether another attempt may succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct JobError {
    pub message: String,
    /// Try again after a backoff (while attempts are left); `false`: fail the job now.
    pub retry: bool,
}

impl JobError {
    /// A failure another attempt may not have (a timeout, a refused connection, a 5xx).
    pub fn transient(message: impl Into<String>) -> JobError {
        JobError {
            message: message.into(),
            retry: true,
        }
    }

    /// A failure every attempt would have (an unreadable payload, a deleted target).
    pub fn permanent(message: impl Into<String>) -> JobError {
        JobError {
            message: message.into(),
            retry: false,
        }
    }
}

/// Runs the jobs of one kind.
#[async_trait::async_trait]
pub trait JobHandler: Send + Sync {
    /// The kind of job this handler runs (`NewJob::kind`).
    fn kind(&self) -> &'static str;

    /// Runs one attempt at `job`; returns the result to keep (JSON). `progress` records what
    /// it is doing, for `gantry jobs show`.
    async fn run(&self, job: &JobRecord, progress: &Progress) -> Result<Value, JobError>;
}

/// Where a running job reports what it is doing.
pub struct Progress {
    meta: MetaStore,
    job: i64,
    owner: String,
}

impl Progress {
    /// Records `text` as the job's progress (a failure to record it is only logged: the work
    /// goes on).
    pub async fn report(&self, text: &str) {
        if let Err(e) = self
            .meta
            .set_job_progress(self.job, &self.owner, text)
            .await
        {
            tracing::warn!(job = self.job, error = %e, "cannot record job progress");
        }
    }
}

/// How long a failed attempt waits before the next: `first`, doubling with each attempt,
/// at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The wait after failed attempt number `attempt` (1 for the first).
    pub fn after(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(30);
        self.first.saturating_mul(1 << doublings).min(self.max)
    }
}

/// How a runner claims and runs jobs.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// This server's name in leases (unique per process).
    pub owner: String,
    /// How long a claim holds without renewal; renewed every third of it. A job whose server
    /// died is claimed again this long after its last renewal.
    pub lease: Duration,
    /// How often an idle runner looks for due jobs (it also looks at once when woken).
    pub poll: Duration,
    /// Jobs run at once on this server, at most.
    pub concurrency: usize,
    pub backoff: Backoff,
    /// Finished jobs are forgotten this long after they ended.
    pub keep_history: Duration,
}

impl RunnerOptions {
    /// Defaults for server `owner`: a 30 s lease, a 1 s poll, 4 jobs at once, retries after
    /// 1 s doubling up to 5 minutes, 30 days of history.
    pub fn for_owner(owner: impl Into<String>) -> RunnerOptions {
        RunnerOptions {
            owner: owner.into(),
            lease: Duration::from_secs(30),
            poll: Duration::from_secs(1),
            concurrency: 4,
            backoff: Backoff {
                first: Duration::from_secs(1),
                max: Duration::from_secs(300),
            },
            keep_history: Duration::from_secs(30 * 86_400),
        }
    }
}

/// Events every consumer has consumed are forgotten this long after they were recorded: the
/// outbox is a hand-over, not a history (the audit log and the jobs are).
const EVENT_RETENTION: Duration = Duration::from_secs(86_400);

type Task = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

struct Periodic {
    name: &'static str,
    every: Duration,
    task: Task,
    /// Run once more when the server stops (e.g. to write what is counted in memory).
    at_shutdown: bool,
}

/// The runner, before it starts: handlers and periodic workers are added to it.
pub struct JobRunner {
    meta: MetaStore,
    options: RunnerOptions,
    handlers: HashMap<&'static str, Arc<dyn JobHandler>>,
    periodic: Vec<Periodic>,
    wake: Arc<Notify>,
}

/// Wakes a runner to look for due jobs now (after this server enqueued one).
#[derive(Clone)]
pub struct Waker(Arc<Notify>);

impl Waker {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

impl JobRunner {
    pub fn new(meta: MetaStore, options: RunnerOptions) -> JobRunner {
        JobRunner {
            meta,
            options,
            handlers: HashMap::new(),
            periodic: Vec::new(),
            wake: Arc::new(Notify::new()),
        }
    }

    /// A waker for this runner, usable before and after it starts.
    pub fn waker(&self) -> Waker {
        Waker(self.wake.clone())
    }

    /// Runs the jobs of `handler`'s kind.
    pub fn handle(mut self, handler: Arc<dyn JobHandler>) -> JobRunner {
        self.handlers.insert(handler.kind(), handler);
        self
    }

    /// Runs `task` every `every`, the first time within [`JobRunner::start`]; its result is
    /// dropped, an error is logged with `name`.
    pub fn every<F, Fut, T, E>(self, name: &'static str, every: Duration, task: F) -> JobRunner
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        E: std::fmt::Display,
    {
        self.periodic(name, every, task, false)
    }

    /// As [`JobRunner::every`], and once more when the runner stops.
    pub fn every_and_at_shutdown<F, Fut, T, E>(
        self,
        name: &'static str,
        every: Duration,
        task: F,
    ) -> JobRunner
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        E: std::fmt::Display,
    {
        self.periodic(name, every, task, true)
    }

    fn periodic<F, Fut, T, E>(
        mut self,
        name: &'static str,
        every: Duration,
        task: F,
        at_shutdown: bool,
    ) -> JobRunner
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        E: std::fmt::Display,
    {
        let task: Task = Arc::new(move || {
            let run = task();
            Box::pin(async move { run.await.map(drop).map_err(|e| e.to_string()) })
        });
        self.periodic.push(Periodic {
            name,
            every,
            task,
            at_shutdown,
        });
        self
    }

    /// Runs each periodic worker once, then starts claiming jobs and running the workers
    /// every period. The first runs are over when this returns, so what a worker sets up at
    /// its first run is in place before the server answers a request: an event feed seen for
    /// the first time starts after the events that exist then, and an event a request recorded
    /// before that would never reach it (an image pushed at once never scanned, a webhook
    /// never sent).
    pub async fn start(self) -> RunningJobs {
        let JobRunner {
            meta,
            options,
            handlers,
            mut periodic,
            wake,
        } = self;
        let prune = {
            let meta = meta.clone();
            let keep = options.keep_history.as_millis() as i64;
            move || {
                let meta = meta.clone();
                async move {
                    let now = now_ms();
                    meta.prune_jobs(now - keep)
                        .await
                        .map_err(|e| e.to_string())?;
                    meta.prune_events(now - EVENT_RETENTION.as_millis() as i64)
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok(())
                }
            }
        };
        periodic.push(Periodic {
            name: "history pruning",
            every: Duration::from_secs(3600),
            task: Arc::new(move || Box::pin(prune())),
            at_shutdown: false,
        });
        let running = Arc::new(parking_lot::Mutex::new(HashMap::new()));
        let claimer = Claimer {
            meta: meta.clone(),
            options: Arc::new(options),
            handlers: Arc::new(handlers),
            running: running.clone(),
        };
        for worker in &periodic {
            worker.run_once().await;
        }
        let stop = CancellationToken::new();
        let mut finished_at_stop = vec![tokio::spawn(
            claimer.clone().claim_loop(wake.clone(), stop.clone()),
        )];
        let mut aborted_at_stop = Vec::new();
        let mut at_shutdown = Vec::new();
        for worker in periodic {
            if worker.at_shutdown {
                at_shutdown.push((worker.name, worker.task.clone()));
                finished_at_stop.push(tokio::spawn(run_periodically(worker, stop.clone())));
            } else {
                aborted_at_stop.push(tokio::spawn(run_periodically(worker, stop.clone())));
            }
        }
        RunningJobs {
            stop,
            finished_at_stop,
            aborted_at_stop,
            at_shutdown,
            claimer,
        }
    }
}

impl Periodic {
    /// Runs the task once, logging its error.
    async fn run_once(&self) {
        if let Err(error) = (self.task)().await {
            tracing::warn!(worker = self.name, %error, "background work failed");
        }
    }
}

/// Runs `worker` every period, the first time one period from now, until `stop` is
/// cancelled; a run in progress is finished first.
async fn run_periodically(worker: Periodic, stop: CancellationToken) {
    let mut every =
        tokio::time::interval_at(tokio::time::Instant::now() + worker.every, worker.every);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        worker.run_once().await;
    }
}

/// The runner, started. [`RunningJobs::shutdown`] stops it.
pub struct RunningJobs {
    /// Stops the claim loop and the periodic workers between two of their steps.
    stop: CancellationToken,
    /// The claim loop and the workers that run at shutdown: they are let finish the step they
    /// are in, since aborting one could leave a job claimed in the store but not registered
    /// here (it would wait out its lease instead of being given back), or drop counts taken
    /// from memory but not yet written.
    finished_at_stop: Vec<JoinHandle<()>>,
    /// The other periodic workers: what they were doing is found again in the store by the
    /// next server, so they stop at once.
    aborted_at_stop: Vec<JoinHandle<()>>,
    at_shutdown: Vec<(&'static str, Task)>,
    claimer: Claimer,
}

impl RunningJobs {
    /// Stops claiming and the periodic workers, gives the jobs running here back to the queue
    /// (another server, or this one after a restart, runs them again), then runs the
    /// workers that run at shutdown once more.
    pub async fn shutdown(self) {
        self.stop.cancel();
        for task in &self.aborted_at_stop {
            task.abort();
        }
        for task in self.finished_at_stop {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "background work ended abnormally");
            }
        }
        let running: Vec<(i64, JoinHandle<()>)> = self.claimer.running.lock().drain().collect();
        for (id, task) in running {
            task.abort();
            let _ = task.await;
            let released = self
                .claimer
                .meta
                .finish_job(id, &self.claimer.options.owner, &JobOutcome::Released)
                .await;
            if let Err(e) = released {
                tracing::warn!(job = id, error = %e, "cannot give a running job back");
            }
        }
        for (name, task) in self.at_shutdown {
            if let Err(error) = task().await {
                tracing::warn!(worker = name, %error, "background work failed at shutdown");
            }
        }
    }
}

#[derive(Clone)]
struct Claimer {
    meta: MetaStore,
    options: Arc<RunnerOptions>,
    handlers: Arc<HashMap<&'static str, Arc<dyn JobHandler>>>,
    /// The jobs running on this server, by id.
    running: Arc<parking_lot::Mutex<HashMap<i64, JoinHandle<()>>>>,
}

impl Claimer {
    /// Claims due jobs while slots are free, until `stop` is cancelled; it stops only between
    /// claims, so every job it claimed is registered in `running`.
    async fn claim_loop(self, wake: Arc<Notify>, stop: CancellationToken) {
        let slots = Arc::new(Semaphore::new(self.options.concurrency.max(1)));
        loop {
            let slot = tokio::select! {
                biased;
                () = stop.cancelled() => return,
                slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            };
            let now = now_ms();
            let lease_until = now + self.options.lease.as_millis() as i64;
            match self
                .meta
                .claim_job(&self.options.owner, now, lease_until)
                .await
            {
                Ok(Some(job)) => {
                    let id = job.id;
                    let claimer = self.clone();
                    // Registered before it can finish, so that it is always removed after.
                    let mut running = self.running.lock();
                    let task = tokio::spawn(async move {
                        claimer.run(job).await;
                        claimer.running.lock().remove(&id);
                        drop(slot);
                    });
                    running.insert(id, task);
                }
                Ok(None) => {
                    drop(slot);
                    tokio::select! {
                        () = stop.cancelled() => return,
                        _ = tokio::time::sleep(self.options.poll) => {}
                        _ = wake.notified() => {}
                    }
                }
                Err(e) => {
                    drop(slot);
                    tracing::warn!(error = %e, "cannot claim jobs");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        _ = tokio::time::sleep(self.options.poll) => {}
                    }
                }
            }
        }
    }

    /// Runs one claimed attempt at `job` and records its outcome, renewing the lease
    /// meanwhile; an attempt whose lease was lost (another server claimed the job) is
    /// dropped.
    async fn run(&self, job: JobRecord) {
        let owner = &self.options.owner;
        let outcome = if job.attempts > job.max_attempts {
            JobOutcome::Failed {
                error: format!(
                    "{} attempts ended with their server stopping or failing",
                    job.max_attempts
                ),
            }
        } else if let Some(handler) = self.handlers.get(job.kind.as_str()) {
            let progress = Progress {
                meta: self.meta.clone(),
                job: job.id,
                owner: owner.clone(),
            };
            let started = std::time::Instant::now();
            let attempt = tokio::select! {
                attempt = handler.run(&job, &progress) => attempt,
                () = self.keep_lease(job.id) => {
                    tracing::warn!(job = job.id, kind = job.kind, "lost the lease of a running job; another server runs it now");
                    return;
                }
            };
            let millis = started.elapsed().as_millis() as u64;
            match &attempt {
                Ok(_) => tracing::info!(
                    job = job.id,
                    kind = job.kind,
                    attempt = job.attempts,
                    millis,
                    "job attempt finished"
                ),
                // An operator looks for these: a failing job is retried or gives up silently.
                Err(e) => tracing::warn!(
                    job = job.id,
                    kind = job.kind,
                    attempt = job.attempts,
                    millis,
                    error = e.message.as_str(),
                    retry = e.retry,
                    "job attempt failed"
                ),
            }
            match attempt {
                Ok(result) => JobOutcome::Succeeded {
                    result: result.to_string(),
                },
                Err(e) if e.retry => JobOutcome::Retry {
                    error: e.message,
                    run_after_ms: now_ms()
                        + self.options.backoff.after(job.attempts).as_millis() as i64,
                },
                Err(e) => JobOutcome::Failed { error: e.message },
            }
        } else {
            // A server of another version may know the kind.
            JobOutcome::Retry {
                error: format!("this server does not run {:?} jobs", job.kind),
                run_after_ms: now_ms()
                    + self.options.backoff.after(job.attempts).as_millis() as i64,
            }
        };
        match self.meta.finish_job(job.id, owner, &outcome).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(
                    job = job.id,
                    "a job's outcome came after its lease was lost"
                )
            }
            Err(e) => tracing::warn!(job = job.id, error = %e, "cannot record a job's outcome"),
        }
    }

    /// Renews `job`'s lease every third of the lease; returns when it is lost.
    async fn keep_lease(&self, job: i64) {
        let lease = self.options.lease;
        loop {
            tokio::time::sleep(lease / 3).await;
            let until = now_ms() + lease.as_millis() as i64;
            match self
                .meta
                .renew_job_lease(job, &self.options.owner, until)
                .await
            {
                Ok(true) => {}
                Ok(false) => return,
                // The store may be back before the lease runs out.
                Err(e) => tracing::warn!(job, error = %e, "cannot renew a job's lease"),
            }
        }
    }
}

#[cfg(test)]
mod tests;
