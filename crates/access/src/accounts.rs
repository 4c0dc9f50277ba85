//! Accounts and credentials, as the REST API changes them: users and their passwords, robot
//! accounts and CI tokens. Each method checks that the [`Actor`] may make the change, makes
//! it, makes it apply to the next request (forgetting cached verifications) and audits it.
//! Names and password rules are checked here; passwords are hashed with Argon2 on a blocking
//! thread; secrets are minted here and returned once.

use std::collections::BTreeSet;

use gantry_auth::{Action, Identity};
use gantry_meta::{Credential, User};
use serde::Deserialize;

use crate::limits::{self, within};
use crate::{now_secs, AccessError, AccessService, AuditEntry, Result, CI_PREFIX, ROBOT_PREFIX};

/// An authenticated caller of the administrative API: who it is (for the permission checks)
/// and where it called from (for the audit log).
#[derive(Debug, Clone)]
pub struct Actor {
    pub identity: Identity,
    /// The client's address as the audit log records it.
    pub client: String,
}

impl Actor {
    pub fn name(&self) -> &str {
        self.identity.name()
    }

    pub fn is_system_admin(&self) -> bool {
        matches!(
            self.identity,
            Identity::User {
                system_admin: true,
                ..
            }
        )
    }

    /// Refuses ([`AccessError::Denied`]) unless the actor is a system administrator; `what`
    /// completes "only system administrators may …".
    pub fn require_system_admin(&self, what: &str) -> Result<()> {
        if self.is_system_admin() {
            Ok(())
        } else {
            Err(AccessError::Denied(format!(
                "only system administrators may {what}"
            )))
        }
    }

    /// Refuses ([`AccessError::Denied`] with `refusal`) unless the actor is a user (not a
    /// robot account or CI token).
    pub(crate) fn require_user(&self, refusal: &str) -> Result<()> {
        if matches!(self.identity, Identity::User { .. }) {
            Ok(())
        } else {
            Err(AccessError::Denied(refusal.into()))
        }
    }
}

/// The kinds of scoped credentials, as the metadata store names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// A robot account: a project's (or, for system administrators, a system-wide) long-lived
    /// pull/push/delete credential.
    Robot,
    /// A CI token: short-lived, minted by a user with at most the user's own rights.
    Ci,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Robot => "robot",
            CredentialKind::Ci => "ci",
        }
    }
}

/// A new robot account, as `POST /robots` and `POST /projects/{project}/robots` take it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRobot {
    pub name: String,
    /// pull, push, delete.
    pub actions: Vec<String>,
    /// Seconds until it expires; absent: never.
    #[serde(default)]
    pub expires_in_secs: Option<u64>,
}

/// A new CI token, as `POST /tokens` takes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCiToken {
    pub project: String,
    /// Limits the token to one repository of the project.
    #[serde(default)]
    pub repository: Option<String>,
    /// pull, push, delete.
    pub actions: Vec<String>,
    /// Lifetime in seconds [default: [`limits::DEFAULT_CI_TOKEN_TTL_SECS`]].
    #[serde(default)]
    pub ttl_secs: Option<u64>,
}

/// A credential just stored, with its secret: shown this once, only its digest is kept.
#[derive(Debug)]
pub struct MintedCredential {
    pub credential: Credential,
    pub secret: String,
}

/// User and robot names: lowercase letters, digits and `._-`, starting with a letter or
/// digit (no `$` or `+`, which mark credentials).
pub fn valid_account_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
}

fn check_password(password: &str) -> Result<()> {
    if password.chars().count() < 8 {
        return Err(AccessError::Invalid(
            "password is too short: use at least 8 characters".into(),
        ));
    }
    Ok(())
}

/// The Argon2id PHC string of `password`, computed on a blocking thread (it takes tens of
/// milliseconds and 19 MiB).
async fn hash_password(password: &str) -> Result<String> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || gantry_auth::password::hash(&password))
        .await
        .map_err(|e| AccessError::Hashing(e.to_string()))?
        .map_err(|e| AccessError::Hashing(e.to_string()))
}

/// Parses credential actions: known names only, at least one. Pushing implies pulling: clients
/// check which blobs a registry holds before they push.
fn credential_actions(actions: &[String]) -> Result<BTreeSet<Action>> {
    let mut parsed = BTreeSet::new();
    for action in actions {
        parsed.insert(match action.as_str() {
            "pull" => Action::Pull,
            "push" => Action::Push,
            "delete" => Action::Delete,
            other => {
                return Err(AccessError::Invalid(format!(
                    "unknown action {other:?}: use pull, push or delete"
                )))
            }
        });
    }
    if parsed.is_empty() {
        return Err(AccessError::Invalid(
            "give at least one action: pull, push or delete".into(),
        ));
    }
    if parsed.contains(&Action::Push) {
        parsed.insert(Action::Pull);
    }
    Ok(parsed)
}

fn action_names(actions: &BTreeSet<Action>) -> Vec<String> {
    actions
        .iter()
        .map(|a| match a {
            Action::Pull => "pull",
            Action::Push => "push",
            _ => "delete",
        })
        .map(str::to_string)
        .collect()
}

/// 64 random hex digits (the digest of a fresh random secret).
fn random_hex() -> String {
    gantry_auth::secret::generate("").1
}

impl AccessService {
    /// Records a successful change made by `actor` in the audit log.
    pub async fn record_change(
        &self,
        actor: &Actor,
        action: &str,
        resource: &str,
        project: Option<&str>,
    ) {
        self.record_change_detailed(actor, action, resource, project, None)
            .await;
    }

    /// Records a successful change made by `actor` in the audit log, with `detail` (what it
    /// did: counts, as JSON or prose).
    pub async fn record_change_detailed(
        &self,
        actor: &Actor,
        action: &str,
        resource: &str,
        project: Option<&str>,
        detail: Option<String>,
    ) {
        self.audit
            .record(AuditEntry {
                actor: actor.name().to_string(),
                action: action.to_string(),
                resource: resource.to_string(),
                project: project.map(str::to_string),
                client: actor.client.clone(),
                outcome: "success".into(),
                detail,
            })
            .await;
    }

    /// Records a change to projects, members or users, and makes it apply to the next request.
    pub(crate) async fn permissions_changed_by(
        &self,
        actor: &Actor,
        action: &str,
        resource: &str,
        project: Option<&str>,
    ) {
        self.permissions_changed().await;
        self.record_change(actor, action, resource, project).await;
    }

    /// Every user (system administrators).
    pub async fn users(&self, actor: &Actor) -> Result<Vec<User>> {
        actor.require_system_admin("list users")?;
        Ok(self.meta.users().await?)
    }

    /// Creates a user (system administrators): the name must be a valid account name and the
    /// password at least 8 characters. A taken name is `Meta(Conflict)`.
    pub async fn create_user(
        &self,
        actor: &Actor,
        name: &str,
        password: &str,
        system_admin: bool,
    ) -> Result<()> {
        actor.require_system_admin("create users")?;
        if !valid_account_name(name) {
            return Err(AccessError::Invalid(format!(
                "user name {name:?} is invalid: use lowercase letters, digits, '.', '_' or '-' (at most 64)"
            )));
        }
        check_password(password)?;
        let hash = hash_password(password).await?;
        self.meta.create_user(name, &hash, system_admin).await?;
        self.record_change(actor, "user.create", name, None).await;
        Ok(())
    }

    /// Deletes a user (system administrators, not themselves); their cached logins and
    /// memberships stop counting at once.
    pub async fn delete_user(&self, actor: &Actor, name: &str) -> Result<()> {
        actor.require_system_admin("delete users")?;
        if name == actor.name() {
            return Err(AccessError::Invalid("you cannot delete yourself".into()));
        }
        if !self.meta.delete_user(name).await? {
            return Err(AccessError::NotFound(format!("no user {name:?}")));
        }
        self.meta.delete_web_sessions_of(name).await?;
        self.forget(name).await;
        self.permissions_changed_by(actor, "user.delete", name, None)
            .await;
        Ok(())
    }

    /// Sets a user's password: their own, or anyone's for system administrators.
    pub async fn set_password(&self, actor: &Actor, name: &str, password: &str) -> Result<()> {
        if name != actor.name() {
            actor.require_system_admin("change other users' passwords")?;
        }
        check_password(password)?;
        let hash = hash_password(password).await?;
        if !self.meta.set_password(name, &hash).await? {
            return Err(AccessError::NotFound(format!("no user {name:?}")));
        }
        // Signed in elsewhere with the old password: those sessions end.
        self.meta.delete_web_sessions_of(name).await?;
        self.forget(name).await;
        self.record_change(actor, "user.password", name, None).await;
        Ok(())
    }

    /// Creates a robot account in `project` (its member managers may), or a system robot
    /// account when `project` is `None` (system administrators).
    pub async fn create_robot(
        &self,
        actor: &Actor,
        project: Option<&str>,
        robot: &NewRobot,
    ) -> Result<MintedCredential> {
        match project {
            Some(project) => {
                self.require(
                    actor,
                    project,
                    Action::ManageMembers,
                    "manage robot accounts",
                )
                .await?
            }
            None => actor.require_system_admin("create system robot accounts")?,
        }
        if !valid_account_name(&robot.name) {
            return Err(AccessError::Invalid(format!(
                "robot name {:?} is invalid: use lowercase letters, digits, '.', '_' or '-'",
                robot.name
            )));
        }
        let actions = credential_actions(&robot.actions)?;
        if let Some(secs) = robot.expires_in_secs {
            within("expires_in_secs", secs, limits::ROBOT_EXPIRES_IN_SECS)?;
        }
        let name = match project {
            Some(project) => format!("{ROBOT_PREFIX}{project}+{}", robot.name),
            None => format!("{ROBOT_PREFIX}{}", robot.name),
        };
        let credential = Credential {
            name,
            kind: CredentialKind::Robot.as_str().into(),
            project: project.map(str::to_string),
            repository: None,
            actions: action_names(&actions),
            expires_at: robot.expires_in_secs.map(|secs| (now_secs() + secs) as i64),
            revoked_at: None,
            created_by: actor.name().to_string(),
        };
        self.mint(actor, credential, "gantry_robot_").await
    }

    /// Mints a CI token: never more than the actor may do itself, and only users mint them.
    pub async fn create_ci_token(
        &self,
        actor: &Actor,
        token: &NewCiToken,
    ) -> Result<MintedCredential> {
        actor.require_user("only users can mint CI tokens")?;
        let actions = credential_actions(&token.actions)?;
        if self.meta.project(&token.project).await?.is_none() {
            return Err(AccessError::NotFound(format!(
                "project {:?} does not exist",
                token.project
            )));
        }
        if let Some(repository) = &token.repository {
            let valid = gantry_oci::RepositoryName::parse(repository).is_ok()
                && crate::project_of(repository) == token.project;
            if !valid {
                return Err(AccessError::Invalid(format!(
                    "repository {repository:?} is not a valid repository of project {:?}",
                    token.project
                )));
            }
        }
        for action in &actions {
            let allowed = self
                .may(
                    &actor.identity,
                    &token.project,
                    token.repository.as_deref(),
                    *action,
                )
                .await?;
            if !allowed {
                return Err(AccessError::Denied(format!(
                    "{:?} may not {action:?} in {:?}, so cannot mint a token that does",
                    actor.name(),
                    token.project
                )));
            }
        }
        let ttl = within(
            "ttl_secs",
            token.ttl_secs.unwrap_or(limits::DEFAULT_CI_TOKEN_TTL_SECS),
            limits::CI_TOKEN_TTL_SECS,
        )?;
        let suffix = &random_hex()[..12];
        let credential = Credential {
            name: format!("{CI_PREFIX}{}+{suffix}", token.project),
            kind: CredentialKind::Ci.as_str().into(),
            project: Some(token.project.clone()),
            repository: token.repository.clone(),
            actions: action_names(&actions),
            expires_at: Some((now_secs() + ttl) as i64),
            revoked_at: None,
            created_by: actor.name().to_string(),
        };
        self.mint(actor, credential, "gantry_ci_").await
    }

    /// Stores a new credential with a fresh secret (prefixed `secret_prefix`) and audits it.
    async fn mint(
        &self,
        actor: &Actor,
        credential: Credential,
        secret_prefix: &str,
    ) -> Result<MintedCredential> {
        let (secret, hash) = gantry_auth::secret::generate(secret_prefix);
        self.meta.create_credential(&credential, &hash).await?;
        self.record_change(
            actor,
            &format!("{}.create", credential.kind),
            &credential.name,
            credential.project.as_deref(),
        )
        .await;
        Ok(MintedCredential { credential, secret })
    }

    /// The credentials of `kind` in `project` (its member managers may), or the system robot
    /// accounts when `project` is `None` (system administrators).
    pub async fn credentials(
        &self,
        actor: &Actor,
        project: Option<&str>,
        kind: CredentialKind,
    ) -> Result<Vec<Credential>> {
        match (project, kind) {
            (Some(project), CredentialKind::Robot) => {
                self.require(actor, project, Action::ManageMembers, "list robot accounts")
                    .await?
            }
            (Some(project), CredentialKind::Ci) => {
                self.require(actor, project, Action::ManageMembers, "list CI tokens")
                    .await?
            }
            (None, _) => actor.require_system_admin("list system robot accounts")?,
        }
        Ok(self
            .meta
            .credentials(project)
            .await?
            .into_iter()
            .filter(|c| c.kind == kind.as_str())
            .collect())
    }

    /// Revokes a credential of `kind`: its project's member managers, system administrators,
    /// and for CI tokens whoever minted it may. Tokens issued to it stop working within
    /// seconds.
    pub async fn revoke(&self, actor: &Actor, name: &str, kind: CredentialKind) -> Result<()> {
        let kind_name = kind.as_str();
        let credential = self
            .meta
            .credential(name)
            .await?
            .filter(|c| c.kind == kind_name)
            .ok_or_else(|| AccessError::NotFound(format!("no {kind_name} credential {name:?}")))?;
        let own_token = kind == CredentialKind::Ci && credential.created_by == actor.name();
        match &credential.project {
            _ if own_token || actor.is_system_admin() => {}
            Some(project) => {
                self.require(actor, project, Action::ManageMembers, "revoke credentials")
                    .await?
            }
            None => actor.require_system_admin("revoke system robot accounts")?,
        }
        self.meta.revoke_credential(name).await?;
        self.forget(name).await;
        self.record_change(
            actor,
            &format!("{kind_name}.revoke"),
            name,
            credential.project.as_deref(),
        )
        .await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names_are_validated() {
        for good in ["alice", "ci-bot", "a.b_c", "0x"] {
            assert!(valid_account_name(good), "{good}");
        }
        for bad in [
            "",
            "Alice",
            "robot$x",
            "a+b",
            "-a",
            "a/b",
            &"a".repeat(65),
            "é",
        ] {
            assert!(!valid_account_name(bad), "{bad}");
        }
    }
}
