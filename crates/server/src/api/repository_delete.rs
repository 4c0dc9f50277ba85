//! `DELETE /repositories/{repository}`: deleting a whole repository. The name is one path
//! parameter, its `/` percent-encoded (`team-a%2Fapp`).

use std::sync::Arc;

use axum::extract::State;
use axum::routing::delete;
use axum::Router;
use gantry_access::Actor;
use gantry_auth::Action;
use gantry_registry::RepositoryDeletion;

use super::{ok, ApiCaller, ApiResult, PathParams};
use crate::AppState;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new().route(
        "/api/v1/repositories/{repository}",
        delete(delete_repository),
    )
}

#[cfg(test)]
pub(super) const ROUTES: &[(&str, &str)] = &[("delete", "/api/v1/repositories/{repository}")];

/// Deletes every tag, manifest, blob link and upload session of the repository (tag rules
/// apply: an immutable tag refuses it all), audited as `repository.delete` with the counts.
async fn delete_repository(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(repository): PathParams<String>,
) -> ApiResult {
    let name = gantry_registry::parse_name(&repository)?;
    state
        .access
        .require_in_repository(&actor, name.as_str(), Action::Delete, "delete repositories")
        .await?;
    let deleted = state
        .registry
        .delete_repository(&name, actor.name())
        .await?;
    record_repository_deleted(&state, &actor, name.project(), &deleted).await;
    ok(deleted)
}

/// Audits a deleted repository as `repository.delete`, with its counts as the detail.
pub(super) async fn record_repository_deleted(
    state: &AppState,
    actor: &Actor,
    project: &str,
    deleted: &RepositoryDeletion,
) {
    let detail = serde_json::to_string(deleted).expect("reports serialize");
    state
        .access
        .record_change_detailed(
            actor,
            "repository.delete",
            &deleted.repository,
            Some(project),
            Some(detail),
        )
        .await;
}
