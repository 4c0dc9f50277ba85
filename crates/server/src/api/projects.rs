//! `/projects` and `/projects/{project}`: projects and their visibility.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::json;

use gantry_access::VisibleProject;
use gantry_auth::Action;
use gantry_registry::ProjectContentDeletion;

use super::quotas::quota_json;
use super::repository_delete::record_repository_deleted;
use super::{created, ok, ApiCaller, ApiResult, Body, Params, PathParams};
use crate::AppState;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/projects", get(list_projects).post(create_project))
        .route(
            "/api/v1/projects/{project}",
            get(show_project)
                .patch(update_project)
                .delete(delete_project),
        )
}

#[cfg(test)]
pub(super) const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/projects"),
    ("post", "/api/v1/projects"),
    ("get", "/api/v1/projects/{project}"),
    ("patch", "/api/v1/projects/{project}"),
    ("delete", "/api/v1/projects/{project}"),
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewProject {
    name: String,
    #[serde(default)]
    public: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectUpdate {
    public: bool,
}

/// The projects the caller may pull from, each with its quota; its repository count and
/// latest push only where the caller may list its repositories.
async fn list_projects(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
) -> ApiResult {
    let visible = state.access.visible_projects(&actor).await?;
    let names: Vec<String> = visible.iter().map(|v| v.project.name.clone()).collect();
    let mut figures = state.registry.project_figures(&names).await?;
    let listed: Vec<_> = visible
        .into_iter()
        .map(|VisibleProject { project, may_list }| {
            let figures = figures
                .remove(&project.name)
                .expect("figures are given for every name asked");
            json!({
                "name": project.name,
                "public": project.public,
                "quota": quota_json(&figures.quota),
                "repositories": may_list.then_some(figures.repositories),
                "last_pushed_at": figures.last_pushed_at.filter(|_| may_list),
            })
        })
        .collect();
    ok(json!({ "projects": listed }))
}

async fn create_project(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    Body(project): Body<NewProject>,
) -> ApiResult {
    state
        .access
        .create_project(&actor, &project.name, project.public)
        .await?;
    created(json!({"name": project.name, "public": project.public}))
}

async fn show_project(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(project): PathParams<String>,
) -> ApiResult {
    let found = state.access.project(&actor, &project).await?;
    ok(json!({"name": found.name, "public": found.public}))
}

async fn update_project(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(project): PathParams<String>,
    Body(update): Body<ProjectUpdate>,
) -> ApiResult {
    state
        .access
        .set_project_public(&actor, &project, update.public)
        .await?;
    ok(json!({"name": project, "public": update.public}))
}

/// `?force=true` of a project delete.
#[derive(Deserialize)]
struct DeleteOptions {
    #[serde(default)]
    force: bool,
}

/// Deletes a project that holds nothing; with `force`, first every repository in it (each
/// audited as `repository.delete`, tag rules applying: an immutable tag refuses before
/// anything is deleted) and its archived artifacts.
async fn delete_project(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(project): PathParams<String>,
    Params(options): Params<DeleteOptions>,
) -> ApiResult {
    let mut deleted = ProjectContentDeletion::default();
    if options.force {
        state
            .access
            .require(
                &actor,
                &project,
                Action::ManageSettings,
                "delete the project",
            )
            .await?;
        deleted = state
            .registry
            .delete_project_content(&project, actor.name())
            .await?;
        for repository in &deleted.repositories {
            record_repository_deleted(&state, &actor, &project, repository).await;
        }
    }
    let detail = options
        .force
        .then(|| json!({"force": true, "repositories": deleted.repositories.len(), "archives": deleted.archives}).to_string());
    state
        .access
        .delete_project(&actor, &project, detail)
        .await?;
    state.registry.forget_project(&project);
    ok(json!({
        "name": project,
        "repositories": deleted.repositories,
        "archives": deleted.archives,
    }))
}
