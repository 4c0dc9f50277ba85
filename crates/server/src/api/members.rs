//! `/projects/{project}/members`: who belongs to a project, with which role.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, put};
use axum::Router;
use serde::Deserialize;
use serde_json::json;

use super::{no_content, ok, ApiCaller, ApiResult, Body, PathParams};
use crate::AppState;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/projects/{project}/members", get(list_members))
        .route(
            "/api/v1/projects/{project}/members/{user}",
            put(set_member).delete(remove_member),
        )
}

#[cfg(test)]
pub(super) const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/projects/{project}/members"),
    ("put", "/api/v1/projects/{project}/members/{user}"),
    ("delete", "/api/v1/projects/{project}/members/{user}"),
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Membership {
    role: String,
}

async fn list_members(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(project): PathParams<String>,
) -> ApiResult {
    let members: Vec<_> = state
        .access
        .members(&actor, &project)
        .await?
        .into_iter()
        .map(|(user, role)| json!({"user": user, "role": role}))
        .collect();
    ok(json!({ "members": members }))
}

async fn set_member(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams((project, user)): PathParams<(String, String)>,
    Body(membership): Body<Membership>,
) -> ApiResult {
    let role = state
        .access
        .set_member(&actor, &project, &user, &membership.role)
        .await?;
    ok(json!({"user": user, "role": role.as_str()}))
}

async fn remove_member(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams((project, user)): PathParams<(String, String)>,
) -> ApiResult {
    state.access.remove_member(&actor, &project, &user).await?;
    no_content()
}
