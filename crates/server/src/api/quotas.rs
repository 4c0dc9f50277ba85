//! `/projects/{project}/quota` and `/quotas`: storage and artifact limits and usage. Quotas
//! are the platform team's to set (system administrators), as in Harbor.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;
use gantry_auth::Action;
use gantry_meta::{Quota, Usage};
use serde::Deserialize;
use serde_json::json;

use super::limits::{self, within};
use super::{ok, ApiCaller, ApiResult, Body, PathParams};
use crate::AppState;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/api/v1/projects/{project}/quota",
            get(show_quota).put(set_quota),
        )
        .route(
            "/api/v1/projects/{project}/quota/recount",
            post(recount_quota),
        )
        .route("/api/v1/quotas", get(list_quotas))
}

#[cfg(test)]
pub(super) const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/projects/{project}/quota"),
    ("put", "/api/v1/projects/{project}/quota"),
    ("post", "/api/v1/projects/{project}/quota/recount"),
    ("get", "/api/v1/quotas"),
];

/// New limits; a missing or null field means unlimited.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct QuotaLimits {
    pub(super) storage_bytes: Option<i64>,
    pub(super) artifacts: Option<i64>,
}

pub(super) fn quota_json(quota: &Quota) -> serde_json::Value {
    json!({
        "project": quota.project,
        "storage": {"used_bytes": quota.used.bytes, "limit_bytes": quota.bytes_limit},
        "artifacts": {"used": quota.used.artifacts, "limit": quota.artifacts_limit},
    })
}

async fn show_quota(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(project): PathParams<String>,
) -> ApiResult {
    state
        .access
        .require(&actor, &project, Action::Pull, "see the quota")
        .await?;
    ok(quota_json(&state.registry.quota(&project).await?))
}

async fn set_quota(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(project): PathParams<String>,
    Body(quota_limits): Body<QuotaLimits>,
) -> ApiResult {
    actor.require_system_admin("set quotas")?;
    state
        .access
        .require(&actor, &project, Action::ManageSettings, "set the quota")
        .await?;
    for (name, limit) in [
        ("storage_bytes", quota_limits.storage_bytes),
        ("artifacts", quota_limits.artifacts),
    ] {
        if let Some(limit) = limit {
            within(name, limit, limits::QUOTA_LIMIT)?;
        }
    }
    let quota = state
        .registry
        .set_quota_limits(&project, quota_limits.storage_bytes, quota_limits.artifacts)
        .await?;
    let summary = format!(
        "storage {}, artifacts {}",
        quota_limits
            .storage_bytes
            .map_or("unlimited".into(), |n| n.to_string()),
        quota_limits
            .artifacts
            .map_or("unlimited".into(), |n| n.to_string())
    );
    state
        .access
        .record_change(&actor, "quota.set", &summary, Some(&project))
        .await;
    ok(quota_json(&quota))
}

/// Adds the project's usage up from its rows and compares with the live figures (which it
/// corrects, should they differ).
async fn recount_quota(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(project): PathParams<String>,
) -> ApiResult {
    actor.require_system_admin("recount usage")?;
    state
        .access
        .require(&actor, &project, Action::ManageSettings, "recount usage")
        .await?;
    let recount = state.registry.recount_usage(&project).await?;
    let figures = |u: Usage| json!({"bytes": u.bytes, "artifacts": u.artifacts});
    ok(json!({
        "project": project,
        "live": figures(recount.live),
        "counted": figures(recount.counted),
        "agree": recount.live == recount.counted,
    }))
}

/// Usage and limits of every project (system administrators).
async fn list_quotas(State(state): State<Arc<AppState>>, ApiCaller(actor): ApiCaller) -> ApiResult {
    actor.require_system_admin("list every project's usage")?;
    let quotas: Vec<_> = state
        .registry
        .quotas()
        .await?
        .iter()
        .map(quota_json)
        .collect();
    ok(json!({ "quotas": quotas }))
}
