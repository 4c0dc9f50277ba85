//! `/projects/{project}/retention`: a project's retention policy, running it, and its runs.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use gantry_auth::Action;
use gantry_lifecycle::retention::{Keep, Policy};
use serde_json::json;

use super::limits::{self, within};
use super::{ok, ApiCaller, ApiResult, Body, Params, PathParams, RunOptions};
use crate::error::ApiError;
use crate::AppState;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/api/v1/projects/{project}/retention",
            get(show_retention).put(set_retention),
        )
        .route(
            "/api/v1/projects/{project}/retention/runs",
            get(retention_history).post(run_retention),
        )
}

#[cfg(test)]
pub(super) const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/projects/{project}/retention"),
    ("put", "/api/v1/projects/{project}/retention"),
    ("get", "/api/v1/projects/{project}/retention/runs"),
    ("post", "/api/v1/projects/{project}/retention/runs"),
];

async fn show_retention(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(project): PathParams<String>,
) -> ApiResult {
    state
        .access
        .require(&actor, &project, Action::Pull, "see the retention policy")
        .await?;
    let policy = state.registry.retention_policy(&project).await?;
    ok(policy.unwrap_or_default())
}

async fn set_retention(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(project): PathParams<String>,
    Body(policy): Body<Policy>,
) -> ApiResult {
    state
        .access
        .require(
            &actor,
            &project,
            Action::ManageTagRules,
            "change the retention policy",
        )
        .await?;
    check_retention_bounds(&policy)?;
    state
        .registry
        .set_retention_policy(&project, &policy)
        .await?;
    state
        .access
        .record_change(
            &actor,
            "retention.set",
            &format!("{} rules", policy.rules.len()),
            Some(&project),
        )
        .await;
    ok(policy)
}

/// Refuses counts and ages of a policy's rules outside the ranges the document gives them
/// (the types alone would take any `usize` or `i64`, and an age in days becomes seconds).
fn check_retention_bounds(policy: &Policy) -> Result<(), ApiError> {
    for rule in &policy.rules {
        match rule.keep {
            Keep::MostRecentlyPushed(n)
            | Keep::MostRecentlyPulled(n)
            | Keep::NewestPerVersionLine(n) => {
                within("the count a rule keeps", n, limits::KEEP_COUNT)?;
            }
            Keep::PushedWithinDays(days) | Keep::PulledWithinDays(days) => {
                within("the days a rule keeps", days, limits::DAYS)?;
            }
            Keep::Always => {}
        }
    }
    Ok(())
}

/// Runs the policy now: a dry run lists what would go; a real run deletes it.
async fn run_retention(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(project): PathParams<String>,
    Params(options): Params<RunOptions>,
) -> ApiResult {
    state
        .access
        .require(&actor, &project, Action::ManageTagRules, "run retention")
        .await?;
    let report = state
        .registry
        .run_retention(
            &project,
            actor.name(),
            gantry_registry::unix_now(),
            options.dry_run,
        )
        .await?;
    state
        .access
        .record_change(
            &actor,
            if options.dry_run {
                "retention.dry-run"
            } else {
                "retention.run"
            },
            &format!(
                "{} tags, {} manifests, {} bytes",
                report.plan.delete_tags.len(),
                report.plan.delete_manifests.len(),
                report.plan.freed_bytes
            ),
            Some(&project),
        )
        .await;
    ok(report)
}

/// The last 100 runs, newest first.
async fn retention_history(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(project): PathParams<String>,
) -> ApiResult {
    state
        .access
        .require(&actor, &project, Action::Pull, "see retention runs")
        .await?;
    let runs: Vec<_> = state
        .registry
        .retention_runs(&project, 100)
        .await?
        .into_iter()
        .map(|r| {
            json!({"at": r.at, "actor": r.actor, "dry_run": r.dry_run, "deleted_tags": r.deleted_tags,
                   "deleted_manifests": r.deleted_manifests, "freed_bytes": r.freed_bytes})
        })
        .collect();
    ok(json!({ "runs": runs }))
}
