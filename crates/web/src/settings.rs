//! A project's settings as the viewer may read them: quota, tag rules, retention, signing and
//! vulnerability policies (as forms, see `policies`), webhooks with their latest deliveries,
//! robot accounts, and the project's replication and preheat rules with their latest run. A
//! section the API refuses the viewer is left out.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::Value;

use crate::api::{self, encode};
use crate::error::PageError;
use crate::extract::PageQuery;
use crate::pages::{html, joined, project_tabs, short, size, text, when, Chrome, Page, Tabs};
use crate::policies::{
    AllowlistView, RetentionView, SigningView, TagRulesView, VulnerabilityView, KEEPS, SEVERITIES,
};
use crate::session::Viewer;
use crate::Web;

struct WebhookRow {
    id: i64,
    url: String,
    events: String,
    /// Deliveries are sent (not paused).
    enabled: bool,
    deliveries: String,
}

/// The quota as its line and (for system administrators) its form show it.
struct QuotaView {
    /// `1.2 GiB of 2.0 GiB stored; 3 artifacts (limit: 40)`.
    text: String,
    /// The limits as the form's fields: GiB and a count, empty when unlimited.
    storage_gib: String,
    artifacts: String,
}

impl QuotaView {
    fn of(quota: &Value) -> QuotaView {
        let storage_limit = quota["storage"]["limit_bytes"].as_u64();
        let artifacts_limit = quota["artifacts"]["limit"].as_u64();
        QuotaView {
            text: format!(
                "{} of {} stored; {} artifacts (limit: {})",
                size(quota["storage"]["used_bytes"].as_u64().unwrap_or(0)),
                storage_limit.map(size).unwrap_or_else(|| "no limit".into()),
                quota["artifacts"]["used"].as_u64().unwrap_or(0),
                artifacts_limit
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "none".into())
            ),
            storage_gib: storage_limit
                .map(|bytes| (bytes as f64 / 1024f64.powi(3)).to_string())
                .unwrap_or_default(),
            artifacts: artifacts_limit.map(|n| n.to_string()).unwrap_or_default(),
        }
    }
}

/// A robot account as the robots table shows it.
pub(crate) struct RobotRow {
    pub name: String,
    pub actions: String,
    pub expires: String,
    pub revoked: bool,
}

impl RobotRow {
    /// The rows of an API robot listing.
    pub(crate) fn listed(listing: &Value) -> Vec<RobotRow> {
        list(listing, "credentials")
            .iter()
            .map(|r| RobotRow {
                name: text(&r["name"]),
                actions: joined(&r["actions"]),
                expires: when(r["expires_at"].as_i64()),
                revoked: r["revoked"].as_bool().unwrap_or(false),
            })
            .collect()
    }
}

/// A replication or preheat rule as its form shows it.
#[derive(Default)]
struct RuleFormView {
    /// Distinguishes the form's field ids on the page.
    key: String,
    /// Whether the form changes this rule (rather than making a new one).
    existing: bool,
    name: String,
    kind: String,
    url: String,
    username: String,
    repositories: String,
    tags: String,
    schedule: String,
    edge_project: String,
}

struct RuleRow {
    form: RuleFormView,
    last_run: String,
    /// A rule of the config file: read only through the API.
    configured: bool,
}

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    chrome: Chrome,
    project: String,
    tabs: Tabs,
    public: bool,
    quota: Option<QuotaView>,
    members: Vec<(String, String)>,
    roles: [&'static str; 5],
    tag_rules: Option<TagRulesView>,
    retention: Option<RetentionView>,
    signing: Option<SigningView>,
    vulnerability: Option<VulnerabilityView>,
    allowlist: Option<AllowlistView>,
    keeps: [(&'static str, &'static str); 6],
    severities: [&'static str; 5],
    webhooks: Option<Vec<WebhookRow>>,
    robots: Option<Vec<RobotRow>>,
    rules: Option<Vec<RuleRow>>,
    new_rule: RuleFormView,
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
    let public = api::get::<Value>(&web.api, &viewer.actor, &base).await?["public"]
        .as_bool()
        .unwrap_or(false);
    let quota = readable(&web, &viewer, &format!("{base}/quota"))
        .await?
        .map(|q| QuotaView::of(&q));
    let (tabs, members) = project_tabs(&web, &viewer, &project).await;
    let (web_ref, viewer_ref) = (web.as_ref(), &viewer);
    let document = |path: &str| {
        let url = format!("{base}/{path}");
        async move { readable(web_ref, viewer_ref, &url).await }
    };
    let tag_rules = document("tag-rules").await?.map(|d| TagRulesView::of(&d));
    let retention = document("retention").await?.map(|d| RetentionView::of(&d));
    let signing = document("signing-policy")
        .await?
        .map(|d| SigningView::of(&d));
    let gate = document("vulnerability-policy").await?;
    let vulnerability = gate.as_ref().map(VulnerabilityView::of);
    let allowlist = gate
        .as_ref()
        .map(|d| AllowlistView::of(d, format!("{}/settings/allowlist", tabs.href), tabs.manage));
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
                        .map(|d| match text(&d["last_error"]) {
                            error if error.is_empty() || d["state"] == "succeeded" => {
                                format!("{} ({})", text(&d["state"]), text(&d["event_type"]))
                            }
                            error => format!(
                                "{} ({}; last try: {error})",
                                text(&d["state"]),
                                text(&d["event_type"])
                            ),
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
                rows.push(WebhookRow {
                    id,
                    url: text(&hook["url"]),
                    events: joined(&hook["event_types"]),
                    enabled: hook["enabled"] != false,
                    deliveries,
                });
            }
            Some(rows)
        }
    };
    let robots = readable(&web, &viewer, &format!("{base}/robots"))
        .await?
        .map(|listed| RobotRow::listed(&listed));
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
            for (index, rule) in list(&listed, "rules").into_iter().enumerate() {
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
                let form = RuleFormView {
                    key: index.to_string(),
                    existing: true,
                    kind: text(&rule["kind"]),
                    url: text(&rule["url"]),
                    username: text(&rule["username"]),
                    repositories: joined(&rule["repositories"]["include"]),
                    tags: joined(&rule["tags"]["include"]),
                    schedule: text(&rule["schedule"]),
                    edge_project: text(&rule["edge_project"]),
                    name: rule_name,
                };
                rows.push(RuleRow {
                    form,
                    last_run,
                    configured: rule["source"] == "config",
                });
            }
            Some(rows)
        }
    };
    html(&SettingsPage {
        chrome: Chrome::of(&viewer, format!("{project}: settings")),
        project,
        tabs,
        public,
        quota,
        members,
        roles: [
            "project-admin",
            "maintainer",
            "developer",
            "guest",
            "limited-guest",
        ],
        tag_rules,
        retention,
        signing,
        vulnerability,
        allowlist,
        keeps: KEEPS,
        severities: SEVERITIES,
        webhooks,
        robots,
        rules,
        new_rule: RuleFormView {
            key: "new".into(),
            kind: "push".into(),
            ..RuleFormView::default()
        },
    })
}

// ---- a replication or preheat rule's runs and items --------------------------------------

struct RunRow {
    id: i64,
    /// Its items are the ones shown.
    selected: bool,
    started: String,
    trigger: String,
    state: String,
    items: String,
    succeeded: u64,
    failed: u64,
    outstanding: u64,
    finished: String,
    error: String,
}

struct ItemRow {
    repository: String,
    tag: String,
    digest: String,
    /// The digest's start, as listings show it.
    short: String,
    /// `copy` or `delete` (or, for a preheat, `warm`).
    what: String,
    state: String,
    attempts: u64,
    /// What a successful attempt did, or why the last one failed.
    outcome: String,
    finished: String,
}

/// Runs and items listed on a rule's page (the newest).
const RULE_PAGE_RUNS: u32 = 20;
const RULE_PAGE_ITEMS: u32 = 200;

#[derive(Template)]
#[template(path = "replication.html")]
struct RulePage {
    chrome: Chrome,
    project: String,
    tabs: Tabs,
    rule: String,
    kind: String,
    url: String,
    /// This page's path, for the run links.
    here: String,
    runs: Vec<RunRow>,
    /// The run whose items are shown; `None`: the latest items of every run.
    selected: Option<i64>,
    selected_started: String,
    items: Vec<ItemRow>,
}

#[derive(Deserialize)]
pub(crate) struct RuleParams {
    run: Option<i64>,
}

/// Unix milliseconds as a UTC time; `—` for none.
fn when_ms(value: &Value) -> String {
    when(value.as_i64().map(|ms| ms / 1000))
}

/// A replication or preheat rule's runs with their counts, and the items of one run (or the
/// latest of all), with what each did or why it failed (as Harbor's executions and tasks).
pub(crate) async fn replication_rule(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    Path((project, rule)): Path<(String, String)>,
    PageQuery(params): PageQuery<RuleParams>,
) -> Page {
    let base = format!("/api/v1/replication/{}", encode(&rule));
    let stored: Value = api::get(&web.api, &viewer.actor, &base).await?;
    let listed: Value = api::get(
        &web.api,
        &viewer.actor,
        &format!("{base}/runs?limit={RULE_PAGE_RUNS}"),
    )
    .await?;
    let run_filter = params
        .run
        .map(|id| format!("&run={id}"))
        .unwrap_or_default();
    let items: Value = api::get(
        &web.api,
        &viewer.actor,
        &format!("{base}/items?limit={RULE_PAGE_ITEMS}{run_filter}"),
    )
    .await?;
    let runs: Vec<RunRow> = list(&listed, "runs")
        .iter()
        .map(|run| {
            let count = |key: &str| run[key].as_u64().unwrap_or(0);
            let id = run["id"].as_i64().unwrap_or_default();
            RunRow {
                id,
                selected: Some(id) == params.run,
                started: when_ms(&run["created_ms"]),
                trigger: text(&run["trigger"]),
                state: text(&run["state"]),
                items: run["items"]
                    .as_u64()
                    .map_or_else(|| "—".into(), |n| n.to_string()),
                succeeded: count("succeeded"),
                failed: count("failed"),
                outstanding: count("queued") + count("running"),
                finished: when_ms(&run["finished_ms"]),
                error: text(&run["last_error"]),
            }
        })
        .collect();
    let items = list(&items, "items")
        .iter()
        .map(|item| ItemRow {
            repository: text(&item["repository"]),
            tag: text(&item["tag"]),
            digest: text(&item["digest"]),
            short: short(&text(&item["digest"])),
            what: if item["delete"] == true {
                "delete".into()
            } else if stored["kind"] == "preheat" {
                "warm".into()
            } else {
                "copy".into()
            },
            state: text(&item["state"]),
            attempts: item["attempts"].as_u64().unwrap_or(0),
            outcome: match &item["last_error"] {
                Value::String(error) if item["state"] != "succeeded" => error.clone(),
                _ => match &item["result"] {
                    Value::Null => String::new(),
                    result => result.to_string(),
                },
            },
            finished: when_ms(&item["finished_ms"]),
        })
        .collect();
    let selected_started = runs
        .iter()
        .find(|run| run.selected)
        .map(|run| run.started.clone())
        .unwrap_or_default();
    let (tabs, _) = project_tabs(&web, &viewer, &project).await;
    html(&RulePage {
        chrome: Chrome::of(&viewer, format!("{project}: {rule}")),
        here: format!(
            "/projects/{}/replication/{}",
            encode(&project),
            encode(&rule)
        ),
        kind: match stored["kind"].as_str() {
            Some("preheat") => "Preheat".into(),
            Some("pull") => "Pull replication".into(),
            _ => "Push replication".into(),
        },
        url: text(&stored["url"]),
        project,
        tabs,
        rule,
        runs,
        selected: params.run,
        selected_started,
        items,
    })
}
