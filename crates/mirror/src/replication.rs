//! Push replication to other registries, and preheating edge caches (Gantry, CNCF Distribution, Harbor, any OCI
//! registry), as `[[replication]]` rules configure it: what is pushed here and matches a
//! rule's repository and tag selectors is copied to the rule's registry under the same name,
//! with everything it references (an index's images, every blob) and what refers to it
//! (referrers, cosign's `.sig`/`.att`/`.sbom` tags); with `deletions`, a manifest deleted here
//! is deleted there.
//!
//! A preheat rule (`[[preheat]]`) instead warms an edge registry that caches this one (a
//! Gantry pull-through cache, Distribution in proxy mode): by its schedule or by hand it pulls
//! what it selects — by selectors, or the N tags of a project most pulled within the last D
//! days — through the edge, which fetches it from here and keeps it; pulls at the edge then
//! need nothing from here. It takes no events.
//!
//! Events come from the outbox: [`Replicator::fan_out`] turns each new `artifact.pushed` and
//! `artifact.deleted` event into one `replication` job per rule that wants it, in the
//! transaction that moves the outbox cursor, so a push is replicated once however many
//! servers look. A rule's jobs of one repository share a queue: they run in event order. A
//! target that fails is retried with the runner's backoff (about four hours of it being down)
//! and its later jobs wait; the jobs are the per-item history (`gantry jobs list --kind
//! replication`).

use std::sync::Arc;

use gantry_client::{ClientError, Credentials, RegistryClient, Transport};
use gantry_jobs::{JobError, JobHandler, Progress, Waker};
use gantry_lifecycle::retention::Selector;
use gantry_lifecycle::schedule::Schedule;
use gantry_meta::{Event, JobRecord, NewJob};
use gantry_oci::{manifest, Digest, Reference, RepositoryName, Tag};
use gantry_registry::{Registry, RegistryError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::MirrorError;

/// The job kind of replications: one item of a rule.
pub const REPLICATION_JOB: &str = "replication";
/// The job kind of a whole run of a rule (by hand or by its schedule): it enqueues an item
/// for every tag the rule selects.
pub const RUN_JOB: &str = "replication-run";
/// The outbox consumer name of the fan-out.
const CONSUMER: &str = "replication";
/// Attempts per item: with the runner's backoff (1 s doubling to 5 minutes) about four hours
/// of a target being down.
const ATTEMPTS: u32 = 60;
/// Events taken from the outbox per fan-out.
const FAN_OUT_BATCH: u32 = 500;

/// A push replication rule, as `[[replication]]` gives it.
#[derive(Debug, Clone)]
pub struct ReplicationRule {
    /// Names the rule in jobs and logs.
    pub name: String,
    /// `http(s)://host[:port]` of the target registry.
    pub url: String,
    pub credentials: Option<Credentials>,
    /// Which repositories (full names, globs) are replicated; empty include: all.
    pub repositories: Selector,
    /// Which tags are replicated; empty include: all. What refers to a replicated image
    /// (referrers, cosign's tags) follows it whatever its tag.
    pub tags: Selector,
    /// A manifest deleted here is deleted at the target.
    pub deletions: bool,
    /// Only images a key their project trusts signed (their signing policy's keys, enforced
    /// or not) are replicated; one signed after its push goes when its signature arrives.
    pub signed_only: bool,
    /// When the rule also runs whole (every tag it selects), as a cron pattern (UTC).
    pub schedule: Option<Schedule>,
    /// The most bytes a second its blob uploads send, over all its items on this server.
    pub bandwidth: Option<u64>,
    /// A preheat rule: it warms the edge at `url` instead of pushing to it.
    pub preheat: Option<Preheat>,
}

/// What makes a rule a preheat rule.
#[derive(Debug, Clone, Serialize)]
pub struct Preheat {
    /// The project whose tags it selects.
    pub project: String,
    /// The edge's name for this registry's repositories: its cache project (`origin` for
    /// `origin/team/app`), or none when the edge mirrors this registry without a prefix.
    pub edge_project: Option<String>,
    /// Only the most pulled tags.
    pub most_pulled: Option<MostPulled>,
}

/// "The `count` tags most pulled within the last `days` days" (by each tag's pull count,
/// among the tags pulled in that window).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MostPulled {
    pub count: usize,
    pub days: u32,
}

/// A rule as listed: its credentials are not shown.
#[derive(Debug, Clone, Serialize)]
pub struct RuleSummary {
    pub name: String,
    pub url: String,
    pub username: Option<String>,
    pub repositories: Selector,
    pub tags: Selector,
    pub deletions: bool,
    pub signed_only: bool,
    pub schedule: Option<String>,
    /// Bytes a second, when limited.
    pub bandwidth: Option<u64>,
    /// `push`, or `preheat` for a rule that warms an edge cache.
    pub kind: &'static str,
    /// A preheat rule's project, edge project and most-pulled selection.
    pub preheat: Option<Preheat>,
}

/// One item of a rule as its job records it: the per-item status and history.
#[derive(Debug, Clone, Serialize)]
pub struct ItemStatus {
    /// The job's id (`gantry jobs show ID`).
    pub id: i64,
    pub repository: String,
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
}

struct Bound {
    rule: ReplicationRule,
    client: RegistryClient,
    pacer: Option<Arc<Pacer>>,
}

/// Keeps a rule's blob uploads under its bandwidth: each chunk takes the next slot of the
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
}

/// The push replication service: the fan-out of events into jobs, and the jobs' handler.
pub struct Replicator {
    registry: Arc<Registry>,
    bound: Vec<Bound>,
    waker: std::sync::OnceLock<Waker>,
}

impl Replicator {
    /// The replicator of `rules`. Errors: `Config` for a rule without a name, with a name
    /// another has, or with a URL that is not http(s)://host[:port].
    pub fn new(
        registry: Arc<Registry>,
        rules: Vec<ReplicationRule>,
        transport: &Transport,
    ) -> Result<Replicator, MirrorError> {
        let mut bound: Vec<Bound> = Vec::new();
        for rule in rules {
            let invalid = |what: String| {
                MirrorError::Config(format!("[[replication]] {:?}: {what}", rule.name))
            };
            if rule.name.is_empty() {
                return Err(MirrorError::Config(
                    "a [[replication]] rule has no name".into(),
                ));
            }
            if bound.iter().any(|b| b.rule.name == rule.name) {
                return Err(invalid("two rules have this name".into()));
            }
            let parsed = url::Url::parse(&rule.url)
                .map_err(|e| invalid(format!("url {:?} is not a URL ({e})", rule.url)))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err(invalid(format!(
                    "url {:?} must be http(s)://host[:port]",
                    rule.url
                )));
            }
            let client = RegistryClient::new(&rule.url, transport, rule.credentials.clone())
                .map_err(|e| invalid(e.to_string()))?;
            let pacer = match rule.bandwidth {
                Some(0) => return Err(invalid("bandwidth must be more than 0".into())),
                Some(bytes_per_second) => Some(Arc::new(Pacer {
                    bytes_per_second,
                    next: parking_lot::Mutex::new(None),
                })),
                None => None,
            };
            bound.push(Bound {
                rule,
                client,
                pacer,
            });
        }
        Ok(Replicator {
            registry,
            bound,
            waker: std::sync::OnceLock::new(),
        })
    }

    /// Wakes the job runner when items are enqueued.
    pub fn set_job_waker(&self, waker: Waker) {
        let _ = self.waker.set(waker);
    }

    /// Takes the events recorded since the last fan-out (by any server) and enqueues an item
    /// for each rule that wants each, moving the outbox cursor in the same transaction;
    /// returns how many items were enqueued. With no rules, nothing is read.
    pub async fn fan_out(&self) -> Result<usize, MirrorError> {
        if self.bound.is_empty() {
            return Ok(0);
        }
        let meta = self.registry.meta();
        let (cursor, events) = meta
            .events_after_cursor(CONSUMER, FAN_OUT_BATCH)
            .await
            .map_err(RegistryError::from)?;
        let Some(last) = events.last().map(|e| e.id) else {
            return Ok(0);
        };
        let jobs: Vec<NewJob> = events
            .iter()
            .flat_map(|event| {
                self.bound
                    .iter()
                    .filter(|b| b.rule.preheat.is_none())
                    .filter_map(move |b| item(&b.rule, event))
            })
            .map(|item| job(&item))
            .collect();
        let moved = meta
            .consume_events(CONSUMER, cursor, last, &jobs, &[])
            .await
            .map_err(RegistryError::from)?;
        if moved && !jobs.is_empty() {
            if let Some(waker) = self.waker.get() {
                waker.wake();
            }
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

    /// The configured rules, without credentials.
    pub fn rules(&self) -> Vec<RuleSummary> {
        self.bound
            .iter()
            .map(|b| RuleSummary {
                name: b.rule.name.clone(),
                url: b.rule.url.clone(),
                username: b.rule.credentials.as_ref().map(|c| c.username.clone()),
                repositories: b.rule.repositories.clone(),
                tags: b.rule.tags.clone(),
                deletions: b.rule.deletions,
                signed_only: b.rule.signed_only,
                schedule: b.rule.schedule.as_ref().map(|s| s.as_str().to_string()),
                bandwidth: b.rule.bandwidth,
                kind: if b.rule.preheat.is_some() {
                    "preheat"
                } else {
                    "push"
                },
                preheat: b.rule.preheat.clone(),
            })
            .collect()
    }

    fn bound(&self, rule: &str) -> Result<&Bound, MirrorError> {
        self.bound
            .iter()
            .find(|b| b.rule.name == rule)
            .ok_or_else(|| MirrorError::RuleUnknown(rule.to_string()))
    }

    /// Enqueues an item for every tag here that `rule` selects (what a run by hand or by
    /// schedule replicates); returns how many. Errors: `RuleUnknown`.
    pub async fn run(&self, rule: &str) -> Result<usize, MirrorError> {
        let bound = self.bound(rule)?;
        let items = match &bound.rule.preheat {
            Some(preheat) => self.preheat_selection(&bound.rule, preheat).await?,
            None => self.push_selection(&bound.rule).await?,
        };
        let meta = self.registry.meta();
        for item in &items {
            meta.enqueue_job(&job(item))
                .await
                .map_err(RegistryError::from)?;
        }
        if !items.is_empty() {
            if let Some(waker) = self.waker.get() {
                waker.wake();
            }
        }
        Ok(items.len())
    }

    /// What a preheat rule selects: the project's tags its selectors take, or the most pulled
    /// of them.
    async fn preheat_selection(
        &self,
        rule: &ReplicationRule,
        preheat: &Preheat,
    ) -> Result<Vec<Item>, MirrorError> {
        let rows = self
            .registry
            .meta()
            .artifacts(&preheat.project)
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
        Ok(
            select_for_preheat(rule, preheat, tagged, gantry_registry::unix_now())
                .into_iter()
                .map(|t| Item {
                    rule: rule.name.clone(),
                    repository: t.repository.to_string(),
                    digest: t.digest.to_string(),
                    tag: Some(t.tag.to_string()),
                    delete: false,
                })
                .collect(),
        )
    }

    /// What a push rule selects: every tag here its selectors take.
    async fn push_selection(&self, rule: &ReplicationRule) -> Result<Vec<Item>, MirrorError> {
        let mut items = Vec::new();
        let mut last: Option<String> = None;
        loop {
            let page = self.registry.catalog(None, last.as_deref()).await?;
            for repository in &page.items {
                if !rule.repositories.matches(repository) {
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
                        || !rule.tags.matches(&tag)
                    {
                        continue;
                    }
                    let reference = Reference::Tag(Tag::parse(&tag).map_err(RegistryError::Tag)?);
                    let Ok(stored) = self.registry.get_manifest(&name, &reference).await else {
                        continue;
                    };
                    items.push(Item {
                        rule: rule.name.clone(),
                        repository: repository.clone(),
                        digest: stored.digest.to_string(),
                        tag: Some(tag),
                        delete: false,
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

    /// The last `limit` items of `rule`, newest first. Errors: `RuleUnknown`.
    pub async fn items(&self, rule: &str, limit: u32) -> Result<Vec<ItemStatus>, MirrorError> {
        self.bound(rule)?;
        let jobs = self
            .registry
            .meta()
            .jobs(&gantry_meta::JobFilter {
                kind: Some(REPLICATION_JOB.to_string()),
                subject: Some(subject(rule)),
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

    /// Enqueues a `replication-run` job for each rule whose schedule fires in `(after, until]`
    /// (Unix seconds), under a unique key, so the first server to look is the only one;
    /// returns how many were added.
    pub async fn enqueue_scheduled_runs(
        &self,
        after: i64,
        until: i64,
    ) -> Result<usize, MirrorError> {
        let mut added = 0;
        for b in &self.bound {
            let Some(fired_at) = b
                .rule
                .schedule
                .as_ref()
                .and_then(|s| s.firing_between(after, until))
            else {
                continue;
            };
            let run = NewJob {
                unique_key: Some(format!("{RUN_JOB}:{}:{fired_at}", b.rule.name)),
                subject: Some(subject(&b.rule.name)),
                ..NewJob::of(
                    RUN_JOB,
                    serde_json::to_string(&Run {
                        rule: b.rule.name.clone(),
                    })
                    .expect("runs serialize"),
                )
            };
            if self
                .registry
                .meta()
                .enqueue_job(&run)
                .await
                .map_err(RegistryError::from)?
                .is_some()
            {
                added += 1;
            }
        }
        if added > 0 {
            if let Some(waker) = self.waker.get() {
                waker.wake();
            }
        }
        Ok(added)
    }

    /// Copies (or deletes) one item at its rule's target; what was done, for the job's result.
    async fn replicate(&self, item: &Item) -> Result<Value, MirrorError> {
        let Some(bound) = self.bound.iter().find(|b| b.rule.name == item.rule) else {
            return Ok(json!({"skipped": "the rule is no longer configured"}));
        };
        let name = gantry_registry::parse_name(&item.repository)?;
        let digest: Digest = item.digest.parse().map_err(RegistryError::from)?;
        let target = &bound.rule.name;
        if let Some(preheat) = &bound.rule.preheat {
            return self.warm(bound, preheat, &name, item).await;
        }
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
        let copy = Copy {
            registry: &self.registry,
            client: &bound.client,
            target,
            name: &name,
            pacer: bound.pacer.clone(),
        };
        let mut copied = 0u64;
        if bound.rule.signed_only {
            let image = refers_to.clone().unwrap_or_else(|| digest.clone());
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
                    gantry_signing::cosign::tag_subject(t).is_none() && bound.rule.tags.matches(t)
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
}

impl Replicator {
    /// Pulls `item` through the edge of a preheat rule (its manifest, an index's images and
    /// every blob, read to the end), then waits until the edge lists it as cached (a Gantry
    /// edge; another answers its API paths with something else, and is done).
    async fn warm(
        &self,
        bound: &Bound,
        preheat: &Preheat,
        name: &RepositoryName,
        item: &Item,
    ) -> Result<Value, MirrorError> {
        let edge_name = match &preheat.edge_project {
            Some(project) => format!("{project}/{name}"),
            None => name.to_string(),
        };
        let fail = |e: ClientError| target_failure(&bound.rule.name, e);
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
    rule: &ReplicationRule,
    preheat: &Preheat,
    tags: impl Iterator<Item = TaggedPull<'a>>,
    now: i64,
) -> Vec<TaggedPull<'a>> {
    let mut taken: Vec<TaggedPull> = tags
        .filter(|t| rule.repositories.matches(t.repository) && rule.tags.matches(t.tag))
        .filter(|t| gantry_signing::cosign::tag_subject(t.tag).is_none())
        .collect();
    if let Some(most) = preheat.most_pulled {
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

/// The item `event` is for `rule`, if the rule wants it.
fn item(rule: &ReplicationRule, event: &Event) -> Option<Item> {
    let repository = event.repository.as_deref()?;
    if !rule.repositories.matches(repository) {
        return None;
    }
    let digest = event.data["digest"].as_str()?.to_string();
    let tag = event.data["tag"].as_str().map(str::to_string);
    let delete = match event.event_type.as_str() {
        "artifact.pushed" => false,
        "artifact.deleted" if rule.deletions => true,
        _ => return None,
    };
    if let (false, Some(tag)) = (delete, &tag) {
        let referrer_tag = gantry_signing::cosign::tag_subject(tag).is_some();
        if !referrer_tag && !rule.tags.matches(tag) {
            return None;
        }
    }
    Some(Item {
        rule: rule.name.clone(),
        repository: repository.to_string(),
        digest,
        tag,
        delete,
    })
}

fn subject(rule: &str) -> String {
    format!("replication:{rule}")
}

fn job(item: &Item) -> NewJob {
    NewJob {
        queue: Some(format!("replication:{}:{}", item.rule, item.repository)),
        subject: Some(subject(&item.rule)),
        max_attempts: ATTEMPTS,
        ..NewJob::of(
            REPLICATION_JOB,
            serde_json::to_string(item).expect("items serialize"),
        )
    }
}

fn target_failure(target: &str, e: ClientError) -> MirrorError {
    MirrorError::Target {
        rule: target.to_string(),
        reason: e.to_string(),
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
        match self.0.run(&run.rule).await {
            Ok(items) => Ok(json!({"rule": run.rule, "items": items})),
            Err(MirrorError::RuleUnknown(rule)) => Err(JobError::permanent(format!(
                "replication rule {rule} is no longer configured"
            ))),
            Err(e) => Err(JobError::transient(e.to_string())),
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
        self.0
            .replicate(&item)
            .await
            .map_err(|e| JobError::transient(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(repositories: &[&str], tags: &[&str], deletions: bool) -> ReplicationRule {
        let globs = |patterns: &[&str]| Selector {
            include: patterns
                .iter()
                .map(|p| gantry_lifecycle::retention::Glob::parse(p).unwrap())
                .collect(),
            exclude: Vec::new(),
        };
        ReplicationRule {
            name: "edge".into(),
            url: "http://edge:5000".into(),
            credentials: None,
            repositories: globs(repositories),
            tags: globs(tags),
            deletions,
            signed_only: false,
            schedule: None,
            bandwidth: None,
            preheat: None,
        }
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
        let r = rule(&["team/*"], &[], false);
        let preheat = |most_pulled| Preheat {
            project: "team".into(),
            edge_project: None,
            most_pulled,
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
            names(select_for_preheat(&r, &preheat(most), pulls(), now)),
            ["team/app:v3", "team/app:v2"]
        );
        let all = names(select_for_preheat(&r, &preheat(None), pulls(), now));
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
