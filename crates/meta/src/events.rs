//! The event outbox: what happened in the registry (a push, a delete, a pull, a tag moved, a
//! quota refusal, a GC or retention run, an archive, a restore), written in the transaction
//! that made it happen, so an event exists exactly when its change does.
//!
//! Consumers (webhooks now; scan on push and replication later) read events in id order from
//! their cursor and move the cursor in the transaction that records what they made of them,
//! so every event is consumed once by each consumer, whichever server does it, and a server
//! that dies in between leaves the cursor where it was (the events are read again: at least
//! once). Ids follow commit order because every write transaction is serialized (see
//! [`MetaStore`]): a consumer never sees a later event before an earlier one commits.

use serde_json::Value;
use sqlx::{Any, Row, Transaction};

use crate::jobs::{enqueue_in, now_ms, NewJob};
use crate::{AuditEvent, MetaError, MetaStore, Result};

/// An event to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// `artifact.pushed`, `artifact.deleted`, `artifact.pulled`, `tag.moved`, `tag.deleted`,
    /// `quota.exceeded`, `retention.completed`, `gc.completed`, `artifact.archived`,
    /// `artifact.restored`, `artifact.scanned`.
    pub event_type: &'static str,
    /// `None` for system-wide events (a GC run).
    pub project: Option<String>,
    pub repository: Option<String>,
    /// What a consumer needs without asking back (digest, tag, media type, size, actor...).
    pub data: Value,
}

/// A recorded event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: i64,
    pub event_type: String,
    pub project: Option<String>,
    pub repository: Option<String>,
    /// Unix milliseconds.
    pub at_ms: i64,
    pub data: Value,
}

impl NewEvent {
    /// An event about repository `repository` (its project taken from the name).
    pub fn in_repository(event_type: &'static str, repository: &str, data: Value) -> NewEvent {
        NewEvent {
            event_type,
            project: Some(gantry_oci::RepositoryName::project_of(repository).to_string()),
            repository: Some(repository.to_string()),
            data,
        }
    }
}

fn event(row: &sqlx::any::AnyRow) -> Result<Event> {
    let data: String = row.get(5);
    Ok(Event {
        id: row.get(0),
        event_type: row.get(1),
        project: row.get(2),
        repository: row.get(3),
        at_ms: row.get(4),
        data: serde_json::from_str(&data)
            .map_err(|e| MetaError::Corrupt(format!("event data: {e}")))?,
    })
}

/// Records `event` inside `tx`.
pub(crate) async fn record_in(tx: &mut Transaction<'_, Any>, event: &NewEvent) -> Result<()> {
    sqlx::query(
        "INSERT INTO events (type, project, repository, at_ms, data) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(event.event_type)
    .bind(event.project.as_deref())
    .bind(event.repository.as_deref())
    .bind(now_ms())
    .bind(event.data.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl MetaStore {
    /// Records an event that no change of the store goes with (a refusal, a finished run).
    pub async fn record_event(&self, event: &NewEvent) -> Result<()> {
        let mut tx = self.begin_write().await?;
        record_in(&mut tx, event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// `consumer`'s cursor (the last event id it consumed; 0 before its first) and up to
    /// `limit` events after it, in order. A consumer seen for the first time starts after
    /// the events that exist now: it gets what happens from then on.
    pub async fn events_after_cursor(
        &self,
        consumer: &str,
        limit: u32,
    ) -> Result<(i64, Vec<Event>)> {
        let cursor: Option<i64> =
            sqlx::query_scalar("SELECT last_id FROM event_cursors WHERE consumer = $1")
                .bind(consumer)
                .fetch_optional(&self.writer)
                .await?;
        let cursor = match cursor {
            Some(cursor) => cursor,
            None => {
                let mut tx = self.begin_write().await?;
                let last: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM events")
                    .fetch_one(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO event_cursors (consumer, last_id) VALUES ($1, $2) \
                     ON CONFLICT (consumer) DO NOTHING",
                )
                .bind(consumer)
                .bind(last)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                return Box::pin(self.events_after_cursor(consumer, limit)).await;
            }
        };
        // From the writer pool: a reader (on SQLite a separate connection) must not see an
        // older snapshot than the cursor it was just given.
        let rows = sqlx::query(
            "SELECT id, type, project, repository, at_ms, data FROM events \
             WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(cursor)
        .bind(i64::from(limit))
        .fetch_all(&self.writer)
        .await?;
        let events = rows.iter().map(event).collect::<Result<Vec<_>>>()?;
        Ok((cursor, events))
    }

    /// Moves `consumer`'s cursor from `from` to `to`, enqueues `jobs` and records `audit`
    /// entries, in one transaction; `false` (and nothing done) when the cursor is no longer at
    /// `from`: another server consumed those events first.
    pub async fn consume_events(
        &self,
        consumer: &str,
        from: i64,
        to: i64,
        jobs: &[NewJob],
        audit: &[AuditEvent],
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let moved = sqlx::query(
            "UPDATE event_cursors SET last_id = $3 WHERE consumer = $1 AND last_id = $2",
        )
        .bind(consumer)
        .bind(from)
        .bind(to)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !moved {
            return Ok(false);
        }
        for job in jobs {
            enqueue_in(&mut tx, job).await?;
        }
        crate::credentials::record_audit_in(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Forgets events recorded before `before_ms` that every consumer has consumed.
    pub async fn prune_events(&self, before_ms: i64) -> Result<u64> {
        Ok(sqlx::query(
            "DELETE FROM events WHERE at_ms < $1 \
             AND id <= (SELECT COALESCE(MIN(last_id), 0) FROM event_cursors)",
        )
        .bind(before_ms)
        .execute(&self.writer)
        .await?
        .rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use gantry_oci::Digest;

    use crate::tests::{manifest, store};
    use crate::TagRef;

    /// An event exists exactly when its change does: a push refused inside its transaction
    /// (an immutable tag) leaves none, a push that commits leaves one with its figures.
    #[tokio::test]
    async fn an_event_exists_exactly_when_its_change_does() {
        let (_dir, store) = store().await;
        let consumer = "test";
        assert_eq!(
            store.events_after_cursor(consumer, 10).await.unwrap().1,
            vec![]
        );
        let (a, b) = (Digest::sha256_of(b"a"), Digest::sha256_of(b"b"));
        let immutable = Some(TagRef {
            name: "v1",
            immutable: true,
        });
        store
            .put_manifest("team/app", &manifest(&a, vec![], None), immutable)
            .await
            .unwrap();
        assert!(store
            .put_manifest("team/app", &manifest(&b, vec![], None), immutable)
            .await
            .is_err());
        let (_, events) = store.events_after_cursor(consumer, 10).await.unwrap();
        assert_eq!(events.len(), 1, "{events:#?}");
        assert_eq!(events[0].event_type, "artifact.pushed");
        assert_eq!(events[0].project.as_deref(), Some("team"));
        assert_eq!(events[0].data["digest"], a.to_string());
        assert_eq!(events[0].data["tag"], "v1");
        assert_eq!(events[0].data["size"], 2, "the manifest `{{}}`");
        assert_eq!(events[0].data["actor"], "tester");
    }

    /// Issue 12: a consumer moves its cursor to the last id it read, so an event that
    /// committed after a later one would be skipped for good. Writers serialized by the
    /// write lock commit in id order: a consumer reading while eight writers push never
    /// skips one.
    #[tokio::test]
    async fn a_consumer_reading_during_concurrent_writes_skips_no_event() {
        let (_dir, store) = store().await;
        let consumer = "test";
        store.events_after_cursor(consumer, 1).await.unwrap();
        let writers: Vec<_> = (0..8u8)
            .map(|writer| {
                let store = store.clone();
                tokio::spawn(async move {
                    for n in 0..20u8 {
                        let digest = Digest::sha256_of(&[writer, n]);
                        store
                            .put_manifest(
                                &format!("team/app-{writer}"),
                                &manifest(&digest, vec![], None),
                                None,
                            )
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        let mut consumed = Vec::new();
        let mut writing = true;
        while writing || consumed.len() < 160 {
            writing = !writers.iter().all(|w| w.is_finished());
            let (cursor, events) = store.events_after_cursor(consumer, 7).await.unwrap();
            if let Some(last) = events.last() {
                assert!(store
                    .consume_events(consumer, cursor, last.id, &[], &[])
                    .await
                    .unwrap());
                consumed.extend(events.iter().map(|e| e.id));
            } else if !writing {
                break;
            }
        }
        for writer in writers {
            writer.await.unwrap();
        }
        let all: Vec<i64> = sqlx::query_scalar("SELECT id FROM events ORDER BY id")
            .fetch_all(&store.readers)
            .await
            .unwrap();
        assert_eq!(all.len(), 160);
        assert_eq!(consumed, all, "every event consumed once, in order");
    }
}
