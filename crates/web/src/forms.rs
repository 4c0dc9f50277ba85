//! The settings page's forms: each checks the session's CSRF token, then asks the REST API to
//! do exactly one change as the viewer (the API decides who may), and returns to the settings
//! page — or shows a secret made by the change once (robot accounts, webhooks).

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};
use http::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{self, encode};
use crate::error::PageError;
use crate::extract::PageForm;
use crate::pages::{html, project_tabs, Chrome, Page, Tabs};
use crate::session::Viewer;
use crate::Web;

/// The project documents the settings page edits as JSON, by their API path.
const DOCUMENTS: [&str; 4] = [
    "tag-rules",
    "retention",
    "signing-policy",
    "vulnerability-policy",
];

fn back(project: &str) -> Page {
    Ok(Redirect::to(&format!("/projects/{}/settings", encode(project))).into_response())
}

async fn change(
    web: &Web,
    viewer: &Viewer,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, PageError> {
    api::call(&web.api, &viewer.actor, method, path, body).await
}

#[derive(Deserialize)]
pub(crate) struct DocumentForm {
    csrf: Option<String>,
    document: String,
}

/// Replaces a project document (tag rules, retention policy, signing or vulnerability
/// policy) with the JSON the form holds.
pub(crate) async fn save_document(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    Path((project, document)): Path<(String, String)>,
    PageForm(form): PageForm<DocumentForm>,
) -> Page {
    viewer.check_csrf(form.csrf.as_deref())?;
    if !DOCUMENTS.contains(&document.as_str()) {
        return Err(PageError::BadRequest(format!(
            "{document:?} is not a project document"
        )));
    }
    let body: Value = serde_json::from_str(&form.document)
        .map_err(|e| PageError::BadRequest(format!("the {document} document is not JSON: {e}")))?;
    change(
        &web,
        &viewer,
        Method::PUT,
        &format!("/api/v1/projects/{}/{document}", encode(&project)),
        Some(&body),
    )
    .await?;
    back(&project)
}

#[derive(Deserialize)]
pub(crate) struct MemberForm {
    csrf: Option<String>,
    user: String,
    /// A role; absent: remove the member.
    role: Option<String>,
}

/// Adds a member, changes their role, or removes them.
pub(crate) async fn member(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    Path(project): Path<String>,
    PageForm(form): PageForm<MemberForm>,
) -> Page {
    viewer.check_csrf(form.csrf.as_deref())?;
    let path = format!(
        "/api/v1/projects/{}/members/{}",
        encode(&project),
        encode(form.user.trim())
    );
    match form.role.as_deref().filter(|r| !r.is_empty()) {
        Some(role) => {
            change(
                &web,
                &viewer,
                Method::PUT,
                &path,
                Some(&json!({ "role": role })),
            )
            .await?
        }
        None => change(&web, &viewer, Method::DELETE, &path, None).await?,
    };
    back(&project)
}

#[derive(Template)]
#[template(path = "secret.html")]
struct SecretPage {
    chrome: Chrome,
    project: String,
    tabs: Tabs,
    what: String,
    name: String,
    secret: String,
}

async fn secret_page(
    web: &Web,
    viewer: &Viewer,
    project: String,
    what: &str,
    made: &Value,
) -> Page {
    let text = |key: &str| made[key].as_str().unwrap_or_default().to_string();
    let (tabs, _) = project_tabs(web, viewer, &project).await;
    // A robot has a name; a webhook is named by its URL.
    let name = match text("name") {
        name if name.is_empty() => text("url"),
        name => name,
    };
    html(&SecretPage {
        chrome: Chrome::of(viewer, format!("{project}: new {what}")),
        tabs,
        what: what.to_string(),
        name,
        secret: text("secret"),
        project,
    })
}

#[derive(Deserialize)]
pub(crate) struct RobotForm {
    csrf: Option<String>,
    name: String,
    pull: Option<String>,
    push: Option<String>,
    delete: Option<String>,
}

/// Creates a robot account of the project; its secret is shown once.
pub(crate) async fn create_robot(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    Path(project): Path<String>,
    PageForm(form): PageForm<RobotForm>,
) -> Page {
    viewer.check_csrf(form.csrf.as_deref())?;
    let actions: Vec<&str> = [
        ("pull", &form.pull),
        ("push", &form.push),
        ("delete", &form.delete),
    ]
    .into_iter()
    .filter(|(_, on)| on.is_some())
    .map(|(action, _)| action)
    .collect();
    let made = change(
        &web,
        &viewer,
        Method::POST,
        &format!("/api/v1/projects/{}/robots", encode(&project)),
        Some(&json!({ "name": form.name.trim(), "actions": actions })),
    )
    .await?;
    secret_page(&web, &viewer, project, "robot account", &made).await
}

#[derive(Deserialize)]
pub(crate) struct NameForm {
    csrf: Option<String>,
    name: String,
}

/// Revokes a robot account.
pub(crate) async fn revoke_robot(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    Path(project): Path<String>,
    PageForm(form): PageForm<NameForm>,
) -> Page {
    viewer.check_csrf(form.csrf.as_deref())?;
    change(
        &web,
        &viewer,
        Method::DELETE,
        &format!("/api/v1/robots/{}", encode(&form.name)),
        None,
    )
    .await?;
    back(&project)
}

#[derive(Deserialize)]
pub(crate) struct WebhookForm {
    csrf: Option<String>,
    url: String,
    /// Event types, comma-separated.
    events: String,
}

/// Adds a webhook; its signing secret is shown once.
pub(crate) async fn add_webhook(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    Path(project): Path<String>,
    PageForm(form): PageForm<WebhookForm>,
) -> Page {
    viewer.check_csrf(form.csrf.as_deref())?;
    let events: Vec<&str> = form
        .events
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    let made = change(
        &web,
        &viewer,
        Method::POST,
        &format!("/api/v1/projects/{}/webhooks", encode(&project)),
        Some(&json!({ "url": form.url.trim(), "event_types": events })),
    )
    .await?;
    secret_page(&web, &viewer, project, "webhook", &made).await
}

#[derive(Deserialize)]
pub(crate) struct WebhookAction {
    csrf: Option<String>,
    id: i64,
    /// `remove` or `test`.
    action: String,
}

/// Removes a webhook, or sends it a test delivery.
pub(crate) async fn webhook(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    Path(project): Path<String>,
    PageForm(form): PageForm<WebhookAction>,
) -> Page {
    viewer.check_csrf(form.csrf.as_deref())?;
    let path = format!("/api/v1/projects/{}/webhooks/{}", encode(&project), form.id);
    match form.action.as_str() {
        "remove" => change(&web, &viewer, Method::DELETE, &path, None).await?,
        "test" => change(&web, &viewer, Method::POST, &format!("{path}/test"), None).await?,
        other => {
            return Err(PageError::BadRequest(format!(
                "{other:?} is neither remove nor test"
            )))
        }
    };
    back(&project)
}

#[derive(Deserialize)]
pub(crate) struct RuleForm {
    csrf: Option<String>,
    name: String,
    /// `push`, `pull` or `preheat`.
    kind: String,
    url: String,
    username: Option<String>,
    password: Option<String>,
    /// Globs, comma-separated (empty: all).
    repositories: Option<String>,
    tags: Option<String>,
    schedule: Option<String>,
    edge_project: Option<String>,
}

/// Makes a replication or preheat rule of the project (the API checks it and seals its
/// password).
pub(crate) async fn add_rule(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    Path(project): Path<String>,
    PageForm(form): PageForm<RuleForm>,
) -> Page {
    viewer.check_csrf(form.csrf.as_deref())?;
    let given = |value: &Option<String>| {
        value
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let globs = |value: &Option<String>| -> Vec<String> {
        given(value)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut rule = json!({
        "name": form.name.trim(),
        "kind": form.kind,
        "url": form.url.trim(),
        "project": project,
        "repositories": { "include": globs(&form.repositories) },
        "tags": { "include": globs(&form.tags) },
    });
    for (key, value) in [
        ("username", given(&form.username)),
        ("password", given(&form.password)),
        ("schedule", given(&form.schedule)),
        ("edge_project", given(&form.edge_project)),
    ] {
        if let Some(value) = value {
            rule[key] = json!(value);
        }
    }
    change(
        &web,
        &viewer,
        Method::POST,
        "/api/v1/replication",
        Some(&rule),
    )
    .await?;
    back(&project)
}

/// Runs a replication or preheat rule now.
pub(crate) async fn run_rule(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    Path(project): Path<String>,
    PageForm(form): PageForm<NameForm>,
) -> Page {
    viewer.check_csrf(form.csrf.as_deref())?;
    change(
        &web,
        &viewer,
        Method::POST,
        &format!("/api/v1/replication/{}/runs", encode(&form.name)),
        None,
    )
    .await?;
    back(&project)
}
