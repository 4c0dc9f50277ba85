//! `/tokens`: short-lived CI tokens, minted by users with at most their own rights.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{delete, get};
use axum::Router;
use gantry_access::{CredentialKind, NewCiToken};
use serde::Deserialize;

use super::{credential_list, minted, no_content, ApiCaller, ApiResult, Body, Params, PathParams};
use crate::error::ApiError;
use crate::AppState;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/tokens", get(list_tokens).post(create_token))
        .route("/api/v1/tokens/{token}", delete(revoke_token))
}

#[cfg(test)]
pub(super) const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/tokens"),
    ("post", "/api/v1/tokens"),
    ("delete", "/api/v1/tokens/{token}"),
];

#[derive(Deserialize)]
struct ProjectFilter {
    project: Option<String>,
}

async fn create_token(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    Body(token): Body<NewCiToken>,
) -> ApiResult {
    minted(state.access.create_ci_token(&actor, &token).await?)
}

async fn list_tokens(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    Params(filter): Params<ProjectFilter>,
) -> ApiResult {
    let Some(project) = filter.project else {
        return Err(ApiError::Invalid("give ?project=NAME".into()));
    };
    credential_list(
        state
            .access
            .credentials(&actor, Some(&project), CredentialKind::Ci)
            .await?,
    )
}

async fn revoke_token(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(name): PathParams<String>,
) -> ApiResult {
    state
        .access
        .revoke(&actor, &name, CredentialKind::Ci)
        .await?;
    no_content()
}
