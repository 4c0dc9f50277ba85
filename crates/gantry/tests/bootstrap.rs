//! First start on an empty data directory creates the `admin` system administrator.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;
use gantry_meta::MetaStore;

async fn admin_hash(data: &std::path::Path) -> (bool, String) {
    let meta = MetaStore::open_sqlite(&data.join("gantry.db"))
        .await
        .unwrap();
    let admin = meta
        .user("admin")
        .await
        .unwrap()
        .expect("admin user exists");
    assert_eq!(meta.user_count().await.unwrap(), 1);
    meta.close().await;
    (admin.system_admin, admin.password_hash)
}

#[tokio::test]
async fn first_start_creates_admin_with_a_generated_password_in_a_private_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let generated = [("GANTRY_ADMIN_PASSWORD", "")];
    Server::start_with(&data, &generated).terminate();

    let file = data.join("initial-admin-password");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let password = std::fs::read_to_string(&file).unwrap().trim().to_string();
    assert!(
        password.len() >= 32,
        "generated password is long: {}",
        password.len()
    );
    let (system_admin, hash) = admin_hash(&data).await;
    assert!(system_admin);
    assert!(gantry_auth::password::verify(&password, &hash));

    // Later starts keep the admin and the file as they are.
    Server::start_with(&data, &generated).terminate();
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), password);
    assert_eq!(admin_hash(&data).await.1, hash);
}

#[tokio::test]
async fn admin_password_from_the_environment_is_used_and_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    Server::start_with(&data, &[("GANTRY_ADMIN_PASSWORD", "correct horse battery")]).terminate();
    assert!(!data.join("initial-admin-password").exists());
    let (_, hash) = admin_hash(&data).await;
    assert!(gantry_auth::password::verify(
        "correct horse battery",
        &hash
    ));
    assert!(!hash.contains("correct horse"));
}
