//! `/replication`: the push replication rules of `[[replication]]` (system administrators),
//! runs by hand, and each rule's items with their status.

use std::sync::Arc;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::limits::{self, within};
use super::{ok, ApiCaller, ApiResult, Params, PathParams};
use crate::AppState;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/replication", get(list_rules))
        .route("/api/v1/replication/{rule}/runs", post(run_rule))
        .route("/api/v1/replication/{rule}/items", get(list_items))
}

#[cfg(test)]
pub(super) const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/replication"),
    ("post", "/api/v1/replication/{rule}/runs"),
    ("get", "/api/v1/replication/{rule}/items"),
];

async fn list_rules(State(state): State<Arc<AppState>>, ApiCaller(actor): ApiCaller) -> ApiResult {
    actor.require_system_admin("see replication rules")?;
    ok(json!({ "rules": state.replicator.rules() }))
}

/// Replicates everything the rule selects now: one item per tag.
async fn run_rule(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(rule): PathParams<String>,
) -> ApiResult {
    actor.require_system_admin("run replication")?;
    let items = state.replicator.run(&rule).await?;
    state
        .access
        .record_change(
            &actor,
            "replication.run",
            &format!("{rule}: {items} items"),
            None,
        )
        .await;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "rule": rule, "items": items })),
    )
        .into_response())
}

#[derive(Deserialize)]
struct ItemParams {
    limit: Option<u32>,
}

async fn list_items(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(rule): PathParams<String>,
    Params(params): Params<ItemParams>,
) -> ApiResult {
    actor.require_system_admin("see replication items")?;
    let limit = within("limit", params.limit.unwrap_or(50), limits::LIST_LIMIT)?;
    ok(json!({ "items": state.replicator.items(&rule, limit).await? }))
}
