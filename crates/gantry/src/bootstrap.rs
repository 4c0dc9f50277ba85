//! First start on an empty data directory: create the `admin` system administrator, so that
//! a new registry is never without an owner. The password comes from GANTRY_ADMIN_PASSWORD
//! or is generated, shown once on stdout (never in the log) and written to a 0600 file.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;
use gantry_meta::MetaStore;

pub const ADMIN_USER: &str = "admin";
pub const PASSWORD_FILE: &str = "initial-admin-password";

/// Creates the admin user if the store has no users yet.
pub async fn ensure_admin(
    meta: &MetaStore,
    data_dir: &Path,
    given: Option<&str>,
) -> anyhow::Result<()> {
    if meta.user_count().await? > 0 {
        return Ok(());
    }
    let (password, generated) = match given {
        Some(p) if !p.is_empty() => (p.to_string(), false),
        _ => (gantry_auth::secret::generate("").0, true),
    };
    let hash = gantry_auth::password::hash(&password)?;
    if generated {
        let path = data_dir.join(PASSWORD_FILE);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        writeln!(file, "{password}").and_then(|_| file.sync_all())?;
        println!(
            "Created user {ADMIN_USER:?} with password {password}\n(also in {}, readable by this user only; change it after logging in)",
            path.display()
        );
    }
    meta.create_user(ADMIN_USER, &hash, true).await?;
    tracing::info!(
        user = ADMIN_USER,
        generated,
        "created the initial administrator"
    );
    Ok(())
}
