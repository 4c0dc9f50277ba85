//! The REST API under `/api/v1`: users, projects, members, robot accounts, CI tokens and the
//! audit log, as JSON. `openapi.json` (served at `/api/v1/openapi.json`) describes it; a test
//! keeps the two in step. Callers authenticate with Basic credentials or a bearer token issued
//! for the scope `api:v1:*`; every decision goes through the access service.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use gantry_access::{now_secs, AccessError, AuditEntry, LoginVia, CI_PREFIX, ROBOT_PREFIX};
use gantry_auth::{Action, Identity, Role};
use gantry_lifecycle::archive::ArchiveSelector;
use gantry_lifecycle::retention::{Keep, Policy};
use gantry_lifecycle::TagRules;
use gantry_meta::{AuditQuery, Credential, Quota, Usage};
use http::{header, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auth::{self, client_address};
use crate::error::ApiError;
use crate::AppState;

pub const OPENAPI: &str = include_str!("openapi.json");

const DEFAULT_CI_TOKEN_TTL_SECS: u64 = 15 * 60;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/users", get(list_users).post(create_user))
        .route("/api/v1/users/{user}", axum::routing::delete(delete_user))
        .route("/api/v1/users/{user}/password", put(set_password))
        .route("/api/v1/projects", get(list_projects).post(create_project))
        .route(
            "/api/v1/projects/{project}",
            get(show_project)
                .patch(update_project)
                .delete(delete_project),
        )
        .route("/api/v1/projects/{project}/members", get(list_members))
        .route(
            "/api/v1/projects/{project}/tag-rules",
            get(show_tag_rules).put(set_tag_rules),
        )
        .route(
            "/api/v1/projects/{project}/retention",
            get(show_retention).put(set_retention),
        )
        .route(
            "/api/v1/projects/{project}/retention/runs",
            get(retention_history).post(run_retention),
        )
        .route(
            "/api/v1/projects/{project}/quota",
            get(show_quota).put(set_quota),
        )
        .route(
            "/api/v1/projects/{project}/quota/recount",
            axum::routing::post(recount_quota),
        )
        .route("/api/v1/quotas", get(list_quotas))
        .route(
            "/api/v1/projects/{project}/archives",
            get(list_archives).post(run_archive),
        )
        .route(
            "/api/v1/projects/{project}/archives/{id}",
            axum::routing::delete(delete_archive),
        )
        .route(
            "/api/v1/projects/{project}/archives/{id}/restore",
            axum::routing::post(restore_archive),
        )
        .route(
            "/api/v1/projects/{project}/members/{user}",
            put(set_member).delete(remove_member),
        )
        .route(
            "/api/v1/projects/{project}/robots",
            get(list_project_robots).post(create_project_robot),
        )
        .route(
            "/api/v1/robots",
            get(list_system_robots).post(create_system_robot),
        )
        .route(
            "/api/v1/robots/{robot}",
            axum::routing::delete(revoke_handler("robot")),
        )
        .route("/api/v1/tokens", get(list_tokens).post(create_token))
        .route(
            "/api/v1/tokens/{token}",
            axum::routing::delete(revoke_handler("ci")),
        )
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/gc", axum::routing::post(run_gc))
}

/// The authenticated caller of an API request and where it came from. Anonymous callers get
/// 401 on every API endpoint but the OpenAPI document.
pub struct ApiCaller {
    identity: Identity,
    client: String,
}

impl FromRequestParts<Arc<AppState>> for ApiCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let client = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| client_address(&state.trusted_proxies, addr, &parts.headers))
            .unwrap_or_default();
        let caller = auth::caller(state, &parts.headers, &client, LoginVia::Basic).await?;
        let identity = state.access.api_identity(&caller).await?;
        if matches!(identity, Identity::Anonymous) {
            return Err(AccessError::Unauthenticated(
                "the API needs credentials: Basic auth or a bearer token for scope api:v1:*".into(),
            )
            .into());
        }
        Ok(ApiCaller { identity, client })
    }
}

/// A JSON request body; every rejection is an OCI error like every other failure.
///
/// The body is JSON whatever its `Content-Type` says (`curl -d` sends
/// `application/x-www-form-urlencoded`), as most REST APIs take it. It must be a JSON object
/// (every body the document describes is one): serde would otherwise read a JSON array into a
/// struct field by field. Unknown fields are refused by the types (`deny_unknown_fields`).
pub struct Body<T>(T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = bytes::Bytes::from_request(req, state)
            .await
            .map_err(|rejection| {
                ApiError::Invalid(format!("request body: {}", rejection.body_text()))
            })?;
        parse_body(&bytes).map(Body)
    }
}

/// Reads a request body: a JSON object of the shape `T`.
fn parse_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::Invalid(format!(
            "request body is not JSON ({e}): send a JSON object"
        ))
    })?;
    if !value.is_object() {
        return Err(ApiError::Invalid(
            "request body must be a JSON object".to_string(),
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            ApiError::Invalid(format!("request body: {inner}"))
        } else {
            ApiError::Invalid(format!("request body: {path}: {inner}"))
        }
    })
}

/// Query parameters whose rejection is an OCI error like every other failure.
pub struct Params<T>(T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Params(value)),
            Err(rejection) => Err(ApiError::Invalid(rejection.body_text())),
        }
    }
}

/// Path parameters whose rejection (an archive id that is not a number, say) is an OCI
/// error like every other failure, not axum's plain-text answer.
pub struct PathParams<T>(T);

impl<T: serde::de::DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(PathParams(value)),
            Err(rejection) => Err(ApiError::Invalid(format!(
                "path parameter: {}",
                rejection.body_text()
            ))),
        }
    }
}

/// The ranges of the API's integer parameters and fields. `openapi.json` gives each as
/// `minimum`/`maximum`; a test checks the two agree, and [`within`] refuses what lies outside.
pub mod limits {
    use std::ops::RangeInclusive;

    /// `pause_ms` of `POST /gc`: at most a minute between batches.
    pub const GC_PAUSE_MS: RangeInclusive<u64> = 0..=60_000;
    /// `grace_secs` of `POST /gc`: at most ten years (the cutoff is `now - grace`).
    pub const GC_GRACE_SECS: RangeInclusive<u64> = 0..=315_360_000;
    /// `limit` of `GET /audit`.
    pub const AUDIT_LIMIT: RangeInclusive<u32> = 1..=10_000;
    /// `since` and `until` of `GET /audit`: Unix seconds.
    pub const UNIX_SECS: RangeInclusive<i64> = 0..=i64::MAX;
    /// `ttl_secs` of a CI token: they are meant to live for one pipeline run (at most 7 days).
    pub const CI_TOKEN_TTL_SECS: RangeInclusive<u64> = 1..=7 * 24 * 3600;
    /// `expires_in_secs` of a robot account: at most ten years.
    pub const ROBOT_EXPIRES_IN_SECS: RangeInclusive<u64> = 1..=315_360_000;
    /// Quota limits, in bytes or artifacts.
    pub const QUOTA_LIMIT: RangeInclusive<i64> = 0..=i64::MAX;
    /// Ages in days (archive selectors, retention rules): at most 100 years.
    pub const DAYS: RangeInclusive<i64> = 0..=36_500;
    /// Counts of a retention rule (`most_recently_pushed` and the like).
    pub const KEEP_COUNT: RangeInclusive<usize> = 0..=1_000_000;
    /// Archive ids.
    pub const ARCHIVE_ID: RangeInclusive<i64> = 1..=i64::MAX;
}

/// `value` of the parameter or field `name`, if it lies in `range`; else 400 naming both.
fn within<T: PartialOrd + std::fmt::Display>(
    name: &str,
    value: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ApiError> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::Invalid(format!(
            "{name} {value} is out of range: give {} to {}",
            range.start(),
            range.end()
        )))
    }
}

type ApiResult = Result<Response, ApiError>;

fn created(value: serde_json::Value) -> Response {
    (StatusCode::CREATED, Json(value)).into_response()
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

impl ApiCaller {
    fn name(&self) -> &str {
        self.identity.name()
    }

    fn is_system_admin(&self) -> bool {
        matches!(
            self.identity,
            Identity::User {
                system_admin: true,
                ..
            }
        )
    }

    pub(crate) fn require_system_admin(&self, what: &str) -> Result<(), ApiError> {
        if self.is_system_admin() {
            Ok(())
        } else {
            Err(AccessError::Denied(format!("only system administrators may {what}")).into())
        }
    }

    /// Refuses unless the caller may do `action` in `project` (which must exist).
    async fn require(
        &self,
        state: &AppState,
        project: &str,
        action: Action,
        what: &str,
    ) -> Result<(), ApiError> {
        if state.access.meta().project(project).await?.is_none() {
            return Err(ApiError::NotFound(format!(
                "project {project:?} does not exist"
            )));
        }
        if state
            .access
            .may(&self.identity, project, None, action)
            .await?
        {
            Ok(())
        } else {
            Err(AccessError::Denied(format!(
                "{:?} may not {what} in project {project:?}",
                self.name()
            ))
            .into())
        }
    }

    /// Records a change to projects, members or users, and makes it apply to the next request.
    async fn permission_changed(
        &self,
        state: &AppState,
        action: &str,
        resource: &str,
        project: Option<&str>,
    ) {
        state.access.permissions_changed();
        self.audit(state, action, resource, project).await;
    }

    async fn audit(&self, state: &AppState, action: &str, resource: &str, project: Option<&str>) {
        state
            .access
            .audit_log()
            .record(AuditEntry {
                actor: self.name().to_string(),
                action: action.to_string(),
                resource: resource.to_string(),
                project: project.map(str::to_string),
                client: self.client.clone(),
                outcome: "success".into(),
                detail: None,
            })
            .await;
    }
}

/// User and robot names: lowercase letters, digits and `._-`, starting with a letter or
/// digit (no `$` or `+`, which mark credentials).
fn valid_account_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
}

/// A project name is a valid single repository path component.
fn valid_project_name(name: &str) -> bool {
    !name.contains('/') && gantry_oci::RepositoryName::parse(name).is_ok()
}

fn check_password(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < 8 {
        return Err(ApiError::Invalid(
            "password is too short: use at least 8 characters".into(),
        ));
    }
    Ok(())
}

async fn openapi() -> Response {
    let mut response = OPENAPI.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

// ---- users ----------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    name: String,
    password: String,
    #[serde(default)]
    admin: bool,
}

async fn list_users(State(state): State<Arc<AppState>>, caller: ApiCaller) -> ApiResult {
    caller.require_system_admin("list users")?;
    let users = state.access.meta().users().await?;
    let users: Vec<_> = users
        .into_iter()
        .map(|u| json!({"name": u.name, "admin": u.system_admin}))
        .collect();
    Ok(Json(json!({ "users": users })).into_response())
}

async fn create_user(
    State(state): State<Arc<AppState>>,
    caller: ApiCaller,
    Body(user): Body<NewUser>,
) -> ApiResult {
    caller.require_system_admin("create users")?;
    if !valid_account_name(&user.name) {
        return Err(ApiError::Invalid(format!(
            "user name {:?} is invalid: use lowercase letters, digits, '.', '_' or '-' (at most 64)",
            user.name
        )));
    }
    check_password(&user.password)?;
    let hash = hash_password(&user.password).await?;
    state
        .access
        .meta()
        .create_user(&user.name, &hash, user.admin)
        .await?;
    caller.audit(&state, "user.create", &user.name, None).await;
    Ok(created(json!({"name": user.name, "admin": user.admin})))
}

async fn hash_password(password: &str) -> Result<String, ApiError> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || gantry_auth::password::hash(&password))
        .await
        .map_err(|e| AccessError::Hashing(e.to_string()))?
        .map_err(|e| AccessError::Hashing(e.to_string()).into())
}

async fn delete_user(
    State(state): State<Arc<AppState>>,
    caller: ApiCaller,
    PathParams(user): PathParams<String>,
) -> ApiResult {
    caller.require_system_admin("delete users")?;
    if user == caller.name() {
        return Err(ApiError::Invalid("you cannot delete yourself".into()));
    }
    if !state.access.meta().delete_user(&user).await? {
        return Err(ApiError::NotFound(format!("no user {user:?}")));
    }
    state.access.forget(&user);
    caller
        .permission_changed(&state, "user.delete", &user, None)
        .await;
    Ok(no_content())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    password: String,
}

async fn set_password(
    State(state): State<Arc<AppState>>,
    caller: ApiCaller,
    PathParams(user): PathParams<String>,
    Body(body): Body<NewPassword>,
) -> ApiResult {
    if user != caller.name() {
        caller.require_system_admin("change other users' passwords")?;
    }
    check_password(&body.password)?;
    let hash = hash_password(&body.password).await?;
    if !state.access.meta().set_password(&user, &hash).await? {
        return Err(ApiError::NotFound(format!("no user {user:?}")));
    }
    state.access.forget(&user);
    caller.audit(&state, "user.password", &user, None).await;
    Ok(no_content())
}

// ---- projects -------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewProject {
    name: String,
    #[serde(default)]
    public: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectUpdate {
    public: bool,
}

async fn list_projects(State(state): State<Arc<AppState>>, caller: ApiCaller) -> ApiResult {
    let mut visible = Vec::new();
    for project in state.access.meta().projects().await? {
        if state
            .access
            .may(&caller.identity, &project.name, None, Action::Pull)
            .await?
        {
            visible.push(json!({"name": project.name, "public": project.public}));
        }
    }
    Ok(Json(json!({ "projects": visible })).into_response())
}

async fn create_project(
    State(state): State<Arc<AppState>>,
    caller: ApiCaller,
    Body(project): Body<NewProject>,
) -> ApiResult {
    if !matches!(caller.identity, Identity::User { .. }) {
        return Err(AccessError::Denied(
            "robot accounts and CI tokens cannot create projects".into(),
        )
        .into());
    }
    if !valid_project_name(&project.name) {
        return Err(ApiError::Invalid(format!(
            "project name {:?} is invalid: use lowercase letters and digits, separated by '.', '_' or '-'",
            project.name
        )));
    }
    state
        .access
        .meta()
        .create_project(&project.name, project.public, Some(caller.name()))
        .await?;
    caller
        .permission_changed(&state, "project.create", &project.name, Some(&project.name))
        .await;
    Ok(created(
        json!({"name": project.name, "public": project.public}),
    ))
}

async fn show_project(
    State(state): State<Arc<AppState>>,
    caller: ApiCaller,
    PathParams(project): PathParams<String>,
) -> ApiResult {
    caller
        .require(&state, &project, Action::Pull, "see the project")
        .await?;
    let found = state.access.meta().project(&project).await?;
    let found =
        found.ok_or_else(|| ApiError::NotFound(format!("project {project:?} does not exist")))?;
    Ok(Json(json!({"name": found.name, "public": found.public})).into_response())
}

async fn update_project(
    State(state): State<Arc<AppState>>,
    caller: ApiCaller,
    PathParams(project): PathParams<String>,
    Body(update): Body<ProjectUpdate>,
) -> ApiResult {
    caller
        .require(&state, &project, Action::ManageSettings, "change settings")
        .await?;
    state
        .access
        .meta()
        .set_project_public(&project, update.public)
        .await?;
    caller
        .permission_changed(
            &state,
            if update.public {
                "project.public"
            } else {
                "project.private"
            },
            &project,
            Some(&project),
        )
        .await;
    Ok(Json(json!({"name": project, "public": update.public})).into_response())
}

async fn delete_project(
    State(state): State<Arc<AppState>>,
    caller: ApiCaller,
    PathParams(project): PathParams<String>,
) -> ApiResult {
    caller
        .require(
            &state,
            &project,
            Action::ManageSettings,
            "delete the project",
        )
        .await?;
    state.access.meta().delete_project(&project).await?;
    caller
        .permission_changed(&state, "project.delete", &project, Some(&project))
        .await;
    Ok(no_content())
}

// ---- tag rules ------------------------------------------------------------------------

async fn show_tag_rules(
    State(state): State<Arc<AppState>>,
    caller: ApiCaller,
    PathParams(project): PathParams<String>,
) -> ApiResult {
    caller
        .require(&state, &project, Action::Pull, "see tag rules")
        .await?;
    let rules = state.registry.tag_rules(&project).await?;
    Ok(Json(rules).into_response())
}

async fn set_tag_rules(
    State(state): State<Arc<AppState>>,
    caller: ApiCaller,
    PathParams(project): PathParams<String>,
    Body(rules): Body<TagRules>,
) -> ApiResult {
    caller
        .require(&state, &project, Action::ManageTagRules, "change tag rules")
        .await?;
    state.registry.set_tag_rules(&project, &rules).await?;
    let summary = serde_json::to_string(&rules).expect("tag rules serialize");
    caller
        .audit(&state, "tag-rules.set", &summary, Some(&project))
        .await;
    Ok(Json(rules).into_response())
}

// ---- retention ------------------------------------------------------------------------

async fn show_retention(
    State(state): State<Arc<AppState>>,
    caller: ApiCaller,
    PathParams(project): PathParams<String>,
) -> ApiResult {
    caller
        .require(&state, &project, Action::Pull, "see the retention policy")
        .await?;
    let policy = state.registry.retention_policy(&project).await?;
    Ok(Json(policy.unwrap_or_default()).into_response())
}

async fn set_retention(
    State(state): State<Arc<AppState>>,
    caller: ApiCaller,
    PathParams(project): PathParams<String>,
    Body(policy): Body<Policy>,
) -> ApiResult {
    caller
        .require(
            &state,
            &project,
            Action::ManageTagRules,
            "change the retention policy",
        )
        .await?;
    check_retention_bounds(&policy)?;
    state
        .registry
        .set_retention_policy(&project, &policy)
        .await?;
    caller
        .audit(
            &state,
            "retention.set",
            &format!("{} rules", policy.rules.len()),
            Some(&project),
        )
        .await;
    Ok(Json(policy).into_response())
}

/// Refuses counts and ages of a policy's rules outside the ranges the document gives them
/// (the types alone would take any `usize` or `i64`, and an age in days becomes seconds).
fn check_retention_bounds(policy: &Policy) -> Result<(), ApiError> {
    for rule in &policy.rules {
        match rule.keep {
            Keep::MostRecentlyPushed(n)
            | Keep::MostRecentlyPulled(n)
            | Keep::NewestPerVersionLine(n) => {
                within("the count a rule keeps", n, limits::KEEP_COUNT)?;
            }
            Keep::PushedWithinDays(days) | Keep::PulledWithinDays(days) => {
                within("the days a rule keeps", days, limits::DAYS)?;
            }
            Keep::Always => {}
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct RunOptions {
    #[serde(default)]
    dry_run: bool,
}

/// Runs the policy now: a dry run lists what would go; a real run deletes it.
async fn run_retention(
    State(state): State<Arc<AppState>>,
    caller: ApiCaller,
    PathParams(project): PathParams<String>,
    Params(options): Params<RunOptions>,
) -> ApiResult {
    caller
        .require(&state, &project, Action::ManageTagRules, "run retention")
        .await?;
    let report = state
        .registry
        .run_retention(
            &project,
            caller.name(),
            gantry_registry::unix_now(),
            options.dry_run,
        )
        .await?;
    caller
        .audit(
            &state,
            if options.dry_run {
                "retention.dry-run"
            } else {
                "retention.run"
            },
            &format!(
                "{} tags, {} manifests, {} bytes",
                report.plan.delete_tags.len(),
                report.plan.delete_manifests.len(),
                report.plan.freed_bytes
            ),
            Some(&project),
        )
        .await;
    Ok(Json(report).into_response())
}

async fn retention_history(
    State(state): State<Arc<AppState>>,
    caller: ApiCaller,
    PathParams(project): PathParams<String>,
) -> ApiResult {
    caller
        .require(&state, &project, Action::Pull, "see retention runs")
        .await?;
    let runs: Vec<_> = state
        .access
        .meta()
        .retention_runs(&project, 100)
        .await?
        .into_iter()
        .map(|r| {
            json!({"at": r.at, "actor": r.actor, "dry_run": r.dry_run, "deleted_tags": r.deleted_tags,
                   "deleted_manifests": r.deleted_manifests, "freed_bytes": r.freed_bytes})
        })
        .collect();
    Ok(Json(json!({ "runs": runs })).into_response())
}

// ---- quotas ---------------------------------------------------------------------------

fn quota_json(quota: &Quota) -> serde_json::Value {
    json!({
        "project": quota.project,
        "storage": {"used_bytes": quota.used.bytes, "limit_bytes": quota.bytes_limit},
        "artifacts": {"used": quota.used.artifacts, "limit": quota.artifacts_limit},
    })
}

async fn show_quota(
    State(state): State<Arc<AppState>>,
    caller: ApiCaller,
    PathParams(project): PathParams<String>,
) -> ApiResult {
    caller
        .require(&state, &project, Action::Pull, "see the quota")
        .await?;
    let quota = state.access.meta().quota(&project).await?;
    Ok(Json(quota_json(&quota)).into_response())
}

/// New limits; a missing or null field means unlimited.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuotaLimits {
    storage_bytes: Option<i64>,
    artifacts: Option<i64>,
}

/// Quotas are the platform team's to set (system administrators), as in Harbor.
async fn set_quota(
    State(state): State<Arc<AppState>>,
    caller: ApiCaller,
    PathParams(project): PathParams<String>,
    Body(limits): Body<QuotaLimits>,
) -> ApiResult {
    caller.require_system_admin("set quotas")?;
    caller
        .require(&state, &project, Action::ManageSettings, "set the quota")
        .await?;
    for (name, limit) in [
        ("storage_bytes", limits.storage_bytes),
        ("artifacts", limits.artifacts),
    ] {
        if let Some(limit) = limit {
            within(name, limit, self::limits::QUOTA_LIMIT)?;
        }
    }
    let quota = state
        .access
        .meta()
        .set_quota_limits(&project, limits.storage_bytes, limits.artifacts)
        .await?;
    let summary = format!(
        "storage {}, artifacts {}",
        limits
            .storage_bytes
            .map_or("unlimited".into(), |n| n.to_string()),
        limits
            .artifacts
            .map_or("unlimited".into(), |n| n.to_string())
    );
    caller
        .audit(&state, "quota.set", &summary, Some(&project))
        .await;
    Ok(Json(quota_json(&quota)).into_response())
}

/// Adds the project's usage up from its rows and compares with the live figures (which it
/// corrects, should they differ).
async fn recount_quota(
    State(state): State<Arc<AppState>>,
    caller: ApiCaller,
    PathParams(project): PathParams<String>,
) -> ApiResult {
    caller.require_system_admin("recount usage")?;
    caller
        .require(&state, &project, Action::ManageSettings, "recount usage")
        .await?;
    let recount = state.access.meta().recount_usage(&project).await?;
    let figures = |u: Usage| json!({"bytes": u.bytes, "artifacts": u.artifacts});
    Ok(Json(json!({
        "project": project,
        "live": figures(recount.live),
        "counted": figures(recount.counted),
        "agree": recount.live == recount.counted,
    }))
    .into_response())
}

/// Usage and limits of every project (system administrators).
async fn list_quotas(State(state): State<Arc<AppState>>, caller: ApiCaller) -> ApiResult {
    caller.require_system_admin("list every project's usage")?;
    let quotas: Vec<_> = state
        .access
        .meta()
        .quotas()
        .await?
        .iter()
        .map(quota_json)
        .collect();
    Ok(Json(json!({ "quotas": quotas })).into_response())
}

// ---- archives -------------------------------------------------------------------------

/// Archives what the selector picks: a dry run lists it; a real run moves it out.
async fn run_archive(
    State(state): State<Arc<AppState>>,
    caller: ApiCaller,
    PathParams(project): PathParams<String>,
    Params(options): Params<RunOptions>,
    Body(selector): Body<ArchiveSelector>,
) -> ApiResult {
    caller
        .require(
            &state,
            &project,
            Action::ManageTagRules,
            "archive artifacts",
        )
        .await?;
    for (name, days) in [
        ("pushed_before_days", selector.pushed_before_days),
        ("not_pulled_for_days", selector.not_pulled_for_days),
    ] {
        if let Some(days) = days {
            within(name, days, limits::DAYS)?;
        }
    }
    let report = state
        .registry
        .archive(
            &project,
            &selector,
            caller.name(),
            gantry_registry::unix_now(),
            options.dry_run,
        )
        .await?;
    if !options.dry_run {
        for archived in &report.archived {
            let resource = format!(
                "{}@{} ({}) as archive {}",
                archived.artifact.repository,
                archived.artifact.digest,
                archived.artifact.tags.join(","),
                archived.id.unwrap_or_default()
            );
            caller
                .audit(&state, "archive.create", &resource, Some(&project))
                .await;
        }
    }
    Ok(Json(report).into_response())
}

async fn list_archives(
    State(state): State<Arc<AppState>>,
    caller: ApiCaller,
    PathParams(project): PathParams<String>,
) -> ApiResult {
    caller
        .require(&state, &project, Action::Pull, "see archives")
        .await?;
    let archives: Vec<_> = state
        .registry
        .archives(&project)
        .await?
        .into_iter()
        .map(|a| {
            json!({"id": a.id, "repository": a.repository, "digest": a.digest, "tags": a.tags,
                   "object_key": a.object_key, "bytes": a.bytes, "archived_at": a.archived_at,
                   "archived_by": a.archived_by, "restored_at": a.restored_at})
        })
        .collect();
    Ok(Json(json!({ "archives": archives })).into_response())
}

async fn restore_archive(
    State(state): State<Arc<AppState>>,
    caller: ApiCaller,
    PathParams((project, id)): PathParams<(String, i64)>,
) -> ApiResult {
    caller
        .require(&state, &project, Action::ManageTagRules, "restore archives")
        .await?;
    let id = within("archive id", id, limits::ARCHIVE_ID)?;
    let report = state
        .registry
        .restore(&project, id, gantry_registry::unix_now())
        .await?;
    let resource = format!("archive {id}: {}@{}", report.repository, report.digest);
    caller
        .audit(&state, "archive.restore", &resource, Some(&project))
        .await;
    Ok(Json(report).into_response())
}

/// Deletes an archive for good (its tarball and its record).
async fn delete_archive(
    State(state): State<Arc<AppState>>,
    caller: ApiCaller,
    PathParams((project, id)): PathParams<(String, i64)>,
) -> ApiResult {
    caller
        .require(&state, &project, Action::ManageTagRules, "delete archives")
        .await?;
    let id = within("archive id", id, limits::ARCHIVE_ID)?;
    let record = state.registry.delete_archive(&project, id).await?;
    let resource = format!("archive {id}: {}@{}", record.repository, record.digest);
    caller
        .audit(&state, "archive.delete", &resource, Some(&project))
        .await;
    Ok(no_content())
}

// ---- members --------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Membership {
    role: String,
}

async fn list_members(
    State(state): State<Arc<AppState>>,
    caller: ApiCaller,
    PathParams(project): PathParams<String>,
) -> ApiResult {
    caller
        .require(&state, &project, Action::List, "list members")
        .await?;
    let members: Vec<_> = state
        .access
        .meta()
        .members(&project)
        .await?
        .into_iter()
        .map(|(user, role)| json!({"user": user, "role": role}))
        .collect();
    Ok(Json(json!({ "members": members })).into_response())
}

async fn set_member(
    State(state): State<Arc<AppState>>,
    caller: ApiCaller,
    PathParams((project, user)): PathParams<(String, String)>,
    Body(membership): Body<Membership>,
) -> ApiResult {
    caller
        .require(&state, &project, Action::ManageMembers, "manage members")
        .await?;
    let role: Role = membership
        .role
        .parse()
        .map_err(|e: gantry_auth::rbac::UnknownRole| ApiError::Invalid(e.to_string()))?;
    if !state
        .access
        .meta()
        .set_member(&project, &user, role.as_str())
        .await?
    {
        return Err(ApiError::NotFound(format!("no user {user:?}")));
    }
    caller
        .permission_changed(
            &state,
            "member.set",
            &format!("{user}={role}"),
            Some(&project),
        )
        .await;
    Ok(Json(json!({"user": user, "role": role.as_str()})).into_response())
}

async fn remove_member(
    State(state): State<Arc<AppState>>,
    caller: ApiCaller,
    PathParams((project, user)): PathParams<(String, String)>,
) -> ApiResult {
    caller
        .require(&state, &project, Action::ManageMembers, "manage members")
        .await?;
    if !state.access.meta().remove_member(&project, &user).await? {
        return Err(ApiError::NotFound(format!(
            "{user:?} is not a member of {project:?}"
        )));
    }
    caller
        .permission_changed(&state, "member.remove", &user, Some(&project))
        .await;
    Ok(no_content())
}

// ---- robots and CI tokens -------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRobot {
    name: String,
    /// pull, push, delete.
    actions: Vec<String>,
    /// Seconds until it expires; absent: never.
    #[serde(default)]
    expires_in_secs: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    project: String,
    #[serde(default)]
    repository: Option<String>,
    actions: Vec<String>,
    #[serde(default)]
    ttl_secs: Option<u64>,
}

#[derive(Serialize)]
struct CredentialView {
    name: String,
    kind: String,
    project: Option<String>,
    repository: Option<String>,
    actions: Vec<String>,
    expires_at: Option<i64>,
    revoked: bool,
    created_by: String,
}

impl From<Credential> for CredentialView {
    fn from(c: Credential) -> Self {
        CredentialView {
            revoked: c.revoked_at.is_some(),
            name: c.name,
            kind: c.kind,
            project: c.project,
            repository: c.repository,
            actions: c.actions,
            expires_at: c.expires_at,
            created_by: c.created_by,
        }
    }
}

/// Parses credential actions: known names only, at least one. Pushing implies pulling: clients
/// check which blobs a registry holds before they push.
fn credential_actions(actions: &[String]) -> Result<BTreeSet<Action>, ApiError> {
    let mut parsed = BTreeSet::new();
    for action in actions {
        parsed.insert(match action.as_str() {
            "pull" => Action::Pull,
            "push" => Action::Push,
            "delete" => Action::Delete,
            other => {
                return Err(ApiError::Invalid(format!(
                    "unknown action {other:?}: use pull, push or delete"
                )))
            }
        });
    }
    if parsed.is_empty() {
        return Err(ApiError::Invalid(
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

/// Stores a new credential and answers with its secret, shown this once.
async fn mint(
    state: &AppState,
    caller: &ApiCaller,
    credential: Credential,
    secret_prefix: &str,
) -> ApiResult {
    let (secret, hash) = gantry_auth::secret::generate(secret_prefix);
    state
        .access
        .meta()
        .create_credential(&credential, &hash)
        .await?;
    caller
        .audit(
            state,
            &format!("{}.create", credential.kind),
            &credential.name,
            credential.project.as_deref(),
        )
        .await;
    let mut body = serde_json::to_value(CredentialView::from(credential)).expect("serializes");
    body["secret"] = json!(secret);
    Ok(created(body))
}

async fn create_robot(
    state: &AppState,
    caller: &ApiCaller,
    project: Option<String>,
    robot: NewRobot,
) -> ApiResult {
    if !valid_account_name(&robot.name) {
        return Err(ApiError::Invalid(format!(
            "robot name {:?} is invalid: use lowercase letters, digits, '.', '_' or '-'",
            robot.name
        )));
    }
    let actions = credential_actions(&robot.actions)?;
    if let Some(secs) = robot.expires_in_secs {
        within("expires_in_secs", secs, limits::ROBOT_EXPIRES_IN_SECS)?;
    }
    let name = match &project {
        Some(project) => format!("{ROBOT_PREFIX}{project}+{}", robot.name),
        None => format!("{ROBOT_PREFIX}{}", robot.name),
    };
    let credential = Credential {
        name,
        kind: "robot".into(),
        project,
        repository: None,
        actions: action_names(&actions),
        expires_at: robot.expires_in_secs.map(|secs| (now_secs() + secs) as i64),
        revoked_at: None,
        created_by: caller.name().to_string(),
    };
    mint(state, caller, credential, "gantry_robot_").await
}

async fn create_project_robot(
    State(state): State<Arc<AppState>>,
    caller: ApiCaller,
    PathParams(project): PathParams<String>,
    Body(robot): Body<NewRobot>,
) -> ApiResult {
    caller
        .require(
            &state,
            &project,
            Action::ManageMembers,
            "manage robot accounts",
        )
        .await?;
    create_robot(&state, &caller, Some(project), robot).await
}

async fn create_system_robot(
    State(state): State<Arc<AppState>>,
    caller: ApiCaller,
    Body(robot): Body<NewRobot>,
) -> ApiResult {
    caller.require_system_admin("create system robot accounts")?;
    create_robot(&state, &caller, None, robot).await
}

async fn credential_list(state: &AppState, project: Option<&str>, kind: &str) -> ApiResult {
    let listed: Vec<CredentialView> = state
        .access
        .meta()
        .credentials(project)
        .await?
        .into_iter()
        .filter(|c| c.kind == kind)
        .map(CredentialView::from)
        .collect();
    Ok(Json(json!({ "credentials": listed })).into_response())
}

async fn list_project_robots(
    State(state): State<Arc<AppState>>,
    caller: ApiCaller,
    PathParams(project): PathParams<String>,
) -> ApiResult {
    caller
        .require(
            &state,
            &project,
            Action::ManageMembers,
            "list robot accounts",
        )
        .await?;
    credential_list(&state, Some(&project), "robot").await
}

async fn list_system_robots(State(state): State<Arc<AppState>>, caller: ApiCaller) -> ApiResult {
    caller.require_system_admin("list system robot accounts")?;
    credential_list(&state, None, "robot").await
}

/// Revokes a credential of `kind`: its project's admins, system administrators, and for CI
/// tokens whoever minted it may.
async fn revoke(state: &AppState, caller: &ApiCaller, name: &str, kind: &str) -> ApiResult {
    let credential = state
        .access
        .meta()
        .credential(name)
        .await?
        .filter(|c| c.kind == kind)
        .ok_or_else(|| ApiError::NotFound(format!("no {kind} credential {name:?}")))?;
    let own_token = kind == "ci" && credential.created_by == caller.name();
    match &credential.project {
        _ if own_token || caller.is_system_admin() => {}
        Some(project) => {
            caller
                .require(state, project, Action::ManageMembers, "revoke credentials")
                .await?
        }
        None => caller.require_system_admin("revoke system robot accounts")?,
    }
    state.access.meta().revoke_credential(name).await?;
    state.access.forget(name);
    caller
        .audit(
            state,
            &format!("{kind}.revoke"),
            name,
            credential.project.as_deref(),
        )
        .await;
    Ok(no_content())
}

/// The `DELETE` handler revoking credentials of `kind` (`robot` or `ci`).
fn revoke_handler(
    kind: &'static str,
) -> impl Fn(
    State<Arc<AppState>>,
    ApiCaller,
    PathParams<String>,
) -> futures::future::BoxFuture<'static, ApiResult>
       + Clone {
    move |State(state), caller, PathParams(name)| {
        Box::pin(async move { revoke(&state, &caller, &name, kind).await })
    }
}

/// Mints a CI token: never more than the caller may do itself, and only users mint them.
async fn create_token(
    State(state): State<Arc<AppState>>,
    caller: ApiCaller,
    Body(token): Body<NewToken>,
) -> ApiResult {
    if !matches!(caller.identity, Identity::User { .. }) {
        return Err(AccessError::Denied("only users can mint CI tokens".into()).into());
    }
    let actions = credential_actions(&token.actions)?;
    if state.access.meta().project(&token.project).await?.is_none() {
        return Err(ApiError::NotFound(format!(
            "project {:?} does not exist",
            token.project
        )));
    }
    if let Some(repository) = &token.repository {
        let valid = gantry_oci::RepositoryName::parse(repository).is_ok()
            && gantry_access::project_of(repository) == token.project;
        if !valid {
            return Err(ApiError::Invalid(format!(
                "repository {repository:?} is not a valid repository of project {:?}",
                token.project
            )));
        }
    }
    for action in &actions {
        let allowed = state
            .access
            .may(
                &caller.identity,
                &token.project,
                token.repository.as_deref(),
                *action,
            )
            .await?;
        if !allowed {
            return Err(AccessError::Denied(format!(
                "{:?} may not {action:?} in {:?}, so cannot mint a token that does",
                caller.name(),
                token.project
            ))
            .into());
        }
    }
    let ttl = within(
        "ttl_secs",
        token.ttl_secs.unwrap_or(DEFAULT_CI_TOKEN_TTL_SECS),
        limits::CI_TOKEN_TTL_SECS,
    )?;
    let suffix = &random_hex()[..12];
    let credential = Credential {
        name: format!("{CI_PREFIX}{}+{suffix}", token.project),
        kind: "ci".into(),
        project: Some(token.project.clone()),
        repository: token.repository.clone(),
        actions: action_names(&actions),
        expires_at: Some((now_secs() + ttl) as i64),
        revoked_at: None,
        created_by: caller.name().to_string(),
    };
    mint(&state, &caller, credential, "gantry_ci_").await
}

/// 64 random hex digits (the digest of a fresh random secret).
fn random_hex() -> String {
    gantry_auth::secret::generate("").1
}

#[derive(Deserialize)]
struct ProjectFilter {
    project: Option<String>,
}

async fn list_tokens(
    State(state): State<Arc<AppState>>,
    caller: ApiCaller,
    Params(filter): Params<ProjectFilter>,
) -> ApiResult {
    let Some(project) = filter.project else {
        return Err(ApiError::Invalid("give ?project=NAME".into()));
    };
    caller
        .require(&state, &project, Action::ManageMembers, "list CI tokens")
        .await?;
    credential_list(&state, Some(&project), "ci").await
}

// ---- garbage collection ---------------------------------------------------------------

#[derive(Deserialize)]
struct GcParams {
    #[serde(default)]
    dry_run: bool,
    /// Only what is older than this many seconds is collected [default: 3600].
    grace_secs: Option<u64>,
    /// Throttling: milliseconds to pause between batches of 1000 deletions [default: 0].
    pause_ms: Option<u64>,
}

/// Runs an online garbage collection now (system administrators).
async fn run_gc(
    State(state): State<Arc<AppState>>,
    caller: ApiCaller,
    Params(params): Params<GcParams>,
) -> ApiResult {
    caller.require_system_admin("run garbage collection")?;
    let mut options = gantry_registry::GcOptions {
        dry_run: params.dry_run,
        ..Default::default()
    };
    if let Some(grace) = params.grace_secs {
        let grace = within("grace_secs", grace, limits::GC_GRACE_SECS)?;
        options.grace = std::time::Duration::from_secs(grace);
    }
    if let Some(pause) = params.pause_ms {
        let pause = within("pause_ms", pause, limits::GC_PAUSE_MS)?;
        options.pause = std::time::Duration::from_millis(pause);
    }
    let report = state
        .registry
        .collect_garbage(gantry_registry::unix_now(), &options)
        .await?;
    caller
        .audit(
            &state,
            if params.dry_run {
                "gc.dry-run"
            } else {
                "gc.run"
            },
            &format!(
                "{} manifests, {} blobs, {} bytes",
                report.manifests.len(),
                report.blobs,
                report.blob_bytes
            ),
            None,
        )
        .await;
    Ok(Json(report).into_response())
}

// ---- audit ----------------------------------------------------------------------------

#[derive(Deserialize)]
struct AuditFilter {
    project: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
    limit: Option<u32>,
}

/// The audit log, newest first: all of it for system administrators, a project's for its
/// project admins.
async fn audit(
    State(state): State<Arc<AppState>>,
    caller: ApiCaller,
    Params(filter): Params<AuditFilter>,
) -> ApiResult {
    match &filter.project {
        Some(project) if !caller.is_system_admin() => {
            caller
                .require(&state, project, Action::ManageMembers, "read the audit log")
                .await?
        }
        _ => caller.require_system_admin("read the whole audit log (give ?project=NAME)")?,
    }
    let limit = within("limit", filter.limit.unwrap_or(100), limits::AUDIT_LIMIT)?;
    for (name, time) in [("since", filter.since), ("until", filter.until)] {
        if let Some(time) = time {
            within(name, time, limits::UNIX_SECS)?;
        }
    }
    // Entries recorded just before this request are visible to it.
    state.access.audit_log().flush().await;
    let events = state
        .access
        .meta()
        .audit(&AuditQuery {
            project: filter.project.as_deref(),
            since: filter.since,
            until: filter.until,
            limit,
        })
        .await?;
    let events: Vec<_> = events
        .into_iter()
        .map(|e| {
            json!({
                "at": e.at,
                "actor": e.actor,
                "action": e.action,
                "resource": e.resource,
                "project": e.project,
                "client": e.client_addr,
                "outcome": e.outcome,
                "detail": e.detail,
            })
        })
        .collect();
    Ok(Json(json!({ "events": events })).into_response())
}

/// Every route of `routes()`, as (method, OpenAPI path), for the test that keeps the
/// document complete.
#[cfg(test)]
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/openapi.json"),
    ("get", "/api/v1/users"),
    ("post", "/api/v1/users"),
    ("delete", "/api/v1/users/{user}"),
    ("put", "/api/v1/users/{user}/password"),
    ("get", "/api/v1/projects"),
    ("post", "/api/v1/projects"),
    ("get", "/api/v1/projects/{project}"),
    ("patch", "/api/v1/projects/{project}"),
    ("delete", "/api/v1/projects/{project}"),
    ("get", "/api/v1/projects/{project}/members"),
    ("get", "/api/v1/projects/{project}/tag-rules"),
    ("put", "/api/v1/projects/{project}/tag-rules"),
    ("get", "/api/v1/projects/{project}/retention"),
    ("put", "/api/v1/projects/{project}/retention"),
    ("get", "/api/v1/projects/{project}/retention/runs"),
    ("post", "/api/v1/projects/{project}/retention/runs"),
    ("get", "/api/v1/projects/{project}/quota"),
    ("put", "/api/v1/projects/{project}/quota"),
    ("post", "/api/v1/projects/{project}/quota/recount"),
    ("get", "/api/v1/quotas"),
    ("get", "/api/v1/projects/{project}/archives"),
    ("post", "/api/v1/projects/{project}/archives"),
    ("delete", "/api/v1/projects/{project}/archives/{id}"),
    ("post", "/api/v1/projects/{project}/archives/{id}/restore"),
    ("put", "/api/v1/projects/{project}/members/{user}"),
    ("delete", "/api/v1/projects/{project}/members/{user}"),
    ("get", "/api/v1/projects/{project}/robots"),
    ("post", "/api/v1/projects/{project}/robots"),
    ("get", "/api/v1/robots"),
    ("post", "/api/v1/robots"),
    ("delete", "/api/v1/robots/{robot}"),
    ("get", "/api/v1/tokens"),
    ("post", "/api/v1/tokens"),
    ("delete", "/api/v1/tokens/{token}"),
    ("get", "/api/v1/audit"),
    ("post", "/api/v1/gc"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_document_describes_every_route_and_nothing_else() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        assert_eq!(
            doc["openapi"].as_str().unwrap().split('.').next(),
            Some("3")
        );
        let mut documented = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                documented.push((method.clone(), path.clone()));
            }
        }
        documented.sort();
        let mut routes: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        routes.sort();
        assert_eq!(documented, routes);
    }

    /// Calls `visit(location, schema)` for every schema a request may carry: parameters
    /// (`"POST /api/v1/gc pause_ms"`) and bodies (`"PUT /api/v1/... body"`), and everything
    /// inside them. A `$ref` is followed and named by its target, so a schema used by two
    /// operations has one location (`"#/components/schemas/NewRobot.expires_in_secs"`).
    fn walk_request_schemas(
        doc: &serde_json::Value,
        visit: &mut dyn FnMut(&str, &serde_json::Value),
    ) {
        fn walk(
            doc: &serde_json::Value,
            schema: &serde_json::Value,
            location: String,
            visit: &mut dyn FnMut(&str, &serde_json::Value),
        ) {
            if let Some(target) = schema["$ref"].as_str() {
                let pointer = target.strip_prefix('#').expect("local reference");
                let resolved = doc.pointer(pointer).expect("reference resolves");
                return walk(doc, resolved, target.to_string(), visit);
            }
            visit(&location, schema);
            if let Some(properties) = schema["properties"].as_object() {
                for (name, property) in properties {
                    walk(doc, property, format!("{location}.{name}"), visit);
                }
            }
            if schema["items"].is_object() {
                walk(doc, &schema["items"], format!("{location}[]"), visit);
            }
            for combinator in ["oneOf", "anyOf", "allOf"] {
                for variant in schema[combinator].as_array().into_iter().flatten() {
                    walk(doc, variant, location.clone(), visit);
                }
            }
        }
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let operation_name = format!("{} {path}", method.to_uppercase());
                for parameter in operation["parameters"].as_array().into_iter().flatten() {
                    let name = parameter["name"].as_str().unwrap();
                    let location = format!("{operation_name} {name}");
                    walk(doc, &parameter["schema"], location, visit);
                }
                let body = &operation["requestBody"]["content"]["application/json"]["schema"];
                if !body.is_null() {
                    walk(doc, body, format!("{operation_name} body"), visit);
                }
            }
        }
    }

    /// The range of every integer a request may carry, where the document gives it.
    fn documented_integer_ranges() -> std::collections::BTreeMap<String, (i128, i128)> {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let bound = |schema: &serde_json::Value, key: &str, location: &str| -> i128 {
            let value = &schema[key];
            value
                .as_i64()
                .map(i128::from)
                .or(value.as_u64().map(i128::from))
                .unwrap_or_else(|| {
                    panic!("the integer at {location} has no {key}: the server's types have one")
                })
        };
        let mut ranges = std::collections::BTreeMap::new();
        walk_request_schemas(&doc, &mut |location, schema| {
            if schema["type"] == "integer" {
                let range = (
                    bound(schema, "minimum", location),
                    bound(schema, "maximum", location),
                );
                ranges.insert(location.to_string(), range);
            }
        });
        ranges
    }

    #[test]
    fn documented_integer_ranges_are_the_ranges_the_server_enforces() {
        macro_rules! range {
            ($range:expr) => {
                (*$range.start() as i128, *$range.end() as i128)
            };
        }
        let schemas = "#/components/schemas";
        let keep = format!("{schemas}/RetentionPolicy.rules[].keep");
        let enforced: std::collections::BTreeMap<String, (i128, i128)> = [
            (
                "POST /api/v1/gc pause_ms".to_string(),
                range!(limits::GC_PAUSE_MS),
            ),
            (
                "POST /api/v1/gc grace_secs".into(),
                range!(limits::GC_GRACE_SECS),
            ),
            (
                "GET /api/v1/audit limit".into(),
                range!(limits::AUDIT_LIMIT),
            ),
            ("GET /api/v1/audit since".into(), range!(limits::UNIX_SECS)),
            ("GET /api/v1/audit until".into(), range!(limits::UNIX_SECS)),
            (
                "DELETE /api/v1/projects/{project}/archives/{id} id".into(),
                range!(limits::ARCHIVE_ID),
            ),
            (
                "POST /api/v1/projects/{project}/archives/{id}/restore id".into(),
                range!(limits::ARCHIVE_ID),
            ),
            (
                format!("{schemas}/NewToken.ttl_secs"),
                range!(limits::CI_TOKEN_TTL_SECS),
            ),
            (
                format!("{schemas}/NewRobot.expires_in_secs"),
                range!(limits::ROBOT_EXPIRES_IN_SECS),
            ),
            (
                format!("{schemas}/QuotaLimits.storage_bytes"),
                range!(limits::QUOTA_LIMIT),
            ),
            (
                format!("{schemas}/QuotaLimits.artifacts"),
                range!(limits::QUOTA_LIMIT),
            ),
            (
                format!("{schemas}/ArchiveSelector.pushed_before_days"),
                range!(limits::DAYS),
            ),
            (
                format!("{schemas}/ArchiveSelector.not_pulled_for_days"),
                range!(limits::DAYS),
            ),
            (
                format!("{keep}.most_recently_pushed"),
                range!(limits::KEEP_COUNT),
            ),
            (
                format!("{keep}.most_recently_pulled"),
                range!(limits::KEEP_COUNT),
            ),
            (
                format!("{keep}.newest_per_version_line"),
                range!(limits::KEEP_COUNT),
            ),
            (format!("{keep}.pushed_within_days"), range!(limits::DAYS)),
            (format!("{keep}.pulled_within_days"), range!(limits::DAYS)),
        ]
        .into_iter()
        .collect();
        assert_eq!(documented_integer_ranges(), enforced);
    }

    #[test]
    fn request_bodies_are_closed_json_objects_as_the_server_reads_them() {
        // `Body` refuses anything but a JSON object, and every body type denies unknown
        // fields: the document must say both, or generated requests it allows are refused.
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        walk_request_schemas(&doc, &mut |location, schema| {
            if location.ends_with(" body") {
                assert_eq!(schema["type"], "object", "{location}");
            }
            if schema["properties"].is_object() {
                assert_eq!(
                    schema["additionalProperties"],
                    serde_json::json!(false),
                    "{location} takes no other properties"
                );
            }
        });
    }

    #[test]
    fn every_operation_documents_every_status_it_answers() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let name = format!("{} {path}", method.to_uppercase());
                let responses = operation["responses"].as_object().unwrap();
                assert!(
                    !responses.contains_key("default"),
                    "{name}: list the statuses, not a default"
                );
                let mut expected = Vec::new();
                if operation["security"] != serde_json::json!([]) {
                    // A malformed Authorization header, no or wrong credentials, a caller
                    // without the permission, and the failed-login throttle.
                    expected.extend(["400", "401", "403", "429"]);
                }
                let names_a_resource = operation["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| p["in"] == "path");
                if names_a_resource {
                    expected.push("404");
                }
                for status in expected {
                    assert!(responses.contains_key(status), "{name} answers {status}");
                }
                for (status, response) in responses {
                    if status.starts_with('2') {
                        continue;
                    }
                    let response = match response["$ref"].as_str() {
                        Some(target) => doc.pointer(target.strip_prefix('#').unwrap()).unwrap(),
                        None => response,
                    };
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/Errors",
                        "{name} {status} is an OCI error document"
                    );
                }
            }
        }
    }

    #[test]
    fn a_body_must_be_a_json_object_of_its_type() {
        // serde alone reads `[null, null]` into the two fields of QuotaLimits.
        for (body, expected) in [
            ("[null, null]", "request body must be a JSON object"),
            ("[5, 6]", "request body must be a JSON object"),
            ("null", "request body must be a JSON object"),
            (
                r#"{"storage_bytes": "5"}"#,
                "request body: storage_bytes: invalid type",
            ),
            (r#"{"storage_bytes": 5, "x": 1}"#, "unknown field `x`"),
            ("storage_bytes=5", "request body is not JSON"),
        ] {
            match parse_body::<QuotaLimits>(body.as_bytes()) {
                Err(ApiError::Invalid(message)) => {
                    assert!(message.contains(expected), "{body}: {message}")
                }
                Err(other) => panic!("{body}: {other:?}"),
                Ok(_) => panic!("{body} was accepted"),
            }
        }
        let limits: QuotaLimits = parse_body(br#"{"storage_bytes": 5}"#).unwrap();
        assert_eq!((limits.storage_bytes, limits.artifacts), (Some(5), None));
    }

    #[test]
    fn values_outside_a_range_are_refused_naming_the_range() {
        assert_eq!(
            within("pause_ms", 60_000, limits::GC_PAUSE_MS).unwrap(),
            60_000
        );
        match within("pause_ms", 60_001, limits::GC_PAUSE_MS) {
            Err(ApiError::Invalid(m)) => {
                assert_eq!(m, "pause_ms 60001 is out of range: give 0 to 60000")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn names_are_validated() {
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
        assert!(valid_project_name("team-a"));
        for bad in ["team/a", "Team", "", "..", "a..b", "ａ"] {
            assert!(!valid_project_name(bad), "{bad}");
        }
    }
}
