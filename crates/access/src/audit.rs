//! The audit log's writer. Requests hand their entries to a channel; one task writes them in
//! batches (one transaction per batch), so auditing every pull costs a request no database
//! round trip. The channel is bounded: when the writer falls behind, requests wait for it
//! rather than entries being dropped or memory growing.

use gantry_meta::{AuditEvent, MetaStore};
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
