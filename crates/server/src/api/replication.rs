//! `/replication`: replication and preheat rules — the config file's (read only) and those
//! made here, system-wide (system administrators) or of a project (its administrators) —,
//! runs by hand, each rule's run history and items with their status.

use std::sync::Arc;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use gantry_access::AccessError;
use gantry_access::Actor;
use gantry_auth::Action;
use gantry_mirror::replication::{RuleSpec, RuleView};
use gantry_mirror::MirrorError;
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::limits::{self, within};
use super::{created, no_content, ok, ApiCaller, ApiResult, Body, Params, PathParams};
use crate::error::ApiError;
use crate::AppState;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/replication", get(list_rules).post(create_rule))
        .route(
            "/api/v1/replication/{rule}",
            get(show_rule).put(replace_rule).delete(delete_rule),
        )
        .route(
            "/api/v1/replication/{rule}/runs",
            post(run_rule).get(list_runs),
        )
        .route("/api/v1/replication/{rule}/items", get(list_items))
}

#[cfg(test)]
pub(super) const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/replication"),
    ("post", "/api/v1/replication"),
    ("get", "/api/v1/replication/{rule}"),
    ("put", "/api/v1/replication/{rule}"),
    ("delete", "/api/v1/replication/{rule}"),
    ("post", "/api/v1/replication/{rule}/runs"),
    ("get", "/api/v1/replication/{rule}/runs"),
    ("get", "/api/v1/replication/{rule}/items"),
];

/// Refuses unless `actor` manages the rules of `project` (its settings; the project must
/// exist), or, for system-wide rules, is a system administrator.
async fn authorize(
    state: &AppState,
    actor: &Actor,
    project: Option<&str>,
    what: &str,
) -> Result<(), ApiError> {
    match project {
        Some(project) => Ok(state
            .access
            .require(actor, project, Action::ManageSettings, what)
            .await?),
        None if actor.is_system_admin() => Ok(()),
        None => Err(AccessError::Denied(format!(
            "only system administrators may {what} of the whole registry; a project's \
             administrators give its name (?project=NAME, `--project NAME`)"
        ))
        .into()),
    }
}

/// The rule `rule`, when `actor` manages it; a rule they may not manage is unknown to them
/// (its name and project are not told).
async fn managed_rule(
    state: &AppState,
    actor: &Actor,
    rule: &str,
    what: &str,
) -> Result<RuleView, ApiError> {
    let view = state.replicator.rule(rule).await?;
    if actor.is_system_admin() {
        // Also a rule whose project is gone (one of the config file's).
        return Ok(view);
    }
    match authorize(state, actor, view.spec.project.as_deref(), what).await {
        Ok(()) => Ok(view),
        Err(ApiError::Access {
            error: AccessError::Denied(_),
            ..
        }) => Err(MirrorError::RuleUnknown(rule.to_string()).into()),
        Err(e) => Err(e),
    }
}

#[derive(Deserialize)]
struct ListParams {
    /// Only this project's rules (its administrators may list them).
    project: Option<String>,
}

async fn list_rules(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    Params(params): Params<ListParams>,
) -> ApiResult {
    let project = params.project.as_deref();
    authorize(&state, &actor, project, "see replication rules").await?;
    ok(json!({ "rules": state.replicator.rules(project).await? }))
}

async fn show_rule(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(rule): PathParams<String>,
) -> ApiResult {
    ok(managed_rule(&state, &actor, &rule, "see replication rules").await?)
}

async fn create_rule(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    Body(spec): Body<RuleSpec>,
) -> ApiResult {
    let project = spec.project.clone();
    authorize(&state, &actor, project.as_deref(), "add replication rules").await?;
    let view = state.replicator.save(spec, false, actor.name()).await?;
    state
        .access
        .record_change(
            &actor,
            "replication.create",
            &format!(
                "rule {} ({:?}) to {}",
                view.spec.name, view.spec.kind, view.spec.url
            ),
            project.as_deref(),
        )
        .await;
    created(serde_json::to_value(view).expect("rules serialize"))
}

/// Replaces an API rule; a body without `password` keeps the stored one (same username).
async fn replace_rule(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(rule): PathParams<String>,
    Body(spec): Body<RuleSpec>,
) -> ApiResult {
    if spec.name != rule {
        return Err(ApiError::Invalid(format!(
            "the body names rule {:?}, the path {rule:?}; a rule keeps its name",
            spec.name
        )));
    }
    managed_rule(&state, &actor, &rule, "change replication rules").await?;
    let project = spec.project.clone();
    authorize(
        &state,
        &actor,
        project.as_deref(),
        "change replication rules",
    )
    .await?;
    let view = state.replicator.save(spec, true, actor.name()).await?;
    state
        .access
        .record_change(
            &actor,
            "replication.update",
            &format!("rule {rule}"),
            project.as_deref(),
        )
        .await;
    ok(view)
}

async fn delete_rule(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(rule): PathParams<String>,
) -> ApiResult {
    let view = managed_rule(&state, &actor, &rule, "delete replication rules").await?;
    let project = view.spec.project.as_deref();
    state.replicator.delete(&rule).await?;
    state
        .access
        .record_change(
            &actor,
            "replication.delete",
            &format!("rule {rule}"),
            project,
        )
        .await;
    no_content()
}

/// Runs the rule now: a run job that enqueues one item per tag it selects.
async fn run_rule(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(rule): PathParams<String>,
) -> ApiResult {
    let view = managed_rule(&state, &actor, &rule, "run replication").await?;
    let project = view.spec.project.as_deref();
    let run = state.replicator.start_run(&rule).await?;
    state
        .access
        .record_change(
            &actor,
            "replication.run",
            &format!("rule {rule}: run {run}"),
            project,
        )
        .await;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "rule": rule, "run": run })),
    )
        .into_response())
}

#[derive(Deserialize)]
struct RunParams {
    limit: Option<u32>,
}

async fn list_runs(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(rule): PathParams<String>,
    Params(params): Params<RunParams>,
) -> ApiResult {
    managed_rule(&state, &actor, &rule, "see replication runs").await?;
    let limit = within("limit", params.limit.unwrap_or(20), limits::LIST_LIMIT)?;
    ok(json!({ "runs": state.replicator.runs(&rule, limit).await? }))
}

#[derive(Deserialize)]
struct ItemParams {
    limit: Option<u32>,
    /// Only this run's items.
    run: Option<i64>,
}

async fn list_items(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(rule): PathParams<String>,
    Params(params): Params<ItemParams>,
) -> ApiResult {
    managed_rule(&state, &actor, &rule, "see replication items").await?;
    let limit = within("limit", params.limit.unwrap_or(50), limits::LIST_LIMIT)?;
    let run = params
        .run
        .map(|run| within("run", run, limits::ROW_ID))
        .transpose()?;
    ok(json!({ "items": state.replicator.items(&rule, run, limit).await? }))
}
