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
use crate::{MetaError, MetaStore, Result};

/// An event to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// `artifact.pushed`, `artifact.deleted`, `artifact.pulled`, `tag.moved`, `tag.deleted`,
    /// `quota.exceeded`, `retention.completed`, `gc.completed`, `artifact.archived`,
    /// `artifact.restored`.
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

    /// Moves `consumer`'s cursor from `from` to `to` and enqueues `jobs`, in one transaction;
    /// `false` (and nothing done) when the cursor is no longer at `from`: another server
    /// consumed those events first.
    pub async fn consume_events(
        &self,
        consumer: &str,
        from: i64,
        to: i64,
        jobs: &[NewJob],
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
