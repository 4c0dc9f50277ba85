//! `gantry replication` and `gantry preheat`: replication and preheat rules (the config
//! file's, and those made here through the REST API, system-wide or of a project), runs by
//! hand, each rule's runs and items with their status.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use reqwest::Method;

use crate::admin::{done, list, read_secret, text, ApiArgs};

const RULE_FILE_HELP: &str = "\
A rule file is TOML (or JSON) with the fields of a `[[replication]]` table:\n    \
name = \"edge-eu\"\n    \
kind = \"push\"                      # push (default), pull or preheat\n    \
url = \"https://edge-eu.example.com\"\n    \
username = \"replicator\"            # the password: --password-stdin, or `password = ...`\n    \
project = \"team\"                   # a project's rule (its administrators manage it)\n    \
repositories = { include = [\"team/*\"] }\n    \
tags = { include = [\"v*\"], exclude = [\"*-rc*\"] }\n    \
labels = [\"tier=prod\"]             # push, preheat: image labels the image must have\n    \
deletions = true                   # push: deletions follow\n    \
signed_only = true                 # push: only images a trusted key signed\n    \
schedule = \"0 3 * * *\"             # also run whole daily at 03:00 UTC\n    \
at = \"2026-12-24T05:00:00Z\"        # and once at this time\n    \
bandwidth_mib = 50\n\
A pull rule copies the selected tags of the remote registry into its project. A file without\n\
`kind` makes a push rule with `gantry replication create`, a preheat rule with `gantry\n\
preheat create`; a preheat rule's `url` is its edge (a `[[preheat]]` table's `edge`), and it\n\
adds `edge_project` and `most_pulled = { count = 10, days = 7 }`.";

#[derive(Subcommand)]
pub enum ReplicationCommand {
    /// The rules of this command's kinds (push and pull; preheat), from the config file and
    /// the API.
    #[command(
        long_about = "The rules of this kind, from the config file (`[[replication]]`, \
        `[[preheat]]`: read only here) and the API.\n\n\
        System administrators see every rule; a project's administrators see its rules with \
        --project."
    )]
    List {
        /// Only this project's rules.
        #[arg(long)]
        project: Option<String>,
    },
    /// Show one rule (without its password).
    Show {
        /// The rule's name (from `list`).
        rule: String,
    },
    /// Add a rule from a file; its password is stored sealed.
    #[command(long_about = format!("Add a rule from a file; its password is stored sealed \
        (AES-256-GCM under a key derived from the token signing key).\n\n{RULE_FILE_HELP}"))]
    Create {
        /// The rule file (TOML, or JSON when it ends in .json).
        file: PathBuf,
        /// Read the remote registry's password from stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Replace a rule made through the API (a file without a password keeps the stored one).
    #[command(long_about = format!("Replace a rule made through the API; the file names it. \
        Without a password the stored one is kept (for the same username).\n\n{RULE_FILE_HELP}"))]
    Update {
        /// The rule file (TOML, or JSON when it ends in .json).
        file: PathBuf,
        /// Read the remote registry's password from stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete a rule made through the API (its runs and items stay in the job history).
    Delete {
        /// The rule's name.
        rule: String,
    },
    /// Run a rule now: one item per tag it selects, replicated, pulled or warmed.
    Run {
        /// The rule's name (from `list`).
        rule: String,
    },
    /// A rule's runs, newest first: what started each, and its items by state.
    Runs {
        /// The rule's name.
        rule: String,
        /// How many runs to show.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// A rule's items, newest first: what was copied or warmed, retried or failed, and why.
    Items {
        /// The rule's name (from `list`).
        rule: String,
        /// Only this run's items (from `runs`).
        #[arg(long)]
        run: Option<i64>,
        /// How many items to show.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

/// A rule file read as JSON for a command of `kinds` (its first kind when the file names
/// none; a `[[preheat]]` table's `edge` is the rule's `url`), with the password from stdin
/// when asked.
fn read_rule(
    file: &PathBuf,
    password_stdin: bool,
    kinds: &[&str],
    command: &str,
) -> anyhow::Result<serde_json::Value> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the rule file {}", file.display()))?;
    let mut rule: serde_json::Value = if file.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a JSON rule", file.display()))?
    } else {
        toml::from_str(&text).with_context(|| format!("{} is not a TOML rule", file.display()))?
    };
    let Some(fields) = rule.as_object_mut() else {
        anyhow::bail!("{} is not a table of a rule's fields", file.display());
    };
    let kind = fields
        .entry("kind")
        .or_insert_with(|| kinds[0].into())
        .as_str()
        .unwrap_or_default()
        .to_string();
    if !kinds.contains(&kind.as_str()) {
        anyhow::bail!(
            "{} is a {kind} rule: make it with `gantry {} create`",
            file.display(),
            other_command(command)
        );
    }
    if let Some(edge) = fields.remove("edge") {
        fields.entry("url").or_insert(edge);
    }
    if password_stdin {
        if fields.contains_key("password") {
            anyhow::bail!(
                "{} has a password and --password-stdin gives another: keep one",
                file.display()
            );
        }
        let password = read_secret("Password: ")?;
        if password.is_empty() {
            anyhow::bail!("no password came on stdin: pipe it, e.g. `echo \"$PASSWORD\" | gantry {command} create FILE --password-stdin`");
        }
        fields.insert("password".into(), password.into());
    }
    Ok(rule)
}

fn other_command(command: &str) -> &'static str {
    if command == "preheat" {
        "replication"
    } else {
        "preheat"
    }
}

/// Refuses a rule of another kind than the command's (`gantry preheat run` of a push rule).
async fn check_kind(
    api: &ApiArgs,
    rule: &str,
    kinds: &[&str],
    command: &str,
) -> anyhow::Result<()> {
    let shown = api
        .call(Method::GET, &format!("/api/v1/replication/{rule}"), None)
        .await?;
    let kind = shown["kind"].as_str().unwrap_or_default();
    if !kinds.contains(&kind) {
        anyhow::bail!(
            "{rule} is a {kind} rule: use `gantry {} ... {rule}`",
            other_command(command)
        );
    }
    Ok(())
}

/// `gantry replication` (`kinds` push and pull) and `gantry preheat` (`kinds` preheat): the
/// same rules API, each command listing its own kinds.
pub async fn replication(
    api: &ApiArgs,
    command: ReplicationCommand,
    kinds: &[&str],
) -> anyhow::Result<()> {
    let command_name = if kinds.contains(&"preheat") {
        "preheat"
    } else {
        "replication"
    };
    match &command {
        ReplicationCommand::Show { rule }
        | ReplicationCommand::Delete { rule }
        | ReplicationCommand::Run { rule }
        | ReplicationCommand::Runs { rule, .. }
        | ReplicationCommand::Items { rule, .. } => {
            check_kind(api, rule, kinds, command_name).await?
        }
        _ => {}
    }
    match command {
        ReplicationCommand::List { project } => {
            let path = match &project {
                Some(project) => format!("/api/v1/replication?project={project}"),
                None => "/api/v1/replication".to_string(),
            };
            let mut rules = api.call(Method::GET, &path, None).await?;
            if let Some(all) = rules["rules"].as_array_mut() {
                all.retain(|rule| kinds.iter().any(|kind| rule["kind"] == *kind));
            }
            list(
                api,
                &rules,
                "rules",
                &[
                    "name", "kind", "url", "project", "source", "schedule", "at", "problem",
                ],
            );
        }
        ReplicationCommand::Show { rule } => {
            let shown = api
                .call(Method::GET, &format!("/api/v1/replication/{rule}"), None)
                .await?;
            println!("{}", serde_json::to_string_pretty(&shown)?);
        }
        ReplicationCommand::Create {
            file,
            password_stdin,
        } => {
            let rule = read_rule(&file, password_stdin, kinds, command_name)?;
            let made = api
                .call(Method::POST, "/api/v1/replication", Some(rule))
                .await?;
            done(
                api,
                &made,
                &format!(
                    "Rule {} added; run it with `gantry {command_name} run {}`.",
                    text(&made["name"]),
                    text(&made["name"])
                ),
            );
        }
        ReplicationCommand::Update {
            file,
            password_stdin,
        } => {
            let rule = read_rule(&file, password_stdin, kinds, command_name)?;
            let name = rule["name"]
                .as_str()
                .context("the rule file has no name")?
                .to_string();
            let made = api
                .call(
                    Method::PUT,
                    &format!("/api/v1/replication/{name}"),
                    Some(rule),
                )
                .await?;
            done(api, &made, &format!("Rule {name} replaced."));
        }
        ReplicationCommand::Delete { rule } => {
            api.call(Method::DELETE, &format!("/api/v1/replication/{rule}"), None)
                .await?;
            done(
                api,
                &serde_json::json!({ "deleted": rule }),
                &format!("Rule {rule} deleted."),
            );
        }
        ReplicationCommand::Run { rule } => {
            let run = api
                .call(
                    Method::POST,
                    &format!("/api/v1/replication/{rule}/runs"),
                    None,
                )
                .await?;
            done(
                api,
                &run,
                &format!(
                    "Run {} of {rule} started; see `gantry {command_name} runs {rule}` and \
                     `gantry {command_name} items {rule} --run {}`.",
                    text(&run["run"]),
                    text(&run["run"])
                ),
            );
        }
        ReplicationCommand::Runs { rule, limit } => {
            let runs = api
                .call(
                    Method::GET,
                    &format!("/api/v1/replication/{rule}/runs?limit={limit}"),
                    None,
                )
                .await?;
            list(
                api,
                &runs,
                "runs",
                &[
                    "id",
                    "trigger",
                    "state",
                    "items",
                    "queued",
                    "running",
                    "succeeded",
                    "failed",
                    "last_error",
                    "created_ms",
                ],
            );
        }
        ReplicationCommand::Items { rule, run, limit } => {
            let run = run.map(|run| format!("&run={run}")).unwrap_or_default();
            let items = api
                .call(
                    Method::GET,
                    &format!("/api/v1/replication/{rule}/items?limit={limit}{run}"),
                    None,
                )
                .await?;
            list(
                api,
                &items,
                "items",
                &[
                    "id",
                    "run",
                    "repository",
                    "tag",
                    "digest",
                    "delete",
                    "state",
                    "attempts",
                    "last_error",
                    "result",
                    "created_ms",
                ],
            );
        }
    }
    Ok(())
}
