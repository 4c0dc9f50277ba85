//! Replication between registries (Gantry, CNCF Distribution, Harbor, any OCI registry), and
//! preheating edge caches. Rules come from the config file (`[[replication]]`, `[[preheat]]`)
//! and from the REST API (stored in the database with the remote registry's password sealed,
//! per project or system-wide; every server reloads them when the database's change counter
//! moves, within a second). Three kinds:
//!
//! - **push**: what is pushed here and matches the rule's repository, tag and label selectors
//!   is copied to the rule's registry under the same name, with everything it references (an
//!   index's images, every blob) and what refers to it (referrers, cosign's
//!   `.sig`/`.att`/`.sbom` tags); with `deletions`, a manifest deleted here is deleted there;
//!   with `signed_only`, only images a key their project trusts signed;
//! - **pull**: by its schedule, at its time or by hand, the tags the rule selects at the
//!   remote registry are copied here, into the rule's project, the same way;
//! - **preheat**: an edge registry that caches this one (a Gantry pull-through cache,
//!   Distribution in proxy mode) is warmed: what the rule selects — by selectors, or the N
//!   tags of a project most pulled within the last D days — is pulled through the edge, which
//!   fetches it from here and keeps it; pulls at the edge then need nothing from here.
//!
//! Events come from the outbox: [`Replicator::fan_out`] turns each new `artifact.pushed` and
//! `artifact.deleted` event into one `replication` job per push rule that wants it, in the
//! transaction that moves the outbox cursor, so a push is replicated once however many
//! servers look. A rule's jobs of one repository share a queue: they run in event order. A
//! target that fails is retried with the runner's backoff (about four hours of it being down)
//! and its later jobs wait. A run (by hand, by schedule, at a time) is a `replication-run` job
//! that enqueues one item per selected tag; the run jobs are the per-run history, the item
//! jobs the per-item status.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gantry_auth::sealed::Sealer;
use gantry_client::{ClientError, Credentials, RegistryClient, Transport};
use gantry_jobs::{JobError, JobHandler, Progress, Waker};
use gantry_lifecycle::retention::Selector;
use gantry_lifecycle::schedule::Schedule;
use gantry_meta::{Event, JobRecord, JobState, NewJob, StoredRule, REPLICATION_RULES_COUNTER};
use gantry_oci::{manifest, Digest, Reference, RepositoryName, Tag};
use gantry_registry::{Registry, RegistryError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::import::{Import, Origin};
use crate::MirrorError;

/// The job kind of replications: one item of a rule.
pub const REPLICATION_JOB: &str = "replication";
/// The job kind of a whole run of a rule (by hand, by its schedule or at its time): it
/// enqueues an item for every tag the rule selects.
pub const RUN_JOB: &str = "replication-run";
/// The outbox consumer name of the fan-out.
const CONSUMER: &str = "replication";
/// Attempts per item: with the runner's backoff (1 s doubling to 5 minutes) about four hours
/// of a target being down.
const ATTEMPTS: u32 = 60;
/// Events taken from the outbox per fan-out.
const FAN_OUT_BATCH: u32 = 500;
/// How long the rules are used before the database's change counter is read again.
const RELOAD_AFTER: Duration = Duration::from_secs(1);
/// The range of a rule's `bandwidth_mib`.
pub const BANDWIDTH_MIB: std::ops::RangeInclusive<u64> = 1..=1_000_000;
/// The range of `most_pulled.count`.
pub const MOST_PULLED_COUNT: std::ops::RangeInclusive<usize> = 1..=10_000;
/// The range of `most_pulled.days` (a hundred years).
pub const MOST_PULLED_DAYS: std::ops::RangeInclusive<u32> = 1..=36_500;
/// The largest image config read for its labels.
const CONFIG_LIMIT: u64 = 4 << 20;

/// What a rule does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleKind {
    /// Copies what is pushed here to the rule's registry.
    #[default]
    Push,
    /// Copies what the rule selects at the rule's registry here.
    Pull,
    /// Warms the edge cache at the rule's URL with what it selects here.
    Preheat,
}

/// A replication or preheat rule as written: a `[[replication]]` table of the config file, or
/// the body of `POST /api/v1/replication` (JSON). Listed without the password.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Names the rule in the API, jobs and logs: letters, digits, `.`, `_`, `-` (1-64).
    pub name: String,
    #[serde(default)]
    pub kind: RuleKind,
    /// `http(s)://host[:port]` of the other registry (the target, the source, or the edge).
    pub url: String,
    /// Credentials at the other registry: both or neither.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
    /// The project the rule belongs to: a push or preheat rule takes only its repositories
    /// (required for preheat); a pull rule stores what it pulls in it (required), under
    /// `PROJECT/NAME` unless the remote name already starts with `PROJECT/`. None: a
    /// system-wide push rule.
    #[serde(default)]
    pub project: Option<String>,
    /// `{ include = [...], exclude = [...] }` globs over full repository names (a pull rule:
    /// the remote's names; literal includes are used as given, globs need the remote's
    /// catalog).
    #[serde(default)]
    pub repositories: Selector,
    /// Globs over tags. What refers to a replicated image (referrers, cosign's tags) follows
    /// it whatever its tag.
    #[serde(default)]
    pub tags: Selector,
    /// Image labels an image must all have (`KEY` or `KEY=VALUE`, from its config; an index:
    /// any of its images); push and preheat rules.
    #[serde(default)]
    pub labels: Vec<String>,
    /// A manifest deleted here is deleted at the target (push rules).
    #[serde(default)]
    pub deletions: bool,
    /// Only images a key their project trusts signed (the signing policy's keys, enforced or
    /// not); one signed after its push goes when its signature arrives (push rules).
    #[serde(default)]
    pub signed_only: bool,
    /// When the rule also runs whole, as a cron pattern (UTC).
    #[serde(default)]
    pub schedule: Option<Schedule>,
    /// Runs whole once, at this time (RFC 3339, e.g. `2026-12-24T05:00:00Z`), as before a
    /// rollout.
    #[serde(default)]
    pub at: Option<String>,
    /// The most MiB a second its blob transfers take, over all its items on a server (push
    /// and pull).
    #[serde(default)]
    pub bandwidth_mib: Option<u64>,
    /// Preheat: the edge's cache project of this registry (`origin` for
    /// `origin/team/app`); none when the edge mirrors this registry's names as they are.
    #[serde(default)]
    pub edge_project: Option<String>,
    /// Preheat: only the most pulled tags.
    #[serde(default)]
    pub most_pulled: Option<MostPulled>,
}

/// "The `count` tags most pulled within the last `days` days" (by each tag's pull count,
/// among the tags pulled in that window).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MostPulled {
    pub count: usize,
    pub days: u32,
}

/// Where a rule is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleSource {
    /// The config file: changed there, not through the API.
    Config,
    /// The REST API (stored in the database).
    Api,
}

/// A rule as listed.
#[derive(Debug, Clone, Serialize)]
pub struct RuleView {
    #[serde(flatten)]
    pub spec: RuleSpec,
    pub source: RuleSource,
    /// Who made or last changed a rule of the API.
    pub created_by: Option<String>,
    /// Unix seconds.
    pub updated_at: Option<i64>,
    /// Whether a password is kept for the rule (it is never shown).
    pub password_set: bool,
    /// Why a stored rule does not run (e.g. its password was sealed under another token key).
    pub problem: Option<String>,
}

/// One item of a rule as its job records it: the per-item status and history.
#[derive(Debug, Clone, Serialize)]
pub struct ItemStatus {
    /// The job's id (`gantry jobs show ID`).
    pub id: i64,
    /// The run it belongs to; none for an item of a push event.
    pub run: Option<i64>,
    pub repository: String,
    /// The manifest's digest (a pull item: at the remote when the run listed it).
    pub digest: String,
    pub tag: Option<String>,
    /// Deleted at the target rather than copied.
    pub delete: bool,
    /// `queued`, `running`, `succeeded` or `failed`.
    pub state: &'static str,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// What the successful attempt did (bytes copied, or why it was skipped).
    pub result: Option<Value>,
    /// Unix milliseconds.
    pub created_ms: i64,
    pub finished_ms: Option<i64>,
}

/// One run of a rule: what started it, and how its items stand.
#[derive(Debug, Clone, Serialize)]
pub struct RunStatus {
    /// The run job's id; its items name it.
    pub id: i64,
    /// `manual`, `schedule` or `at`.
    pub trigger: String,
    /// `listing` (what it selects), `running` (items outstanding), `succeeded`, or `failed`
    /// (the listing failed, or an item did).
    pub state: &'static str,
    /// How many items it enqueued (once listed).
    pub items: Option<u64>,
    pub queued: u64,
    pub running: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Why the listing failed.
    pub last_error: Option<String>,
    /// Unix milliseconds.
    pub created_ms: i64,
    /// When its last item finished (once none is outstanding).
    pub finished_ms: Option<i64>,
}

/// A `replication` job's payload: one item of a rule.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Item {
    rule: String,
    repository: String,
    digest: String,
    tag: Option<String>,
    /// Delete at the target instead of copying.
    #[serde(default)]
    delete: bool,
    /// The run that enqueued it.
    #[serde(default)]
    run: Option<i64>,
}

/// `KEY` or `KEY=VALUE` of a rule's `labels`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LabelMatch {
    key: String,
    value: Option<String>,
}

impl LabelMatch {
    fn matches(&self, labels: &serde_json::Map<String, Value>) -> bool {
        match (labels.get(&self.key), &self.value) {
            (Some(_), None) => true,
            (Some(Value::String(have)), Some(want)) => have == want,
            _ => false,
        }
    }
}

/// A rule ready to run: validated, with its client.
struct Bound {
    /// As written, without the password.
    spec: RuleSpec,
    source: RuleSource,
    created_by: Option<String>,
    updated_at: Option<i64>,
    client: RegistryClient,
    pacer: Option<Arc<Pacer>>,
    labels: Vec<LabelMatch>,
    /// `at` in Unix seconds.
    at: Option<i64>,
    password_set: bool,
}

impl Bound {
    fn view(&self) -> RuleView {
        RuleView {
            spec: self.spec.clone(),
            source: self.source,
            created_by: self.created_by.clone(),
            updated_at: self.updated_at,
            password_set: self.password_set,
            problem: None,
        }
    }

    /// Whether `repository` (a name here) is one the rule takes.
    fn takes_repository(&self, repository: &str) -> bool {
        let in_project = match &self.spec.project {
            Some(project) => repository
                .strip_prefix(project.as_str())
                .is_some_and(|rest| rest.starts_with('/')),
            None => true,
        };
        in_project && self.spec.repositories.matches(repository)
    }
}

/// Checks `spec` and binds it: its client, pacer, labels and time. Errors: what is wrong,
/// in a sentence.
fn bind(mut spec: RuleSpec, transport: &Transport) -> Result<Bound, String> {
    let valid_name = !spec.name.is_empty()
        && spec.name.len() <= 64
        && spec
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !valid_name {
        return Err(format!(
            "name {:?} must be 1-64 letters, digits, '.', '_' or '-'",
            spec.name
        ));
    }
    let parsed =
        url::Url::parse(&spec.url).map_err(|e| format!("url {:?} is not a URL ({e})", spec.url))?;
    let bare = parsed.path().trim_end_matches('/').is_empty()
        && parsed.query().is_none()
        && parsed.fragment().is_none();
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() || !bare {
        return Err(format!("url {:?} must be http(s)://host[:port]", spec.url));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(
            "give the credentials as username and password, not in the url (it is listed)".into(),
        );
    }
    if spec.username.as_deref() == Some("") || spec.password.as_deref() == Some("") {
        return Err("the username and the password must not be empty".into());
    }
    let credentials = match (&spec.username, spec.password.take()) {
        (Some(username), Some(password)) => Some(Credentials {
            username: username.clone(),
            password,
        }),
        (None, None) => None,
        _ => {
            return Err(
                "give both username and password, or neither (the CLI reads the password with \
                 --password-stdin)"
                    .into(),
            )
        }
    };
    if let Some(project) = &spec.project {
        if project.contains('/') || gantry_registry::parse_name(project).is_err() {
            return Err(format!("project {project:?} is not a project name"));
        }
    }
    let kind = spec.kind;
    let only = |field: &str, set: bool, kinds: &[RuleKind]| {
        if set && !kinds.contains(&kind) {
            Err(format!("{field} does not apply to a {kind:?} rule").to_lowercase())
        } else {
            Ok(())
        }
    };
    only("deletions", spec.deletions, &[RuleKind::Push])?;
    only("signed_only", spec.signed_only, &[RuleKind::Push])?;
    only(
        "labels",
        !spec.labels.is_empty(),
        &[RuleKind::Push, RuleKind::Preheat],
    )?;
    only(
        "bandwidth_mib",
        spec.bandwidth_mib.is_some(),
        &[RuleKind::Push, RuleKind::Pull],
    )?;
    only(
        "edge_project",
        spec.edge_project.is_some(),
        &[RuleKind::Preheat],
    )?;
    only(
        "most_pulled",
        spec.most_pulled.is_some(),
        &[RuleKind::Preheat],
    )?;
    if kind != RuleKind::Push && spec.project.is_none() {
        return Err(format!(
            "a {} rule needs a project (where it {})",
            if kind == RuleKind::Pull {
                "pull"
            } else {
                "preheat"
            },
            if kind == RuleKind::Pull {
                "stores what it pulls"
            } else {
                "selects what to warm"
            }
        ));
    }
    let labels = spec
        .labels
        .iter()
        .map(|label| match label.split_once('=') {
            _ if label.is_empty() || label.starts_with('=') => {
                Err(format!("label {label:?} is not KEY or KEY=VALUE"))
            }
            Some((key, value)) => Ok(LabelMatch {
                key: key.to_string(),
                value: Some(value.to_string()),
            }),
            None => Ok(LabelMatch {
                key: label.clone(),
                value: None,
            }),
        })
        .collect::<Result<Vec<_>, String>>()?;
    let at = spec
        .at
        .as_deref()
        .map(|at| {
            chrono::DateTime::parse_from_rfc3339(at)
                .map(|t| t.timestamp())
                .map_err(|e| {
                    format!("at {at:?} is not an RFC 3339 time such as 2026-12-24T05:00:00Z ({e})")
                })
        })
        .transpose()?;
    if let Some(most) = spec.most_pulled {
        if !MOST_PULLED_COUNT.contains(&most.count) || !MOST_PULLED_DAYS.contains(&most.days) {
            return Err(format!(
                "most_pulled needs a count in {MOST_PULLED_COUNT:?} and days in {MOST_PULLED_DAYS:?}"
            ));
        }
    }
    let pacer = match spec.bandwidth_mib {
        Some(mib) if !BANDWIDTH_MIB.contains(&mib) => {
            return Err(format!("bandwidth_mib must be in {BANDWIDTH_MIB:?}"))
        }
        Some(mib) => Some(Arc::new(Pacer {
            bytes_per_second: mib * (1 << 20),
            next: parking_lot::Mutex::new(None),
        })),
        None => None,
    };
    let password_set = credentials.is_some();
    let client =
        RegistryClient::new(&spec.url, transport, credentials).map_err(|e| e.to_string())?;
    Ok(Bound {
        spec,
        source: RuleSource::Config,
        created_by: None,
        updated_at: None,
        client,
        pacer,
        labels,
        at,
        password_set,
    })
}

/// The rules a server runs: the config file's, then the stored ones.
struct RuleSet {
    /// The change counter the stored rules were read at.
    version: i64,
    bound: Vec<Arc<Bound>>,
    /// Stored rules that cannot run, with why.
    broken: Vec<RuleView>,
}

/// Keeps a rule's blob transfers under its bandwidth: each chunk takes the next slot of the
/// rule's byte clock, and waits for it.
struct Pacer {
    bytes_per_second: u64,
    next: parking_lot::Mutex<Option<tokio::time::Instant>>,
}

impl Pacer {
    /// Waits until `bytes` more may be sent.
    async fn take(&self, bytes: usize) {
        let slot = {
            let mut next = self.next.lock();
            let now = tokio::time::Instant::now();
            let start = next.map_or(now, |n| n.max(now));
            let takes =
                std::time::Duration::from_secs_f64(bytes as f64 / self.bytes_per_second as f64);
            *next = Some(start + takes);
            start
        };
        tokio::time::sleep_until(slot).await;
    }
}

/// The payload of a `replication-run` job.
#[derive(Debug, Serialize, Deserialize)]
struct Run {
    rule: String,
    /// `manual`, `schedule` or `at`.
    #[serde(default = "manual")]
    trigger: String,
}

fn manual() -> String {
    "manual".into()
}

/// The replication service: the rules, the fan-out of events into jobs, runs, and the jobs'
/// handlers.
pub struct Replicator {
    registry: Arc<Registry>,
    transport: Transport,
    sealer: Sealer,
    configured: Vec<Arc<Bound>>,
    rules: parking_lot::RwLock<Arc<RuleSet>>,
    /// When the change counter was last read.
    checked: parking_lot::Mutex<Option<Instant>>,
    waker: std::sync::OnceLock<Waker>,
}

impl Replicator {
    /// The replicator of the config file's `configured` rules (stored rules are read when
    /// first needed), sealing and opening stored passwords with `sealer`. Errors: `Config`
    /// for an invalid rule, or two with one name.
    pub fn new(
        registry: Arc<Registry>,
        configured: Vec<RuleSpec>,
        transport: &Transport,
        sealer: Sealer,
    ) -> Result<Replicator, MirrorError> {
        let mut bound: Vec<Arc<Bound>> = Vec::new();
        for spec in configured {
            let name = spec.name.clone();
            let invalid = |what: String| MirrorError::Config(format!("rule {name:?}: {what}"));
            if bound.iter().any(|b| b.spec.name == name) {
                return Err(invalid("two rules have this name".into()));
            }
            bound.push(Arc::new(bind(spec, transport).map_err(invalid)?));
        }
        Ok(Replicator {
            registry,
            transport: transport.clone(),
            sealer,
            rules: parking_lot::RwLock::new(Arc::new(RuleSet {
                version: -1,
                bound: bound.clone(),
                broken: Vec::new(),
            })),
            configured: bound,
            checked: parking_lot::Mutex::new(None),
            waker: std::sync::OnceLock::new(),
        })
    }

    /// Wakes the job runner when items are enqueued.
    pub fn set_job_waker(&self, waker: Waker) {
        let _ = self.waker.set(waker);
    }

    fn wake(&self) {
        if let Some(waker) = self.waker.get() {
            waker.wake();
        }
    }

    /// The rules now: read again from the database when its change counter moved (looked at
    /// at most once a second, or at once with `fresh`).
    async fn current(&self, fresh: bool) -> Result<Arc<RuleSet>, MirrorError> {
        {
            let mut checked = self.checked.lock();
            let recent = checked.is_some_and(|at| at.elapsed() < RELOAD_AFTER);
            if recent && !fresh {
                return Ok(self.rules.read().clone());
            }
            *checked = Some(Instant::now());
        }
        let meta = self.registry.meta();
        let version = meta
            .change_counter(REPLICATION_RULES_COUNTER)
            .await
            .map_err(RegistryError::from)?;
        if version == self.rules.read().version {
            return Ok(self.rules.read().clone());
        }
        let stored = meta
            .replication_rules()
            .await
            .map_err(RegistryError::from)?;
        let mut set = RuleSet {
            version,
            bound: self.configured.clone(),
            broken: Vec::new(),
        };
        for row in stored {
            match self.bind_stored(&row) {
                Ok(bound) => set.bound.push(Arc::new(bound)),
                Err(broken) => set.broken.push(*broken),
            }
        }
        let set = Arc::new(set);
        *self.rules.write() = set.clone();
        Ok(set)
    }

    /// A stored rule bound, or its view (as far as it reads) with why it cannot run.
    fn bind_stored(&self, row: &StoredRule) -> Result<Bound, Box<RuleView>> {
        let broken = |spec: RuleSpec, problem: String| {
            Box::new(RuleView {
                spec,
                source: RuleSource::Api,
                created_by: Some(row.created_by.clone()),
                updated_at: Some(row.updated_at),
                password_set: row.sealed_password.is_some(),
                problem: Some(problem),
            })
        };
        let mut spec: RuleSpec = serde_json::from_str(&row.definition).map_err(|e| {
            let unread = RuleSpec {
                name: row.name.clone(),
                ..RuleSpec::default()
            };
            broken(unread, format!("the stored rule does not read: {e}"))
        })?;
        if self.configured.iter().any(|b| b.spec.name == row.name) {
            return Err(broken(
                spec,
                "a rule of the config file has this name".into(),
            ));
        }
        if let Some(sealed) = &row.sealed_password {
            match self.sealer.open(&row.name, sealed) {
                Ok(password) => spec.password = Some(password),
                Err(e) => return Err(broken(spec, e.to_string())),
            }
        }
        let mut bound = bind(spec.clone(), &self.transport).map_err(|e| broken(spec, e))?;
        bound.source = RuleSource::Api;
        bound.created_by = Some(row.created_by.clone());
        bound.updated_at = Some(row.updated_at);
        Ok(bound)
    }

    /// Takes the events recorded since the last fan-out (by any server) and enqueues an item
    /// for each push rule that wants each, moving the outbox cursor in the same transaction;
    /// returns how many items were enqueued. Without push rules the cursor moves all the
    /// same: a rule takes the pushes from when it was made on (a run copies what was there).
    pub async fn fan_out(&self) -> Result<usize, MirrorError> {
        let meta = self.registry.meta();
        let (cursor, events) = meta
            .events_after_cursor(CONSUMER, FAN_OUT_BATCH)
            .await
            .map_err(RegistryError::from)?;
        let Some(last) = events.last().map(|e| e.id) else {
            return Ok(0);
        };
        // The rules as they are after these events were recorded: a rule made (through any
        // server) before a push takes that push.
        let rules = self.current(true).await?;
        let push: Vec<&Bound> = rules
            .bound
            .iter()
            .filter(|b| b.spec.kind == RuleKind::Push)
            .map(|b| b.as_ref())
            .collect();
        let jobs: Vec<NewJob> = events
            .iter()
            .flat_map(|event| push.iter().filter_map(move |b| item(b, event)))
            .map(|item| job(&item))
            .collect();
        let moved = meta
            .consume_events(CONSUMER, cursor, last, &jobs, &[])
            .await
            .map_err(RegistryError::from)?;
        if moved && !jobs.is_empty() {
            self.wake();
            return Ok(jobs.len());
        }
        Ok(0)
    }

    /// The handlers of `replication` and `replication-run` jobs, for the server's runner.
    pub fn job_handlers(self: &Arc<Self>) -> Vec<Arc<dyn JobHandler>> {
        vec![
            Arc::new(ReplicationHandler(self.clone())),
            Arc::new(RunHandler(self.clone())),
        ]
    }

    /// Every rule (the config file's, then the stored ones), without passwords; `project`:
    /// only that project's.
    pub async fn rules(&self, project: Option<&str>) -> Result<Vec<RuleView>, MirrorError> {
        let rules = self.current(true).await?;
        Ok(rules
            .bound
            .iter()
            .map(|b| b.view())
            .chain(rules.broken.iter().cloned())
            .filter(|view| project.is_none() || view.spec.project.as_deref() == project)
            .collect())
    }

    /// The rule `name`. Errors: `RuleUnknown`.
    pub async fn rule(&self, name: &str) -> Result<RuleView, MirrorError> {
        self.rules(None)
            .await?
            .into_iter()
            .find(|view| view.spec.name == name)
            .ok_or_else(|| MirrorError::RuleUnknown(name.to_string()))
    }

    async fn bound(&self, rule: &str) -> Result<Arc<Bound>, MirrorError> {
        self.current(false)
            .await?
            .bound
            .iter()
            .find(|b| b.spec.name == rule)
            .cloned()
            .ok_or_else(|| MirrorError::RuleUnknown(rule.to_string()))
    }

    /// Adds a rule through the API (`replace` false) or replaces the API rule of its name
    /// (`replace` true; without a password the stored one is kept for the same username),
    /// recorded as by `by`; the other servers take it within a second. Errors: `RuleInvalid`
    /// for what `bind` refuses, `RuleExists`, `RuleConfigured` for a name of the config file,
    /// `RuleUnknown` for a replacement of no rule.
    pub async fn save(
        &self,
        mut spec: RuleSpec,
        replace: bool,
        by: &str,
    ) -> Result<RuleView, MirrorError> {
        if self.configured.iter().any(|b| b.spec.name == spec.name) {
            return Err(MirrorError::RuleConfigured(spec.name));
        }
        let meta = self.registry.meta();
        let stored = match replace {
            true => meta
                .replication_rules()
                .await
                .map_err(RegistryError::from)?
                .into_iter()
                .find(|row| row.name == spec.name),
            false => None,
        };
        let stored_spec = stored
            .as_ref()
            .and_then(|row| serde_json::from_str::<RuleSpec>(&row.definition).ok());
        if let Some(row) = &stored {
            let same_user = stored_spec
                .as_ref()
                .is_some_and(|o| o.username == spec.username);
            if spec.password.is_none() && spec.username.is_some() && same_user {
                if let Some(sealed) = &row.sealed_password {
                    let password = self
                        .sealer
                        .open(&spec.name, sealed)
                        .map_err(|e| MirrorError::RuleInvalid(e.to_string()))?;
                    spec.password = Some(password);
                }
            }
        }
        let bound = bind(spec.clone(), &self.transport).map_err(MirrorError::RuleInvalid)?;
        // A time that has passed is refused when it is set, not when a rule that already ran
        // at it is changed otherwise (a client writes back the rule it read).
        let at_unchanged = stored_spec.is_some_and(|o| o.at == spec.at);
        if !at_unchanged && bound.at.is_some_and(|at| at <= gantry_registry::unix_now()) {
            return Err(MirrorError::RuleInvalid(format!(
                "at {:?} is in the past: it would never fire",
                spec.at.unwrap_or_default()
            )));
        }
        let row = StoredRule {
            name: spec.name.clone(),
            project: spec.project.clone(),
            sealed_password: spec
                .password
                .as_deref()
                .map(|password| self.sealer.seal(&spec.name, password)),
            definition: serde_json::to_string(&spec).expect("rules serialize"),
            created_by: by.to_string(),
            updated_at: gantry_registry::unix_now(),
        };
        match meta.put_replication_rule(&row, replace).await {
            Ok(true) => {}
            Ok(false) => return Err(MirrorError::RuleUnknown(spec.name)),
            Err(gantry_meta::MetaError::Conflict(_)) => {
                return Err(MirrorError::RuleExists(spec.name))
            }
            Err(e) => return Err(RegistryError::from(e).into()),
        }
        self.rule(&row.name).await
    }

    /// Deletes the API rule `name` (its history stays in the jobs). Errors: `RuleUnknown`,
    /// `RuleConfigured`.
    pub async fn delete(&self, name: &str) -> Result<(), MirrorError> {
        if self.configured.iter().any(|b| b.spec.name == name) {
            return Err(MirrorError::RuleConfigured(name.to_string()));
        }
        let deleted = self
            .registry
            .meta()
            .delete_replication_rule(name)
            .await
            .map_err(RegistryError::from)?;
        if !deleted {
            return Err(MirrorError::RuleUnknown(name.to_string()));
        }
        self.current(true).await?;
        Ok(())
    }

    /// Starts a run of `rule` by hand: a `replication-run` job that enqueues an item for every
    /// tag the rule selects; returns the run's id. Errors: `RuleUnknown`.
    pub async fn start_run(&self, rule: &str) -> Result<i64, MirrorError> {
        self.bound(rule).await?;
        let id = self
            .registry
            .meta()
            .enqueue_job(&run_job(rule, "manual", None))
            .await
            .map_err(RegistryError::from)?
            .expect("a job without a unique key is enqueued");
        self.wake();
        Ok(id)
    }

    /// Enqueues an item for every tag that `rule` selects, as run `run`; returns how many.
    /// Errors: `RuleUnknown`.
    async fn run(&self, rule: &str, run: i64) -> Result<usize, MirrorError> {
        let bound = self.bound(rule).await?;
        let mut items = match bound.spec.kind {
            RuleKind::Preheat => self.preheat_selection(&bound).await?,
            RuleKind::Push => self.push_selection(&bound).await?,
            RuleKind::Pull => self.pull_selection(&bound).await?,
        };
        let meta = self.registry.meta();
        for item in &mut items {
            item.run = Some(run);
            meta.enqueue_job(&job(item))
                .await
                .map_err(RegistryError::from)?;
        }
        if !items.is_empty() {
            self.wake();
        }
        Ok(items.len())
    }

    /// What a preheat rule selects: the project's tags its selectors and labels take, or the
    /// most pulled of them.
    async fn preheat_selection(&self, bound: &Bound) -> Result<Vec<Item>, MirrorError> {
        let project = bound
            .spec
            .project
            .as_deref()
            .expect("preheat rules have one");
        let rows = self
            .registry
            .meta()
            .artifacts(project)
            .await
            .map_err(RegistryError::from)?;
        let tagged = rows.iter().flat_map(|row| {
            row.tags.iter().map(move |tag| TaggedPull {
                repository: &row.repository,
                tag: &tag.name,
                digest: &row.digest,
                pulls: tag.pull_count,
                last_pulled_at: tag.last_pulled_at,
            })
        });
        let mut items = Vec::new();
        for t in select_for_preheat(bound, tagged, gantry_registry::unix_now()) {
            let digest: Digest = t.digest.parse().map_err(RegistryError::from)?;
            let name = gantry_registry::parse_name(t.repository)?;
            if !self.has_labels(bound, &name, &digest).await? {
                continue;
            }
            items.push(Item {
                rule: bound.spec.name.clone(),
                repository: t.repository.to_string(),
                digest: t.digest.to_string(),
                tag: Some(t.tag.to_string()),
                delete: false,
                run: None,
            });
        }
        Ok(items)
    }

    /// What a push rule selects: every tag here its selectors take.
    async fn push_selection(&self, bound: &Bound) -> Result<Vec<Item>, MirrorError> {
        let mut items = Vec::new();
        let mut last: Option<String> = None;
        loop {
            let page = self.registry.catalog(None, last.as_deref()).await?;
            for repository in &page.items {
                if !bound.takes_repository(repository) {
                    continue;
                }
                let name = gantry_registry::parse_name(repository)?;
                let tags = match self.registry.tags(&name, None, None).await {
                    Ok(tags) => tags.items,
                    Err(RegistryError::NameUnknown(_)) => continue,
                    Err(e) => return Err(e.into()),
                };
                for tag in tags {
                    // What refers to an image comes with it.
                    if gantry_signing::cosign::tag_subject(&tag).is_some()
                        || !bound.spec.tags.matches(&tag)
                    {
                        continue;
                    }
                    let reference = Reference::Tag(Tag::parse(&tag).map_err(RegistryError::Tag)?);
                    let Ok(stored) = self.registry.get_manifest(&name, &reference).await else {
                        continue;
                    };
                    items.push(Item {
                        rule: bound.spec.name.clone(),
                        repository: repository.clone(),
                        digest: stored.digest.to_string(),
                        tag: Some(tag),
                        delete: false,
                        run: None,
                    });
                }
            }
            if !page.more {
                break;
            }
            last = page.items.last().cloned();
        }
        Ok(items)
    }

    /// What a pull rule selects at its registry: each selected tag of each selected
    /// repository (literal includes as given, otherwise from the remote catalog) whose digest
    /// differs from what the tag holds here.
    async fn pull_selection(&self, bound: &Bound) -> Result<Vec<Item>, MirrorError> {
        let fail = |e: ClientError| target_failure(&bound.spec.name, e);
        let includes = &bound.spec.repositories.include;
        let literal: Option<Vec<String>> = includes
            .iter()
            .map(|glob| {
                let text = String::from(glob.clone());
                (!text.contains(['*', '?', '['])).then_some(text)
            })
            .collect();
        let repositories: Vec<String> = if let Some(names) = literal.filter(|n| !n.is_empty()) {
            names
        } else {
            bound.client.catalog().await.map_err(fail)?
        };
        let project = bound.spec.project.as_deref().expect("pull rules have one");
        let mut items = Vec::new();
        for remote in repositories {
            if !bound.spec.repositories.matches(&remote) {
                continue;
            }
            let local = gantry_registry::parse_name(&local_name(project, &remote))?;
            for tag in bound.client.tags(&remote).await.map_err(fail)? {
                if gantry_signing::cosign::tag_subject(&tag).is_some()
                    || !bound.spec.tags.matches(&tag)
                {
                    continue;
                }
                let Some(found) = bound
                    .client
                    .find_manifest(&remote, &tag)
                    .await
                    .map_err(fail)?
                else {
                    continue;
                };
                let reference = Reference::Tag(Tag::parse(&tag).map_err(RegistryError::Tag)?);
                let here = self.registry.get_manifest(&local, &reference).await;
                if here.is_ok_and(|stored| stored.digest == found.digest) {
                    continue;
                }
                items.push(Item {
                    rule: bound.spec.name.clone(),
                    repository: remote.clone(),
                    digest: found.digest.to_string(),
                    tag: Some(tag),
                    delete: false,
                    run: None,
                });
            }
        }
        Ok(items)
    }

    /// Whether the image `digest` of `name` (an index: any of its images) has every label
    /// `bound` asks for.
    async fn has_labels(
        &self,
        bound: &Bound,
        name: &RepositoryName,
        digest: &Digest,
    ) -> Result<bool, MirrorError> {
        if bound.labels.is_empty() {
            return Ok(true);
        }
        let stored = self
            .registry
            .get_manifest(name, &Reference::Digest(digest.clone()))
            .await?;
        let parsed = manifest::parse(&stored.content, Some(&stored.media_type))
            .map_err(RegistryError::ManifestInvalid)?;
        for child in &parsed.manifests {
            if Box::pin(self.has_labels(bound, name, &child.digest)).await? {
                return Ok(true);
            }
        }
        let Some(config) = &parsed.config else {
            return Ok(false);
        };
        let size = self.registry.stat_blob(name, &config.digest).await?;
        if size > CONFIG_LIMIT {
            return Ok(false);
        }
        let bytes = self.registry.blob_bytes(&config.digest, size).await?;
        let config: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let empty = serde_json::Map::new();
        let labels = config["config"]["Labels"].as_object().unwrap_or(&empty);
        Ok(bound.labels.iter().all(|label| label.matches(labels)))
    }

    /// The last `limit` items of `rule` (of run `run` only, when given), newest first.
    /// Errors: `RuleUnknown`.
    pub async fn items(
        &self,
        rule: &str,
        run: Option<i64>,
        limit: u32,
    ) -> Result<Vec<ItemStatus>, MirrorError> {
        self.rule(rule).await?;
        if let Some(run) = run {
            let job = self
                .registry
                .meta()
                .job(run)
                .await
                .map_err(RegistryError::from)?;
            if !job.is_some_and(|job| job.kind == RUN_JOB && job.subject == Some(subject(rule))) {
                return Err(MirrorError::RunUnknown {
                    rule: rule.to_string(),
                    run,
                });
            }
        }
        let (subject, subject_prefix) = match run {
            Some(run) => (Some(items_subject(rule, Some(run))), None),
            None => (None, Some(format!("{}:", subject(rule)))),
        };
        let jobs = self
            .registry
            .meta()
            .jobs(&gantry_meta::JobFilter {
                kind: Some(REPLICATION_JOB.to_string()),
                subject,
                subject_prefix,
                limit,
                ..gantry_meta::JobFilter::default()
            })
            .await
            .map_err(RegistryError::from)?;
        Ok(jobs
            .iter()
            .filter_map(|job| {
                let item: Item = serde_json::from_str(&job.payload).ok()?;
                Some(ItemStatus {
                    id: job.id,
                    run: item.run,
                    repository: item.repository,
                    digest: item.digest,
                    tag: item.tag,
                    delete: item.delete,
                    state: job.state.as_str(),
                    attempts: job.attempts,
                    last_error: job.last_error.clone(),
                    result: job
                        .result
                        .as_deref()
                        .and_then(|r| serde_json::from_str(r).ok()),
                    created_ms: job.created_ms,
                    finished_ms: job.finished_ms,
                })
            })
            .collect())
    }

    /// The last `limit` runs of `rule`, newest first, with their items counted by state.
    /// Errors: `RuleUnknown`.
    pub async fn runs(&self, rule: &str, limit: u32) -> Result<Vec<RunStatus>, MirrorError> {
        self.rule(rule).await?;
        let meta = self.registry.meta();
        let jobs = meta
            .jobs(&gantry_meta::JobFilter {
                kind: Some(RUN_JOB.to_string()),
                subject: Some(subject(rule)),
                limit,
                ..gantry_meta::JobFilter::default()
            })
            .await
            .map_err(RegistryError::from)?;
        let mut runs = Vec::with_capacity(jobs.len());
        for job in jobs {
            let trigger = serde_json::from_str::<Run>(&job.payload)
                .map(|run| run.trigger)
                .unwrap_or_else(|_| manual());
            let tally = meta
                .job_state_counts(REPLICATION_JOB, &items_subject(rule, Some(job.id)))
                .await
                .map_err(RegistryError::from)?;
            let count = |state: JobState| {
                tally
                    .iter()
                    .find(|t| t.state == state)
                    .map_or(0, |t| t.count)
            };
            let outstanding = count(JobState::Queued) + count(JobState::Running);
            let state = match job.state {
                JobState::Queued | JobState::Running => "listing",
                JobState::Failed => "failed",
                JobState::Succeeded if outstanding > 0 => "running",
                JobState::Succeeded if count(JobState::Failed) > 0 => "failed",
                JobState::Succeeded => "succeeded",
            };
            let finished_ms = match state {
                "listing" | "running" => None,
                _ => tally
                    .iter()
                    .filter_map(|t| t.last_finished_ms)
                    .chain(job.finished_ms)
                    .max(),
            };
            runs.push(RunStatus {
                id: job.id,
                trigger,
                state,
                items: job
                    .result
                    .as_deref()
                    .and_then(|r| serde_json::from_str::<Value>(r).ok())
                    .and_then(|r| r["items"].as_u64()),
                queued: count(JobState::Queued),
                running: count(JobState::Running),
                succeeded: count(JobState::Succeeded),
                failed: count(JobState::Failed),
                last_error: job.last_error.clone(),
                created_ms: job.created_ms,
                finished_ms,
            });
        }
        Ok(runs)
    }

    /// Enqueues a `replication-run` job for each rule whose schedule fires, or whose `at`
    /// falls, in `(after, until]` (Unix seconds), under a unique key, so the first server to
    /// look is the only one; returns how many were added.
    pub async fn enqueue_scheduled_runs(
        &self,
        after: i64,
        until: i64,
    ) -> Result<usize, MirrorError> {
        let rules = self.current(false).await?;
        let mut added = 0;
        for b in &rules.bound {
            let scheduled = b
                .spec
                .schedule
                .as_ref()
                .and_then(|s| s.firing_between(after, until))
                .map(|at| ("schedule", at));
            let once =
                b.at.filter(|at| (after + 1..=until).contains(at))
                    .map(|at| ("at", at));
            for (trigger, fired_at) in scheduled.into_iter().chain(once) {
                let added_now = self
                    .registry
                    .meta()
                    .enqueue_job(&run_job(&b.spec.name, trigger, Some(fired_at)))
                    .await
                    .map_err(RegistryError::from)?;
                added += usize::from(added_now.is_some());
            }
        }
        if added > 0 {
            self.wake();
        }
        Ok(added)
    }

    /// Copies (or deletes, or warms, or pulls) one item; what was done, for the job's result.
    async fn replicate(&self, item: &Item) -> Result<Value, MirrorError> {
        let bound = match self.bound(&item.rule).await {
            Ok(bound) => bound,
            Err(MirrorError::RuleUnknown(_)) => {
                return Ok(json!({"skipped": "the rule is no longer configured"}))
            }
            Err(e) => return Err(e),
        };
        let digest: Digest = item.digest.parse().map_err(RegistryError::from)?;
        match bound.spec.kind {
            RuleKind::Preheat => {
                let name = gantry_registry::parse_name(&item.repository)?;
                return self.warm(&bound, &name, item).await;
            }
            RuleKind::Pull => return self.pull(&bound, item, &digest).await,
            RuleKind::Push => {}
        }
        let name = gantry_registry::parse_name(&item.repository)?;
        let target = &bound.spec.name;
        if item.delete {
            return match bound.client.delete_manifest(name.as_str(), &digest).await {
                Ok(_) => Ok(json!({"deleted": item.digest})),
                Err(e) => Err(target_failure(target, e)),
            };
        }
        let stored = match self
            .registry
            .get_manifest(&name, &Reference::Digest(digest.clone()))
            .await
        {
            Ok(stored) => stored,
            // Deleted since it was pushed: nothing to copy.
            Err(RegistryError::ManifestUnknown(_)) => {
                return Ok(json!({"skipped": "deleted here since"}))
            }
            Err(e) => return Err(e.into()),
        };
        let parsed = manifest::parse(&stored.content, Some(&stored.media_type))
            .map_err(RegistryError::ManifestInvalid)?;
        // What this manifest refers to: the subject of a referrer, the image a cosign tag
        // names. An untagged push replicates only as such a referrer (a signature or SBOM
        // pushed after its image); index children come with their index.
        let refers_to: Option<Digest> = match (&parsed.subject, &item.tag) {
            (Some(subject), _) => Some(subject.digest.clone()),
            (None, Some(tag)) => {
                gantry_signing::cosign::tag_subject(tag).and_then(|d| d.parse().ok())
            }
            (None, None) => return Ok(json!({"skipped": "untagged"})),
        };
        let image = refers_to.clone().unwrap_or_else(|| digest.clone());
        if !self.has_labels(&bound, &name, &image).await? {
            return Ok(json!({"skipped": "the labels do not match"}));
        }
        let copy = Copy {
            registry: &self.registry,
            client: &bound.client,
            target,
            name: &name,
            pacer: bound.pacer.clone(),
        };
        let mut copied = 0u64;
        if bound.spec.signed_only {
            if !self.registry.signed_by_trusted_key(&name, &image).await? {
                return Ok(json!({"skipped": "not signed by a key its project trusts"}));
            }
            if let Some(image) = refers_to {
                // A signature that arrived after its image: the image goes now, under its
                // tags the rule selects, with everything that refers to it.
                let tags = self
                    .registry
                    .meta()
                    .tags_of(name.as_str(), &image)
                    .await
                    .map_err(RegistryError::from)?;
                for tag in tags.iter().filter(|t| {
                    gantry_signing::cosign::tag_subject(t).is_none() && bound.spec.tags.matches(t)
                }) {
                    copy.manifest(&image, Some(tag), &mut copied).await?;
                }
                copy.referrers(&image, &mut copied).await?;
                return Ok(
                    json!({"copied_bytes": copied, "digest": image.to_string(), "signed_after_push": true}),
                );
            }
        }
        copy.manifest(&digest, item.tag.as_deref(), &mut copied)
            .await?;
        copy.referrers(&digest, &mut copied).await?;
        Ok(json!({"copied_bytes": copied, "digest": item.digest, "tag": item.tag}))
    }

    /// Pulls one item of a pull rule from its registry into the rule's project: the manifest
    /// with everything it references, what refers to it there, then the tag.
    async fn pull(
        &self,
        bound: &Bound,
        item: &Item,
        digest: &Digest,
    ) -> Result<Value, MirrorError> {
        let project = bound.spec.project.as_deref().expect("pull rules have one");
        let name = gantry_registry::parse_name(&local_name(project, &item.repository))?;
        let origin = PullOrigin {
            registry: &self.registry,
            bound,
        };
        let actor = format!("replication:{}", bound.spec.name);
        let import = Import {
            registry: &self.registry,
            origin: &origin,
            remote: &item.repository,
            name: &name,
            actor: &actor,
        };
        let stored = import.manifest(digest).await?;
        import.referrers(digest).await?;
        if let Some(tag) = &item.tag {
            import.tag(tag, &stored).await?;
        }
        Ok(json!({"pulled": item.digest, "repository": name.to_string(), "tag": item.tag}))
    }
}

/// A pull rule's registry as the origin of an import: blobs streamed straight into the
/// registry's upload path (digest verified there), paced by the rule's bandwidth.
struct PullOrigin<'a> {
    registry: &'a Registry,
    bound: &'a Bound,
}

#[async_trait::async_trait]
impl Origin for PullOrigin<'_> {
    fn client(&self) -> &RegistryClient {
        &self.bound.client
    }

    fn failed(&self, _what: String, _blob: bool, e: ClientError) -> MirrorError {
        target_failure(&self.bound.spec.name, e)
    }

    async fn store_blob(
        &self,
        remote: &str,
        name: &RepositoryName,
        digest: &Digest,
    ) -> Result<(), MirrorError> {
        let stream = self
            .bound
            .client
            .get_blob(remote, digest)
            .await
            .map_err(|e| target_failure(&self.bound.spec.name, e))?;
        let pacer = self.bound.pacer.clone();
        let body: gantry_storage::ByteStream =
            Box::pin(futures::StreamExt::then(stream, move |chunk| {
                let pacer = pacer.clone();
                async move {
                    let chunk = chunk.map_err(std::io::Error::other)?;
                    if let Some(pacer) = pacer {
                        pacer.take(chunk.len()).await;
                    }
                    Ok(chunk)
                }
            }));
        self.registry.upload_monolithic(name, digest, body).await?;
        Ok(())
    }
}

/// Where a pull rule of `project` stores the remote repository `remote`: as it is when it
/// already starts with `project/`, else under `project/`.
fn local_name(project: &str, remote: &str) -> String {
    match remote.strip_prefix(project) {
        Some(rest) if rest.starts_with('/') => remote.to_string(),
        _ => format!("{project}/{remote}"),
    }
}

impl Replicator {
    /// Pulls `item` through the edge of a preheat rule (its manifest, an index's images and
    /// every blob, read to the end), then waits until the edge lists it as cached (a Gantry
    /// edge; another answers its API paths with something else, and is done).
    async fn warm(
        &self,
        bound: &Bound,
        name: &RepositoryName,
        item: &Item,
    ) -> Result<Value, MirrorError> {
        let edge_name = match &bound.spec.edge_project {
            Some(project) => format!("{project}/{name}"),
            None => name.to_string(),
        };
        let fail = |e: ClientError| target_failure(&bound.spec.name, e);
        let reference = item.tag.clone().unwrap_or_else(|| item.digest.clone());
        let mut pending = vec![reference.clone()];
        let mut bytes = 0u64;
        while let Some(reference) = pending.pop() {
            let mut fetched = bound
                .client
                .get_manifest(&edge_name, &reference)
                .await
                .map_err(fail)?;
            let parsed = fetched
                .parse(None)
                .map_err(RegistryError::ManifestInvalid)?;
            pending.extend(parsed.manifests.iter().map(|m| m.digest.to_string()));
            for blob in parsed.blob_digests() {
                let mut stream = bound
                    .client
                    .get_blob(&edge_name, blob)
                    .await
                    .map_err(fail)?;
                while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
                    bytes += chunk.map_err(fail)?.len() as u64;
                }
            }
        }
        let cached = bound
            .client
            .until_listed(&edge_name, &reference, std::time::Duration::from_secs(60))
            .await
            .map_err(fail)?;
        Ok(
            json!({"warmed_bytes": bytes, "edge_repository": edge_name, "tag": item.tag, "cached": cached}),
        )
    }
}

/// A tag of a project with its pulls, as a preheat rule selects among them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TaggedPull<'a> {
    repository: &'a str,
    tag: &'a str,
    digest: &'a str,
    pulls: i64,
    last_pulled_at: Option<i64>,
}

/// The tags a preheat rule takes at `now` (Unix seconds): those its selectors take (never
/// cosign's referrer tags), and with `most_pulled` only the `count` most pulled of those
/// pulled within the last `days` days (ties: repository, then tag).
fn select_for_preheat<'a>(
    bound: &Bound,
    tags: impl Iterator<Item = TaggedPull<'a>>,
    now: i64,
) -> Vec<TaggedPull<'a>> {
    let mut taken: Vec<TaggedPull> = tags
        .filter(|t| bound.takes_repository(t.repository) && bound.spec.tags.matches(t.tag))
        .filter(|t| gantry_signing::cosign::tag_subject(t.tag).is_none())
        .collect();
    if let Some(most) = bound.spec.most_pulled {
        let since = now - i64::from(most.days) * 86_400;
        taken.retain(|t| t.pulls > 0 && t.last_pulled_at.is_some_and(|at| at >= since));
        taken.sort_by(|a, b| {
            b.pulls
                .cmp(&a.pulls)
                .then_with(|| a.repository.cmp(b.repository))
                .then_with(|| a.tag.cmp(b.tag))
        });
        taken.truncate(most.count);
    }
    taken
}

/// The item `event` is for push rule `bound`, if the rule wants it.
fn item(bound: &Bound, event: &Event) -> Option<Item> {
    let repository = event.repository.as_deref()?;
    if !bound.takes_repository(repository) {
        return None;
    }
    let digest = event.data["digest"].as_str()?.to_string();
    let tag = event.data["tag"].as_str().map(str::to_string);
    let delete = match event.event_type.as_str() {
        "artifact.pushed" => false,
        "artifact.deleted" if bound.spec.deletions => true,
        _ => return None,
    };
    if let (false, Some(tag)) = (delete, &tag) {
        let referrer_tag = gantry_signing::cosign::tag_subject(tag).is_some();
        if !referrer_tag && !bound.spec.tags.matches(tag) {
            return None;
        }
    }
    Some(Item {
        rule: bound.spec.name.clone(),
        repository: repository.to_string(),
        digest,
        tag,
        delete,
        run: None,
    })
}

/// The subject of a rule's run jobs; its items' subjects start with it and `:`.
fn subject(rule: &str) -> String {
    format!("replication:{rule}")
}

/// The subject of the items of run `run` of `rule`, or of its push events' items.
fn items_subject(rule: &str, run: Option<i64>) -> String {
    match run {
        Some(run) => format!("{}:run:{run}", subject(rule)),
        None => format!("{}:events", subject(rule)),
    }
}

/// A run of `rule` started by `trigger`; one fired at `fired_at` (Unix seconds) is enqueued
/// once across servers.
fn run_job(rule: &str, trigger: &str, fired_at: Option<i64>) -> NewJob {
    NewJob {
        unique_key: fired_at.map(|at| format!("{RUN_JOB}:{rule}:{trigger}:{at}")),
        subject: Some(subject(rule)),
        ..NewJob::of(
            RUN_JOB,
            serde_json::to_string(&Run {
                rule: rule.to_string(),
                trigger: trigger.to_string(),
            })
            .expect("runs serialize"),
        )
    }
}

fn job(item: &Item) -> NewJob {
    NewJob {
        queue: Some(format!("replication:{}:{}", item.rule, item.repository)),
        subject: Some(items_subject(&item.rule, item.run)),
        max_attempts: ATTEMPTS,
        ..NewJob::of(
            REPLICATION_JOB,
            serde_json::to_string(item).expect("items serialize"),
        )
    }
}

fn target_failure(target: &str, e: ClientError) -> MirrorError {
    let refused = matches!(&e, ClientError::Status { status, .. } if status.as_u16() == 401 || status.as_u16() == 403);
    MirrorError::Target {
        rule: target.to_string(),
        reason: e.to_string(),
        refused,
    }
}

/// A job's error for `e`: credentials refused are not tried again (each try would count as a
/// failed login there, and lock the account); anything else is.
fn job_error(e: MirrorError) -> JobError {
    match e {
        MirrorError::Target { refused: true, .. } => JobError::permanent(format!(
            "{e}; not retried: fix the rule's username and password (gantry replication \
             update), then run it"
        )),
        e => JobError::transient(e.to_string()),
    }
}

/// One copy of an artifact from this registry to a target.
struct Copy<'a> {
    registry: &'a Registry,
    client: &'a RegistryClient,
    target: &'a str,
    name: &'a RepositoryName,
    pacer: Option<Arc<Pacer>>,
}

impl Copy<'_> {
    /// Copies manifest `digest` (its blobs and index children first), under `tag` when
    /// given; adds the blob bytes sent to `copied`.
    async fn manifest(
        &self,
        digest: &Digest,
        tag: Option<&str>,
        copied: &mut u64,
    ) -> Result<(), MirrorError> {
        let stored = self
            .registry
            .get_manifest(self.name, &Reference::Digest(digest.clone()))
            .await?;
        let parsed = manifest::parse(&stored.content, Some(&stored.media_type))
            .map_err(RegistryError::ManifestInvalid)?;
        for child in &parsed.manifests {
            Box::pin(self.manifest(&child.digest, None, copied)).await?;
        }
        for blob in parsed.blob_digests() {
            self.blob(blob, copied).await?;
        }
        let reference = tag.map_or_else(|| digest.to_string(), str::to_string);
        self.client
            .put_manifest(
                self.name.as_str(),
                &reference,
                &stored.media_type,
                stored.content.into(),
            )
            .await
            .map_err(|e| target_failure(self.target, e))?;
        Ok(())
    }

    /// Sends a blob the target does not hold yet.
    async fn blob(&self, digest: &Digest, copied: &mut u64) -> Result<(), MirrorError> {
        let repository = self.name.as_str();
        let held = self
            .client
            .blob_size(repository, digest)
            .await
            .map_err(|e| target_failure(self.target, e))?;
        if held.is_some() {
            return Ok(());
        }
        let size = self.registry.stat_blob(self.name, digest).await?;
        let bytes = self.registry.read_blob(digest, 0..size).await?;
        let pacer = self.pacer.clone();
        let body: gantry_client::BlobStream =
            Box::pin(futures::StreamExt::then(bytes, move |chunk| {
                let pacer = pacer.clone();
                async move {
                    let chunk = chunk.map_err(|e| {
                        ClientError::Protocol(format!("reading the blob here failed: {e}"))
                    })?;
                    if let Some(pacer) = pacer {
                        pacer.take(chunk.len()).await;
                    }
                    Ok(chunk)
                }
            }));
        self.client
            .push_blob(repository, digest, size, body)
            .await
            .map_err(|e| target_failure(self.target, e))?;
        *copied += size;
        Ok(())
    }

    /// Copies what refers to `digest` here: its referrers, and cosign's `.sig`, `.att` and
    /// `.sbom` manifests under their tags.
    async fn referrers(&self, digest: &Digest, copied: &mut u64) -> Result<(), MirrorError> {
        let listed = self
            .registry
            .meta()
            .referrers(self.name.as_str(), digest, None)
            .await
            .map_err(RegistryError::from)?;
        for referrer in listed {
            Box::pin(self.manifest(&referrer.digest, None, copied)).await?;
        }
        let stem = gantry_signing::sources::fallback_tag(digest);
        for suffix in [".sig", ".att", ".sbom"] {
            let tag = format!("{stem}{suffix}");
            let reference = Reference::Tag(Tag::parse(&tag).map_err(RegistryError::Tag)?);
            match self.registry.get_manifest(self.name, &reference).await {
                Ok(stored) => Box::pin(self.manifest(&stored.digest, Some(&tag), copied)).await?,
                Err(RegistryError::ManifestUnknown(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

struct RunHandler(Arc<Replicator>);

#[async_trait::async_trait]
impl JobHandler for RunHandler {
    fn kind(&self) -> &'static str {
        RUN_JOB
    }

    async fn run(&self, job: &JobRecord, progress: &Progress) -> Result<Value, JobError> {
        let run: Run = serde_json::from_str(&job.payload)
            .map_err(|e| JobError::permanent(format!("malformed payload: {e}")))?;
        progress
            .report(&format!("listing what {} selects", run.rule))
            .await;
        match self.0.run(&run.rule, job.id).await {
            Ok(items) => Ok(json!({"rule": run.rule, "items": items})),
            Err(MirrorError::RuleUnknown(rule)) => Err(JobError::permanent(format!(
                "replication rule {rule} is no longer configured"
            ))),
            Err(e) => Err(job_error(e)),
        }
    }
}

struct ReplicationHandler(Arc<Replicator>);

#[async_trait::async_trait]
impl JobHandler for ReplicationHandler {
    fn kind(&self) -> &'static str {
        REPLICATION_JOB
    }

    async fn run(&self, job: &JobRecord, progress: &Progress) -> Result<Value, JobError> {
        let item: Item = serde_json::from_str(&job.payload)
            .map_err(|e| JobError::permanent(format!("malformed payload: {e}")))?;
        progress
            .report(&format!(
                "{} {}@{} to {}",
                if item.delete { "deleting" } else { "copying" },
                item.repository,
                item.digest,
                item.rule
            ))
            .await;
        self.0.replicate(&item).await.map_err(job_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn globs(patterns: &[&str]) -> Selector {
        Selector {
            include: patterns
                .iter()
                .map(|p| gantry_lifecycle::retention::Glob::parse(p).unwrap())
                .collect(),
            exclude: Vec::new(),
        }
    }

    fn spec(repositories: &[&str], tags: &[&str]) -> RuleSpec {
        RuleSpec {
            name: "edge".into(),
            url: "http://edge:5000".into(),
            repositories: globs(repositories),
            tags: globs(tags),
            ..RuleSpec::default()
        }
    }

    fn rule(repositories: &[&str], tags: &[&str], deletions: bool) -> Bound {
        bind(
            RuleSpec {
                deletions,
                ..spec(repositories, tags)
            },
            &Transport::default(),
        )
        .unwrap()
    }

    fn event(event_type: &str, repository: &str, tag: Option<&str>) -> Event {
        Event {
            id: 1,
            event_type: event_type.into(),
            project: Some("team".into()),
            repository: Some(repository.into()),
            at_ms: 0,
            data: json!({"repository": repository, "digest": "sha256:aa", "tag": tag}),
        }
    }

    #[test]
    fn a_rule_takes_the_pushes_its_selectors_match_and_deletions_when_asked() {
        let r = rule(&["team/*"], &["v*"], false);
        assert!(item(&r, &event("artifact.pushed", "team/app", Some("v1"))).is_some());
        assert!(item(&r, &event("artifact.pushed", "team/app", Some("dev-1"))).is_none());
        assert!(item(&r, &event("artifact.pushed", "other/app", Some("v1"))).is_none());
        // What refers to an image follows it whatever the tag filter says.
        let sig = format!("sha256-{}.sig", "a".repeat(64));
        assert!(item(&r, &event("artifact.pushed", "team/app", Some(&sig))).is_some());
        // Untagged pushes are looked at when copied (a referrer is copied, a child is not).
        assert!(item(&r, &event("artifact.pushed", "team/app", None)).is_some());
        assert!(item(&r, &event("artifact.deleted", "team/app", None)).is_none());
        assert!(item(&r, &event("artifact.pulled", "team/app", Some("v1"))).is_none());
        let with_deletions = rule(&[], &[], true);
        let deleted = item(&with_deletions, &event("artifact.deleted", "x/y", None)).unwrap();
        assert!(deleted.delete);
    }

    #[tokio::test(start_paused = true)]
    async fn a_rules_uploads_keep_to_its_bandwidth() {
        let pacer = Pacer {
            bytes_per_second: 2 << 20,
            next: parking_lot::Mutex::new(None),
        };
        let started = tokio::time::Instant::now();
        for _ in 0..10 {
            pacer.take(1 << 20).await;
        }
        // Ten MiB at 2 MiB/s: the last chunk may start once 9 MiB had their time.
        let took = started.elapsed().as_secs_f64();
        assert!((4.5..4.6).contains(&took), "{took}");
    }

    #[test]
    fn preheat_takes_the_most_pulled_tags_of_the_window() {
        let preheat = |most_pulled| {
            bind(
                RuleSpec {
                    kind: RuleKind::Preheat,
                    project: Some("team".into()),
                    most_pulled,
                    ..spec(&[], &[])
                },
                &Transport::default(),
            )
            .unwrap()
        };
        let day = 86_400;
        let now = 100 * day;
        let sig = format!("sha256-{}.sig", "a".repeat(64));
        let tags = [
            ("team/app", "v1", 50, Some(now - 30 * day)), // pulled often, but long ago
            ("team/app", "v2", 3, Some(now - day)),
            ("team/app", "v3", 7, Some(now - 2 * day)),
            ("team/web", "v1", 3, Some(now - day)),
            ("team/app", sig.as_str(), 9, Some(now)),
            ("other/app", "v1", 99, Some(now)),
            ("team/app", "never", 0, None),
        ];
        let pulls = || {
            tags.iter().map(|(repository, tag, pulls, at)| TaggedPull {
                repository,
                tag,
                digest: "sha256:aa",
                pulls: *pulls,
                last_pulled_at: *at,
            })
        };
        let names = |taken: Vec<TaggedPull>| -> Vec<String> {
            taken
                .iter()
                .map(|t| format!("{}:{}", t.repository, t.tag))
                .collect()
        };
        let most = Some(MostPulled { count: 2, days: 7 });
        assert_eq!(
            names(select_for_preheat(&preheat(most), pulls(), now)),
            ["team/app:v3", "team/app:v2"]
        );
        let all = names(select_for_preheat(&preheat(None), pulls(), now));
        assert_eq!(
            all,
            [
                "team/app:v1",
                "team/app:v2",
                "team/app:v3",
                "team/web:v1",
                "team/app:never"
            ]
        );
    }
}
