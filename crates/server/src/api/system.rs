//! `/vulndb` and `/mirror`: what the whole registry runs on — the vulnerability database's
//! sources (everyone signed in: which data a scan was made against), and the pull-through
//! cache's upstreams with what each cache project holds (system administrators).

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use serde_json::json;

use super::{ok, ApiCaller, ApiResult};
use crate::AppState;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/vulndb", get(show_vulndb))
        .route("/api/v1/mirror", get(show_mirror))
}

#[cfg(test)]
pub(super) const ROUTES: &[(&str, &str)] = &[("get", "/api/v1/vulndb"), ("get", "/api/v1/mirror")];

async fn show_vulndb(
    State(state): State<Arc<AppState>>,
    ApiCaller(_actor): ApiCaller,
) -> ApiResult {
    let status = state.registry.vulndb_status().await?;
    let sources: Vec<_> = status
        .sources
        .iter()
        .map(|source| {
            json!({
                "name": source.name,
                "location": source.location,
                "imported_at": source.imported_at_ms / 1000,
                "records": source.records,
                "malformed": source.malformed,
                // Some sources write a placeholder (the Go database: 0001-01-01).
                "newest_modified": source.newest_modified.as_deref().filter(|m| !m.starts_with("0001-")),
            })
        })
        .collect();
    ok(json!({ "generation": status.generation, "sources": sources }))
}

async fn show_mirror(State(state): State<Arc<AppState>>, ApiCaller(actor): ApiCaller) -> ApiResult {
    actor.require_system_admin("see the pull-through cache")?;
    let mut upstreams = Vec::new();
    for upstream in state.mirror.upstreams() {
        let quota = state.registry.quota(&upstream.project).await?;
        upstreams.push(json!({
            "name": upstream.name,
            "url": upstream.url,
            "project": upstream.project,
            "default": upstream.default,
            "public": upstream.public,
            "cached_bytes": quota.used.bytes,
            "cached_artifacts": quota.used.artifacts,
        }));
    }
    ok(json!({ "upstreams": upstreams }))
}
