//! The settings page's forms: each checks the session's CSRF token, then asks the REST API to
//! do exactly one change as the viewer (the API decides who may), and returns to the settings
//! page — or shows a secret made by the change once (robot accounts, webhooks).

use std::net::SocketAddr;
use std::sync::Arc;

use askama::Template;
use axum::extract::{ConnectInfo, Path, State};
use axum::response::{IntoResponse, Redirect};
use gantry_access::LoginVia;
use http::{HeaderMap, Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{self, encode};
use crate::error::PageError;
use crate::extract::PageForm;
use crate::notice::{self, Done};
use crate::pages::{html, project_tabs, Chrome, Page, Tabs};
use crate::policies::listed;
use crate::session::Viewer;
use crate::Web;

/// Back to the project's settings, saying what the form did.
fn back(project: &str, done: Done) -> Page {
    notice::redirect(&format!("/projects/{}/settings", encode(project)), done)
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
    let done = match form.role.as_deref().filter(|r| !r.is_empty()) {
        Some(role) => {
            let role = json!({ "role": role });
            change(&web, &viewer, Method::PUT, &path, Some(&role)).await?;
            Done::Saved
        }
        None => {
            change(&web, &viewer, Method::DELETE, &path, None).await?;
            Done::Removed
        }
    };
    back(&project, done)
}

#[derive(Template)]
#[template(path = "secret.html")]
struct SecretPage {
    chrome: Chrome,
    /// The project the secret belongs to, with its tabs; `None` for a system robot account.
    project: Option<(String, Tabs)>,
    /// Where the page leads back to.
    back: String,
    what: String,
    name: String,
    secret: String,
}

/// The page showing the secret of what `made` is (a robot account, a webhook) once.
async fn secret_page(
    web: &Web,
    viewer: &Viewer,
    project: Option<String>,
    what: &str,
    made: &Value,
) -> Page {
    let text = |key: &str| made[key].as_str().unwrap_or_default().to_string();
    // A robot has a name; a webhook is named by its URL.
    let name = match text("name") {
        name if name.is_empty() => text("url"),
        name => name,
    };
    let (project, back, title) = match project {
        Some(project) => {
            let (tabs, _) = project_tabs(web, viewer, &project).await;
            let back = format!("{}/settings", tabs.href);
            let title = format!("{project}: new {what}");
            (Some((project, tabs)), back, title)
        }
        None => (None, "/admin".to_string(), format!("New {what}")),
    };
    html(&SecretPage {
        chrome: Chrome::of(viewer, title),
        project,
        back,
        what: what.to_string(),
        name,
        secret: text("secret"),
    })
}

#[derive(Deserialize)]
pub(crate) struct RobotForm {
    csrf: Option<String>,
    name: String,
    pull: Option<String>,
    push: Option<String>,
    delete: Option<String>,
    /// Whole days until the account expires; empty: never.
    #[serde(default)]
    expires_days: String,
}

/// Seconds in a day, for the robot form's expiry.
const DAY_SECS: u64 = 86_400;

impl RobotForm {
    /// The robot account as the API takes it (the API checks the expiry's range).
    ///
    /// Errors: `BadRequest` when the expiry is not a whole number of days.
    fn robot(&self) -> Result<Value, PageError> {
        let actions: Vec<&str> = [
            ("pull", &self.pull),
            ("push", &self.push),
            ("delete", &self.delete),
        ]
        .into_iter()
        .filter(|(_, on)| on.is_some())
        .map(|(action, _)| action)
        .collect();
        let mut robot = json!({ "name": self.name.trim(), "actions": actions });
        let days = self.expires_days.trim();
        if !days.is_empty() {
            let days: u64 = days.parse().map_err(|_| {
                PageError::BadRequest(format!(
                    "expires after {days:?}: give a whole number of days, or leave it empty for never"
                ))
            })?;
            robot["expires_in_secs"] = json!(days.saturating_mul(DAY_SECS));
        }
        Ok(robot)
    }
}

/// Creates a robot account of the project; its secret is shown once.
pub(crate) async fn create_robot(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    Path(project): Path<String>,
    PageForm(form): PageForm<RobotForm>,
) -> Page {
    viewer.check_csrf(form.csrf.as_deref())?;
    let path = format!("/api/v1/projects/{}/robots", encode(&project));
    let made = change(&web, &viewer, Method::POST, &path, Some(&form.robot()?)).await?;
    secret_page(&web, &viewer, Some(project), "robot account", &made).await
}

/// Creates a system robot account (every project); its secret is shown once.
pub(crate) async fn create_system_robot(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    PageForm(form): PageForm<RobotForm>,
) -> Page {
    viewer.check_csrf(form.csrf.as_deref())?;
    let made = change(
        &web,
        &viewer,
        Method::POST,
        "/api/v1/robots",
        Some(&form.robot()?),
    )
    .await?;
    secret_page(&web, &viewer, None, "system robot account", &made).await
}

#[derive(Deserialize)]
pub(crate) struct NameForm {
    csrf: Option<String>,
    name: String,
}

/// Revokes robot account `name`.
async fn revoke(web: &Web, viewer: &Viewer, form: &NameForm) -> Result<Value, PageError> {
    viewer.check_csrf(form.csrf.as_deref())?;
    let path = format!("/api/v1/robots/{}", encode(&form.name));
    change(web, viewer, Method::DELETE, &path, None).await
}

/// Revokes a robot account of the project.
pub(crate) async fn revoke_robot(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    Path(project): Path<String>,
    PageForm(form): PageForm<NameForm>,
) -> Page {
    revoke(&web, &viewer, &form).await?;
    back(&project, Done::Revoked)
}

/// Revokes a system robot account.
pub(crate) async fn revoke_system_robot(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    PageForm(form): PageForm<NameForm>,
) -> Page {
    revoke(&web, &viewer, &form).await?;
    notice::redirect("/admin", Done::Revoked)
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
    let events = listed(&form.events);
    let made = change(
        &web,
        &viewer,
        Method::POST,
        &format!("/api/v1/projects/{}/webhooks", encode(&project)),
        Some(&json!({ "url": form.url.trim(), "event_types": events })),
    )
    .await?;
    secret_page(&web, &viewer, Some(project), "webhook", &made).await
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
    let (method, path, done) = match form.action.as_str() {
        "remove" => (Method::DELETE, path, Done::Removed),
        "test" => (Method::POST, format!("{path}/test"), Done::TestSent),
        other => {
            return Err(PageError::BadRequest(format!(
                "{other:?} is neither remove nor test"
            )))
        }
    };
    change(&web, &viewer, method, &path, None).await?;
    back(&project, done)
}

#[derive(Deserialize)]
pub(crate) struct WebhookChangeForm {
    csrf: Option<String>,
    id: i64,
    url: String,
    /// Event types, comma-separated.
    events: String,
    /// Present when checked.
    enabled: Option<String>,
}

/// Changes a webhook's URL, event types and whether it is enabled (its secret stays).
pub(crate) async fn change_webhook(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    Path(project): Path<String>,
    PageForm(form): PageForm<WebhookChangeForm>,
) -> Page {
    viewer.check_csrf(form.csrf.as_deref())?;
    let path = format!("/api/v1/projects/{}/webhooks/{}", encode(&project), form.id);
    let change_to = json!({
        "url": form.url.trim(),
        "event_types": listed(&form.events),
        "enabled": form.enabled.is_some(),
    });
    change(&web, &viewer, Method::PATCH, &path, Some(&change_to)).await?;
    back(&project, Done::Saved)
}

#[derive(Deserialize)]
pub(crate) struct RuleForm {
    csrf: Option<String>,
    /// Present when the form changes an existing rule (named `name`).
    existing: Option<String>,
    name: String,
    /// `push`, `pull` or `preheat`.
    kind: String,
    url: String,
    username: Option<String>,
    /// Empty: keep the stored one (of an existing rule).
    password: Option<String>,
    /// Globs, comma-separated (empty: all).
    repositories: Option<String>,
    tags: Option<String>,
    schedule: Option<String>,
    edge_project: Option<String>,
}

/// Makes a replication or preheat rule of the project, or changes one (keeping what the form
/// does not show); the API checks it and seals its password.
pub(crate) async fn save_rule(
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
    let name = form.name.trim();
    let path = format!("/api/v1/replication/{}", encode(name));
    let mut rule = match form.existing {
        Some(_) => {
            let mut stored: Value = api::get(&web.api, &viewer.actor, &path).await?;
            if let Some(fields) = stored.as_object_mut() {
                // What the API shows of a rule beside its specification.
                for shown in [
                    "source",
                    "created_by",
                    "updated_at",
                    "password_set",
                    "problem",
                ] {
                    fields.remove(shown);
                }
            }
            stored
        }
        None => json!({ "name": name, "project": project }),
    };
    rule["kind"] = json!(form.kind);
    rule["url"] = json!(form.url.trim());
    rule["repositories"]["include"] =
        json!(listed(form.repositories.as_deref().unwrap_or_default()));
    rule["tags"]["include"] = json!(listed(form.tags.as_deref().unwrap_or_default()));
    for (key, value) in [
        ("username", &form.username),
        ("schedule", &form.schedule),
        ("edge_project", &form.edge_project),
    ] {
        rule[key] = json!(given(value));
    }
    if let Some(password) = given(&form.password) {
        rule["password"] = json!(password);
    }
    let (method, path, done) = match form.existing {
        Some(_) => (Method::PUT, path.as_str(), Done::Saved),
        None => (Method::POST, "/api/v1/replication", Done::Created),
    };
    change(&web, &viewer, method, path, Some(&rule)).await?;
    back(&project, done)
}

/// Runs a replication or preheat rule now (`run`), or removes it (`remove`).
pub(crate) async fn rule_action(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    Path((project, action)): Path<(String, String)>,
    PageForm(form): PageForm<NameForm>,
) -> Page {
    viewer.check_csrf(form.csrf.as_deref())?;
    let path = format!("/api/v1/replication/{}", encode(&form.name));
    let (method, path, done) = match action.as_str() {
        "run" => (Method::POST, format!("{path}/runs"), Done::RunStarted),
        "remove" => (Method::DELETE, path, Done::Removed),
        other => {
            return Err(PageError::BadRequest(format!(
                "{other:?} is neither run nor remove"
            )))
        }
    };
    change(&web, &viewer, method, &path, None).await?;
    back(&project, done)
}

#[derive(Deserialize)]
pub(crate) struct NewProjectForm {
    csrf: Option<String>,
    name: String,
    public: Option<String>,
}

/// Creates a project (the viewer becomes its project admin) and opens it.
pub(crate) async fn create_project(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    PageForm(form): PageForm<NewProjectForm>,
) -> Page {
    viewer.check_csrf(form.csrf.as_deref())?;
    let name = form.name.trim();
    let project = json!({ "name": name, "public": form.public.is_some() });
    change(
        &web,
        &viewer,
        Method::POST,
        "/api/v1/projects",
        Some(&project),
    )
    .await?;
    notice::redirect(&format!("/projects/{}", encode(name)), Done::Created)
}

#[derive(Deserialize)]
pub(crate) struct VisibilityForm {
    csrf: Option<String>,
    public: Option<String>,
}

/// Makes the project public or private.
pub(crate) async fn visibility(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    Path(project): Path<String>,
    PageForm(form): PageForm<VisibilityForm>,
) -> Page {
    viewer.check_csrf(form.csrf.as_deref())?;
    let path = format!("/api/v1/projects/{}", encode(&project));
    let update = json!({ "public": form.public.is_some() });
    change(&web, &viewer, Method::PATCH, &path, Some(&update)).await?;
    back(&project, Done::Saved)
}

#[derive(Deserialize)]
pub(crate) struct QuotaForm {
    csrf: Option<String>,
    /// GiB (fractions allowed); empty: unlimited.
    #[serde(default)]
    storage_gib: String,
    /// Empty: unlimited.
    #[serde(default)]
    artifacts: String,
}

impl QuotaForm {
    /// The limits as the API takes them.
    fn limits(&self) -> Result<Value, PageError> {
        let storage_bytes = match self.storage_gib.trim() {
            "" => None,
            gib => match gib.parse::<f64>() {
                Ok(gib) if gib.is_finite() && gib >= 0.0 => Some((gib * 1024f64.powi(3)) as i64),
                _ => {
                    return Err(PageError::BadRequest(format!(
                        "the storage limit {gib:?} is not a number of GiB"
                    )))
                }
            },
        };
        let artifacts = match self.artifacts.trim() {
            "" => None,
            count => Some(count.parse::<i64>().map_err(|_| {
                PageError::BadRequest(format!(
                    "the artifact limit {count:?} is not a whole number"
                ))
            })?),
        };
        Ok(json!({ "storage_bytes": storage_bytes, "artifacts": artifacts }))
    }
}

/// Sets the project's quota (system administrators: the API refuses others).
pub(crate) async fn quota(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    Path(project): Path<String>,
    PageForm(form): PageForm<QuotaForm>,
) -> Page {
    viewer.check_csrf(form.csrf.as_deref())?;
    let path = format!("/api/v1/projects/{}/quota", encode(&project));
    change(&web, &viewer, Method::PUT, &path, Some(&form.limits()?)).await?;
    back(&project, Done::Saved)
}

#[derive(Deserialize)]
pub(crate) struct NewUserForm {
    csrf: Option<String>,
    name: String,
    password: String,
    admin: Option<String>,
}

/// Creates a user (system administrators: the API refuses others).
pub(crate) async fn create_user(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    PageForm(form): PageForm<NewUserForm>,
) -> Page {
    viewer.check_csrf(form.csrf.as_deref())?;
    let user = json!({
        "name": form.name.trim(),
        "password": form.password,
        "admin": form.admin.is_some(),
    });
    change(&web, &viewer, Method::POST, "/api/v1/users", Some(&user)).await?;
    notice::redirect("/admin", Done::Created)
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    chrome: Chrome,
}

/// The signed-in user's account: their password.
pub(crate) async fn account(viewer: Viewer) -> Page {
    html(&AccountPage {
        chrome: Chrome::of(&viewer, "Your account"),
    })
}

#[derive(Deserialize)]
pub(crate) struct PasswordForm {
    csrf: Option<String>,
    current: String,
    password: String,
    repeat: String,
}

/// Changes the signed-in user's password once their current one is confirmed (a session
/// left open is not enough to take the account; the check is a throttled, audited login).
/// That ends their sessions, this one too, so the sign-in form follows.
pub(crate) async fn change_password(
    State(web): State<Arc<Web>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    viewer: Viewer,
    PageForm(form): PageForm<PasswordForm>,
) -> Page {
    viewer.check_csrf(form.csrf.as_deref())?;
    if form.password != form.repeat {
        return Err(PageError::BadRequest(
            "the two new passwords differ: type the same password twice".into(),
        ));
    }
    let client = (web.client_address)(&peer, &headers);
    let user = viewer.actor.name();
    web.access
        .login(user, &form.current, &client, LoginVia::Web)
        .await
        .map_err(|e| PageError::Api {
            status: StatusCode::FORBIDDEN,
            message: format!("your current password was not confirmed: {e}"),
        })?;
    let path = format!("/api/v1/users/{}/password", encode(user));
    let body = json!({ "password": form.password });
    change(&web, &viewer, Method::PUT, &path, Some(&body)).await?;
    Ok(Redirect::to("/login").into_response())
}

#[derive(Deserialize)]
pub(crate) struct RepositoryForm {
    csrf: Option<String>,
    /// The full name (`team/app`).
    name: String,
}

/// Deletes a repository with everything in it (the API refuses what tag rules protect), and
/// returns to its project.
pub(crate) async fn delete_repository(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    PageForm(form): PageForm<RepositoryForm>,
) -> Page {
    viewer.check_csrf(form.csrf.as_deref())?;
    let path = format!("/api/v1/repositories/{}", encode(&form.name));
    change(&web, &viewer, Method::DELETE, &path, None).await?;
    let project = form.name.split('/').next().unwrap_or_default();
    notice::redirect(&format!("/projects/{}", encode(project)), Done::Deleted)
}

#[derive(Deserialize)]
pub(crate) struct ArtifactForm {
    csrf: Option<String>,
    repository: String,
    reference: String,
}

impl ArtifactForm {
    /// The artifact's API path, with `rest` after it.
    fn api_path(&self, rest: &str) -> String {
        format!(
            "/api/v1/repositories/{}/artifacts/{}{rest}",
            encode(&self.repository),
            encode(&self.reference)
        )
    }

    /// The artifact's page.
    fn page(&self) -> String {
        format!(
            "/artifact?repository={}&reference={}",
            encode(&self.repository),
            encode(&self.reference)
        )
    }
}

/// Deletes an artifact with its tags (the API refuses what tag rules protect), and returns to
/// its repository.
pub(crate) async fn delete_artifact(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    PageForm(form): PageForm<ArtifactForm>,
) -> Page {
    viewer.check_csrf(form.csrf.as_deref())?;
    change(&web, &viewer, Method::DELETE, &form.api_path(""), None).await?;
    let repository = format!("/repository?name={}", encode(&form.repository));
    notice::redirect(&repository, Done::Deleted)
}

#[derive(Deserialize)]
pub(crate) struct UntagForm {
    #[serde(flatten)]
    artifact: ArtifactForm,
    tag: String,
}

/// Removes one tag of an artifact (the artifact stays), and returns to it.
pub(crate) async fn remove_tag(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    PageForm(form): PageForm<UntagForm>,
) -> Page {
    let artifact = &form.artifact;
    viewer.check_csrf(artifact.csrf.as_deref())?;
    let path = artifact.api_path(&format!("/tags/{}", encode(&form.tag)));
    change(&web, &viewer, Method::DELETE, &path, None).await?;
    notice::redirect(&artifact.page(), Done::Removed)
}

/// Scans an artifact again now (its images' scans are queued) and returns to it.
pub(crate) async fn rescan(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    PageForm(form): PageForm<ArtifactForm>,
) -> Page {
    viewer.check_csrf(form.csrf.as_deref())?;
    change(&web, &viewer, Method::POST, &form.api_path("/scan"), None).await?;
    notice::redirect(&form.page(), Done::ScanStarted)
}

#[derive(Deserialize)]
pub(crate) struct UserPasswordForm {
    csrf: Option<String>,
    name: String,
    password: String,
}

/// Sets another user's password (system administrators: the API refuses others); that ends
/// the user's sessions.
pub(crate) async fn set_user_password(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    PageForm(form): PageForm<UserPasswordForm>,
) -> Page {
    viewer.check_csrf(form.csrf.as_deref())?;
    let path = format!("/api/v1/users/{}/password", encode(&form.name));
    let body = json!({ "password": form.password });
    change(&web, &viewer, Method::PUT, &path, Some(&body)).await?;
    notice::redirect("/admin", Done::Saved)
}

/// Deletes a user and their memberships (system administrators: the API refuses others).
pub(crate) async fn delete_user(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    PageForm(form): PageForm<NameForm>,
) -> Page {
    viewer.check_csrf(form.csrf.as_deref())?;
    let path = format!("/api/v1/users/{}", encode(&form.name));
    change(&web, &viewer, Method::DELETE, &path, None).await?;
    notice::redirect("/admin", Done::Deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_robot_form_gives_its_expiry_in_seconds_and_refuses_what_is_no_number_of_days() {
        let form = |days: &str| RobotForm {
            csrf: None,
            name: " ci ".into(),
            pull: Some("on".into()),
            push: None,
            delete: Some("on".into()),
            expires_days: days.into(),
        };
        assert_eq!(
            form("").robot().unwrap(),
            json!({"name": "ci", "actions": ["pull", "delete"]})
        );
        assert_eq!(
            form(" 30 ").robot().unwrap()["expires_in_secs"],
            30 * 86_400
        );
        for wrong in ["1.5", "-2", "soon"] {
            assert!(
                matches!(form(wrong).robot(), Err(PageError::BadRequest(m)) if m.contains("whole number of days")),
                "{wrong}"
            );
        }
    }

    #[test]
    fn a_quota_form_gives_bytes_of_gib_and_null_for_empty_fields() {
        let form = |storage: &str, artifacts: &str| QuotaForm {
            csrf: None,
            storage_gib: storage.into(),
            artifacts: artifacts.into(),
        };
        assert_eq!(
            form("1.5", "").limits().unwrap(),
            json!({"storage_bytes": 1_610_612_736, "artifacts": null})
        );
        assert_eq!(
            form(" ", "40").limits().unwrap(),
            json!({"storage_bytes": null, "artifacts": 40})
        );
        assert!(form("-1", "").limits().is_err());
        assert!(form("", "many").limits().is_err());
    }
}
