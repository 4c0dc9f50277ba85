//! `/repositories/{repository}/artifacts/{reference}/…`: the vulnerability scanner's view of
//! an artifact. `vulnerabilities` gives the latest scan of each of its images (one per
//! platform for an index: packages, findings with their fixed versions and reachability);
//! `scan` asks for a scan now; `sbom` gives an image's SBOM (SPDX 2.3 or CycloneDX 1.5) from
//! the same package list. `/projects/{project}/vulnerability-policy` is a project's pull
//! gate; `/vulnerability-allowlist` the system-wide allowlist every gate honours.

use std::sync::Arc;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use gantry_auth::Action;
use gantry_registry::{Allowed, GatePolicy, SbomFormat};
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::limits::{self, within};
use super::{artifact_in_path, ok, ApiCaller, ApiResult, Body, Params, PathParams};
use crate::error::ApiError;
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
        .route(
            "/api/v1/projects/{project}/vulnerability-policy",
            get(show_policy).put(set_policy),
        )
        .route(
            "/api/v1/vulnerability-allowlist",
            get(show_allowlist).put(set_allowlist),
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
    ("get", "/api/v1/projects/{project}/vulnerability-policy"),
    ("put", "/api/v1/projects/{project}/vulnerability-policy"),
    ("get", "/api/v1/vulnerability-allowlist"),
    ("put", "/api/v1/vulnerability-allowlist"),
];

async fn show_vulnerabilities(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(path): PathParams<(String, String)>,
) -> ApiResult {
    let (name, reference) =
        artifact_in_path(&state, &actor, &path, Action::List, "see scan results").await?;
    ok(state.registry.artifact_scan(&name, &reference).await?)
}

async fn request_scan(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(path): PathParams<(String, String)>,
) -> ApiResult {
    let (name, reference) =
        artifact_in_path(&state, &actor, &path, Action::Push, "scan artifacts").await?;
    let jobs = state.registry.request_scan(&name, &reference).await?;
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
    PathParams(path): PathParams<(String, String)>,
    Params(params): Params<SbomParams>,
) -> ApiResult {
    let (name, reference) =
        artifact_in_path(&state, &actor, &path, Action::List, "see SBOMs").await?;
    let (media_type, document) = state
        .registry
        .sbom(&name, &reference, params.platform.as_deref(), params.format)
        .await?;
    Ok(([(http::header::CONTENT_TYPE, media_type)], Json(document)).into_response())
}

async fn show_policy(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(project): PathParams<String>,
) -> ApiResult {
    state
        .access
        .require(
            &actor,
            &project,
            Action::Pull,
            "see the vulnerability policy",
        )
        .await?;
    ok(state.registry.vulnerability_policy(&project).await?)
}

async fn set_policy(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(project): PathParams<String>,
    Body(policy): Body<GatePolicy>,
) -> ApiResult {
    state
        .access
        .require(
            &actor,
            &project,
            Action::ManageSettings,
            "change the vulnerability policy",
        )
        .await?;
    check_expiries(&policy.allowlist)?;
    within("wait_secs", policy.wait_secs, limits::GATE_WAIT_SECS)?;
    state
        .registry
        .set_vulnerability_policy(&project, &policy)
        .await?;
    let summary = match policy.block_severity {
        Some(severity) => format!(
            "block {severity} and above{}, {} allowlisted",
            if policy.reachable_only {
                " (reachable)"
            } else {
                ""
            },
            policy.allowlist.len()
        ),
        None => "gate off".to_string(),
    };
    state
        .access
        .record_change(&actor, "vulnerability-policy.set", &summary, Some(&project))
        .await;
    ok(policy)
}

/// Refuses an allowlist entry whose expiry is not a Unix time.
fn check_expiries(allowlist: &[Allowed]) -> Result<(), ApiError> {
    for expires_at in allowlist.iter().filter_map(|a| a.expires_at) {
        within("expires_at", expires_at, gantry_access::limits::UNIX_SECS)?;
    }
    Ok(())
}

/// The system-wide allowlist, as the API reads and writes it.
#[derive(serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowlistDocument {
    allowlist: Vec<Allowed>,
}

async fn show_allowlist(
    State(state): State<Arc<AppState>>,
    ApiCaller(_actor): ApiCaller,
) -> ApiResult {
    ok(AllowlistDocument {
        allowlist: state.registry.system_allowlist().await?,
    })
}

async fn set_allowlist(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    Body(document): Body<AllowlistDocument>,
) -> ApiResult {
    actor.require_system_admin("change the system-wide vulnerability allowlist")?;
    check_expiries(&document.allowlist)?;
    state
        .registry
        .set_system_allowlist(&document.allowlist)
        .await?;
    state
        .access
        .record_change(
            &actor,
            "vulnerability-allowlist.set",
            &format!("{} entries", document.allowlist.len()),
            None,
        )
        .await;
    ok(document)
}
