//! Schema migrations, applied in order at start-up and recorded in `schema_migrations`.
//!
//! Forward only: there are no down migrations. A database a newer gantry migrated is refused
//! (`MetaError::SchemaTooNew`) instead of being read with a schema this binary does not know;
//! going back to an older version means restoring the backup taken before the upgrade.

use sqlx::SqlitePool;

use crate::{MetaError, Result};

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
        include_str!("../migrations/sqlite/0012_browse_sizes.sql"),
    ),
];

/// The migration that starts keeping usage per project; data from before it is counted then.
const QUOTAS: i64 = 6;

/// The migration that starts keeping browse sizes; data from before it is counted then.
const BROWSE_SIZES: i64 = 12;

/// The newest schema version this binary knows (the last migration it carries).
pub fn latest_known_version() -> i64 {
    SQLITE.last().map_or(0, |(version, _)| *version)
}

/// Refuses a database whose applied migrations include one this binary does not carry: a
/// newer gantry wrote it, and this one would misread (or corrupt) what it does not know.
pub(crate) fn refuse_unknown_versions(applied: &[i64]) -> Result<()> {
    let unknown = applied
        .iter()
        .filter(|version| !SQLITE.iter().any(|(known, _)| known == *version))
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
pub async fn run(pool: &SqlitePool) -> Result<()> {
    sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)")
        .execute(pool)
        .await?;
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations")
        .fetch_all(pool)
        .await?;
    refuse_unknown_versions(&applied)?;
    for (version, sql) in SQLITE {
        if applied.contains(version) {
            continue;
        }
        let mut tx = pool.begin().await?;
        sqlx::raw_sql(sql).execute(&mut *tx).await?;
        if *version == QUOTAS {
            crate::MetaStore::count_all_usage(&mut tx).await?;
        }
        if *version == BROWSE_SIZES {
            crate::browse::fill_sizes(&mut tx).await?;
        }
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
            .bind(version)
            .bind(crate::now())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(version, "applied metadata migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MetaStore;

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
        let err = MetaStore::open_sqlite(&dir.path().join("meta.db"))
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
