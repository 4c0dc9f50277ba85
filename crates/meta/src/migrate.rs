//! Schema migrations, applied in order at start-up and recorded in `schema_migrations`.
//!
//! Forward only: there are no down migrations. A database a newer gantry migrated is refused
//! (`MetaError::SchemaTooNew`) instead of being read with a schema this binary does not know;
//! going back to an older version means restoring the backup taken before the upgrade.

use sqlx::{Any, AnyConnection, AnyPool, Transaction};

use crate::{Backend, MetaError, Result};

const SQLITE: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_registry.sql")),
    (2, include_str!("../migrations/sqlite/0002_identity.sql")),
    (
        3,
        include_str!("../migrations/sqlite/0003_credentials_audit.sql"),
    ),
    (4, include_str!("../migrations/sqlite/0004_tag_rules.sql")),
    (
        5,
        include_str!("../migrations/sqlite/0005_pulls_retention.sql"),
    ),
    (6, include_str!("../migrations/sqlite/0006_quotas.sql")),
    (7, include_str!("../migrations/sqlite/0007_archives.sql")),
    (
        8,
        include_str!("../migrations/sqlite/0008_audit_detail.sql"),
    ),
    (
        9,
        include_str!("../migrations/sqlite/0009_push_times_in_microseconds.sql"),
    ),
    (10, include_str!("../migrations/sqlite/0010_browse.sql")),
    (
        11,
        include_str!("../migrations/sqlite/0011_usage_snapshots.sql"),
    ),
    (
        12,
        include_str!("../migrations/sqlite/0012_upload_hash_state.sql"),
    ),
    (
        13,
        include_str!("../migrations/sqlite/0013_replica_coordination.sql"),
    ),
    (
        14,
        include_str!("../migrations/sqlite/0014_browse_sizes.sql"),
    ),
    (
        15,
        include_str!("../migrations/sqlite/0015_jobs_events_webhooks.sql"),
    ),
    (16, include_str!("../migrations/sqlite/0016_vulndb.sql")),
    (
        17,
        include_str!("../migrations/sqlite/0017_scan_results.sql"),
    ),
    (
        18,
        include_str!("../migrations/sqlite/0018_signing_policies.sql"),
    ),
    (
        19,
        include_str!("../migrations/sqlite/0019_replication_rules.sql"),
    ),
    (
        20,
        include_str!("../migrations/sqlite/0020_upstream_fetches.sql"),
    ),
    (
        21,
        include_str!("../migrations/sqlite/0021_web_sessions.sql"),
    ),
    (
        22,
        include_str!("../migrations/sqlite/0022_webhook_secrets_sealed.sql"),
    ),
];

/// PostgreSQL starts at version 11 with the whole schema in one step (no PostgreSQL database
/// predates it); every later version has a file for each backend.
const POSTGRES: &[(i64, &str)] = &[
    (11, include_str!("../migrations/postgres/0011_baseline.sql")),
    (
        12,
        include_str!("../migrations/postgres/0012_upload_hash_state.sql"),
    ),
    (
        13,
        include_str!("../migrations/postgres/0013_replica_coordination.sql"),
    ),
    (
        14,
        include_str!("../migrations/postgres/0014_browse_sizes.sql"),
    ),
    (
        15,
        include_str!("../migrations/postgres/0015_jobs_events_webhooks.sql"),
    ),
    (16, include_str!("../migrations/postgres/0016_vulndb.sql")),
    (
        17,
        include_str!("../migrations/postgres/0017_scan_results.sql"),
    ),
    (
        18,
        include_str!("../migrations/postgres/0018_signing_policies.sql"),
    ),
    (
        19,
        include_str!("../migrations/postgres/0019_replication_rules.sql"),
    ),
    (
        20,
        include_str!("../migrations/postgres/0020_upstream_fetches.sql"),
    ),
    (
        21,
        include_str!("../migrations/postgres/0021_web_sessions.sql"),
    ),
    (
        22,
        include_str!("../migrations/postgres/0022_webhook_secrets_sealed.sql"),
    ),
];

/// A transaction-scoped advisory lock key held while migrating PostgreSQL, so that replicas
/// starting together migrate once (ASCII "gantryM").
const MIGRATION_LOCK: i64 = 0x67_616e_7472_794d;

/// The migration that starts keeping usage per project; data from before it is counted then.
const QUOTAS: i64 = 6;

/// The migration that starts keeping browse sizes; data from before it is counted then.
const BROWSE_SIZES: i64 = 14;

/// The newest schema version this binary knows (the last migration it carries).
pub fn latest_known_version() -> i64 {
    SQLITE.last().map_or(0, |(version, _)| *version)
}

fn migrations(backend: Backend) -> &'static [(i64, &'static str)] {
    match backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    }
}

/// Refuses a database whose applied migrations include one this binary does not carry: a
/// newer gantry wrote it, and this one would misread (or corrupt) what it does not know.
pub(crate) fn refuse_unknown_versions(applied: &[i64]) -> Result<()> {
    let unknown = applied
        .iter()
        .filter(|version| **version > latest_known_version())
        .max();
    match unknown {
        Some(&database) => Err(MetaError::SchemaTooNew {
            database,
            binary: latest_known_version(),
        }),
        None => Ok(()),
    }
}

/// Brings the database up to [`latest_known_version`], each migration in its own
/// transaction. Errors: `SchemaTooNew` when a newer gantry migrated the database (nothing is
/// changed then), or the database's own errors.
pub async fn run(pool: &AnyPool, backend: Backend) -> Result<()> {
    match backend {
        Backend::Postgres => {
            // One transaction: the lock makes replicas that start together migrate once, and
            // PostgreSQL's DDL is transactional.
            let mut tx = pool.begin().await?;
            crate::advisory_lock(&mut tx, MIGRATION_LOCK).await?;
            for (version, sql) in pending(&mut tx, backend).await? {
                apply(&mut tx, backend, version, sql).await?;
            }
            tx.commit().await?;
        }
        Backend::Sqlite => {
            // Each migration in its own transaction; the one writer connection is the lock.
            let pending = pending(&mut *pool.acquire().await?, backend).await?;
            for (version, sql) in pending {
                let mut tx = pool.begin().await?;
                apply(&mut tx, backend, version, sql).await?;
                tx.commit().await?;
            }
        }
    }
    Ok(())
}

/// The migrations of `backend` not yet applied, in order. Errors: `SchemaTooNew`.
async fn pending(
    connection: &mut AnyConnection,
    backend: Backend,
) -> Result<Vec<(i64, &'static str)>> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations \
         (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .execute(&mut *connection)
    .await?;
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations")
        .fetch_all(&mut *connection)
        .await?;
    refuse_unknown_versions(&applied)?;
    Ok(migrations(backend)
        .iter()
        .filter(|(version, _)| !applied.contains(version))
        .copied()
        .collect())
}

async fn apply(
    tx: &mut Transaction<'_, Any>,
    backend: Backend,
    version: i64,
    sql: &str,
) -> Result<()> {
    sqlx::raw_sql(sql).execute(&mut **tx).await?;
    if version == QUOTAS && backend == Backend::Sqlite {
        crate::MetaStore::count_all_usage(tx).await?;
    }
    if version == BROWSE_SIZES {
        crate::browse::fill_sizes(tx).await?;
    }
    sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
        .bind(version)
        .bind(crate::now())
        .execute(&mut **tx)
        .await?;
    tracing::info!(version, ?backend, "applied metadata migration");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upgrade that is rolled back by installing the older binary again must not run that
    /// binary on a schema it does not know: it stops, saying which versions and what to do.
    #[tokio::test]
    async fn older_binary_refuses_a_database_a_newer_gantry_migrated() {
        let (dir, store) = crate::tests::store().await;
        let newer = latest_known_version() + 1;
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, 0)")
            .bind(newer)
            .execute(&store.writer)
            .await
            .unwrap();
        store.close().await;
        let err = dir
            .reopen()
            .await
            .err()
            .expect("a database from a newer gantry is refused");
        let message = err.to_string();
        assert!(
            matches!(err, MetaError::SchemaTooNew { database, binary }
                if database == newer && binary == latest_known_version()),
            "{message}"
        );
        for what in [
            format!("schema version {newer}"),
            format!("up to {}", latest_known_version()),
            "gantry restore-backup".to_string(),
        ] {
            assert!(message.contains(&what), "{what:?} missing from: {message}");
        }
    }
}
