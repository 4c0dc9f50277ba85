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
use gantry_lifecycle::retention::Policy;
use gantry_lifecycle::TagRules;
use gantry_meta::{AuditQuery, Credential, Quota, Usage};
use http::{header, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auth::{self, client_address};
use crate::error::ApiError;
use crate::AppState;

pub const OPENAPI: &str = include_str!("openapi.json");

/// Longest lifetime of a CI token: they are meant to live for one pipeline run.
const MAX_CI_TOKEN_TTL_SECS: u64 = 7 * 24 * 3600;
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
            .map(|ConnectInfo(addr)| client_address(addr))
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

/// A JSON body whose rejection is an OCI error like every other failure.
pub struct Body<T>(T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(ApiError::Invalid(format!(
                "request body: {}",
                rejection.body_text()
            ))),
        }
    }
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

    fn require_system_admin(&self, what: &str) -> Result<(), ApiError> {
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
    Path(user): Path<String>,
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
    Path(user): Path<String>,
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
    Path(project): Path<String>,
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
    Path(project): Path<String>,
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
    Path(project): Path<String>,
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
    Path(project): Path<String>,
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
    Path(project): Path<String>,
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
    Path(project): Path<String>,
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
    Path(project): Path<String>,
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

#[derive(Deserialize)]
struct RunOptions {
    #[serde(default)]
    dry_run: bool,
}

/// Runs the policy now: a dry run lists what would go; a real run deletes it.
async fn run_retention(
    State(state): State<Arc<AppState>>,
    caller: ApiCaller,
    Path(project): Path<String>,
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
    Path(project): Path<String>,
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
    Path(project): Path<String>,
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
    Path(project): Path<String>,
    Body(limits): Body<QuotaLimits>,
) -> ApiResult {
    caller.require_system_admin("set quotas")?;
    caller
        .require(&state, &project, Action::ManageSettings, "set the quota")
        .await?;
    if limits.storage_bytes.is_some_and(|n| n < 0) || limits.artifacts.is_some_and(|n| n < 0) {
        return Err(ApiError::Invalid(
            "quota limits are counts of bytes and artifacts: zero or more, or null for unlimited"
                .into(),
        ));
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
    Path(project): Path<String>,
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
    Path(project): Path<String>,
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
    Path(project): Path<String>,
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
    Path((project, id)): Path<(String, i64)>,
) -> ApiResult {
    caller
        .require(&state, &project, Action::ManageTagRules, "restore archives")
        .await?;
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
    Path((project, id)): Path<(String, i64)>,
) -> ApiResult {
    caller
        .require(&state, &project, Action::ManageTagRules, "delete archives")
        .await?;
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
    Path(project): Path<String>,
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
    Path((project, user)): Path<(String, String)>,
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
    Path((project, user)): Path<(String, String)>,
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
        expires_at: robot
            .expires_in_secs
            .map(|secs| (now_secs() + secs.max(1)) as i64),
        revoked_at: None,
        created_by: caller.name().to_string(),
    };
    mint(state, caller, credential, "gantry_robot_").await
}

async fn create_project_robot(
    State(state): State<Arc<AppState>>,
    caller: ApiCaller,
    Path(project): Path<String>,
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
    Path(project): Path<String>,
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
    Path<String>,
) -> futures::future::BoxFuture<'static, ApiResult>
       + Clone {
    move |State(state), caller, Path(name)| {
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
    if state.access.meta().project(&token.project).await?.is_none() {
        return Err(ApiError::NotFound(format!(
            "project {:?} does not exist",
            token.project
        )));
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
    let ttl = token.ttl_secs.unwrap_or(DEFAULT_CI_TOKEN_TTL_SECS);
    if !(1..=MAX_CI_TOKEN_TTL_SECS).contains(&ttl) {
        return Err(ApiError::Invalid(format!(
            "ttl_secs {ttl} is out of range: CI tokens live between 1 s and 7 days"
        )));
    }
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
        options.grace = std::time::Duration::from_secs(grace);
    }
    if let Some(pause) = params.pause_ms {
        options.pause = std::time::Duration::from_millis(pause.min(60_000));
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
    // Entries recorded just before this request are visible to it.
    state.access.audit_log().flush().await;
    let events = state
        .access
        .meta()
        .audit(&AuditQuery {
            project: filter.project.as_deref(),
            since: filter.since,
            until: filter.until,
            limit: filter.limit.unwrap_or(100).min(10_000),
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
