//! The audit log's writer. Requests hand their entries to a channel; one task writes them in
//! batches (one transaction per batch), so auditing every pull costs a request no database
//! round trip. The channel is bounded: when the writer falls behind, requests wait for it
//! rather than entries being dropped or memory growing.

use gantry_meta::{AuditEvent, Event, MetaStore};
use tokio::sync::{mpsc, oneshot};

/// One audited action, as the server reports it.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub actor: String,
    /// `login`, `pull`, `push`, `delete`, `project.create`, `member.set`, ...
    pub action: String,
    pub resource: String,
    pub project: Option<String>,
    pub client: String,
    /// `success`, `failure` (wrong credentials) or `denied` (refused by a permission, tag
    /// rule, quota or throttle).
    pub outcome: String,
    /// For a refusal, what refused it, as the client was told.
    pub detail: Option<String>,
}

enum Message {
    Entry(AuditEvent),
    Flush(oneshot::Sender<()>),
}

const QUEUE: usize = 4096;
const BATCH: usize = 512;

pub struct AuditLog {
    sender: mpsc::Sender<Message>,
}

impl AuditLog {
    pub fn start(meta: MetaStore) -> AuditLog {
        let (sender, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(write_batches(meta, receiver));
        AuditLog { sender }
    }

    /// Queues an entry; waits only when the writer is a whole queue behind.
    pub async fn record(&self, entry: AuditEntry) {
        let event = AuditEvent {
            at: crate::now_secs() as i64,
            actor: entry.actor,
            action: entry.action,
            resource: entry.resource,
            project: entry.project,
            client_addr: (!entry.client.is_empty()).then_some(entry.client),
            outcome: entry.outcome,
            detail: entry.detail,
        };
        // Fails only once the writer task is gone, at shutdown.
        let _ = self.sender.send(Message::Entry(event)).await;
    }

    /// Waits until every entry recorded so far is in the database.
    pub async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        if self.sender.send(Message::Flush(done)).await.is_ok() {
            let _ = flushed.await;
        }
    }
}

async fn write_batches(meta: MetaStore, mut receiver: mpsc::Receiver<Message>) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut waiting = Vec::new();
    while let Some(first) = receiver.recv().await {
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                Message::Entry(event) => batch.push(event),
                Message::Flush(done) => waiting.push(done),
            }
            next = if batch.len() < BATCH {
                receiver.try_recv().ok()
            } else {
                None
            };
        }
        if !batch.is_empty() {
            if let Err(e) = meta.record_audit(&batch).await {
                tracing::error!(error = %e, entries = batch.len(), "cannot write audit entries");
            }
            batch.clear();
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}

/// The audit feed's name among the outbox's consumers.
const FEED: &str = "audit";

/// Events taken from the outbox per look.
const FEED_BATCH: u32 = 500;

/// The audit entry of an event that work without a request made — a scheduled retention
/// run's deletions and its completion, a garbage collection — or `None` for an event whose
/// request was audited when it was answered (pushes, deletes and runs through the API).
fn background_entry(event: &Event) -> Option<AuditEvent> {
    let data = &event.data;
    let text = |name: &str| data[name].as_str().unwrap_or_default().to_string();
    let repository = event.repository.clone().unwrap_or_default();
    let (actor, resource, detail) = match event.event_type.as_str() {
        "gc.completed" => (
            "garbage-collection".to_string(),
            "registry".to_string(),
            format!(
                "{} manifests, {} blobs, {} bytes freed",
                data["manifests"], data["blobs"], data["blob_bytes"]
            ),
        ),
        _ if text("actor") != gantry_meta::SCHEDULER_ACTOR => return None,
        "retention.completed" => (
            text("actor"),
            event.project.clone().unwrap_or_default(),
            format!(
                "{} tags, {} manifests deleted, {} bytes freed",
                data["deleted_tags"], data["deleted_manifests"], data["freed_bytes"]
            ),
        ),
        "tag.deleted" => (
            text("actor"),
            format!("{repository}:{}", text("tag")),
            format!("was {}", text("digest")),
        ),
        "artifact.deleted" => (
            text("actor"),
            format!("{repository}@{}", text("digest")),
            format!("{} bytes", data["size"]),
        ),
        _ => return None,
    };
    Some(AuditEvent {
        at: event.at_ms / 1000,
        actor,
        action: event.event_type.clone(),
        resource,
        project: event.project.clone(),
        client_addr: None,
        outcome: "success".to_string(),
        detail: Some(detail),
    })
}

impl crate::AccessService {
    /// Records in the audit log what background work changed since the last look (by any
    /// server): the outbox's events that no request audited. The entries and the feed's
    /// cursor are written in one transaction, so each is recorded once. Returns how many.
    pub async fn audit_background_events(&self) -> crate::Result<usize> {
        let meta = &self.meta;
        let (cursor, events) = meta.events_after_cursor(FEED, FEED_BATCH).await?;
        let Some(last) = events.last().map(|e| e.id) else {
            return Ok(0);
        };
        let entries: Vec<AuditEvent> = events.iter().filter_map(background_entry).collect();
        let recorded = meta
            .consume_events(FEED, cursor, last, &[], &entries)
            .await?;
        Ok(if recorded { entries.len() } else { 0 })
    }
}

#[cfg(test)]
mod feed_tests {
    use super::*;

    fn event(event_type: &str, data: serde_json::Value) -> Event {
        Event {
            id: 1,
            event_type: event_type.to_string(),
            project: Some("team".into()),
            repository: Some("team/app".into()),
            at_ms: 1_800_000_000_500,
            data,
        }
    }

    /// What the scheduler and garbage collection change is audited from the outbox; what a
    /// request changed was audited when it was answered, and is not audited twice.
    #[test]
    fn only_background_work_is_audited_from_the_outbox() {
        let scheduled = background_entry(&event(
            "tag.deleted",
            serde_json::json!({"tag": "dev-1", "digest": "sha256:ab", "actor": "scheduler"}),
        ))
        .unwrap();
        assert_eq!(
            (
                scheduled.actor.as_str(),
                scheduled.action.as_str(),
                scheduled.resource.as_str(),
                scheduled.at
            ),
            ("scheduler", "tag.deleted", "team/app:dev-1", 1_800_000_000)
        );
        let gc = background_entry(&event(
            "gc.completed",
            serde_json::json!({"manifests": 2, "blobs": 3, "blob_bytes": 4096}),
        ))
        .unwrap();
        assert_eq!(gc.actor, "garbage-collection");
        assert_eq!(
            gc.detail.as_deref(),
            Some("2 manifests, 3 blobs, 4096 bytes freed")
        );
        for (event_type, actor) in [
            ("tag.deleted", "alice"),
            ("artifact.pushed", "scheduler"),
            ("artifact.deleted", "garbage-collection"),
        ] {
            let data = serde_json::json!({"actor": actor, "digest": "sha256:ab"});
            assert_eq!(
                background_entry(&event(event_type, data)),
                None,
                "{event_type}"
            );
        }
    }
}
