//! `/projects/{project}/archives`: moving artifacts out to archive storage, restoring them,
//! and deleting archives for good.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{delete, get, post};
use axum::Router;
use gantry_auth::Action;
use gantry_lifecycle::archive::ArchiveSelector;
use serde_json::json;

use super::limits::{self, within};
use super::{no_content, ok, ApiCaller, ApiResult, Body, Params, PathParams, RunOptions};
use crate::AppState;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/api/v1/projects/{project}/archives",
            get(list_archives).post(run_archive),
        )
        .route(
            "/api/v1/projects/{project}/archives/{id}",
            delete(delete_archive),
        )
        .route(
            "/api/v1/projects/{project}/archives/{id}/restore",
            post(restore_archive),
        )
}

#[cfg(test)]
pub(super) const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/projects/{project}/archives"),
    ("post", "/api/v1/projects/{project}/archives"),
    ("delete", "/api/v1/projects/{project}/archives/{id}"),
    ("post", "/api/v1/projects/{project}/archives/{id}/restore"),
];

/// Archives what the selector picks: a dry run lists it; a real run moves it out.
async fn run_archive(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(project): PathParams<String>,
    Params(options): Params<RunOptions>,
    Body(selector): Body<ArchiveSelector>,
) -> ApiResult {
    state
        .access
        .require(
            &actor,
            &project,
            Action::ManageTagRules,
            "archive artifacts",
        )
        .await?;
    for (name, days) in [
        ("pushed_before_days", selector.pushed_before_days),
        ("not_pulled_for_days", selector.not_pulled_for_days),
    ] {
        if let Some(days) = days {
            within(name, days, limits::DAYS)?;
        }
    }
    let report = state
        .registry
        .archive(
            &project,
            &selector,
            actor.name(),
            gantry_registry::unix_now(),
            options.dry_run,
        )
        .await?;
    if !options.dry_run {
        for archived in &report.archived {
            let resource = format!(
                "{}@{} ({}) as archive {}",
                archived.artifact.repository,
                archived.artifact.digest,
                archived.artifact.tags.join(","),
                archived.id.unwrap_or_default()
            );
            state
                .access
                .record_change(&actor, "archive.create", &resource, Some(&project))
                .await;
        }
    }
    ok(report)
}

async fn list_archives(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(project): PathParams<String>,
) -> ApiResult {
    state
        .access
        .require(&actor, &project, Action::Pull, "see archives")
        .await?;
    let archives: Vec<_> = state
        .registry
        .archives(&project)
        .await?
        .into_iter()
        .map(|a| {
            json!({"id": a.id, "repository": a.repository, "digest": a.digest, "tags": a.tags,
                   "object_key": a.object_key, "bytes": a.bytes, "archived_at": a.archived_at,
                   "archived_by": a.archived_by, "restored_at": a.restored_at})
        })
        .collect();
    ok(json!({ "archives": archives }))
}

async fn restore_archive(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams((project, id)): PathParams<(String, i64)>,
) -> ApiResult {
    state
        .access
        .require(&actor, &project, Action::ManageTagRules, "restore archives")
        .await?;
    let id = within("archive id", id, limits::ROW_ID)?;
    let report = state
        .registry
        .restore(&project, id, gantry_registry::unix_now(), actor.name())
        .await?;
    let resource = format!("archive {id}: {}@{}", report.repository, report.digest);
    state
        .access
        .record_change(&actor, "archive.restore", &resource, Some(&project))
        .await;
    ok(report)
}

/// Deletes an archive for good (its tarball and its record).
async fn delete_archive(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams((project, id)): PathParams<(String, i64)>,
) -> ApiResult {
    state
        .access
        .require(&actor, &project, Action::ManageTagRules, "delete archives")
        .await?;
    let id = within("archive id", id, limits::ROW_ID)?;
    let record = state.registry.delete_archive(&project, id).await?;
    let resource = format!("archive {id}: {}@{}", record.repository, record.digest);
    state
        .access
        .record_change(&actor, "archive.delete", &resource, Some(&project))
        .await;
    no_content()
}
