//! `/projects/{project}/signing-policy`: the public keys a project trusts and whether pulls of
//! images without a signature by one of them are refused.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use gantry_auth::Action;
use gantry_registry::SigningPolicy;

use super::{ok, ApiCaller, ApiResult, Body, PathParams};
use crate::AppState;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new().route(
        "/api/v1/projects/{project}/signing-policy",
        get(show_policy).put(set_policy),
    )
}

#[cfg(test)]
pub(super) const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/projects/{project}/signing-policy"),
    ("put", "/api/v1/projects/{project}/signing-policy"),
];

async fn show_policy(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(project): PathParams<String>,
) -> ApiResult {
    state
        .access
        .require(&actor, &project, Action::Pull, "see the signing policy")
        .await?;
    ok(state.registry.signing_policy(&project).await?)
}

async fn set_policy(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(project): PathParams<String>,
    Body(policy): Body<SigningPolicy>,
) -> ApiResult {
    state
        .access
        .require(
            &actor,
            &project,
            Action::ManageSettings,
            "change the signing policy",
        )
        .await?;
    state.registry.set_signing_policy(&project, &policy).await?;
    let summary = format!(
        "{} key{}, {}",
        policy.keys.len(),
        if policy.keys.len() == 1 { "" } else { "s" },
        if policy.enforce {
            "enforced"
        } else {
            "not enforced"
        }
    );
    state
        .access
        .record_change(&actor, "signing-policy.set", &summary, Some(&project))
        .await;
    ok(policy)
}
