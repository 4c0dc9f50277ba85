//! `/projects/{project}/tag-rules`: which tags are immutable or must match a pattern.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use gantry_auth::Action;
use gantry_lifecycle::TagRules;

use super::{ok, ApiCaller, ApiResult, Body, PathParams};
use crate::AppState;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new().route(
        "/api/v1/projects/{project}/tag-rules",
        get(show_tag_rules).put(set_tag_rules),
    )
}

#[cfg(test)]
pub(super) const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/projects/{project}/tag-rules"),
    ("put", "/api/v1/projects/{project}/tag-rules"),
];

async fn show_tag_rules(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(project): PathParams<String>,
) -> ApiResult {
    state
        .access
        .require(&actor, &project, Action::Pull, "see tag rules")
        .await?;
    ok(state.registry.tag_rules(&project).await?)
}

async fn set_tag_rules(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(project): PathParams<String>,
    Body(rules): Body<TagRules>,
) -> ApiResult {
    state
        .access
        .require(&actor, &project, Action::ManageTagRules, "change tag rules")
        .await?;
    state.registry.set_tag_rules(&project, &rules).await?;
    let summary = serde_json::to_string(&rules).expect("tag rules serialize");
    state
        .access
        .record_change(&actor, "tag-rules.set", &summary, Some(&project))
        .await;
    ok(rules)
}
