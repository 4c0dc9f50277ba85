//! Webhooks: per project, a target URL, the event types it wants and the secret its
//! deliveries are signed with. Deliveries are jobs (kind `webhook`, subject `webhook:ID`).

use sqlx::Row;

use crate::{flag, MetaError, MetaStore, Result};

/// A webhook as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: i64,
    pub project: String,
    pub url: String,
    /// The event types delivered (`artifact.pushed`, ...).
    pub event_types: Vec<String>,
    /// The HMAC-SHA256 key deliveries are signed with: sealed when `secret_sealed` (see
    /// `gantry_auth::sealed`), as written before sealing otherwise.
    pub secret: String,
    pub secret_sealed: bool,
    pub enabled: bool,
    pub created_by: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// A webhook to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWebhook<'a> {
    pub project: &'a str,
    pub url: &'a str,
    pub event_types: &'a [String],
    /// The sealed secret.
    pub secret: &'a str,
    pub created_by: &'a str,
}

const COLUMNS: &str =
    "id, project, url, event_types, secret, enabled, created_by, created_at, secret_sealed";

fn webhook(row: &sqlx::any::AnyRow) -> Result<Webhook> {
    let types: String = row.get(3);
    Ok(Webhook {
        id: row.get(0),
        project: row.get(1),
        url: row.get(2),
        event_types: serde_json::from_str(&types)
            .map_err(|e| MetaError::Corrupt(format!("webhook event types: {e}")))?,
        secret: row.get(4),
        enabled: flag(row, 5),
        created_by: row.get(6),
        created_at: row.get(7),
        secret_sealed: flag(row, 8),
    })
}

impl MetaStore {
    /// Adds a webhook to an existing project; returns it.
    pub async fn create_webhook(&self, new: &NewWebhook<'_>) -> Result<Webhook> {
        let types = serde_json::to_string(new.event_types).expect("strings serialize");
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(&format!(
            "INSERT INTO webhooks (project, url, event_types, secret, enabled, created_by, created_at, \
             secret_sealed) VALUES ($1, $2, $3, $4, 1, $5, $6, 1) RETURNING {COLUMNS}"
        ))
        .bind(new.project)
        .bind(new.url)
        .bind(types)
        .bind(new.secret)
        .bind(new.created_by)
        .bind(crate::now())
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        webhook(&row)
    }

    /// The webhooks of `project`, oldest first.
    pub async fn webhooks(&self, project: &str) -> Result<Vec<Webhook>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM webhooks WHERE project = $1 ORDER BY id"
        ))
        .bind(project)
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(webhook).collect()
    }

    /// Every enabled webhook, by project then id.
    pub async fn enabled_webhooks(&self) -> Result<Vec<Webhook>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM webhooks WHERE enabled = 1 ORDER BY project, id"
        ))
        .fetch_all(&self.writer)
        .await?;
        rows.iter().map(webhook).collect()
    }

    /// Webhook `id` of `project`, if it exists.
    pub async fn webhook(&self, project: &str, id: i64) -> Result<Option<Webhook>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM webhooks WHERE project = $1 AND id = $2"
        ))
        .bind(project)
        .bind(id)
        .fetch_optional(&self.readers)
        .await?;
        row.as_ref().map(webhook).transpose()
    }

    /// Changes webhook `id` of `project`: its URL, event types and whether it is enabled (a
    /// disabled webhook gets no deliveries; its secret stays). Returns it, `None` when there
    /// was none.
    pub async fn update_webhook(
        &self,
        project: &str,
        id: i64,
        url: &str,
        event_types: &[String],
        enabled: bool,
    ) -> Result<Option<Webhook>> {
        let types = serde_json::to_string(event_types).expect("strings serialize");
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(&format!(
            "UPDATE webhooks SET url = $3, event_types = $4, enabled = $5 \
             WHERE project = $1 AND id = $2 RETURNING {COLUMNS}"
        ))
        .bind(project)
        .bind(id)
        .bind(url)
        .bind(types)
        .bind(i64::from(enabled))
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.as_ref().map(webhook).transpose()
    }

    /// Removes webhook `id` of `project`; `false` when there was none. Deliveries already
    /// queued are dropped when their turn comes.
    pub async fn delete_webhook(&self, project: &str, id: i64) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query("DELETE FROM webhooks WHERE project = $1 AND id = $2")
            .bind(project)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        tx.commit().await?;
        Ok(deleted)
    }

    /// Webhooks whose secret is stored as written before secrets were sealed.
    pub async fn webhooks_with_plain_secrets(&self) -> Result<Vec<Webhook>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM webhooks WHERE secret_sealed = 0 ORDER BY id"
        ))
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(webhook).collect()
    }

    /// Replaces webhook `id`'s plain secret with its sealed form; `false` when it was sealed
    /// already (by another server) or is gone.
    pub async fn seal_webhook_secret(&self, id: i64, sealed: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let sealed = sqlx::query(
            "UPDATE webhooks SET secret = $1, secret_sealed = 1 WHERE id = $2 AND secret_sealed = 0",
        )
        .bind(sealed)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        tx.commit().await?;
        Ok(sealed)
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::fresh_store;

    /// A row from before sealing (written as the old code did) is listed until sealed, once.
    #[tokio::test]
    async fn plain_secrets_are_listed_until_sealed_once() {
        let (_dir, _, store) = fresh_store().await;
        store.create_project("team", false, None).await.unwrap();
        sqlx::query(
            "INSERT INTO webhooks (project, url, event_types, secret, enabled, created_by, created_at) \
             VALUES ('team', 'http://hook.example', '[\"artifact.pushed\"]', 'plain', 1, 'admin', 0)",
        )
        .execute(&store.writer)
        .await
        .unwrap();
        let plain = store.webhooks_with_plain_secrets().await.unwrap();
        assert_eq!(plain.len(), 1);
        assert!(!plain[0].secret_sealed);
        assert!(store
            .seal_webhook_secret(plain[0].id, "v1:sealed")
            .await
            .unwrap());
        assert!(!store
            .seal_webhook_secret(plain[0].id, "v1:again")
            .await
            .unwrap());
        assert!(store
            .webhooks_with_plain_secrets()
            .await
            .unwrap()
            .is_empty());
        let stored = store.webhook("team", plain[0].id).await.unwrap().unwrap();
        assert_eq!(
            (stored.secret.as_str(), stored.secret_sealed),
            ("v1:sealed", true)
        );
    }
}
