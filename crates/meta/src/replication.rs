//! Replication and preheat rules made through the REST API (the config file's are not
//! stored): the rule document as JSON, without the password, and the password sealed apart.
//! Every change bumps the change counter [`REPLICATION_RULES_COUNTER`], so each server
//! reloads the rules it runs.

use sqlx::Row;

use crate::{MetaError, MetaStore, Result};

/// The change counter bumped with every change to the stored rules.
pub const REPLICATION_RULES_COUNTER: &str = "replication-rules";

/// A rule as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRule {
    pub name: String,
    /// The project the rule belongs to; `None`: a system-wide rule.
    pub project: Option<String>,
    /// The mirror crate's rule document (JSON), without the password.
    pub definition: String,
    /// The remote registry's password, sealed (auth crate `sealed`).
    pub sealed_password: Option<String>,
    pub created_by: String,
    /// Unix seconds.
    pub updated_at: i64,
}

const COLUMNS: &str = "name, project, definition, sealed_password, created_by, updated_at";

fn stored_rule(row: &sqlx::any::AnyRow) -> StoredRule {
    StoredRule {
        name: row.get(0),
        project: row.get(1),
        definition: row.get(2),
        sealed_password: row.get(3),
        created_by: row.get(4),
        updated_at: row.get(5),
    }
}

impl MetaStore {
    /// Every stored rule, by name.
    pub async fn replication_rules(&self) -> Result<Vec<StoredRule>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM replication_rules ORDER BY name"
        ))
        .fetch_all(&self.readers)
        .await?;
        Ok(rows.iter().map(stored_rule).collect())
    }

    /// Adds `rule` (`replace` false: `Conflict` when one has its name) or replaces the rule
    /// of its name (`replace` true: `Ok(false)` when there is none); bumps the counter.
    pub async fn put_replication_rule(&self, rule: &StoredRule, replace: bool) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let exists: Option<String> =
            sqlx::query_scalar("SELECT name FROM replication_rules WHERE name = $1")
                .bind(&rule.name)
                .fetch_optional(&mut *tx)
                .await?;
        match (exists.is_some(), replace) {
            (true, false) => {
                return Err(MetaError::Conflict(format!(
                    "a replication rule named {:?} exists",
                    rule.name
                )))
            }
            (false, true) => return Ok(false),
            _ => {}
        }
        sqlx::query("DELETE FROM replication_rules WHERE name = $1")
            .bind(&rule.name)
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!(
            "INSERT INTO replication_rules ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
        ))
        .bind(&rule.name)
        .bind(&rule.project)
        .bind(&rule.definition)
        .bind(&rule.sealed_password)
        .bind(&rule.created_by)
        .bind(rule.updated_at)
        .execute(&mut *tx)
        .await?;
        bump_in(&mut tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Deletes the rule `name`; whether there was one. Bumps the counter.
    pub async fn delete_replication_rule(&self, name: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("DELETE FROM replication_rules WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        bump_in(&mut tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }
}

async fn bump_in(tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<()> {
    sqlx::query(crate::BUMP_CHANGE_COUNTER)
        .bind(REPLICATION_RULES_COUNTER)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fresh_store;

    fn rule(name: &str, definition: &str) -> StoredRule {
        StoredRule {
            name: name.into(),
            project: Some("team".into()),
            definition: definition.into(),
            sealed_password: Some("v1:sealed".into()),
            created_by: "admin".into(),
            updated_at: 1,
        }
    }

    #[tokio::test]
    async fn rules_are_added_once_replaced_and_deleted_and_each_change_is_counted() {
        let (_dir, _, store) = fresh_store().await;
        let before = store
            .change_counter(REPLICATION_RULES_COUNTER)
            .await
            .unwrap();
        assert!(store
            .put_replication_rule(&rule("a", "{}"), false)
            .await
            .unwrap());
        assert!(matches!(
            store.put_replication_rule(&rule("a", "{}"), false).await,
            Err(MetaError::Conflict(_))
        ));
        assert!(!store
            .put_replication_rule(&rule("b", "{}"), true)
            .await
            .unwrap());
        assert!(store
            .put_replication_rule(&rule("a", "{\"x\":1}"), true)
            .await
            .unwrap());
        assert_eq!(
            store.replication_rules().await.unwrap(),
            [rule("a", "{\"x\":1}")]
        );
        assert!(store.delete_replication_rule("a").await.unwrap());
        assert!(!store.delete_replication_rule("a").await.unwrap());
        assert!(store.replication_rules().await.unwrap().is_empty());
        let after = store
            .change_counter(REPLICATION_RULES_COUNTER)
            .await
            .unwrap();
        assert_eq!(after - before, 4);
    }
}
