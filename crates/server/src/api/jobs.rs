//! `/jobs`: the background jobs every server of the deployment shares, with their history
//! (system administrators).

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use gantry_meta::{JobFilter, JobState};
use serde::Deserialize;
use serde_json::json;

use super::limits::{self, within};
use super::{ok, ApiCaller, ApiResult, Params, PathParams};
use crate::error::ApiError;
use crate::AppState;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/jobs", get(list_jobs))
        .route("/api/v1/jobs/{id}", get(show_job))
}

#[cfg(test)]
pub(super) const ROUTES: &[(&str, &str)] = &[("get", "/api/v1/jobs"), ("get", "/api/v1/jobs/{id}")];

#[derive(Deserialize)]
struct JobParams {
    kind: Option<String>,
    state: Option<String>,
    /// Only jobs with a smaller id (paging: the last id of the previous page).
    before: Option<i64>,
    /// Jobs to list, newest first [default: 50].
    limit: Option<u32>,
}

async fn list_jobs(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    Params(params): Params<JobParams>,
) -> ApiResult {
    actor.require_system_admin("see jobs")?;
    let job_state = params
        .state
        .as_deref()
        .map(|name| {
            JobState::parse(name).ok_or_else(|| {
                ApiError::Invalid(format!(
                    "state {name:?}: expected queued, running, succeeded or failed"
                ))
            })
        })
        .transpose()?;
    let filter = JobFilter {
        kind: params.kind,
        state: job_state,
        before_id: params
            .before
            .map(|id| within("before", id, limits::ROW_ID))
            .transpose()?,
        limit: within("limit", params.limit.unwrap_or(50), limits::LIST_LIMIT)?,
        ..JobFilter::default()
    };
    let jobs = state.registry.jobs(&filter).await?;
    ok(json!({ "jobs": jobs }))
}

async fn show_job(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(id): PathParams<i64>,
) -> ApiResult {
    actor.require_system_admin("see jobs")?;
    let id = within("job id", id, limits::ROW_ID)?;
    match state.registry.job(id).await? {
        Some(job) => ok(job),
        None => Err(ApiError::NotFound(format!("job {id} does not exist"))),
    }
}
