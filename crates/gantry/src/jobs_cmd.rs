//! `gantry webhook` and `gantry jobs`: a project's webhooks and their delivery log; the
//! background jobs every server of the deployment shares.

use clap::Subcommand;
use reqwest::Method;
use serde_json::json;

use crate::admin::{done, list, print_json, text, time_of, ApiArgs};

#[derive(Subcommand)]
pub enum WebhookCommand {
    /// Send a project's events to a URL (project admins).
    #[command(long_about = "Send a project's events to a URL (project admins).\n\n\
        Each event is POSTed as a CloudEvents 1.0 event in structured JSON mode\n\
        (Content-Type: application/cloudevents+json), signed with HMAC-SHA256 of the body under\n\
        the secret: `X-Gantry-Signature-256: sha256=<hex>`. Events of one repository arrive in\n\
        order; a receiver that fails or is down is retried with backoff (about four hours).\n\
        Event types: artifact.pushed, artifact.deleted, artifact.pulled, tag.moved, tag.deleted,\n\
        quota.exceeded, retention.completed, artifact.archived, artifact.restored,\n\
        artifact.scanned (its summary and the vulnerabilities new since the image's last scan).\n\n\
        Example:\n    \
        gantry webhook add team --url https://ci.example.com/hooks/gantry \\\n        \
        --event artifact.pushed --event tag.moved")]
    Add {
        /// The project whose events to send.
        project: String,
        /// The http:// or https:// URL to POST events to.
        #[arg(long)]
        url: String,
        /// An event type to send (repeat for several).
        #[arg(long = "event", required = true)]
        events: Vec<String>,
        /// The signing secret [default: generated and printed once].
        #[arg(long, env = "GANTRY_WEBHOOK_SECRET", hide_env_values = true)]
        secret: Option<String>,
    },
    /// Change a webhook: its URL, its event types, or pause and resume it.
    #[command(
        long_about = "Change a webhook: its URL, its event types, or pause and resume it.\n\n\
        What is not given stays. A disabled webhook gets no deliveries, and the events while it\n\
        is disabled are not sent later; its secret stays.\n\n\
        Examples:\n    \
        gantry webhook update team 3 --event artifact.pushed --event artifact.scanned\n    \
        gantry webhook update team 3 --disable"
    )]
    Update {
        /// The webhook's project.
        project: String,
        /// The webhook's id (from `gantry webhook list`).
        id: i64,
        /// The http:// or https:// URL to POST events to.
        #[arg(long)]
        url: Option<String>,
        /// An event type to send (repeat for several); replaces the webhook's event types.
        #[arg(long = "event")]
        events: Vec<String>,
        /// Send events again.
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Send no events until enabled again.
        #[arg(long)]
        disable: bool,
    },
    /// A project's webhooks.
    List {
        /// The project whose webhooks to list.
        project: String,
    },
    /// Stop sending a project's events to a webhook.
    Remove {
        /// The webhook's project.
        project: String,
        /// The webhook's id (from `gantry webhook list`).
        id: i64,
    },
    /// A webhook's delivery log, newest first: state, attempts, status, last error.
    Deliveries {
        /// The webhook's project.
        project: String,
        /// The webhook's id (from `gantry webhook list`).
        id: i64,
        /// How many deliveries to show.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Send a `webhook.test` event to a webhook now.
    Test {
        /// The webhook's project.
        project: String,
        /// The webhook's id (from `gantry webhook list`).
        id: i64,
    },
}

pub async fn webhook(api: &ApiArgs, command: WebhookCommand) -> anyhow::Result<()> {
    let path = |project: &str| format!("/api/v1/projects/{project}/webhooks");
    match command {
        WebhookCommand::Add {
            project,
            url,
            events,
            secret,
        } => {
            let body = json!({ "url": url, "event_types": events, "secret": secret });
            let added = api.call(Method::POST, &path(&project), Some(body)).await?;
            done(
                api,
                &added,
                &format!(
                    "Webhook {} added: {} gets {}.\nSigning secret (shown once; the receiver \
                     checks X-Gantry-Signature-256 with it):\n{}",
                    text(&added["id"]),
                    text(&added["url"]),
                    text(&added["event_types"]),
                    text(&added["secret"]),
                ),
            );
        }
        WebhookCommand::Update {
            project,
            id,
            url,
            events,
            enable,
            disable,
        } => {
            let mut body = json!({});
            if let Some(url) = url {
                body["url"] = json!(url);
            }
            if !events.is_empty() {
                body["event_types"] = json!(events);
            }
            if enable || disable {
                body["enabled"] = json!(enable);
            }
            if body == json!({}) {
                anyhow::bail!(
                    "nothing to change: give --url, --event, --enable or --disable \
                     (see gantry webhook update --help)"
                );
            }
            let changed = api
                .call(
                    Method::PATCH,
                    &format!("{}/{id}", path(&project)),
                    Some(body),
                )
                .await?;
            let state = if changed["enabled"] == true {
                "enabled"
            } else {
                "disabled"
            };
            done(
                api,
                &changed,
                &format!(
                    "Webhook {id} changed: {} gets {} ({state}).",
                    text(&changed["url"]),
                    text(&changed["event_types"]),
                ),
            );
        }
        WebhookCommand::List { project } => {
            let webhooks = api.call(Method::GET, &path(&project), None).await?;
            list(
                api,
                &webhooks,
                "webhooks",
                &[
                    "id",
                    "url",
                    "event_types",
                    "enabled",
                    "created_by",
                    "created_at",
                ],
            );
        }
        WebhookCommand::Remove { project, id } => {
            api.call(Method::DELETE, &format!("{}/{id}", path(&project)), None)
                .await?;
            done(
                api,
                &json!({ "removed": id }),
                &format!("Webhook {id} removed."),
            );
        }
        WebhookCommand::Deliveries { project, id, limit } => {
            let deliveries = api
                .call(
                    Method::GET,
                    &format!("{}/{id}/deliveries?limit={limit}", path(&project)),
                    None,
                )
                .await?;
            list(
                api,
                &deliveries,
                "deliveries",
                &[
                    "id",
                    "event_type",
                    "subject",
                    "state",
                    "attempts",
                    "status",
                    "last_error",
                    "created_ms",
                ],
            );
        }
        WebhookCommand::Test { project, id } => {
            let delivery = api
                .call(Method::POST, &format!("{}/{id}/test", path(&project)), None)
                .await?;
            done(
                api,
                &delivery,
                &format!(
                    "Test event queued as delivery {}; see `gantry webhook deliveries {project} {id}`.",
                    text(&delivery["id"])
                ),
            );
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum JobsCommand {
    /// Background jobs, newest first (system administrators).
    #[command(
        long_about = "Background jobs, newest first (system administrators).\n\n\
        Every server sharing the database takes jobs from one queue: scheduled garbage\n\
        collection (gc), retention runs (retention), the daily usage snapshot (usage-snapshot)\n\
        and webhook deliveries (webhook). A job whose server stops is taken over by another;\n\
        a failed attempt is retried with backoff. Finished jobs are kept 30 days.\n\n\
        Examples:\n    \
        gantry jobs list --kind gc\n    \
        gantry jobs list --state failed"
    )]
    List {
        /// Only jobs of this kind: gc, retention, usage-snapshot, webhook.
        #[arg(long)]
        kind: Option<String>,
        /// Only jobs in this state: queued, running, succeeded, failed.
        #[arg(long)]
        state: Option<String>,
        /// How many jobs to show.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// One job: its payload, attempts, progress, result or last error.
    Show {
        /// The job's id (from `gantry jobs list`).
        id: i64,
    },
}

pub async fn jobs(api: &ApiArgs, command: JobsCommand) -> anyhow::Result<()> {
    match command {
        JobsCommand::List { kind, state, limit } => {
            let mut query = format!("/api/v1/jobs?limit={limit}");
            for (name, value) in [("kind", kind), ("state", state)] {
                if let Some(value) = value {
                    query.push_str(&format!("&{name}={value}"));
                }
            }
            let jobs = api.call(Method::GET, &query, None).await?;
            list(
                api,
                &jobs,
                "jobs",
                &[
                    "id",
                    "kind",
                    "subject",
                    "state",
                    "attempts",
                    "created_ms",
                    "finished_ms",
                    "last_error",
                ],
            );
        }
        JobsCommand::Show { id } => {
            let job = api
                .call(Method::GET, &format!("/api/v1/jobs/{id}"), None)
                .await?;
            if api.json {
                print_json(&job);
                return Ok(());
            }
            println!(
                "job {}: {} ({})",
                id,
                text(&job["kind"]),
                text(&job["state"])
            );
            let when = |field: &str| job[field].as_i64().map(|ms| time_of(ms / 1000));
            for (label, value) in [
                ("subject", Some(text(&job["subject"]))),
                (
                    "attempts",
                    Some(format!(
                        "{} of {}",
                        text(&job["attempts"]),
                        text(&job["max_attempts"])
                    )),
                ),
                ("server", Some(text(&job["lease_owner"]))),
                ("created", when("created_ms")),
                ("started", when("started_ms")),
                ("finished", when("finished_ms")),
                ("progress", Some(text(&job["progress"]))),
                ("last error", Some(text(&job["last_error"]))),
                ("payload", Some(job["payload"].to_string())),
                ("result", Some(job["result"].to_string())),
            ] {
                println!("  {label:<10} {}", value.unwrap_or_else(|| "-".into()));
            }
        }
    }
    Ok(())
}
