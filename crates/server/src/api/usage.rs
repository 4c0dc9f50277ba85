//! `/usage`: usage and growth over time, read from the daily snapshots, and
//! `/usage/snapshots`: taking today's snapshot now (system administrators).
//!
//! A project's report names its repositories and version tags, so it needs what seeing them
//! needs (`list`: guests and above, not limited guests); every project's report is for
//! system administrators.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;
use gantry_auth::Action;
use serde::Deserialize;

use super::limits::{self, within};
use super::{created, ApiCaller, ApiResult, Params};
use crate::AppState;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/usage", get(show_usage))
        .route("/api/v1/usage/snapshots", post(take_snapshot))
}

#[cfg(test)]
pub(super) const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/usage"),
    ("post", "/api/v1/usage/snapshots"),
];

#[derive(Deserialize)]
struct UsageParams {
    /// One project's usage; without it, every project's (system administrators).
    project: Option<String>,
    /// The window in days before today [default: 30].
    since_days: Option<i64>,
}

/// The window a report covers unless asked otherwise.
const DEFAULT_SINCE_DAYS: i64 = 30;

async fn show_usage(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    Params(params): Params<UsageParams>,
) -> ApiResult {
    match &params.project {
        Some(project) => {
            state
                .access
                .require(&actor, project, Action::List, "see usage")
                .await?
        }
        None => actor.require_system_admin(
            "see every project's usage (name one with ?project= to see a project you belong to)",
        )?,
    }
    let days = within(
        "since_days",
        params.since_days.unwrap_or(DEFAULT_SINCE_DAYS),
        limits::DAYS,
    )?;
    let report = state
        .registry
        .usage_report(
            params.project.as_deref(),
            u32::try_from(days).expect("within DAYS"),
            gantry_registry::unix_now(),
        )
        .await?;
    super::ok(report)
}

/// Takes today's snapshot now, replacing one taken earlier today.
async fn take_snapshot(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
) -> ApiResult {
    actor.require_system_admin("take usage snapshots")?;
    let taken = state
        .registry
        .take_usage_snapshot(gantry_registry::unix_now())
        .await?;
    state
        .access
        .record_change(
            &actor,
            "usage.snapshot",
            &format!(
                "{}: {} projects, {} repositories",
                taken.day, taken.projects, taken.repositories
            ),
            None,
        )
        .await;
    created(serde_json::to_value(taken).expect("serializes"))
}
