//! Locks on blobs shared by every server of one PostgreSQL database, so that garbage
//! collection on one replica never deletes a blob that an upload commit or a mount on another
//! is making visible (issue 12). Blobs are locked by stripe (the first byte of the digest: 256
//! locks), as the registry's in-process locks are.
//!
//! PostgreSQL session-level advisory locks, each held on a connection of a pool of their own:
//! a holder keeps its connection while it copies bytes, and must not starve the pool that the
//! link it makes meanwhile needs. A lock dropped without [`SharedBlobLock::release`] (an error
//! path) closes its connection, which releases it; it never returns to the pool held.
//!
//! SQLite has no such lock: one server runs per database file, and its in-process locks cover
//! every writer.

use sqlx::pool::PoolConnection;
use sqlx::Any;

use crate::{MetaStore, Result};

/// The advisory lock key of stripe 0 (ASCII "gantB" shifted left by a byte); stripe `n` is
/// this plus `n`.
const STRIPE_KEY_BASE: i64 = 0x67_616e_7442 << 8;

/// Shared locks on some stripes, held until [`release`](Self::release) (or dropped).
pub struct SharedBlobLock {
    connection: Option<PoolConnection<Any>>,
}

impl MetaStore {
    /// Takes the shared locks of `stripes`, in ascending order (so that two holders of
    /// overlapping sets cannot deadlock), waiting for their holders in other processes.
    /// `None` on SQLite (see the module documentation).
    pub async fn lock_blob_stripes(&self, stripes: &[u8]) -> Result<Option<SharedBlobLock>> {
        let Some(pool) = &self.blob_locks else {
            return Ok(None);
        };
        let mut sorted = stripes.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut connection = pool.acquire().await?;
        for stripe in sorted {
            if let Err(e) = sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(STRIPE_KEY_BASE + i64::from(stripe))
                .execute(&mut *connection)
                .await
            {
                connection.close_on_drop();
                return Err(e.into());
            }
        }
        Ok(Some(SharedBlobLock {
            connection: Some(connection),
        }))
    }
}

impl SharedBlobLock {
    /// Releases the locks and returns the connection to its pool (or closes it, which
    /// releases them too, when the release fails).
    pub async fn release(mut self) {
        if let Some(mut connection) = self.connection.take() {
            let released = sqlx::query("SELECT pg_advisory_unlock_all()")
                .execute(&mut *connection)
                .await;
            if let Err(e) = released {
                tracing::warn!(error = %e, "cannot release blob locks; closing their connection");
                connection.close_on_drop();
            }
        }
    }
}

impl Drop for SharedBlobLock {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.as_mut() {
            connection.close_on_drop();
        }
    }
}
