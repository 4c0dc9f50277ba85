//! Schema migrations, applied in order at start-up and recorded in `schema_migrations`.

use sqlx::SqlitePool;

use crate::Result;

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
];

/// The migration that starts keeping usage per project; data from before it is counted then.
const QUOTAS: i64 = 6;

pub async fn run(pool: &SqlitePool) -> Result<()> {
    sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)")
        .execute(pool)
        .await?;
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations")
        .fetch_all(pool)
        .await?;
    for (version, sql) in SQLITE {
        if applied.contains(version) {
            continue;
        }
        let mut tx = pool.begin().await?;
        sqlx::raw_sql(sql).execute(&mut *tx).await?;
        if *version == QUOTAS {
            crate::MetaStore::count_all_usage(&mut tx).await?;
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
