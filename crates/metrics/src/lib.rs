//! Gantry's Prometheus metrics. One [`Metrics`] value per process holds every family; the
//! service that does a thing records it (the HTTP edge its requests, the registry pushes, pulls
//! and job runs, the access service logins), and `GET /metrics` renders [`Metrics::encode`].
//!
//! Names follow the Prometheus conventions (<https://prometheus.io/docs/practices/naming/>):
//! a `gantry_` prefix, base units (`_seconds`, `_bytes`), `_total` on counters. The output is
//! the classic text exposition format 0.0.4, which `promtool check metrics` lints clean.
//! Per-repository series multiply with the number of repositories, so they are opt-in
//! ([`MetricsOptions::per_repository`]); by default pushes and pulls carry only `project`.

use prometheus::core::Collector;
pub use prometheus::IntCounter;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Failures of the metrics library: a family registered twice, or an encoding failure. Both
/// are programming errors, never caused by input.
#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

/// What the operator chose to expose.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetricsOptions {
    /// Label pushes and pulls with the repository as well as the project (one series per
    /// repository: only for registries with few repositories).
    pub per_repository: bool,
}

/// How a login attempt ended, the `result` label of `gantry_logins_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginResult {
    Success,
    /// Unknown name or wrong secret.
    Failure,
    /// Refused unchecked because of earlier failures (HTTP 429).
    Throttled,
}

impl LoginResult {
    fn label(self) -> &'static str {
        match self {
            LoginResult::Success => "success",
            LoginResult::Failure => "failure",
            LoginResult::Throttled => "throttled",
        }
    }
}

/// A background job kind, the `job` label of the `gantry_job_*` families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    GarbageCollection,
    Retention,
    Archive,
}

impl Job {
    fn label(self) -> &'static str {
        match self {
            Job::GarbageCollection => "gc",
            Job::Retention => "retention",
            Job::Archive => "archive",
        }
    }
}

/// One project's stored content, as `gantry_project_*` gauges show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectUsage {
    pub project: String,
    /// Deduplicated bytes of the blobs linked in the project's repositories.
    pub stored_bytes: u64,
    /// Manifests stored in the project.
    pub artifacts: u64,
}

/// One connection pool's state, as `gantry_meta_pool_connections` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUse {
    /// `writer` or `readers`.
    pub pool: &'static str,
    /// Connections open, idle or not.
    pub open: u32,
    /// Open connections not in use.
    pub idle: u32,
    /// The pool's limit.
    pub max: u32,
}

/// Every metric family of the process. Cheap to share (`Arc<Metrics>`); recording is a label
/// lookup and an atomic add.
pub struct Metrics {
    registry: Registry,
    per_repository: bool,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    http_received: IntCounterVec,
    http_sent: IntCounterVec,
    uploads_in_flight: IntGauge,
    pushes: IntCounterVec,
    pulls: IntCounterVec,
    logins: IntCounterVec,
    job_runs: IntCounterVec,
    job_duration: HistogramVec,
    job_freed: IntCounterVec,
    project_stored: IntGaugeVec,
    project_artifacts: IntGaugeVec,
    pool_connections: IntGaugeVec,
    pool_max: IntGaugeVec,
    cache_answers: IntCounterVec,
    upstream_failures: IntCounterVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("per_repository", &self.per_repository)
            .finish_non_exhaustive()
    }
}

/// Registers `collector` with `registry` and hands it back.
fn registered<C: Collector + Clone + 'static>(
    registry: &Registry,
    collector: C,
) -> Result<C, MetricsError> {
    registry.register(Box::new(collector.clone()))?;
    Ok(collector)
}

fn counters(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, MetricsError> {
    registered(registry, IntCounterVec::new(Opts::new(name, help), labels)?)
}

fn gauges(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntGaugeVec, MetricsError> {
    registered(registry, IntGaugeVec::new(Opts::new(name, help), labels)?)
}

fn histograms(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> Result<HistogramVec, MetricsError> {
    registered(
        registry,
        HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)?,
    )
}

impl Metrics {
    /// Creates every family (and the standard `process_*` ones on Linux).
    ///
    /// Errors: only if a family were defined twice (a programming error).
    pub fn new(options: MetricsOptions) -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        let artifact_labels: &[&str] = if options.per_repository {
            &["project", "repository"]
        } else {
            &["project"]
        };
        let http_buckets = prometheus::DEFAULT_BUCKETS.to_vec();
        // Jobs take from milliseconds (an empty GC) to an hour (archiving a big project).
        let job_buckets = prometheus::exponential_buckets(0.01, 4.0, 10)?;
        Ok(Metrics {
            per_repository: options.per_repository,
            http_requests: counters(
                &registry,
                "gantry_http_requests_total",
                "HTTP requests answered, by route family, method and status code.",
                &["route", "method", "status"],
            )?,
            http_duration: histograms(
                &registry,
                "gantry_http_request_duration_seconds",
                "Time from receiving a request's head to returning its response head, by route family and method (a streamed body continues after).",
                &["route", "method"],
                http_buckets,
            )?,
            http_received: counters(
                &registry,
                "gantry_http_received_bytes_total",
                "Request body bytes received, by route family.",
                &["route"],
            )?,
            http_sent: counters(
                &registry,
                "gantry_http_sent_bytes_total",
                "Response body bytes sent, by route family.",
                &["route"],
            )?,
            uploads_in_flight: registered(
                &registry,
                IntGauge::new(
                    "gantry_uploads_in_flight",
                    "Blob upload requests (POST, PATCH, PUT of an upload session) being received now.",
                )?,
            )?,
            pushes: counters(
                &registry,
                "gantry_pushes_total",
                "Manifests pushed (PUT accepted), by project.",
                artifact_labels,
            )?,
            pulls: counters(
                &registry,
                "gantry_pulls_total",
                "Manifests pulled (GET answered), by project.",
                artifact_labels,
            )?,
            logins: counters(
                &registry,
                "gantry_logins_total",
                "Credential checks of Basic logins and token requests, by result (success, failure, throttled).",
                &["result"],
            )?,
            job_runs: counters(
                &registry,
                "gantry_job_runs_total",
                "Garbage collection, retention and archive runs, by job and result (success, failure).",
                &["job", "result"],
            )?,
            job_duration: histograms(
                &registry,
                "gantry_job_duration_seconds",
                "Duration of garbage collection, retention and archive runs, by job.",
                &["job"],
                job_buckets,
            )?,
            job_freed: counters(
                &registry,
                "gantry_job_freed_bytes_total",
                "Bytes freed by garbage collection (deleted blobs) and retention (unreferenced by what it deleted), by job.",
                &["job"],
            )?,
            project_stored: gauges(
                &registry,
                "gantry_project_stored_bytes",
                "Deduplicated bytes of the blobs linked in each project's repositories.",
                &["project"],
            )?,
            project_artifacts: gauges(
                &registry,
                "gantry_project_artifacts",
                "Manifests stored in each project.",
                &["project"],
            )?,
            pool_connections: gauges(
                &registry,
                "gantry_meta_pool_connections",
                "Metadata store connections, by pool and state (idle, in_use).",
                &["pool", "state"],
            )?,
            pool_max: gauges(
                &registry,
                "gantry_meta_pool_max_connections",
                "The connection limit of each metadata store pool.",
                &["pool"],
            )?,
            cache_answers: counters(
                &registry,
                "gantry_mirror_answers_total",
                "Pulls of cache projects, by upstream and answer: cached (served from the cache), fetched (from the upstream), stale (cached, served because the upstream failed).",
                &["upstream", "answer"],
            )?,
            upstream_failures: counters(
                &registry,
                "gantry_mirror_upstream_failures_total",
                "Failed requests to upstream registries, by upstream and kind (429, 5xx, 4xx, unreachable).",
                &["upstream", "kind"],
            )?,
            registry,
        })
    }

    /// Counts a pull of a cache project of `upstream` answered as `answer` (`cached`,
    /// `fetched`, `stale`).
    pub fn cache_answer(&self, upstream: &str, answer: &str) {
        self.cache_answers
            .with_label_values(&[upstream, answer])
            .inc();
    }

    /// Counts a failed request to `upstream` (`kind`: `429`, `5xx`, `4xx`, `unreachable`).
    pub fn upstream_failure(&self, upstream: &str, kind: &str) {
        self.upstream_failures
            .with_label_values(&[upstream, kind])
            .inc();
    }

    /// Counts one answered HTTP request. `route` is a route family (`manifests`, `blobs`,
    /// `uploads`, `api`, ...), never a raw path, so the label set stays small; `status` is the
    /// three-digit code.
    pub fn http_request(&self, route: &str, method: &str, status: &str, seconds: f64) {
        self.http_requests
            .with_label_values(&[route, method, status])
            .inc();
        self.http_duration
            .with_label_values(&[route, method])
            .observe(seconds);
    }

    /// The counter a request body of `route` adds its bytes to.
    pub fn http_received(&self, route: &str) -> IntCounter {
        self.http_received.with_label_values(&[route])
    }

    /// The counter a response body of `route` adds its bytes to.
    pub fn http_sent(&self, route: &str) -> IntCounter {
        self.http_sent.with_label_values(&[route])
    }

    /// Marks an upload request as in flight until the returned guard is dropped.
    pub fn upload_in_flight(&self) -> InFlight {
        self.uploads_in_flight.inc();
        InFlight(self.uploads_in_flight.clone())
    }

    /// Counts a manifest pushed to `repository` of `project`.
    pub fn push(&self, project: &str, repository: &str) {
        self.artifact_counter(&self.pushes, project, repository)
            .inc();
    }

    /// Counts a manifest pulled from `repository` of `project`.
    pub fn pull(&self, project: &str, repository: &str) {
        self.artifact_counter(&self.pulls, project, repository)
            .inc();
    }

    fn artifact_counter(
        &self,
        family: &IntCounterVec,
        project: &str,
        repository: &str,
    ) -> IntCounter {
        if self.per_repository {
            family.with_label_values(&[project, repository])
        } else {
            family.with_label_values(&[project])
        }
    }

    /// Counts a login attempt.
    pub fn login(&self, result: LoginResult) {
        self.logins.with_label_values(&[result.label()]).inc();
    }

    /// Records a finished job run: its duration and, when it succeeded, the bytes it freed.
    pub fn job_finished(&self, job: Job, succeeded: bool, seconds: f64, freed_bytes: u64) {
        let result = if succeeded { "success" } else { "failure" };
        self.job_runs
            .with_label_values(&[job.label(), result])
            .inc();
        self.job_duration
            .with_label_values(&[job.label()])
            .observe(seconds);
        self.job_freed
            .with_label_values(&[job.label()])
            .inc_by(freed_bytes);
    }

    /// Replaces the per-project gauges with `projects` (a deleted project's series go away).
    pub fn set_project_usage(&self, projects: &[ProjectUsage]) {
        self.project_stored.reset();
        self.project_artifacts.reset();
        for usage in projects {
            self.project_stored
                .with_label_values(&[&usage.project])
                .set(gauge_value(usage.stored_bytes));
            self.project_artifacts
                .with_label_values(&[&usage.project])
                .set(gauge_value(usage.artifacts));
        }
    }

    /// Sets the metadata store's pool gauges.
    pub fn set_pool_use(&self, pools: &[PoolUse]) {
        for pool in pools {
            let in_use = pool.open.saturating_sub(pool.idle);
            self.pool_connections
                .with_label_values(&[pool.pool, "idle"])
                .set(i64::from(pool.idle));
            self.pool_connections
                .with_label_values(&[pool.pool, "in_use"])
                .set(i64::from(in_use));
            self.pool_max
                .with_label_values(&[pool.pool])
                .set(i64::from(pool.max));
        }
    }

    /// Every family in the text exposition format ([`CONTENT_TYPE`]).
    ///
    /// Errors: only on an internal encoding failure.
    pub fn encode(&self) -> Result<String, MetricsError> {
        let mut text = String::new();
        TextEncoder::new().encode_utf8(&self.registry.gather(), &mut text)?;
        Ok(text)
    }
}

/// Decrements `gantry_uploads_in_flight` when dropped.
pub struct InFlight(IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn pushes_carry_the_repository_only_when_asked() {
        let plain = Metrics::new(MetricsOptions::default()).unwrap();
        plain.push("team-a", "team-a/app");
        plain.push("team-a", "team-a/api");
        let text = plain.encode().unwrap();
        assert_eq!(
            sample(&text, "gantry_pushes_total{project=\"team-a\"}"),
            Some(2.0)
        );

        let detailed = Metrics::new(MetricsOptions {
            per_repository: true,
        })
        .unwrap();
        detailed.push("team-a", "team-a/app");
        let text = detailed.encode().unwrap();
        assert_eq!(
            sample(
                &text,
                "gantry_pushes_total{project=\"team-a\",repository=\"team-a/app\"}"
            ),
            Some(1.0)
        );
    }

    #[test]
    fn project_usage_replaces_the_previous_projects() {
        let metrics = Metrics::new(MetricsOptions::default()).unwrap();
        metrics.set_project_usage(&[ProjectUsage {
            project: "gone".into(),
            stored_bytes: 5,
            artifacts: 1,
        }]);
        metrics.set_project_usage(&[ProjectUsage {
            project: "kept".into(),
            stored_bytes: 7,
            artifacts: 2,
        }]);
        let text = metrics.encode().unwrap();
        assert!(!text.contains("project=\"gone\""), "{text}");
        assert_eq!(
            sample(&text, "gantry_project_stored_bytes{project=\"kept\"}"),
            Some(7.0)
        );
        assert_eq!(
            sample(&text, "gantry_project_artifacts{project=\"kept\"}"),
            Some(2.0)
        );
    }

    #[test]
    fn uploads_in_flight_fall_when_the_guard_drops() {
        let metrics = Metrics::new(MetricsOptions::default()).unwrap();
        let first = metrics.upload_in_flight();
        let second = metrics.upload_in_flight();
        drop(first);
        assert_eq!(
            sample(&metrics.encode().unwrap(), "gantry_uploads_in_flight"),
            Some(1.0)
        );
        drop(second);
        assert_eq!(
            sample(&metrics.encode().unwrap(), "gantry_uploads_in_flight"),
            Some(0.0)
        );
    }

    #[test]
    fn job_runs_count_by_result_and_freed_bytes_add_up() {
        let metrics = Metrics::new(MetricsOptions::default()).unwrap();
        metrics.job_finished(Job::GarbageCollection, true, 0.5, 100);
        metrics.job_finished(Job::GarbageCollection, true, 0.2, 50);
        metrics.job_finished(Job::Retention, false, 0.1, 0);
        let text = metrics.encode().unwrap();
        assert_eq!(
            sample(
                &text,
                "gantry_job_runs_total{job=\"gc\",result=\"success\"}"
            ),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, "gantry_job_freed_bytes_total{job=\"gc\"}"),
            Some(150.0)
        );
        assert_eq!(
            sample(
                &text,
                "gantry_job_runs_total{job=\"retention\",result=\"failure\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "gantry_job_duration_seconds_count{job=\"gc\"}"),
            Some(2.0)
        );
    }
}
