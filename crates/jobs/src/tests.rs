use std::sync::atomic::{AtomicUsize, Ordering};

use gantry_meta::testing::fresh_store;
use gantry_meta::{JobFilter, JobState, NewJob};

use super::*;

fn options(owner: &str) -> RunnerOptions {
    RunnerOptions {
        poll: Duration::from_millis(20),
        backoff: Backoff {
            first: Duration::from_millis(50),
            max: Duration::from_millis(200),
        },
        ..RunnerOptions::for_owner(owner)
    }
}

fn job(kind: &str, max_attempts: u32) -> NewJob {
    NewJob {
        max_attempts,
        ..NewJob::of(kind, "{}".into())
    }
}

/// Waits (at most 20 s) until job `id` is in `state`; returns it.
async fn until_state(meta: &MetaStore, id: i64, state: JobState) -> JobRecord {
    for _ in 0..1000 {
        let job = meta.job(id).await.unwrap().unwrap();
        if job.state == state {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("job {id} never became {state:?}");
}

/// Fails its first `failures` attempts, then succeeds; counts attempts and the most running
/// at once.
struct Flaky {
    failures: usize,
    attempts: AtomicUsize,
    running: AtomicUsize,
    most_at_once: AtomicUsize,
    hold: Duration,
}

impl Flaky {
    fn new(failures: usize, hold: Duration) -> Arc<Flaky> {
        Arc::new(Flaky {
            failures,
            attempts: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            most_at_once: AtomicUsize::new(0),
            hold,
        })
    }
}

#[async_trait::async_trait]
impl JobHandler for Flaky {
    fn kind(&self) -> &'static str {
        "flaky"
    }

    async fn run(&self, _job: &JobRecord, progress: &Progress) -> Result<Value, JobError> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_at_once.fetch_max(now, Ordering::SeqCst);
        progress.report("working").await;
        tokio::time::sleep(self.hold).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        let attempt = self.attempts.fetch_add(1, Ordering::SeqCst) + 1;
        if attempt <= self.failures {
            Err(JobError::transient(format!("attempt {attempt} failed")))
        } else {
            Ok(serde_json::json!({ "attempt": attempt }))
        }
    }
}

/// A failed attempt is retried after its backoff until one succeeds; the history keeps the
/// attempts, the last error and the result.
#[tokio::test]
async fn a_failing_job_is_retried_with_backoff_until_it_succeeds() {
    let (_dir, _, meta) = fresh_store().await;
    let flaky = Flaky::new(2, Duration::ZERO);
    let id = meta.enqueue_job(&job("flaky", 5)).await.unwrap().unwrap();
    let runner = JobRunner::new(meta.clone(), options("one"))
        .handle(flaky.clone())
        .start()
        .await;
    let done = until_state(&meta, id, JobState::Succeeded).await;
    runner.shutdown().await;
    assert_eq!(done.attempts, 3);
    assert_eq!(done.last_error.as_deref(), Some("attempt 2 failed"));
    assert_eq!(done.result.as_deref(), Some("{\"attempt\":3}"));
    assert!(
        done.finished_ms.unwrap() - done.started_ms.unwrap() >= 150,
        "50 + 100 ms backoff"
    );
}

/// A job that fails every attempt stops at its last and says why.
#[tokio::test]
async fn a_job_fails_for_good_after_its_last_attempt() {
    let (_dir, _, meta) = fresh_store().await;
    let flaky = Flaky::new(usize::MAX, Duration::ZERO);
    let id = meta.enqueue_job(&job("flaky", 2)).await.unwrap().unwrap();
    let runner = JobRunner::new(meta.clone(), options("one"))
        .handle(flaky.clone())
        .start()
        .await;
    let failed = until_state(&meta, id, JobState::Failed).await;
    runner.shutdown().await;
    assert_eq!(failed.attempts, 2);
    assert_eq!(flaky.attempts.load(Ordering::SeqCst), 2);
    assert_eq!(failed.last_error.as_deref(), Some("attempt 2 failed"));
}

/// Two servers share the queue: every job runs once, and neither runs more than its
/// `concurrency` at a time.
#[tokio::test]
async fn two_runners_run_each_job_once_within_their_concurrency() {
    let (_dir, _, meta) = fresh_store().await;
    let mut ids = Vec::new();
    for _ in 0..12 {
        ids.push(meta.enqueue_job(&job("flaky", 1)).await.unwrap().unwrap());
    }
    let handlers = [
        Flaky::new(0, Duration::from_millis(40)),
        Flaky::new(0, Duration::from_millis(40)),
    ];
    let mut runners = Vec::new();
    for (n, handler) in handlers.iter().enumerate() {
        let options = RunnerOptions {
            concurrency: 2,
            ..options(&format!("server-{n}"))
        };
        runners.push(
            JobRunner::new(meta.clone(), options)
                .handle(handler.clone())
                .start()
                .await,
        );
    }
    for id in &ids {
        until_state(&meta, *id, JobState::Succeeded).await;
    }
    for runner in runners {
        runner.shutdown().await;
    }
    let attempts: usize = handlers
        .iter()
        .map(|h| h.attempts.load(Ordering::SeqCst))
        .sum();
    assert_eq!(attempts, 12, "each job ran once");
    for handler in &handlers {
        assert!(handler.most_at_once.load(Ordering::SeqCst) <= 2);
    }
}

/// A server that stops gives its running job back; another server runs it to the end, as the
/// same attempt.
#[tokio::test]
async fn a_stopping_server_gives_its_running_job_to_another() {
    let (_dir, _, meta) = fresh_store().await;
    let id = meta.enqueue_job(&job("flaky", 1)).await.unwrap().unwrap();
    let slow = Flaky::new(0, Duration::from_secs(3600));
    let stopping = JobRunner::new(meta.clone(), options("stopping"))
        .handle(slow.clone())
        .start()
        .await;
    let running = until_state(&meta, id, JobState::Running).await;
    assert_eq!(running.lease_owner.as_deref(), Some("stopping"));
    stopping.shutdown().await;
    let given_back = meta.job(id).await.unwrap().unwrap();
    assert_eq!(
        (given_back.state, given_back.attempts),
        (JobState::Queued, 0)
    );
    let other = JobRunner::new(meta.clone(), options("other"))
        .handle(Flaky::new(0, Duration::ZERO))
        .start()
        .await;
    let done = until_state(&meta, id, JobState::Succeeded).await;
    other.shutdown().await;
    assert_eq!(
        (done.attempts, done.lease_owner.as_deref()),
        (1, Some("other"))
    );
    let listed = meta
        .jobs(&JobFilter {
            kind: Some("flaky".into()),
            limit: 10,
            ..JobFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
}

/// Regression: shutdown aborted the claim loop, and a job it had just claimed in the store but
/// not yet registered as running here stayed `running` until its lease ran out instead of being
/// given back. Stopping right as the claim lands, many times, must always give the job back.
#[tokio::test]
async fn a_job_claimed_as_its_server_stops_is_given_back() {
    let (_dir, _, meta) = fresh_store().await;
    let id = meta.enqueue_job(&job("flaky", 1)).await.unwrap().unwrap();
    let slow = Flaky::new(0, Duration::from_secs(3600));
    for round in 0..30 {
        let runner = JobRunner::new(meta.clone(), options("stopping"))
            .handle(slow.clone())
            .start()
            .await;
        // No sleep between looks: stop as soon as the claim is visible in the store.
        while meta.job(id).await.unwrap().unwrap().state != JobState::Running {
            tokio::task::yield_now().await;
        }
        runner.shutdown().await;
        let given_back = meta.job(id).await.unwrap().unwrap();
        assert_eq!(
            (given_back.state, given_back.attempts),
            (JobState::Queued, 0),
            "round {round}"
        );
    }
}

/// Periodic workers run at start (before `start` returns) and every period; the ones that
/// run at shutdown run once more when the runner stops.
#[tokio::test]
async fn periodic_workers_run_every_period_and_at_shutdown() {
    let (_dir, _, meta) = fresh_store().await;
    let ticks = Arc::new(AtomicUsize::new(0));
    let counted = ticks.clone();
    let runner = JobRunner::new(meta, options("one"))
        .every_and_at_shutdown("count", Duration::from_secs(3600), move || {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                Ok::<(), String>(())
            }
        })
        .start()
        .await;
    assert_eq!(ticks.load(Ordering::SeqCst), 1, "ran within start");
    runner.shutdown().await;
    assert_eq!(ticks.load(Ordering::SeqCst), 2, "ran at shutdown");
}

/// Regression: shutdown aborted the periodic workers, so a worker that runs at shutdown and was
/// mid-run (e.g. writing pull counts it had taken from memory) lost that run's work. It is now
/// let finish its run, then runs once more.
#[tokio::test]
async fn a_worker_that_runs_at_shutdown_finishes_the_run_it_is_in() {
    let (_dir, _, meta) = fresh_store().await;
    let (started, finished) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (starts, finishes) = (started.clone(), finished.clone());
    let runner = JobRunner::new(meta, options("one"))
        .every_and_at_shutdown("slow write", Duration::from_millis(50), move || {
            let (starts, finishes) = (starts.clone(), finishes.clone());
            async move {
                starts.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(200)).await;
                finishes.fetch_add(1, Ordering::SeqCst);
                Ok::<(), String>(())
            }
        })
        .start()
        .await;
    // The first run was within `start`; wait for the second to be under way.
    while started.load(Ordering::SeqCst) < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    runner.shutdown().await;
    assert_eq!(
        (
            started.load(Ordering::SeqCst),
            finished.load(Ordering::SeqCst)
        ),
        (3, 3),
        "the run in progress and the run at shutdown both finished"
    );
}

/// Regression: a server's first look at an event feed ran in the background after the server
/// had begun to answer requests, and a feed seen for the first time starts after the events
/// that exist then; so an event a request recorded at once could be skipped (in the
/// three-replica tests, a scheduled retention run's deletions never reached the audit log).
/// The first run of every periodic worker is now over when `start` returns.
#[tokio::test]
async fn an_event_recorded_right_after_start_reaches_a_new_feed() {
    let (_dir, _, meta) = fresh_store().await;
    let consumer = "feed under test";
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let (feed, looked) = (meta.clone(), seen.clone());
    let runner = JobRunner::new(meta.clone(), options("one"))
        .every("feed", Duration::from_millis(20), move || {
            let (feed, looked) = (feed.clone(), looked.clone());
            async move {
                let (cursor, events) = feed.events_after_cursor(consumer, 100).await?;
                if let Some(last) = events.last() {
                    if feed
                        .consume_events(consumer, cursor, last.id, &[], &[])
                        .await?
                    {
                        looked
                            .lock()
                            .extend(events.into_iter().map(|e| e.event_type));
                    }
                }
                Ok::<(), gantry_meta::MetaError>(())
            }
        })
        .start()
        .await;
    meta.record_event(&gantry_meta::NewEvent {
        event_type: "right.after.start",
        project: None,
        repository: None,
        data: serde_json::json!({}),
    })
    .await
    .unwrap();
    for _ in 0..500 {
        if !seen.lock().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    runner.shutdown().await;
    assert_eq!(*seen.lock(), vec!["right.after.start".to_string()]);
}
