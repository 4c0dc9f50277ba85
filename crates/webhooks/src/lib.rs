//! Webhooks: a project's registry events delivered to a receiver's URL.
//!
//! - Each delivery is a CloudEvents 1.0 event in structured JSON mode
//!   (`Content-Type: application/cloudevents+json`; attributes `specversion`, `id`, `source`,
//!   `type` = `dev.gantry.<event type>`, `subject`, `time`, `datacontenttype`, and `data`
//!   carrying what a receiver needs without calling back: repository, tag, digest, media type,
//!   size, actor).
//! - The body is signed with the webhook's secret: `X-Gantry-Signature-256: sha256=<hex of
//!   HMAC-SHA256(secret, body)>`, as GitHub's `X-Hub-Signature-256`. The secret is stored
//!   sealed (`gantry_auth::sealed`, under the token signing key every replica shares), so a
//!   copy of the database cannot sign deliveries.
//! - Events come from the outbox (`gantry_meta::events`): [`WebhookService::fan_out`] turns
//!   each new event into one delivery job per webhook that wants it, in the transaction that
//!   moves the outbox cursor. Deliveries of one webhook and repository share a job queue, so
//!   they arrive in event order; a receiver that fails (non-2xx, or unreachable) is retried
//!   with the runner's backoff, holding back later deliveries of that queue, until it answers
//!   or the attempts run out. The jobs are the delivery log.

use std::sync::Arc;
use std::time::Duration;

use gantry_auth::sealed::{SealError, Sealer};
use gantry_jobs::{JobError, JobHandler, Progress, Waker};
use gantry_meta::{
    now_ms, Event, JobFilter, JobRecord, MetaError, MetaStore, NewJob, NewWebhook, Webhook,
};
use hmac::Mac;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The event types a project webhook may ask for (the outbox's, less the system-wide
/// `gc.completed`).
pub const EVENT_TYPES: &[&str] = &[
    "artifact.pushed",
    "artifact.deleted",
    "artifact.pulled",
    "tag.moved",
    "tag.deleted",
    "quota.exceeded",
    "retention.completed",
    "artifact.archived",
    "artifact.restored",
    "artifact.scanned",
];

/// The type of the event `gantry webhook test` sends.
pub const TEST_EVENT: &str = "webhook.test";

/// The header carrying the body's signature.
pub const SIGNATURE_HEADER: &str = "X-Gantry-Signature-256";

/// The job kind of deliveries.
const DELIVERY: &str = "webhook";

/// The outbox consumer name of the fan-out.
const CONSUMER: &str = "webhooks";

/// Attempts per delivery: with the runner's backoff (1 s doubling to 5 minutes) about four
/// hours of a receiver being down.
const DELIVERY_ATTEMPTS: u32 = 60;

/// How long a receiver has to answer one delivery.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Events taken from the outbox per fan-out.
const FAN_OUT_BATCH: u32 = 500;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{0}")]
    Invalid(String),
    #[error("webhook {0} does not exist in this project")]
    NotFound(i64),
    #[error(transparent)]
    Meta(#[from] MetaError),
}

pub type Result<T> = std::result::Result<T, WebhookError>;

/// A webhook to add, as the API and CLI give it.
#[derive(Debug, Clone, Deserialize)]
pub struct WebhookRequest {
    /// `http://` or `https://` URL deliveries are POSTed to.
    pub url: String,
    /// Event types from [`EVENT_TYPES`]; at least one.
    pub event_types: Vec<String>,
    /// The HMAC key; generated when absent (and shown once).
    #[serde(default)]
    pub secret: Option<String>,
}

/// A change of a webhook, as the API and CLI give it: what is absent stays as it is.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct WebhookUpdate {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    /// `false`: no deliveries until enabled again.
    pub enabled: Option<bool>,
}

/// `url` if it is an absolute http(s) URL, normalized. Errors: `Invalid`.
fn checked_url(url: &str) -> Result<String> {
    url::Url::parse(url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .map(String::from)
        .ok_or_else(|| {
            WebhookError::Invalid(format!(
                "webhook URL {url:?} is not an absolute http:// or https:// URL"
            ))
        })
}

/// `types` sorted without repeats, if there is one and each is in [`EVENT_TYPES`]. Errors:
/// `Invalid`.
fn checked_event_types(types: &[String]) -> Result<Vec<String>> {
    if types.is_empty() {
        return Err(WebhookError::Invalid(format!(
            "give at least one event type: {}",
            EVENT_TYPES.join(", ")
        )));
    }
    if let Some(unknown) = types.iter().find(|t| !EVENT_TYPES.contains(&t.as_str())) {
        return Err(WebhookError::Invalid(format!(
            "unknown event type {unknown:?}; the event types are {}",
            EVENT_TYPES.join(", ")
        )));
    }
    let mut types = types.to_vec();
    types.sort();
    types.dedup();
    Ok(types)
}

/// A webhook as listed: the secret is not shown again.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookSummary {
    pub id: i64,
    pub project: String,
    pub url: String,
    pub event_types: Vec<String>,
    pub enabled: bool,
    pub created_by: String,
    pub created_at: i64,
}

impl From<Webhook> for WebhookSummary {
    fn from(w: Webhook) -> Self {
        WebhookSummary {
            id: w.id,
            project: w.project,
            url: w.url,
            event_types: w.event_types,
            enabled: w.enabled,
            created_by: w.created_by,
            created_at: w.created_at,
        }
    }
}

/// One delivery, as the delivery log shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// The delivery's job id (`gantry jobs show ID`).
    pub id: i64,
    /// The CloudEvent's type and id.
    pub event_type: String,
    pub event_id: String,
    pub subject: Option<String>,
    /// `queued`, `running`, `succeeded` or `failed`.
    pub state: &'static str,
    pub attempts: u32,
    /// The receiver's status code of the successful attempt.
    pub status: Option<u16>,
    pub last_error: Option<String>,
    /// Unix milliseconds.
    pub created_ms: i64,
    pub finished_ms: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct DeliveryPayload {
    webhook_id: i64,
    project: String,
    /// The CloudEvent, as sent.
    event: Value,
}

/// Webhook management and event fan-out.
#[derive(Clone)]
pub struct WebhookService {
    meta: MetaStore,
    /// The CloudEvents `source` prefix: the registry's public URL.
    source: String,
    /// Wakes this server's runner after deliveries were enqueued.
    waker: Waker,
    /// Seals the secrets as they are stored, and opens them to sign deliveries.
    sealer: Arc<Sealer>,
}

/// What a webhook's sealed secret is bound to: its project (a sealed value copied into
/// another project's webhook does not open).
fn seal_context(project: &str) -> String {
    format!("webhook secret of project {project}")
}

/// The secret deliveries of `webhook` are signed with. Errors: a sealed secret that does
/// not open with this server's token key.
fn secret_of(sealer: &Sealer, webhook: &Webhook) -> std::result::Result<String, SealError> {
    if webhook.secret_sealed {
        sealer.open(&seal_context(&webhook.project), &webhook.secret)
    } else {
        Ok(webhook.secret.clone())
    }
}

impl WebhookService {
    /// `public_url`: the registry's URL as clients know it (events' `source` is
    /// `<public_url>/api/v1/projects/<project>`); `sealer`: from the token signing key, which
    /// every replica shares.
    pub fn new(meta: MetaStore, public_url: &str, waker: Waker, sealer: Sealer) -> WebhookService {
        WebhookService {
            meta,
            source: public_url.trim_end_matches('/').to_string(),
            waker,
            sealer: Arc::new(sealer),
        }
    }

    /// Seals the secrets of webhooks stored before secrets were sealed (each once, whichever
    /// server gets to it first); returns how many this call sealed.
    pub async fn seal_plain_secrets(&self) -> Result<usize> {
        let mut sealed = 0;
        for webhook in self.meta.webhooks_with_plain_secrets().await? {
            let value = self
                .sealer
                .seal(&seal_context(&webhook.project), &webhook.secret);
            if self.meta.seal_webhook_secret(webhook.id, &value).await? {
                sealed += 1;
            }
        }
        Ok(sealed)
    }

    /// Adds a webhook to `project` for `actor`; returns it with its secret (shown this once).
    ///
    /// Errors: `Invalid` for a URL that is not absolute http(s), no event type or an unknown
    /// one, an empty secret.
    pub async fn create(
        &self,
        project: &str,
        request: &WebhookRequest,
        actor: &str,
    ) -> Result<(WebhookSummary, String)> {
        let url = checked_url(&request.url)?;
        let types = checked_event_types(&request.event_types)?;
        let secret = match &request.secret {
            Some(secret) if secret.is_empty() => {
                return Err(WebhookError::Invalid(
                    "the secret must not be empty (leave it out to have one generated)".into(),
                ))
            }
            Some(secret) => secret.clone(),
            None => gantry_auth::secret::generate("gantry_whsec_").0,
        };
        let webhook = self
            .meta
            .create_webhook(&NewWebhook {
                project,
                url: &url,
                event_types: &types,
                secret: &self.sealer.seal(&seal_context(project), &secret),
                created_by: actor,
            })
            .await?;
        Ok((webhook.into(), secret))
    }

    /// The webhooks of `project`.
    pub async fn list(&self, project: &str) -> Result<Vec<WebhookSummary>> {
        Ok(self
            .meta
            .webhooks(project)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// Changes webhook `id` of `project` as `update` says (checked as [`Self::create`] checks);
    /// returns it. Errors: `Invalid`, `NotFound`.
    pub async fn update(
        &self,
        project: &str,
        id: i64,
        update: &WebhookUpdate,
    ) -> Result<WebhookSummary> {
        let stored = self.existing(project, id).await?;
        let url = match &update.url {
            Some(url) => checked_url(url)?,
            None => stored.url,
        };
        let types = match &update.event_types {
            Some(types) => checked_event_types(types)?,
            None => stored.event_types,
        };
        let enabled = update.enabled.unwrap_or(stored.enabled);
        self.meta
            .update_webhook(project, id, &url, &types, enabled)
            .await?
            .map(Into::into)
            .ok_or(WebhookError::NotFound(id))
    }

    /// Removes webhook `id` of `project`. Errors: `NotFound`.
    pub async fn delete(&self, project: &str, id: i64) -> Result<()> {
        match self.meta.delete_webhook(project, id).await? {
            true => Ok(()),
            false => Err(WebhookError::NotFound(id)),
        }
    }

    /// The last `limit` deliveries of webhook `id` of `project`, newest first. Errors:
    /// `NotFound`.
    pub async fn deliveries(&self, project: &str, id: i64, limit: u32) -> Result<Vec<Delivery>> {
        self.existing(project, id).await?;
        let jobs = self
            .meta
            .jobs(&JobFilter {
                kind: Some(DELIVERY.to_string()),
                subject: Some(subject(id)),
                limit,
                ..JobFilter::default()
            })
            .await?;
        Ok(jobs.iter().map(delivery).collect())
    }

    /// Sends a `webhook.test` event to webhook `id` of `project` (as a delivery like any
    /// other); returns the delivery. Errors: `NotFound`.
    pub async fn test(&self, project: &str, id: i64, actor: &str) -> Result<Delivery> {
        let webhook = self.existing(project, id).await?;
        let event = Event {
            id: 0,
            event_type: TEST_EVENT.to_string(),
            project: Some(project.to_string()),
            repository: None,
            at_ms: now_ms(),
            data: json!({ "project": project, "webhook_id": id, "actor": actor }),
        };
        let mut job = self.delivery_job(&webhook, &event);
        job.queue = None;
        let queued = self
            .meta
            .enqueue_job(&job)
            .await?
            .expect("deliveries have no unique key");
        self.waker.wake();
        let record = self
            .meta
            .job(queued)
            .await?
            .ok_or(WebhookError::NotFound(id))?;
        Ok(delivery(&record))
    }

    async fn existing(&self, project: &str, id: i64) -> Result<Webhook> {
        self.meta
            .webhook(project, id)
            .await?
            .ok_or(WebhookError::NotFound(id))
    }

    /// Takes the events recorded since the last fan-out (by any server) and enqueues a
    /// delivery for each webhook that wants each, moving the outbox cursor in the same
    /// transaction; returns how many deliveries were enqueued. Two servers fanning out at once
    /// cannot both succeed: the second finds the cursor moved and adds nothing.
    pub async fn fan_out(&self) -> Result<usize> {
        let (cursor, events) = self
            .meta
            .events_after_cursor(CONSUMER, FAN_OUT_BATCH)
            .await?;
        let Some(last) = events.last().map(|e| e.id) else {
            return Ok(0);
        };
        let webhooks = self.meta.enabled_webhooks().await?;
        let jobs: Vec<NewJob> = events
            .iter()
            .flat_map(|event| {
                webhooks
                    .iter()
                    .filter(move |w| {
                        event.project.as_deref() == Some(w.project.as_str())
                            && w.event_types.contains(&event.event_type)
                    })
                    .map(move |w| self.delivery_job(w, event))
            })
            .collect();
        if self
            .meta
            .consume_events(CONSUMER, cursor, last, &jobs, &[])
            .await?
            && !jobs.is_empty()
        {
            self.waker.wake();
            return Ok(jobs.len());
        }
        Ok(0)
    }

    /// The delivery job of `event` to `webhook`: queued behind the earlier deliveries of the
    /// same webhook and repository.
    fn delivery_job(&self, webhook: &Webhook, event: &Event) -> NewJob {
        let payload = DeliveryPayload {
            webhook_id: webhook.id,
            project: webhook.project.clone(),
            event: cloud_event(&self.source, event),
        };
        NewJob {
            queue: Some(format!(
                "webhook:{}:{}",
                webhook.id,
                event.repository.as_deref().unwrap_or_default()
            )),
            subject: Some(subject(webhook.id)),
            max_attempts: DELIVERY_ATTEMPTS,
            ..NewJob::of(
                DELIVERY,
                serde_json::to_string(&payload).expect("payloads serialize"),
            )
        }
    }

    /// The handler that delivers, for the server's runner.
    pub fn delivery_handler(&self) -> Result<Arc<dyn JobHandler>> {
        let http = reqwest::Client::builder()
            .timeout(DELIVERY_TIMEOUT)
            .user_agent(concat!("gantry/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| WebhookError::Invalid(format!("cannot build the HTTP client: {e}")))?;
        Ok(Arc::new(Deliverer {
            meta: self.meta.clone(),
            http,
            sealer: self.sealer.clone(),
        }))
    }
}

fn subject(webhook: i64) -> String {
    format!("webhook:{webhook}")
}

fn delivery(job: &JobRecord) -> Delivery {
    let payload: Option<DeliveryPayload> = serde_json::from_str(&job.payload).ok();
    let event = payload.as_ref().map(|p| &p.event);
    let text = |name: &str| {
        event
            .and_then(|e| e[name].as_str())
            .unwrap_or_default()
            .to_string()
    };
    let status = job
        .result
        .as_deref()
        .and_then(|r| serde_json::from_str::<Value>(r).ok())
        .and_then(|r| r["status"].as_u64())
        .map(|s| s as u16);
    Delivery {
        id: job.id,
        event_type: text("type"),
        event_id: text("id"),
        subject: event
            .and_then(|e| e["subject"].as_str())
            .map(str::to_string),
        state: job.state.as_str(),
        attempts: job.attempts,
        status,
        last_error: job.last_error.clone(),
        created_ms: job.created_ms,
        finished_ms: job.finished_ms,
    }
}

/// `event` as a CloudEvents 1.0 event in structured JSON mode.
fn cloud_event(source: &str, event: &Event) -> Value {
    let project = event.project.as_deref().unwrap_or_default();
    let data = &event.data;
    let subject = match (
        &event.repository,
        data["tag"].as_str(),
        data["digest"].as_str(),
    ) {
        (Some(repository), Some(tag), _) => Some(format!("{repository}:{tag}")),
        (Some(repository), None, Some(digest)) => Some(format!("{repository}@{digest}")),
        (Some(repository), None, None) => Some(repository.clone()),
        (None, _, _) => None,
    };
    let time = chrono::DateTime::from_timestamp_millis(event.at_ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let id = match event.id {
        0 => format!("test-{}", now_ms()),
        id => id.to_string(),
    };
    let mut data = data.clone();
    data["project"] = project.into();
    json!({
        "specversion": "1.0",
        "id": id,
        "source": format!("{source}/api/v1/projects/{project}"),
        "type": format!("dev.gantry.{}", event.event_type),
        "subject": subject,
        "time": time,
        "datacontenttype": "application/json",
        "data": data,
    })
}

/// `sha256=<hex>` of the HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Delivers one event to one webhook.
struct Deliverer {
    meta: MetaStore,
    http: reqwest::Client,
    sealer: Arc<Sealer>,
}

#[async_trait::async_trait]
impl JobHandler for Deliverer {
    fn kind(&self) -> &'static str {
        DELIVERY
    }

    async fn run(
        &self,
        job: &JobRecord,
        progress: &Progress,
    ) -> std::result::Result<Value, JobError> {
        let payload: DeliveryPayload = serde_json::from_str(&job.payload)
            .map_err(|e| JobError::permanent(format!("unreadable delivery: {e}")))?;
        let webhook = self
            .meta
            .webhook(&payload.project, payload.webhook_id)
            .await
            .map_err(|e| JobError::transient(e.to_string()))?
            .filter(|w| w.enabled)
            .ok_or_else(|| JobError::permanent("the webhook was deleted or disabled"))?;
        let secret = secret_of(&self.sealer, &webhook).map_err(|e| {
            JobError::permanent(format!(
                "{e} (remove the webhook and add it again with a new secret)"
            ))
        })?;
        let body = serde_json::to_vec(&payload.event).expect("events serialize");
        progress
            .report(&format!("attempt {}: POST {}", job.attempts, webhook.url))
            .await;
        let sent = self
            .http
            .post(&webhook.url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/cloudevents+json; charset=utf-8",
            )
            .header(SIGNATURE_HEADER, signature(&secret, &body))
            .header("X-Gantry-Delivery", job.id.to_string())
            .body(body)
            .send()
            .await
            .map_err(|e| JobError::transient(format!("cannot reach {}: {e}", webhook.url)))?;
        let status = sent.status();
        if status.is_success() {
            return Ok(json!({ "status": status.as_u16() }));
        }
        let message = format!("{} answered {status}", webhook.url);
        // 410 Gone: the receiver says it will never take deliveries again.
        if status == reqwest::StatusCode::GONE {
            Err(JobError::permanent(message))
        } else {
            Err(JobError::transient(message))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signature is HMAC-SHA256 as RFC 4231 computes it (test case 2).
    #[test]
    fn signature_is_hmac_sha256_of_the_body() {
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn cloud_events_carry_the_required_attributes_and_a_subject() {
        let event = Event {
            id: 42,
            event_type: "artifact.pushed".into(),
            project: Some("team".into()),
            repository: Some("team/app".into()),
            at_ms: 1_800_000_000_123,
            data: json!({"repository": "team/app", "tag": "v1", "digest": "sha256:ab"}),
        };
        let ce = cloud_event("https://registry.example", &event);
        assert_eq!(ce["specversion"], "1.0");
        assert_eq!(ce["id"], "42");
        assert_eq!(
            ce["source"],
            "https://registry.example/api/v1/projects/team"
        );
        assert_eq!(ce["type"], "dev.gantry.artifact.pushed");
        assert_eq!(ce["subject"], "team/app:v1");
        assert_eq!(ce["time"], "2027-01-15T08:00:00.123Z");
        assert_eq!(ce["datacontenttype"], "application/json");
        assert_eq!(ce["data"]["project"], "team");
    }
}
