//! `/repositories/{repository}/artifacts/{reference}/…`: the vulnerability scanner's view of
//! an artifact. `vulnerabilities` gives the latest scan of each of its images (one per
//! platform for an index: packages, findings with their fixed versions and reachability);
//! `scan` asks for a scan now; `sbom` gives an image's SBOM (SPDX 2.3 or CycloneDX 1.5) from
//! the same package list.

use std::sync::Arc;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use gantry_auth::Action;
use gantry_registry::{parse_name, parse_reference, SbomFormat};
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::{ok, ApiCaller, ApiResult, Params, PathParams};
use crate::AppState;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/api/v1/repositories/{repository}/artifacts/{reference}/vulnerabilities",
            get(show_vulnerabilities),
        )
        .route(
            "/api/v1/repositories/{repository}/artifacts/{reference}/scan",
            post(request_scan),
        )
        .route(
            "/api/v1/repositories/{repository}/artifacts/{reference}/sbom",
            get(show_sbom),
        )
}

#[cfg(test)]
pub(super) const ROUTES: &[(&str, &str)] = &[
    (
        "get",
        "/api/v1/repositories/{repository}/artifacts/{reference}/vulnerabilities",
    ),
    (
        "post",
        "/api/v1/repositories/{repository}/artifacts/{reference}/scan",
    ),
    (
        "get",
        "/api/v1/repositories/{repository}/artifacts/{reference}/sbom",
    ),
];

async fn show_vulnerabilities(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams((repository, reference)): PathParams<(String, String)>,
) -> ApiResult {
    let name = parse_name(&repository)?;
    let reference = parse_reference(&reference)?;
    state
        .access
        .require_in_repository(&actor, name.as_str(), Action::List, "see scan results")
        .await?;
    ok(state.registry.artifact_scan(&name, &reference).await?)
}

async fn request_scan(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams((repository, reference)): PathParams<(String, String)>,
) -> ApiResult {
    let name = parse_name(&repository)?;
    let reference = parse_reference(&reference)?;
    state
        .access
        .require_in_repository(&actor, name.as_str(), Action::Push, "scan artifacts")
        .await?;
    let jobs = state.registry.request_scan(&name, &reference).await?;
    state.job_waker.wake();
    Ok((StatusCode::ACCEPTED, Json(json!({ "jobs": jobs }))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SbomParams {
    #[serde(default)]
    format: SbomFormat,
    platform: Option<String>,
}

async fn show_sbom(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams((repository, reference)): PathParams<(String, String)>,
    Params(params): Params<SbomParams>,
) -> ApiResult {
    let name = parse_name(&repository)?;
    let reference = parse_reference(&reference)?;
    state
        .access
        .require_in_repository(&actor, name.as_str(), Action::List, "see SBOMs")
        .await?;
    let (media_type, document) = state
        .registry
        .sbom(&name, &reference, params.platform.as_deref(), params.format)
        .await?;
    Ok((
        [(http::header::CONTENT_TYPE, media_type)],
        Json(document),
    )
        .into_response())
}
