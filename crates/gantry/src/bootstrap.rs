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
    let password_file = data_dir.join(PASSWORD_FILE);
    if generated {
        // Written before the user exists, so a generated password is never lost.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&password_file)
            .with_context(|| format!("cannot write {}", password_file.display()))?;
        writeln!(file, "{password}").and_then(|_| file.sync_all())?;
    }
    match meta.create_user(ADMIN_USER, &hash, true).await {
        Ok(_) => {}
        // Replicas starting together on one empty database all find no user; the first to
        // create the administrator wins, and the others start with it.
        Err(gantry_meta::MetaError::Conflict(_)) => {
            if generated {
                std::fs::remove_file(&password_file).with_context(|| {
                    format!(
                        "cannot remove {}, whose password another server's administrator did not get",
                        password_file.display()
                    )
                })?;
            }
            tracing::info!(
                user = ADMIN_USER,
                "another server sharing the database created the initial administrator"
            );
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    }
    if generated {
        println!(
            "Created user {ADMIN_USER:?} with password {password}\n(also in {}, readable by this user only; change it after logging in)",
            password_file.display()
        );
    }
    tracing::info!(
        user = ADMIN_USER,
        generated,
        "created the initial administrator"
    );
    Ok(())
}
