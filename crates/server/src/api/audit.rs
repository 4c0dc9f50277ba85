//! `/audit`: the audit log, newest first.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use gantry_access::AuditFilter;
use serde_json::json;

use super::{ok, ApiCaller, ApiResult, Params};
use crate::AppState;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/api/v1/audit", get(audit))
}

#[cfg(test)]
pub(super) const ROUTES: &[(&str, &str)] = &[("get", "/api/v1/audit")];

/// All of it for system administrators, a project's for its project admins.
async fn audit(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    Params(filter): Params<AuditFilter>,
) -> ApiResult {
    let events: Vec<_> = state
        .access
        .audit_events(&actor, &filter)
        .await?
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
                "detail": e.detail,
            })
        })
        .collect();
    ok(json!({ "events": events }))
}
