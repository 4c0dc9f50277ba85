//! `gantry replication`: the push replication rules the server is configured with
//! (`[[replication]]`), runs by hand, and each rule's items with their status.

use clap::Subcommand;
use reqwest::Method;

use crate::admin::{done, list, text, ApiArgs};

#[derive(Subcommand)]
pub enum ReplicationCommand {
    /// The configured rules of this kind (system administrators).
    #[command(
        long_about = "The configured rules of this kind (system administrators).\n\n\
        Rules are `[[replication]]` tables of the server's configuration: what is pushed and\n\
        matches a rule's repository and tag selectors is copied to its registry with its\n\
        signatures and SBOMs, in push order per repository, retried while the target is down;\n\
        with `deletions = true` deletions follow; with `schedule` the rule also runs whole.\n\n\
        Example (gantry.toml):\n    \
        [[replication]]\n    \
        name = \"edge-eu\"\n    \
        url = \"https://edge-eu.example.com\"\n    \
        username = \"replicator\"\n    \
        password = \"…\"\n    \
        repositories = { include = [\"team/*\"] }\n    \
        tags = { include = [\"v*\"] }\n    \
        schedule = \"0 3 * * *\"\n    \
        bandwidth_mib = 50"
    )]
    List,
    /// Run a rule now: one item per tag it selects, replicated (or warmed at the edge).
    Run {
        /// The rule's name (from `gantry replication list`).
        rule: String,
    },
    /// A rule's items, newest first: what was replicated or warmed, retried or failed, and why.
    Items {
        /// The rule's name (from `gantry replication list`).
        rule: String,
        /// How many items to show.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

/// `gantry replication` (`kind` push) and `gantry preheat` (`kind` preheat): the same rules
/// API, each command listing its own kind.
pub async fn replication(
    api: &ApiArgs,
    command: ReplicationCommand,
    kind: &str,
) -> anyhow::Result<()> {
    match command {
        ReplicationCommand::List => {
            let mut rules = api.call(Method::GET, "/api/v1/replication", None).await?;
            if let Some(all) = rules["rules"].as_array_mut() {
                all.retain(|rule| rule["kind"] == kind);
            }
            list(
                api,
                &rules,
                "rules",
                &[
                    "name",
                    "url",
                    "username",
                    "deletions",
                    "schedule",
                    "bandwidth",
                ],
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
                    "{} items of {rule} queued; see `gantry replication items {rule}`.",
                    text(&run["items"])
                ),
            );
        }
        ReplicationCommand::Items { rule, limit } => {
            let items = api
                .call(
                    Method::GET,
                    &format!("/api/v1/replication/{rule}/items?limit={limit}"),
                    None,
                )
                .await?;
            list(
                api,
                &items,
                "items",
                &[
                    "id",
                    "repository",
                    "tag",
                    "digest",
                    "delete",
                    "state",
                    "attempts",
                    "last_error",
                    "created_ms",
                ],
            );
        }
    }
    Ok(())
}
