//! Stores for tests, on the backend the environment picks, so that one suite runs on each:
//! SQLite by default, PostgreSQL when `GANTRY_TEST_POSTGRES` names a server
//! (`scripts/test-all.sh` starts one and runs the suites both ways).

use crate::{now_us, DatabaseLocation, MetaStore};

/// The PostgreSQL server to test on, as an admin connection URL
/// (`postgres://USER@HOST:PORT/postgres`); unset: SQLite.
pub const POSTGRES_ENV: &str = "GANTRY_TEST_POSTGRES";

/// A fresh, empty, migrated store: an SQLite file in the returned temporary directory, or a
/// new database on the server `GANTRY_TEST_POSTGRES` names. Panics when it cannot be made.
pub async fn fresh_store() -> (tempfile::TempDir, DatabaseLocation, MetaStore) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let location = match std::env::var(POSTGRES_ENV) {
        Ok(admin) => DatabaseLocation::Postgres(fresh_postgres_database(&admin).await),
        Err(_) => DatabaseLocation::Sqlite(dir.path().join("meta.db")),
    };
    let store = MetaStore::open(&location)
        .await
        .unwrap_or_else(|e| panic!("cannot open a test store at {}: {e}", location.redacted()));
    (dir, location, store)
}

/// Creates an empty database on the server at `admin` and returns its URL.
async fn fresh_postgres_database(admin: &str) -> String {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let name = format!(
        "gantry_test_{}_{}_{}",
        std::process::id(),
        now_us(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let mut connection = sqlx::AnyConnection::connect(admin)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {POSTGRES_ENV}: {e}"));
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut connection)
        .await
        .expect("CREATE DATABASE");
    let mut url = url::Url::parse(admin).expect("GANTRY_TEST_POSTGRES is a URL");
    url.set_path(&name);
    url.to_string()
}
