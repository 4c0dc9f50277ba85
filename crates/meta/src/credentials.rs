//! Scoped credentials (robot accounts, CI tokens) and the audit log.

use sqlx::Row;

use crate::{conflict, now, MetaStore, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub name: String,
    /// `robot` or `ci`.
    pub kind: String,
    pub project: Option<String>,
    pub repository: Option<String>,
    pub actions: Vec<String>,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub created_by: String,
}

/// One audited action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub resource: String,
    pub project: Option<String>,
    pub client_addr: Option<String>,
    /// `success`, `failure` (wrong credentials) or `denied` (refused by a permission, tag rule,
    /// quota or throttle).
    pub outcome: String,
    /// For a refusal, what refused it, in the words the client was told.
    pub detail: Option<String>,
}

/// Which audit events to return, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery<'a> {
    pub project: Option<&'a str>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub limit: u32,
}

const CREDENTIAL_COLUMNS: &str =
    "name, kind, project, repository, actions, expires_at, revoked_at, created_by";

fn credential(row: sqlx::any::AnyRow) -> Credential {
    let actions: String = row.get(4);
    Credential {
        name: row.get(0),
        kind: row.get(1),
        project: row.get(2),
        repository: row.get(3),
        actions: actions
            .split(',')
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect(),
        expires_at: row.get(5),
        revoked_at: row.get(6),
        created_by: row.get(7),
    }
}

impl MetaStore {
    /// Stores a new credential; `secret_hash` is the SHA-256 (hex) of its secret.
    pub async fn create_credential(
        &self,
        credential: &Credential,
        secret_hash: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO credentials (name, kind, project, repository, actions, secret_hash, expires_at, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&credential.name)
        .bind(&credential.kind)
        .bind(&credential.project)
        .bind(&credential.repository)
        .bind(credential.actions.join(","))
        .bind(secret_hash)
        .bind(credential.expires_at)
        .bind(&credential.created_by)
        .bind(now())
        .execute(&self.writer)
        .await
        .map_err(conflict(format!("credential {:?} already exists", credential.name)))?;
        Ok(())
    }

    /// The credential whose secret hashes to `secret_hash`, if it is neither revoked nor
    /// expired at `at` (Unix seconds).
    pub async fn active_credential(
        &self,
        secret_hash: &str,
        at: i64,
    ) -> Result<Option<Credential>> {
        let row = sqlx::query(&format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE secret_hash = $1 \
             AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)"
        ))
        .bind(secret_hash)
        .bind(at)
        .fetch_optional(&self.readers)
        .await?;
        Ok(row.map(credential))
    }

    /// Revokes a credential by name; false if there is none (or it was revoked already).
    pub async fn revoke_credential(&self, name: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE credentials SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL",
        )
        .bind(now())
        .bind(name)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Credentials of a project (or the system-wide ones when `project` is None), by name.
    pub async fn credentials(&self, project: Option<&str>) -> Result<Vec<Credential>> {
        let rows = sqlx::query(&format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE project IS NOT DISTINCT FROM $1 ORDER BY name"
        ))
        .bind(project)
        .fetch_all(&self.readers)
        .await?;
        Ok(rows.into_iter().map(credential).collect())
    }

    /// The credential named `name`, whatever its state.
    pub async fn credential(&self, name: &str) -> Result<Option<Credential>> {
        let row = sqlx::query(&format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.readers)
        .await?;
        Ok(row.map(credential))
    }

    /// Records audit events in one transaction (the server batches them off the request path).
    pub async fn record_audit(&self, events: &[AuditEvent]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        record_audit_in(&mut tx, events).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn audit(&self, query: &AuditQuery<'_>) -> Result<Vec<AuditEvent>> {
        let rows = sqlx::query(
            "SELECT at, actor, action, resource, project, client_addr, outcome, detail FROM audit_log \
             WHERE ($1 IS NULL OR project = $1) AND ($2 IS NULL OR at >= $2) AND ($3 IS NULL OR at < $3) \
             ORDER BY at DESC, id DESC LIMIT $4",
        )
        .bind(query.project)
        .bind(query.since)
        .bind(query.until)
        .bind(query.limit as i64)
        .fetch_all(&self.readers)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| AuditEvent {
                at: r.get(0),
                actor: r.get(1),
                action: r.get(2),
                resource: r.get(3),
                project: r.get(4),
                client_addr: r.get(5),
                outcome: r.get(6),
                detail: r.get(7),
            })
            .collect())
    }
}

/// Inserts audit `events` inside `tx`.
pub(crate) async fn record_audit_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    events: &[AuditEvent],
) -> Result<()> {
    for event in events {
        sqlx::query(
            "INSERT INTO audit_log (at, actor, action, resource, project, client_addr, outcome, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(event.at)
        .bind(&event.actor)
        .bind(&event.action)
        .bind(&event.resource)
        .bind(&event.project)
        .bind(&event.client_addr)
        .bind(&event.outcome)
        .bind(&event.detail)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::store;
    use crate::MetaError;

    fn ci_token(name: &str, expires_at: Option<i64>) -> Credential {
        Credential {
            name: name.into(),
            kind: "ci".into(),
            project: Some("team-a".into()),
            repository: Some("team-a/app".into()),
            actions: vec!["pull".into(), "push".into()],
            expires_at,
            revoked_at: None,
            created_by: "alice".into(),
        }
    }

    #[tokio::test]
    async fn credentials_work_until_expiry_or_revocation() {
        let (_dir, store) = store().await;
        let at = 1_800_000_000;
        store
            .create_credential(&ci_token("ci-1", Some(at + 900)), "hash-1")
            .await
            .unwrap();
        store
            .create_credential(&ci_token("ci-2", None), "hash-2")
            .await
            .unwrap();
        assert!(matches!(
            store
                .create_credential(&ci_token("ci-1", None), "hash-3")
                .await,
            Err(MetaError::Conflict(_))
        ));

        let found = store
            .active_credential("hash-1", at)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found, ci_token("ci-1", Some(at + 900)));
        assert!(
            store
                .active_credential("hash-1", at + 900)
                .await
                .unwrap()
                .is_none(),
            "expired at its TTL"
        );
        assert!(store
            .active_credential("unknown", at)
            .await
            .unwrap()
            .is_none());

        assert!(store.revoke_credential("ci-2").await.unwrap());
        assert!(!store.revoke_credential("ci-2").await.unwrap());
        assert!(
            store
                .active_credential("hash-2", at)
                .await
                .unwrap()
                .is_none(),
            "revoked"
        );
        let listed = store.credentials(Some("team-a")).await.unwrap();
        assert_eq!(
            listed.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["ci-1", "ci-2"]
        );
        assert!(listed[1].revoked_at.is_some());
        assert_eq!(
            store.credential("ci-2").await.unwrap().unwrap().revoked_at,
            listed[1].revoked_at
        );
        assert!(store.credential("nope").await.unwrap().is_none());
        assert!(store.credentials(None).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn audit_log_filters_by_project_and_time_newest_first() {
        let (_dir, store) = store().await;
        let events: Vec<AuditEvent> =
            [(100, "a", "push"), (200, "b", "pull"), (300, "a", "delete")]
                .into_iter()
                .map(|(at, project, action)| AuditEvent {
                    at,
                    actor: "alice".into(),
                    action: action.into(),
                    resource: format!("{project}/app"),
                    project: Some(project.into()),
                    client_addr: Some("127.0.0.1".into()),
                    outcome: "denied".into(),
                    detail: Some(format!("{action} refused in {project}")),
                })
                .collect();
        store.record_audit(&events).await.unwrap();
        let all = store
            .audit(&AuditQuery {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            all.iter().map(|e| e.at).collect::<Vec<_>>(),
            [300, 200, 100]
        );
        let a = store
            .audit(&AuditQuery {
                project: Some("a"),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            a.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
            ["delete", "push"]
        );
        let window = store
            .audit(&AuditQuery {
                since: Some(150),
                until: Some(300),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(window.len(), 1);
        assert_eq!(window[0].action, "pull");
    }
}
