//! `/robots` (system robot accounts) and `/projects/{project}/robots` (a project's).

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{delete, get};
use axum::Router;
use gantry_access::{CredentialKind, NewRobot};

use super::{credential_list, minted, no_content, ApiCaller, ApiResult, Body, PathParams};
use crate::AppState;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/api/v1/projects/{project}/robots",
            get(list_project_robots).post(create_project_robot),
        )
        .route(
            "/api/v1/robots",
            get(list_system_robots).post(create_system_robot),
        )
        .route("/api/v1/robots/{robot}", delete(revoke_robot))
}

#[cfg(test)]
pub(super) const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/projects/{project}/robots"),
    ("post", "/api/v1/projects/{project}/robots"),
    ("get", "/api/v1/robots"),
    ("post", "/api/v1/robots"),
    ("delete", "/api/v1/robots/{robot}"),
];

async fn create_project_robot(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(project): PathParams<String>,
    Body(robot): Body<NewRobot>,
) -> ApiResult {
    minted(
        state
            .access
            .create_robot(&actor, Some(&project), &robot)
            .await?,
    )
}

async fn create_system_robot(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    Body(robot): Body<NewRobot>,
) -> ApiResult {
    minted(state.access.create_robot(&actor, None, &robot).await?)
}

async fn list_project_robots(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(project): PathParams<String>,
) -> ApiResult {
    credential_list(
        state
            .access
            .credentials(&actor, Some(&project), CredentialKind::Robot)
            .await?,
    )
}

async fn list_system_robots(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
) -> ApiResult {
    credential_list(
        state
            .access
            .credentials(&actor, None, CredentialKind::Robot)
            .await?,
    )
}

async fn revoke_robot(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(name): PathParams<String>,
) -> ApiResult {
    state
        .access
        .revoke(&actor, &name, CredentialKind::Robot)
        .await?;
    no_content()
}
