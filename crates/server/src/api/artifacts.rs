//! `/repositories/{repository}/artifacts`: a repository's artifacts with their figures
//! (digest, media and artifact type, tags, size, platforms, push and pull times, pulls,
//! referrers), sorted and paged, one artifact by tag or digest, and what its images are made
//! of (`…/images`: layers with the history step of each, labels, entrypoint; `…/analysis`: an
//! image's size analysis, as `gantry analyze` gives it).
//!
//! Repository names hold `/`: the path carries the full name with each `/` percent-encoded
//! (`/api/v1/repositories/team%2Fapp/artifacts`); axum decodes the segment.
//! Referrers (signatures, SBOMs) are listed under their subject, untagged index children as
//! the index's platforms, as Harbor shows them; `GET …/artifacts/{digest}` shows either.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{delete, get};
use axum::Router;
use gantry_auth::Action;
use gantry_registry::{parse_name, parse_tag, BrowseSort};
use serde_json::json;

use super::repositories::BrowseParams;
use super::{artifact_in_path, no_content, ok, ApiCaller, ApiResult, Params, PathParams};
use crate::AppState;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/api/v1/repositories/{repository}/artifacts",
            get(list_artifacts),
        )
        .route(
            "/api/v1/repositories/{repository}/artifacts/{reference}",
            get(show_artifact).delete(delete_artifact),
        )
        .route(
            "/api/v1/repositories/{repository}/artifacts/{reference}/tags/{tag}",
            delete(remove_tag),
        )
        .route(
            "/api/v1/repositories/{repository}/artifacts/{reference}/images",
            get(show_images),
        )
        .route(
            "/api/v1/repositories/{repository}/artifacts/{reference}/analysis",
            get(show_analysis),
        )
}

#[cfg(test)]
pub(super) const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/repositories/{repository}/artifacts"),
    (
        "get",
        "/api/v1/repositories/{repository}/artifacts/{reference}",
    ),
    (
        "delete",
        "/api/v1/repositories/{repository}/artifacts/{reference}",
    ),
    (
        "delete",
        "/api/v1/repositories/{repository}/artifacts/{reference}/tags/{tag}",
    ),
    (
        "get",
        "/api/v1/repositories/{repository}/artifacts/{reference}/images",
    ),
    (
        "get",
        "/api/v1/repositories/{repository}/artifacts/{reference}/analysis",
    ),
];

async fn list_artifacts(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(repository): PathParams<String>,
    Params(params): Params<BrowseParams>,
) -> ApiResult {
    let name = parse_name(&repository)?;
    state
        .access
        .require_in_repository(&actor, name.as_str(), Action::List, "list artifacts")
        .await?;
    let options = params.options(BrowseSort::Pushed)?;
    let page = state.registry.browse_artifacts(&name, &options).await?;
    ok(json!({"artifacts": page.items, "next": page.next}))
}

async fn show_artifact(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(path): PathParams<(String, String)>,
) -> ApiResult {
    let (name, reference) =
        artifact_in_path(&state, &actor, &path, Action::List, "see artifacts").await?;
    ok(state.registry.browse_artifact(&name, &reference).await?)
}

/// Deletes the artifact with all its tags (tag rules apply), audited as `artifact.delete`.
async fn delete_artifact(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(path): PathParams<(String, String)>,
) -> ApiResult {
    let (name, reference) =
        artifact_in_path(&state, &actor, &path, Action::Delete, "delete artifacts").await?;
    let digest = state
        .registry
        .delete_artifact(&name, &reference, actor.name())
        .await?;
    let resource = format!("{name}@{digest}");
    state
        .access
        .record_change(&actor, "artifact.delete", &resource, Some(name.project()))
        .await;
    no_content()
}

/// Removes one tag of the artifact (tag rules apply), audited as `tag.delete`.
async fn remove_tag(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams((repository, reference, tag)): PathParams<(String, String, String)>,
) -> ApiResult {
    let path = (repository, reference);
    let (name, reference) =
        artifact_in_path(&state, &actor, &path, Action::Delete, "remove tags").await?;
    let tag = parse_tag(&tag)?;
    state
        .registry
        .remove_artifact_tag(&name, &reference, &tag, actor.name())
        .await?;
    let resource = format!("{name}:{tag}");
    state
        .access
        .record_change(&actor, "tag.delete", &resource, Some(name.project()))
        .await;
    no_content()
}

async fn show_images(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(path): PathParams<(String, String)>,
) -> ApiResult {
    let (name, reference) =
        artifact_in_path(&state, &actor, &path, Action::List, "see artifacts").await?;
    ok(json!({ "images": state.registry.image_details(&name, &reference).await? }))
}

#[derive(serde::Deserialize)]
struct AnalysisParams {
    /// An index's image: `os/arch[/variant]`.
    platform: Option<String>,
}

async fn show_analysis(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(path): PathParams<(String, String)>,
    Params(params): Params<AnalysisParams>,
) -> ApiResult {
    let (name, reference) =
        artifact_in_path(&state, &actor, &path, Action::Pull, "analyze images").await?;
    ok(state
        .registry
        .image_analysis(&name, &reference, params.platform.as_deref())
        .await?)
}
