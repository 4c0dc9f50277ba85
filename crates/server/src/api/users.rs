//! `/users`: user accounts and their passwords (the access service checks names and password
//! rules and hashes passwords).

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{delete, get, put};
use axum::Router;
use serde::Deserialize;
use serde_json::json;

use super::{created, no_content, ok, ApiCaller, ApiResult, Body, PathParams};
use crate::AppState;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/users", get(list_users).post(create_user))
        .route("/api/v1/users/{user}", delete(delete_user))
        .route("/api/v1/users/{user}/password", put(set_password))
}

#[cfg(test)]
pub(super) const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/users"),
    ("post", "/api/v1/users"),
    ("delete", "/api/v1/users/{user}"),
    ("put", "/api/v1/users/{user}/password"),
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    name: String,
    password: String,
    #[serde(default)]
    admin: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    password: String,
}

async fn list_users(State(state): State<Arc<AppState>>, ApiCaller(actor): ApiCaller) -> ApiResult {
    let users: Vec<_> = state
        .access
        .users(&actor)
        .await?
        .into_iter()
        .map(|u| json!({"name": u.name, "admin": u.system_admin}))
        .collect();
    ok(json!({ "users": users }))
}

async fn create_user(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    Body(user): Body<NewUser>,
) -> ApiResult {
    state
        .access
        .create_user(&actor, &user.name, &user.password, user.admin)
        .await?;
    created(json!({"name": user.name, "admin": user.admin}))
}

async fn delete_user(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(user): PathParams<String>,
) -> ApiResult {
    state.access.delete_user(&actor, &user).await?;
    no_content()
}

async fn set_password(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(user): PathParams<String>,
    Body(body): Body<NewPassword>,
) -> ApiResult {
    state
        .access
        .set_password(&actor, &user, &body.password)
        .await?;
    no_content()
}
