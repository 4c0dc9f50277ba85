//! Sessions of the web UI: who signed in, the CSRF token of their forms, and until when. The
//! cookie's secret is stored as its digest only, so a database copy opens no session.

use sqlx::Row;

use crate::{MetaStore, Result};

/// A web session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSession {
    pub user_name: String,
    pub csrf: String,
    /// Unix milliseconds.
    pub created_ms: i64,
    pub expires_ms: i64,
}

impl MetaStore {
    /// Records a session under `id_digest`, and forgets those that expired.
    pub async fn create_web_session(&self, id_digest: &str, session: &WebSession) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM web_sessions WHERE expires_ms < $1")
            .bind(session.created_ms)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO web_sessions (id_digest, user_name, csrf, created_ms, expires_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id_digest)
        .bind(&session.user_name)
        .bind(&session.csrf)
        .bind(session.created_ms)
        .bind(session.expires_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The session `id_digest` names, unless it expired by `now_ms`.
    pub async fn web_session(&self, id_digest: &str, now_ms: i64) -> Result<Option<WebSession>> {
        let row = sqlx::query(
            "SELECT user_name, csrf, created_ms, expires_ms FROM web_sessions \
             WHERE id_digest = $1 AND expires_ms >= $2",
        )
        .bind(id_digest)
        .bind(now_ms)
        .fetch_optional(&self.readers)
        .await?;
        Ok(row.map(|row| WebSession {
            user_name: row.get(0),
            csrf: row.get(1),
            created_ms: row.get(2),
            expires_ms: row.get(3),
        }))
    }

    /// Ends the session `id_digest` (logout); whether there was one.
    pub async fn delete_web_session(&self, id_digest: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM web_sessions WHERE id_digest = $1")
            .bind(id_digest)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Ends every session of `user_name` (the user was deleted or changed their password).
    pub async fn delete_web_sessions_of(&self, user_name: &str) -> Result<u64> {
        let done = sqlx::query("DELETE FROM web_sessions WHERE user_name = $1")
            .bind(user_name)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fresh_store;

    fn session(user: &str, created_ms: i64, expires_ms: i64) -> WebSession {
        WebSession {
            user_name: user.into(),
            csrf: format!("csrf-of-{user}"),
            created_ms,
            expires_ms,
        }
    }

    #[tokio::test]
    async fn a_web_session_lasts_until_it_expires_or_is_ended() {
        let (_dir, _, store) = fresh_store().await;
        store
            .create_web_session("d1", &session("ann", 1_000, 5_000))
            .await
            .unwrap();
        store
            .create_web_session("d2", &session("bob", 1_000, 9_000))
            .await
            .unwrap();
        assert_eq!(
            store.web_session("d1", 4_000).await.unwrap(),
            Some(session("ann", 1_000, 5_000))
        );
        assert_eq!(store.web_session("d1", 5_001).await.unwrap(), None);
        assert_eq!(store.web_session("unknown", 0).await.unwrap(), None);
        // A later sign-in forgets what expired.
        store
            .create_web_session("d3", &session("ann", 6_000, 9_000))
            .await
            .unwrap();
        assert_eq!(store.web_session("d1", 0).await.unwrap(), None);
        assert!(store.delete_web_session("d2").await.unwrap());
        assert!(!store.delete_web_session("d2").await.unwrap());
        assert_eq!(store.delete_web_sessions_of("ann").await.unwrap(), 1);
        assert_eq!(store.web_session("d3", 7_000).await.unwrap(), None);
    }
}
