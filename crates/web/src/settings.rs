//! A project's settings as the viewer may read them: quota, tag rules, signing and
//! vulnerability policies, webhooks with their latest deliveries, robot accounts, and the
//! project's replication and preheat rules with their latest run. A section the API refuses the
//! viewer is left out.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use serde_json::Value;

use crate::api::{self, encode};
use crate::error::PageError;
use crate::pages::{html, joined, project_tabs, size, text, when, Chrome, Page, Tabs};
use crate::session::Viewer;
use crate::Web;

/// A policy document, printed as the API gives it; a form edits it where the viewer's role may.
struct Document {
    title: &'static str,
    /// Its API path under the project (the form posts to `settings/{path}`).
    path: &'static str,
    text: String,
    editable: bool,
}

struct WebhookRow {
    id: i64,
    url: String,
    events: String,
    deliveries: String,
}

struct RobotRow {
    name: String,
    actions: String,
    expires: String,
    revoked: bool,
}

struct RuleRow {
    name: String,
    kind: String,
    url: String,
    schedule: String,
    last_run: String,
}

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    chrome: Chrome,
    project: String,
    tabs: Tabs,
    quota: Option<String>,
    members: Vec<(String, String)>,
    roles: [&'static str; 5],
    documents: Vec<Document>,
    webhooks: Option<Vec<WebhookRow>>,
    robots: Option<Vec<RobotRow>>,
    rules: Option<Vec<RuleRow>>,
}

/// The API's answer to GET `path`, or `None` when it refuses the viewer (or has nothing).
async fn readable(web: &Web, viewer: &Viewer, path: &str) -> Result<Option<Value>, PageError> {
    match api::get::<Value>(&web.api, &viewer.actor, path).await {
        Ok(value) => Ok(Some(value)),
        Err(PageError::Api { status, .. }) if status.is_client_error() => Ok(None),
        Err(e) => Err(e),
    }
}

fn list(value: &Value, key: &str) -> Vec<Value> {
    value[key].as_array().cloned().unwrap_or_default()
}

pub(crate) async fn settings(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    Path(project): Path<String>,
) -> Page {
    let name = encode(&project);
    let base = format!("/api/v1/projects/{name}");
    // The project itself: unknown or hidden is what the API says (404/403), not an empty page.
    api::get::<Value>(&web.api, &viewer.actor, &base).await?;
    let quota = readable(&web, &viewer, &format!("{base}/quota"))
        .await?
        .map(|q| {
            let limit = q["storage"]["limit_bytes"]
                .as_u64()
                .map(size)
                .unwrap_or_else(|| "no limit".into());
            format!(
                "{} of {limit} stored; {} artifacts (limit: {})",
                size(q["storage"]["used_bytes"].as_u64().unwrap_or(0)),
                q["artifacts"]["used"].as_u64().unwrap_or(0),
                q["artifacts"]["limit"]
                    .as_u64()
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "none".into())
            )
        });
    let (tabs, members) = project_tabs(&web, &viewer, &project).await;
    let mut documents = Vec::new();
    for (title, path, editable) in [
        ("Tag rules", "tag-rules", tabs.maintain),
        ("Retention policy", "retention", tabs.maintain),
        ("Signing policy", "signing-policy", tabs.manage),
        (
            "Vulnerability policy (pull gate)",
            "vulnerability-policy",
            tabs.manage,
        ),
    ] {
        if let Some(document) = readable(&web, &viewer, &format!("{base}/{path}")).await? {
            documents.push(Document {
                title,
                path,
                text: serde_json::to_string_pretty(&document).expect("JSON prints"),
                editable,
            });
        }
    }
    let webhooks = match readable(&web, &viewer, &format!("{base}/webhooks")).await? {
        None => None,
        Some(listed) => {
            let mut rows = Vec::new();
            for hook in list(&listed, "webhooks") {
                let id = hook["id"].as_i64().unwrap_or(0);
                let deliveries = readable(
                    &web,
                    &viewer,
                    &format!("{base}/webhooks/{id}/deliveries?limit=5"),
                )
                .await?
                .map(|d| {
                    list(&d, "deliveries")
                        .iter()
                        .map(|d| format!("{} ({})", text(&d["state"]), text(&d["event_type"])))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
                rows.push(WebhookRow {
                    id,
                    url: text(&hook["url"]),
                    events: joined(&hook["event_types"]),
                    deliveries,
                });
            }
            Some(rows)
        }
    };
    let robots = readable(&web, &viewer, &format!("{base}/robots"))
        .await?
        .map(|listed| {
            list(&listed, "credentials")
                .iter()
                .map(|r| RobotRow {
                    name: text(&r["name"]),
                    actions: joined(&r["actions"]),
                    expires: when(r["expires_at"].as_i64()),
                    revoked: r["revoked"].as_bool().unwrap_or(false),
                })
                .collect()
        });
    let rules = match readable(
        &web,
        &viewer,
        &format!("/api/v1/replication?project={name}"),
    )
    .await?
    {
        None => None,
        Some(listed) => {
            let mut rows = Vec::new();
            for rule in list(&listed, "rules") {
                let rule_name = text(&rule["name"]);
                let last_run = readable(
                    &web,
                    &viewer,
                    &format!("/api/v1/replication/{}/runs?limit=1", encode(&rule_name)),
                )
                .await?
                .and_then(|runs| list(&runs, "runs").into_iter().next())
                .map(|run| {
                    format!(
                        "{} ({}): {} succeeded, {} failed, {} outstanding",
                        text(&run["state"]),
                        text(&run["trigger"]),
                        run["succeeded"].as_u64().unwrap_or(0),
                        run["failed"].as_u64().unwrap_or(0),
                        run["queued"].as_u64().unwrap_or(0) + run["running"].as_u64().unwrap_or(0)
                    )
                })
                .unwrap_or_else(|| "never run".into());
                rows.push(RuleRow {
                    kind: text(&rule["kind"]),
                    url: text(&rule["url"]),
                    schedule: text(&rule["schedule"]),
                    name: rule_name,
                    last_run,
                });
            }
            Some(rows)
        }
    };
    html(&SettingsPage {
        chrome: Chrome::of(&viewer, format!("{project}: settings")),
        project,
        tabs,
        quota,
        members,
        roles: [
            "project-admin",
            "maintainer",
            "developer",
            "guest",
            "limited-guest",
        ],
        documents,
        webhooks,
        robots,
        rules,
    })
}
