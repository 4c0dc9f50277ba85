//! The access service. The server asks it three things: who is calling (Basic credentials,
//! a bearer token, or nobody), may that caller do this action here, and which token to issue
//! for a token request. Decisions come from `gantry_auth::allows`; this crate supplies the
//! facts (project visibility, roles, credential state) from the metadata store, keeps the
//! short caches that make per-request checks cheap, throttles failed logins and writes the
//! audit log off the request path.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gantry_auth::scope::Resource;
use gantry_auth::throttle::{Admission, LoginAttempt, LoginThrottle, ThrottleRules};
use gantry_auth::token::Access as TokenAccess;
use gantry_auth::{Action, Claims, Identity, ProjectAccess, Role, Scope, Target, TokenKey};
use gantry_meta::{Credential, MetaError, MetaStore};
use gantry_metrics::{LoginResult, Metrics, MetricsOptions};
use gantry_oci::RepositoryName;
use sha2::Digest as _;

mod accounts;
mod audit;
mod cache;
pub mod limits;
mod projects;
mod web;

pub use accounts::{
    valid_account_name, Actor, CredentialKind, MintedCredential, NewCiToken, NewRobot,
};
pub use audit::{AuditEntry, AuditLog};
use cache::TtlCache;
pub use projects::{valid_project_name, AuditFilter, VisibleProject};
pub use web::{ActingAs, SignedIn, WEB_SESSION_TTL};

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// No credentials, or credentials that do not authenticate anyone: 401 with a challenge.
    #[error("{0}")]
    Unauthenticated(String),
    /// An authenticated caller who may not do this: 403.
    #[error("{0}")]
    Denied(String),
    /// A bearer token that lacks the scope the request needs, when the token endpoint would
    /// grant it: 401 with a challenge `error="insufficient_scope"` naming the scope, so the
    /// client fetches a better token (the Docker token spec, CNCF Distribution).
    /// `repeated`: the same token was already told so for the same need, and the client sent
    /// it again instead of fetching another; then 403 with the same challenge (RFC 6750's
    /// status for insufficient_scope), which clients such as the oras Python SDK need before
    /// they fetch a new token.
    #[error("{message}")]
    InsufficientScope { message: String, repeated: bool },
    #[error("too many failed logins from this client or for this user; try again in {retry_after_secs} s")]
    Throttled { retry_after_secs: u64 },
    /// Pushing into a project that does not exist (and is not created automatically).
    #[error("project {0:?} does not exist: create it first (gantry project create {0}) or enable auto_create_projects")]
    ProjectUnknown(String),
    /// A malformed request to the token endpoint or the API.
    #[error("{0}")]
    Invalid(String),
    /// No such project, user, member or credential (the API).
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("password hashing failed: {0}")]
    Hashing(String),
}

pub type Result<T> = std::result::Result<T, AccessError>;

/// How the access service behaves; see the server's configuration for the defaults.
#[derive(Debug, Clone)]
pub struct AccessConfig {
    /// The `service` of the token spec, and the audience of issued tokens.
    pub service: String,
    /// The `iss` claim of issued tokens.
    pub issuer: String,
    pub token_ttl: Duration,
    /// Lifetime of the refresh tokens given to OAuth2 clients that ask for offline access.
    pub refresh_ttl: Duration,
    /// Whether pushing to a project that does not exist creates it (the pusher becomes its
    /// project admin) instead of being refused.
    pub auto_create_projects: bool,
    pub throttle: ThrottleRules,
    /// Where logins are counted (the process's metrics, which `/metrics` shows).
    pub metrics: Arc<Metrics>,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            service: "gantry".into(),
            issuer: "gantry".into(),
            token_ttl: Duration::from_secs(300),
            refresh_ttl: Duration::from_secs(24 * 3600),
            auto_create_projects: false,
            throttle: ThrottleRules::default(),
            metrics: Arc::new(
                Metrics::new(MetricsOptions::default()).expect("metric families are distinct"),
            ),
        }
    }
}

/// Who is calling, as the request's `Authorization` header says.
#[derive(Debug, Clone)]
pub enum Caller {
    /// A verified identity (Basic credentials, or a bearer token on the API).
    Identity(Identity),
    /// A registry bearer token: only its `access` claim counts.
    Token(Box<Claims>),
}

impl Caller {
    pub fn anonymous() -> Caller {
        Caller::Identity(Identity::Anonymous)
    }

    pub fn name(&self) -> &str {
        match self {
            Caller::Identity(identity) => identity.name(),
            Caller::Token(claims) => &claims.sub,
        }
    }

    pub fn is_anonymous(&self) -> bool {
        self.name().is_empty()
    }
}

/// How credentials reached the server; the audit log records it with each login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginVia {
    /// Basic credentials on a registry or API request.
    Basic,
    /// Basic credentials at the token endpoint (docker, skopeo, podman, oras).
    TokenEndpoint,
    /// The OAuth2 password grant (containerd).
    OAuth2Password,
    /// The web UI's sign-in form.
    Web,
}

impl LoginVia {
    fn as_str(self) -> &'static str {
        match self {
            LoginVia::Basic => "basic",
            LoginVia::TokenEndpoint => "token-endpoint",
            LoginVia::OAuth2Password => "oauth2-password",
            LoginVia::Web => "web",
        }
    }
}

/// A token as the token endpoint returns it.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub expires_in: u64,
    pub issued_at: u64,
    pub refresh_token: Option<String>,
    /// The scopes granted, in the spec's string form.
    pub granted: Vec<String>,
}

/// Prefixes of the names of scoped credentials. Users may not contain `$`, so a name says by
/// itself whether it is a user or a credential.
pub const ROBOT_PREFIX: &str = "robot$";
pub const CI_PREFIX: &str = "ci$";

/// The token type API clients ask for with the scope `api:v1:*`.
const API_SCOPE_TYPE: &str = "api";
/// Audience suffix of refresh tokens, so they cannot be used as access tokens.
const REFRESH_AUDIENCE_SUFFIX: &str = "#refresh";
/// How long a verified Basic credential is trusted before it is checked again.
const VERIFIED_TTL: Duration = Duration::from_secs(60);
/// How long a credential's active state is trusted for bearer tokens issued to it.
const CREDENTIAL_STATE_TTL: Duration = Duration::from_secs(5);
/// How long a project's visibility and a member's role are trusted. Changes made through this
/// server apply at once, and other replicas see them through the change counter.
const PROJECT_ACCESS_TTL: Duration = Duration::from_secs(2);
/// How often a server reads the `access` change counter that every change to users,
/// credentials, projects and members bumps, dropping its caches when another server moved
/// it: how long another replica may lag behind a change (plus a request's own duration).
const CHANGE_POLL: Duration = Duration::from_secs(1);
/// The change counter of what the caches hold.
const ACCESS_COUNTER: &str = "access";

/// The prefix of the change counters that remember a token was told its scope is
/// insufficient (`<prefix><jti>:<repository>:<action>`).
const SCOPE_ANSWERS: &str = "insufficient-scope:";
/// Concurrent Argon2 verifications (each uses 19 MiB): bounds memory under a login flood.
const PASSWORD_CHECKS: usize = 4;
/// Concurrent verifications for clients at a locked-out address (on top of their turn in
/// `PASSWORD_CHECKS`): one, so a guessing client cannot use the whole verifier.
const LOCKED_ADDRESS_PASSWORD_CHECKS: usize = 1;

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The project of a repository: the first path component of its name.
pub fn project_of(repository: &str) -> &str {
    repository.split('/').next().unwrap_or(repository)
}

/// The token-spec action that stands for a registry action (listing counts as pulling).
fn token_action(action: Action) -> Option<&'static str> {
    match action {
        Action::Pull | Action::List => Some("pull"),
        Action::Push => Some("push"),
        Action::Delete => Some("delete"),
        _ => None,
    }
}

fn parse_action(name: &str) -> Option<Action> {
    match name {
        "pull" => Some(Action::Pull),
        "push" => Some(Action::Push),
        "delete" => Some(Action::Delete),
        _ => None,
    }
}

/// The identity a stored credential acts as.
fn scoped_identity(credential: &Credential) -> Identity {
    Identity::Scoped {
        name: credential.name.clone(),
        project: credential.project.clone(),
        repository: credential.repository.clone(),
        actions: credential
            .actions
            .iter()
            .filter_map(|a| parse_action(a))
            .collect::<BTreeSet<_>>(),
    }
}

pub struct AccessService {
    meta: MetaStore,
    key: TokenKey,
    config: AccessConfig,
    login_throttle: LoginThrottle,
    /// SHA-256 of "user\0password" → the identity it verified as.
    verified: TtlCache<[u8; 32], Identity>,
    /// Credential name → whether it is still active (for bearer tokens issued to it).
    credential_active: TtlCache<String, bool>,
    /// (project, user name or "") → the project's visibility and the user's role, if it exists.
    project_access: TtlCache<(String, String), Option<ProjectAccess>>,
    /// The `access` change counter as last read (`i64::MIN`: not read yet), when it was
    /// read, and a lock so that one request at a time reads it.
    access_version: std::sync::atomic::AtomicI64,
    access_version_read_at: parking_lot::Mutex<Option<std::time::Instant>>,
    access_version_reading: tokio::sync::Mutex<()>,
    password_checks: tokio::sync::Semaphore,
    /// Password checks for clients whose address is locked out: they wait for one another
    /// (slowed down) but are still checked, so a valid password is never refused.
    locked_address_checks: tokio::sync::Semaphore,
    /// An Argon2 hash verified when the user does not exist, so that the answer takes as
    /// long as for a real user.
    dummy_hash: String,
    audit: AuditLog,
}

fn throttled(locked: gantry_auth::throttle::Locked) -> AccessError {
    AccessError::Throttled {
        retry_after_secs: locked.retry_after_secs,
    }
}

/// The audit entry of a login attempt (`detail`: why it failed or was refused).
fn login_audit(
    attempt: &LoginAttempt<'_>,
    via: LoginVia,
    result: LoginResult,
    detail: Option<String>,
) -> AuditEntry {
    let outcome = match result {
        LoginResult::Success => "success",
        LoginResult::Failure => "failure",
        LoginResult::Throttled => "denied",
    };
    AuditEntry {
        actor: attempt.name.chars().take(100).collect(),
        action: "login".into(),
        resource: via.as_str().into(),
        project: None,
        client: attempt.address.to_string(),
        outcome: outcome.into(),
        detail,
    }
}

impl AccessService {
    pub fn new(meta: MetaStore, key: TokenKey, config: AccessConfig) -> Result<Arc<Self>> {
        let dummy_hash = gantry_auth::password::hash("gantry-timing-equaliser")
            .map_err(|e| AccessError::Hashing(e.to_string()))?;
        Ok(Arc::new(AccessService {
            audit: AuditLog::start(meta.clone()),
            login_throttle: LoginThrottle::new(config.throttle),
            locked_address_checks: tokio::sync::Semaphore::new(LOCKED_ADDRESS_PASSWORD_CHECKS),
            meta,
            key,
            config,
            verified: TtlCache::new(10_000),
            credential_active: TtlCache::new(10_000),
            project_access: TtlCache::new(10_000),
            access_version: std::sync::atomic::AtomicI64::new(i64::MIN),
            access_version_read_at: parking_lot::Mutex::new(None),
            access_version_reading: tokio::sync::Mutex::new(()),
            password_checks: tokio::sync::Semaphore::new(PASSWORD_CHECKS),
            dummy_hash,
        }))
    }

    pub fn config(&self) -> &AccessConfig {
        &self.config
    }

    pub fn meta(&self) -> &MetaStore {
        &self.meta
    }

    pub fn audit_log(&self) -> &AuditLog {
        &self.audit
    }

    /// Verifies a user's password or a credential's secret; every outcome is audited as a
    /// login. Throttling follows `gantry_auth::throttle::LoginThrottle`: a locked user is
    /// refused (`Throttled`) before the password is checked; a locked address never refuses a
    /// valid credential, only answers its failures with `Throttled` and checks its passwords
    /// one at a time; scoped credentials are not throttled per address.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        client: &str,
        via: LoginVia,
    ) -> Result<Identity> {
        let now = now_secs();
        let attempt = LoginAttempt {
            name: username,
            address: client,
            secret: username.contains('$'),
        };
        let admission = self.admit_login(&attempt, via, now).await?;
        let (identity, known_user) = if attempt.secret {
            (self.verify_secret(username, password).await?, false)
        } else if admission.address_locked.is_some() {
            let _slowed = self
                .locked_address_checks
                .acquire()
                .await
                .map_err(|e| AccessError::Hashing(e.to_string()))?;
            self.verify_password(username, password).await?
        } else {
            self.verify_password(username, password).await?
        };
        match identity {
            Some(identity) => {
                self.record_login(&attempt, via, LoginResult::Success, None)
                    .await;
                self.login_throttle.succeeded(&attempt);
                Ok(identity)
            }
            None => {
                tracing::info!(user = %username.chars().take(100).collect::<String>(), client, "login failed");
                // A wrong credential is a failure; from a locked-out address it is also refused.
                let (result, refused) = match self
                    .login_throttle
                    .failed(&attempt, admission, known_user, now)
                {
                    Ok(()) => (
                        LoginResult::Failure,
                        AccessError::Unauthenticated("invalid username or password".into()),
                    ),
                    Err(locked) => (LoginResult::Throttled, throttled(locked)),
                };
                self.record_login(&attempt, via, result, Some(refused.to_string()))
                    .await;
                Err(refused)
            }
        }
    }

    /// Audits a login attempt and counts it in the metrics.
    async fn record_login(
        &self,
        attempt: &LoginAttempt<'_>,
        via: LoginVia,
        result: LoginResult,
        detail: Option<String>,
    ) {
        self.config.metrics.login(result);
        self.audit
            .record(login_audit(attempt, via, result, detail))
            .await;
    }

    /// The throttle's admission of a login attempt; a refusal (the user is locked out) is
    /// audited and answered with `Throttled`.
    async fn admit_login(
        &self,
        attempt: &LoginAttempt<'_>,
        via: LoginVia,
        now: u64,
    ) -> Result<Admission> {
        match self.login_throttle.admit(attempt, now) {
            Ok(admission) => Ok(admission),
            Err(locked) => {
                let refused = throttled(locked);
                self.record_login(
                    attempt,
                    via,
                    LoginResult::Throttled,
                    Some(refused.to_string()),
                )
                .await;
                Err(refused)
            }
        }
    }

    async fn verify_password(
        &self,
        username: &str,
        password: &str,
    ) -> Result<(Option<Identity>, bool)> {
        let user = self.meta.user(username).await?;
        let stored = user
            .as_ref()
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| self.dummy_hash.clone());
        let password = password.to_string();
        let _permit = self
            .password_checks
            .acquire()
            .await
            .map_err(|e| AccessError::Hashing(e.to_string()))?;
        let matches =
            tokio::task::spawn_blocking(move || gantry_auth::password::verify(&password, &stored))
                .await
                .map_err(|e| AccessError::Hashing(e.to_string()))?;
        let known = user.is_some();
        Ok((
            user.filter(|_| matches).map(|u| Identity::User {
                name: u.name,
                system_admin: u.system_admin,
            }),
            known,
        ))
    }

    async fn verify_secret(&self, username: &str, secret: &str) -> Result<Option<Identity>> {
        let hash = gantry_auth::secret::digest(secret);
        let found = self
            .meta
            .active_credential(&hash, now_secs() as i64)
            .await?;
        Ok(found
            .filter(|c| c.name == username)
            .map(|c| scoped_identity(&c)))
    }

    /// Basic credentials: verified once, then trusted for a minute (only a real verification
    /// is audited as a login).
    pub async fn basic(
        &self,
        username: &str,
        password: &str,
        client: &str,
        via: LoginVia,
    ) -> Result<Identity> {
        self.catch_up_with_other_servers().await;
        let mut hasher = sha2::Sha256::new();
        hasher.update(username.as_bytes());
        hasher.update([0]);
        hasher.update(password.as_bytes());
        let key: [u8; 32] = hasher.finalize().into();
        if let Some(identity) = self.verified.get(&key) {
            // A locked-out user is refused even with a remembered password: otherwise the
            // right guess would be answered differently (from here) than the wrong ones.
            let attempt = LoginAttempt {
                name: username,
                address: client,
                secret: username.contains('$'),
            };
            self.admit_login(&attempt, via, now_secs()).await?;
            return Ok(identity);
        }
        let identity = self.login(username, password, client, via).await?;
        self.verified.insert(key, identity.clone(), VERIFIED_TTL);
        Ok(identity)
    }

    /// Verifies a bearer token issued by this registry.
    pub fn bearer(&self, token: &str) -> Result<Caller> {
        self.key
            .verify(token, &self.config.service, now_secs())
            .map(|claims| Caller::Token(Box::new(claims)))
            .map_err(|e| AccessError::Unauthenticated(e.to_string()))
    }

    /// The identity behind a token's subject, as it is now (a revoked credential or a deleted
    /// user is nobody).
    pub async fn subject(&self, sub: &str) -> Result<Identity> {
        let gone =
            || AccessError::Unauthenticated(format!("{sub:?} no longer exists or was revoked"));
        if sub.is_empty() {
            return Ok(Identity::Anonymous);
        }
        if sub.contains('$') {
            let credential = self.meta.credential(sub).await?.ok_or_else(gone)?;
            let active = credential.revoked_at.is_none()
                && credential
                    .expires_at
                    .is_none_or(|at| at > now_secs() as i64);
            return if active {
                Ok(scoped_identity(&credential))
            } else {
                Err(gone())
            };
        }
        let user = self.meta.user(sub).await?.ok_or_else(gone)?;
        Ok(Identity::User {
            name: user.name,
            system_admin: user.system_admin,
        })
    }

    /// Forgets cached verifications of `name` (after revocation, deletion or a password
    /// change), here at once and on other replicas within `CHANGE_POLL`.
    pub async fn forget(&self, name: &str) {
        self.verified.retain(|_, identity| identity.name() != name);
        self.credential_active.remove(&name.to_string());
        self.announce_change().await;
    }

    /// Forgets cached project facts after a change to projects, members or users, here at
    /// once and on other replicas within `CHANGE_POLL`.
    pub async fn permissions_changed(&self) {
        self.project_access.retain(|_, _| false);
        self.announce_change().await;
    }

    /// Bumps the `access` change counter, so that other servers drop their caches. The
    /// change itself is already stored: should the bump fail, they catch up when their
    /// cached entries expire (at most `VERIFIED_TTL`).
    async fn announce_change(&self) {
        if let Err(e) = self.meta.bump_change_counter(ACCESS_COUNTER).await {
            tracing::warn!(error = %e, "cannot tell other servers of an access change");
        }
    }

    /// Drops every cached verification and project fact when another server changed users,
    /// credentials, projects or members since the counter was last read; reads it at most
    /// every `CHANGE_POLL`, one request at a time (the others go on with the caches).
    async fn catch_up_with_other_servers(&self) {
        use std::sync::atomic::Ordering;
        let due = self
            .access_version_read_at
            .lock()
            .is_none_or(|at| at.elapsed() >= CHANGE_POLL);
        if !due {
            return;
        }
        let Ok(_reading) = self.access_version_reading.try_lock() else {
            return;
        };
        let version = match self.meta.change_counter(ACCESS_COUNTER).await {
            Ok(version) => version,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the access change counter");
                return;
            }
        };
        *self.access_version_read_at.lock() = Some(std::time::Instant::now());
        let seen = self.access_version.swap(version, Ordering::SeqCst);
        if seen != version && seen != i64::MIN {
            self.verified.retain(|_, _| false);
            self.credential_active.retain(|_, _| false);
            self.project_access.retain(|_, _| false);
        }
    }

    /// Whether the project exists, is public, and the user's role in it; `None`: no project.
    async fn project_access(
        &self,
        identity: &Identity,
        project: &str,
    ) -> Result<Option<ProjectAccess>> {
        self.catch_up_with_other_servers().await;
        let user = match identity {
            Identity::User { name, .. } => Some(name.as_str()),
            _ => None,
        };
        let key = (project.to_string(), user.unwrap_or_default().to_string());
        if let Some(access) = self.project_access.get(&key) {
            return Ok(access);
        }
        let row = self.meta.project_access(project, user).await?;
        let access = row.map(|row| ProjectAccess {
            public: row.public,
            role: row.role.and_then(|r| r.parse::<Role>().ok()),
        });
        self.project_access.insert(key, access, PROJECT_ACCESS_TTL);
        Ok(access)
    }

    async fn project_exists(&self, project: &str) -> Result<bool> {
        Ok(self
            .project_access(&Identity::Anonymous, project)
            .await?
            .is_some())
    }

    /// Whether `identity` may do `action` on `repository` (or on the whole project when
    /// `repository` is None). A project that does not exist grants nothing to anyone but
    /// system administrators.
    pub async fn may(
        &self,
        identity: &Identity,
        project: &str,
        repository: Option<&str>,
        action: Action,
    ) -> Result<bool> {
        let access = self
            .project_access(identity, project)
            .await?
            .unwrap_or(ProjectAccess {
                public: false,
                role: None,
            });
        Ok(gantry_auth::allows(
            identity,
            Target {
                project,
                repository,
            },
            access,
            action,
        ))
    }

    /// The refusal for a caller who may not do something: 401 for nobody, 403 for somebody.
    fn refusal(caller_name: &str, what: String) -> AccessError {
        if caller_name.is_empty() {
            AccessError::Unauthenticated(format!("authentication required to {what}"))
        } else {
            AccessError::Denied(format!("{caller_name:?} may not {what}"))
        }
    }

    /// Authorizes one registry request. A push into a project that does not exist creates
    /// the project when auto-creation is on, with the pusher as its project admin.
    pub async fn authorize(
        &self,
        caller: &Caller,
        repository: &RepositoryName,
        action: Action,
    ) -> Result<()> {
        let project = project_of(repository.as_str());
        let what = || format!("{} {repository}", verb(action));
        let allowed = match caller {
            Caller::Token(claims) => {
                let in_token = token_action(action)
                    .is_some_and(|a| claims.allows("repository", repository.as_str(), a));
                if !in_token {
                    return Err(self
                        .token_lacks_scope(claims, repository, action, what())
                        .await?);
                }
                self.token_subject_may(claims, project, repository, action)
                    .await?
            }
            Caller::Identity(identity) => {
                if action == Action::Push
                    && self.config.auto_create_projects
                    && matches!(identity, Identity::User { .. })
                    && !self.project_exists(project).await?
                {
                    self.create_project_on_push(identity.name(), project)
                        .await?;
                }
                self.may(identity, project, Some(repository.as_str()), action)
                    .await?
            }
        };
        if !allowed {
            return Err(Self::refusal(caller.name(), what()));
        }
        if action == Action::Push {
            self.ensure_project_for_push(caller, project).await?;
        }
        Ok(())
    }

    /// Forgets which tokens were told their scope is insufficient (see
    /// [`AccessService::token_lacks_scope`]): a periodic sweep, since the answers matter only
    /// while their tokens live (minutes). A sweep that meets a token still in use makes its
    /// next repeat answer 401 once more, after which the client asks for a new token.
    pub async fn forget_scope_answers(&self) -> Result<u64> {
        Ok(self.meta.forget_change_counters(SCOPE_ANSWERS).await?)
    }

    /// The answer to a token that does not carry the scope a request needs: insufficient
    /// scope when the token endpoint would grant it to the token's subject (a new token
    /// helps), else the refusal the subject itself would get (401 for nobody, 403 for
    /// somebody: no token will help).
    async fn token_lacks_scope(
        &self,
        claims: &Claims,
        repository: &RepositoryName,
        action: Action,
        what: String,
    ) -> Result<AccessError> {
        let Some(token_action) = token_action(action) else {
            return Ok(Self::refusal(&claims.sub, what));
        };
        let subject = match self.subject(&claims.sub).await {
            Ok(identity) => identity,
            Err(AccessError::Unauthenticated(message)) => {
                return Ok(AccessError::Unauthenticated(message))
            }
            Err(e) => return Err(e),
        };
        let project = project_of(repository.as_str());
        if !self
            .may_via_token(&subject, project, repository.as_str(), action)
            .await?
        {
            return Ok(Self::refusal(&claims.sub, what));
        }
        // Remembered in the database (a change counter per token, repository and action):
        // behind a balancer the client sends the same token again to another replica, which
        // must know it was told already. Two replicas answering at the same moment may both
        // say 401; the client then asks again and gets 403.
        let answered = format!(
            "{SCOPE_ANSWERS}{}:{}:{token_action}",
            claims.jti,
            repository.as_str()
        );
        let repeated = self.meta.change_counter(&answered).await? > 0;
        if !repeated {
            self.meta.bump_change_counter(&answered).await?;
        }
        Ok(AccessError::InsufficientScope {
            message: format!(
                "this token does not allow to {what}: ask the token endpoint for the scope in the challenge"
            ),
            repeated,
        })
    }

    /// What a token grants is fixed when it is issued, except that (a) a revoked or expired
    /// credential's tokens stop working within seconds, and (b) listing needs the List
    /// permission (limited guests pull but do not list), which the token spec has no action for.
    async fn token_subject_may(
        &self,
        claims: &Claims,
        project: &str,
        repository: &RepositoryName,
        action: Action,
    ) -> Result<bool> {
        if claims.sub.contains('$') && !self.credential_still_active(&claims.sub).await? {
            return Ok(false);
        }
        if action == Action::List {
            let identity = match self.subject(&claims.sub).await {
                Ok(identity) => identity,
                Err(AccessError::Unauthenticated(_)) => return Ok(false),
                Err(e) => return Err(e),
            };
            return self
                .may(&identity, project, Some(repository.as_str()), action)
                .await;
        }
        Ok(true)
    }

    async fn credential_still_active(&self, name: &str) -> Result<bool> {
        self.catch_up_with_other_servers().await;
        if let Some(active) = self.credential_active.get(&name.to_string()) {
            return Ok(active);
        }
        let active = match self.subject(name).await {
            Ok(_) => true,
            Err(AccessError::Unauthenticated(_)) => false,
            Err(e) => return Err(e),
        };
        self.credential_active
            .insert(name.to_string(), active, CREDENTIAL_STATE_TTL);
        Ok(active)
    }

    async fn create_project_on_push(&self, owner: &str, project: &str) -> Result<()> {
        match self.meta.create_project(project, false, Some(owner)).await {
            // Two first pushes racing: the other one created it.
            Ok(_) | Err(MetaError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
        self.permissions_changed().await;
        tracing::info!(project, owner, "created project on first push");
        self.audit
            .record(AuditEntry {
                actor: owner.to_string(),
                action: "project.create".into(),
                resource: project.to_string(),
                project: Some(project.to_string()),
                client: String::new(),
                outcome: "success".into(),
                detail: None,
            })
            .await;
        Ok(())
    }

    /// Pushing needs the project to exist (system administrators and bearer tokens get this
    /// far without a membership check that would have caught it).
    async fn ensure_project_for_push(&self, caller: &Caller, project: &str) -> Result<()> {
        if self.project_exists(project).await? {
            return Ok(());
        }
        if self.config.auto_create_projects {
            let owner = match caller {
                Caller::Token(claims) if !claims.sub.contains('$') => Some(claims.sub.as_str()),
                Caller::Identity(Identity::User { name, .. }) => Some(name.as_str()),
                _ => None,
            };
            if let Some(owner) = owner {
                return self.create_project_on_push(owner, project).await;
            }
        }
        Err(AccessError::ProjectUnknown(project.to_string()))
    }

    /// The identity that may list repositories: a token's subject, or the caller itself.
    pub async fn lister(&self, caller: &Caller) -> Result<Identity> {
        match caller {
            Caller::Identity(identity) => Ok(identity.clone()),
            Caller::Token(claims) => self.subject(&claims.sub).await,
        }
    }

    /// Keeps the repositories of `names` that `identity` may list (the catalog).
    pub async fn listable(&self, identity: &Identity, names: Vec<String>) -> Result<Vec<String>> {
        let mut projects: HashMap<String, Option<ProjectAccess>> = HashMap::new();
        let mut kept = Vec::with_capacity(names.len());
        for name in names {
            let project = project_of(&name).to_string();
            let access = match projects.get(&project) {
                Some(access) => *access,
                None => {
                    let access = self.project_access(identity, &project).await?;
                    projects.insert(project.clone(), access);
                    access
                }
            };
            let access = access.unwrap_or(ProjectAccess {
                public: false,
                role: None,
            });
            let target = Target {
                project: &project,
                repository: Some(&name),
            };
            if gantry_auth::allows(identity, target, access, Action::List) {
                kept.push(name);
            }
        }
        Ok(kept)
    }

    /// Issues a token for `scopes`, granting of each only what `identity` may do. Asking for
    /// more than allowed is not an error: the token simply does not carry it (the spec's
    /// behaviour, which clients rely on to discover their rights).
    pub async fn issue(
        &self,
        identity: &Identity,
        scopes: &[Scope],
        with_refresh: bool,
    ) -> Result<IssuedToken> {
        let mut access = Vec::new();
        let mut granted = Vec::new();
        for scope in scopes {
            let grant = match &scope.resource {
                Resource::Repository(name) => {
                    let project = project_of(name.as_str());
                    let mut allowed = BTreeSet::new();
                    for action in [Action::Pull, Action::Push, Action::Delete] {
                        if self
                            .may_via_token(identity, project, name.as_str(), action)
                            .await?
                        {
                            allowed.insert(action);
                        }
                    }
                    scope.granted(|_, action| allowed.contains(&action))
                }
                // Anyone may ask for the catalog; what it shows is filtered per caller.
                Resource::Catalog => Scope {
                    resource: Resource::Catalog,
                    actions: scope.actions.clone(),
                },
                Resource::Other { kind, .. } if kind == API_SCOPE_TYPE => Scope {
                    resource: scope.resource.clone(),
                    actions: if matches!(identity, Identity::Anonymous) {
                        BTreeSet::new()
                    } else {
                        scope.actions.clone()
                    },
                },
                Resource::Other { .. } => Scope {
                    resource: scope.resource.clone(),
                    actions: BTreeSet::new(),
                },
            };
            if !grant.actions.is_empty() {
                granted.push(grant.to_string());
            }
            access.push(TokenAccess::from(&grant));
        }
        let now = now_secs();
        let mut expires = now + self.config.token_ttl.as_secs();
        if let Identity::Scoped { name, .. } = identity {
            if let Some(at) = self.meta.credential(name).await?.and_then(|c| c.expires_at) {
                expires = expires.min(at.max(0) as u64);
            }
        }
        let claims = Claims {
            iss: self.config.issuer.clone(),
            sub: identity.name().to_string(),
            aud: self.config.service.clone(),
            exp: expires,
            nbf: now,
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
            access,
        };
        let refresh_token = (with_refresh && !matches!(identity, Identity::Anonymous)).then(|| {
            self.key.issue(&Claims {
                aud: format!("{}{REFRESH_AUDIENCE_SUFFIX}", self.config.service),
                exp: now + self.config.refresh_ttl.as_secs(),
                jti: uuid::Uuid::new_v4().to_string(),
                access: Vec::new(),
                ..claims.clone()
            })
        });
        Ok(IssuedToken {
            token: self.key.issue(&claims),
            expires_in: expires.saturating_sub(now),
            issued_at: now,
            refresh_token,
            granted,
        })
    }

    /// What a token may grant: the policy, plus pushing into a project that auto-creation
    /// would create for this user.
    async fn may_via_token(
        &self,
        identity: &Identity,
        project: &str,
        repository: &str,
        action: Action,
    ) -> Result<bool> {
        if self
            .may(identity, project, Some(repository), action)
            .await?
        {
            return Ok(true);
        }
        Ok(self.config.auto_create_projects
            && matches!(identity, Identity::User { .. })
            && matches!(action, Action::Pull | Action::Push)
            && !self.project_exists(project).await?)
    }

    /// The identity behind an OAuth2 refresh token (checked again now: a revoked credential's
    /// refresh token is worthless).
    pub async fn refresh(&self, refresh_token: &str) -> Result<Identity> {
        let audience = format!("{}{REFRESH_AUDIENCE_SUFFIX}", self.config.service);
        let claims = self
            .key
            .verify(refresh_token, &audience, now_secs())
            .map_err(|e| AccessError::Unauthenticated(format!("refresh token refused: {e}")))?;
        self.subject(&claims.sub).await
    }

    /// An API caller's identity from a bearer token, which must have been issued for the API
    /// (scope `api:v1:*`), not only for repositories.
    pub async fn api_identity(&self, caller: &Caller) -> Result<Identity> {
        match caller {
            Caller::Identity(identity) => Ok(identity.clone()),
            Caller::Token(claims) => {
                if !claims
                    .access
                    .iter()
                    .any(|a| a.kind == API_SCOPE_TYPE && !a.actions.is_empty())
                {
                    return Err(AccessError::Denied(
                        "this token was issued for the registry, not the API: ask the token endpoint for scope api:v1:*".into(),
                    ));
                }
                self.subject(&claims.sub).await
            }
        }
    }

    /// The `WWW-Authenticate` challenge for a request that needs `scope` (space-separated
    /// scopes of the token spec) and was refused with `error`; an insufficient scope says so
    /// with `error="insufficient_scope"` (RFC 6750 section 3.1, as Distribution does).
    pub fn challenge(&self, realm: &str, scope: Option<&str>, error: &AccessError) -> String {
        let mut challenge = format!(
            "Bearer realm=\"{realm}\",service=\"{}\"",
            self.config.service
        );
        if let Some(scope) = scope {
            challenge.push_str(&format!(",scope=\"{scope}\""));
        }
        if matches!(error, AccessError::InsufficientScope { .. }) {
            challenge.push_str(",error=\"insufficient_scope\"");
        }
        challenge
    }
}

/// How an action reads in an error message.
fn verb(action: Action) -> &'static str {
    match action {
        Action::Pull => "pull from",
        Action::Push => "push to",
        Action::Delete => "delete from",
        Action::List => "list",
        Action::ManageTagRules => "manage tag rules of",
        Action::ManageMembers => "manage members of",
        Action::ManageSettings => "change settings of",
    }
}

#[cfg(test)]
mod tests;
