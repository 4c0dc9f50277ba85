//! `gantry gate`: a project's pull gate (its vulnerability policy for pulls) and the
//! allowlists, the project's and the system-wide one.

use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use crate::admin::{done, list, parse_lifetime, print_json, ApiArgs};

#[derive(Subcommand)]
pub enum GateCommand {
    /// A project's pull gate and allowlist.
    Show {
        /// The project.
        project: String,
    },
    /// Refuse pulls of images with vulnerabilities at or above a severity (project admins).
    #[command(
        long_about = "Refuse pulls of images with vulnerabilities at or above a severity (project admins).\n\n\
        A manifest GET of such an image answers 403 DENIED naming the blocking vulnerabilities and\n\
        their fixed versions (and is audited). HEAD, signatures, SBOMs and other referrers, and\n\
        index manifests are never refused; each image of an index is checked when it is fetched.\n\
        An image not scanned yet is waited for (--unscanned wait, the default) or refused until\n\
        scanned (--unscanned refuse). Allowlisted vulnerabilities (gate allow) never block.\n\n\
        Examples:\n    \
        gantry gate set team --block high\n    \
        gantry gate set team --block critical --reachable-only --unscanned refuse"
    )]
    Set {
        /// The project.
        project: String,
        /// The lowest severity that blocks: critical, high, medium, low or unknown.
        #[arg(long, value_parser = ["critical", "high", "medium", "low", "unknown"])]
        block: String,
        /// Count only vulnerabilities whose vulnerable functions are in a binary.
        #[arg(long)]
        reachable_only: bool,
        /// What a pull of an image not scanned yet gets.
        #[arg(long, value_parser = ["wait", "refuse"], default_value = "wait")]
        unscanned: String,
        /// With --unscanned wait: how long a pull waits for the scan (at most 5m).
        #[arg(long, default_value = "60s")]
        wait: String,
    },
    /// Stop refusing pulls in a project (the allowlist is kept).
    Off {
        /// The project.
        project: String,
    },
    /// Let a vulnerability through the gate: a project's, or every project's with --system.
    Allow {
        /// The project (omit with --system).
        #[arg(required_unless_present = "system")]
        project: Option<String>,
        /// The vulnerability ID or alias: CVE-2023-45288, GO-2024-2687, GHSA-….
        #[arg(long)]
        id: String,
        /// For how long, e.g. 30d [default: until removed].
        #[arg(long)]
        expires: Option<String>,
        /// Why it is allowed.
        #[arg(long)]
        reason: Option<String>,
        /// Change the system-wide allowlist (system administrators).
        #[arg(long, conflicts_with = "project")]
        system: bool,
    },
    /// Remove a vulnerability from a project's allowlist, or with --system from the
    /// system-wide one.
    Disallow {
        /// The project (omit with --system).
        #[arg(required_unless_present = "system")]
        project: Option<String>,
        /// The vulnerability ID or alias as it was allowed.
        #[arg(long)]
        id: String,
        /// Change the system-wide allowlist.
        #[arg(long, conflicts_with = "project")]
        system: bool,
    },
    /// The system-wide allowlist.
    Allowlist,
    /// Scan every image pushed to a project, or not (on by default; images are also scanned
    /// on demand with `gantry scan` and after every database import).
    ScanOnPush {
        /// The project.
        project: String,
        /// on or off.
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// Attach the SPDX and CycloneDX SBOMs of every image scanned in a project to the image
    /// as referrers, or not (off by default; the documents count against the project's quota).
    /// They are made by the image's scan: on push, on demand or after a database import.
    SbomOnPush {
        /// The project.
        project: String,
        /// on or off.
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
}

fn policy_path(project: &str) -> String {
    format!("/api/v1/projects/{project}/vulnerability-policy")
}

const ALLOWLIST_PATH: &str = "/api/v1/vulnerability-allowlist";

fn show_policy(api: &ApiArgs, project: &str, policy: &Value) {
    if api.json {
        return print_json(policy);
    }
    match policy["block_severity"].as_str() {
        Some(severity) => println!(
            "{project}: pulls refused for vulnerabilities {severity} and above{}; unscanned images: {}{}",
            if policy["reachable_only"] == true {
                " whose vulnerable code is in the binary"
            } else {
                ""
            },
            policy["unscanned"].as_str().unwrap_or("wait"),
            if policy["unscanned"] == "refuse" {
                String::new()
            } else {
                format!(" (up to {}s)", policy["wait_secs"])
            }
        ),
        None => println!("{project}: the pull gate is off"),
    }
    if policy["scan_on_push"] == false {
        println!("{project}: images are not scanned on push");
    }
    if policy["sbom_on_push"] == true {
        println!("{project}: scanned images get their SBOMs attached");
    }
    list(api, policy, "allowlist", &["id", "expires_at", "reason"]);
}

/// The allowlist of `document` with `id` added (replacing an entry of the same id) or
/// removed.
fn edit_allowlist(document: &mut Value, id: &str, entry: Option<Value>) -> bool {
    let list = document["allowlist"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let before = list.len();
    let mut kept: Vec<Value> = list.into_iter().filter(|e| e["id"] != id).collect();
    let removed = kept.len() != before;
    if let Some(entry) = entry {
        kept.push(entry);
    }
    document["allowlist"] = Value::Array(kept);
    removed
}

/// Turns the policy's boolean `field` (e.g. `scan_on_push`) `on` or `off`.
async fn switch(api: &ApiArgs, project: &str, field: &str, state: &str) -> anyhow::Result<()> {
    let mut policy = api.call(Method::GET, &policy_path(project), None).await?;
    policy[field] = json!(state == "on");
    let set = api
        .call(Method::PUT, &policy_path(project), Some(policy))
        .await?;
    let what = field.replace('_', " ");
    done(api, &set, &format!("{project}: {what} {state}"));
    Ok(())
}

pub async fn gate(api: &ApiArgs, command: GateCommand) -> anyhow::Result<()> {
    match command {
        GateCommand::Show { project } => {
            let policy = api.call(Method::GET, &policy_path(&project), None).await?;
            show_policy(api, &project, &policy);
        }
        GateCommand::Set {
            project,
            block,
            reachable_only,
            unscanned,
            wait,
        } => {
            let mut policy = api.call(Method::GET, &policy_path(&project), None).await?;
            policy["block_severity"] = json!(block.to_uppercase());
            policy["reachable_only"] = json!(reachable_only);
            policy["unscanned"] = json!(unscanned);
            policy["wait_secs"] = json!(crate::admin::parse_duration(&wait)?);
            let set = api
                .call(Method::PUT, &policy_path(&project), Some(policy))
                .await?;
            show_policy(api, &project, &set);
        }
        GateCommand::Off { project } => {
            let mut policy = api.call(Method::GET, &policy_path(&project), None).await?;
            policy["block_severity"] = Value::Null;
            let set = api
                .call(Method::PUT, &policy_path(&project), Some(policy))
                .await?;
            done(api, &set, &format!("{project}: the pull gate is off"));
        }
        GateCommand::Allow {
            project,
            id,
            expires,
            reason,
            system,
        } => {
            let path = match &project {
                Some(project) if !system => policy_path(project),
                _ => ALLOWLIST_PATH.to_string(),
            };
            let mut entry = json!({ "id": id });
            if let Some(expires) = expires {
                let lifetime = parse_lifetime(&expires)?;
                entry["expires_at"] = json!(gantry_registry::unix_now() + lifetime as i64);
            }
            if let Some(reason) = reason {
                entry["reason"] = json!(reason);
            }
            let mut document = api.call(Method::GET, &path, None).await?;
            edit_allowlist(&mut document, &id, Some(entry));
            let set = api.call(Method::PUT, &path, Some(document)).await?;
            let whose = project.as_deref().unwrap_or("every project");
            done(
                api,
                &set,
                &format!("{id} is allowed through the gate of {whose}"),
            );
        }
        GateCommand::Disallow {
            project,
            id,
            system,
        } => {
            let path = match &project {
                Some(project) if !system => policy_path(project),
                _ => ALLOWLIST_PATH.to_string(),
            };
            let mut document = api.call(Method::GET, &path, None).await?;
            if !edit_allowlist(&mut document, &id, None) {
                anyhow::bail!("{id} is not on that allowlist; `gantry gate show` lists it");
            }
            let set = api.call(Method::PUT, &path, Some(document)).await?;
            done(api, &set, &format!("{id} is no longer allowed"));
        }
        GateCommand::ScanOnPush { project, state } => {
            switch(api, &project, "scan_on_push", &state).await?;
        }
        GateCommand::SbomOnPush { project, state } => {
            switch(api, &project, "sbom_on_push", &state).await?;
        }
        GateCommand::Allowlist => {
            let document = api.call(Method::GET, ALLOWLIST_PATH, None).await?;
            list(api, &document, "allowlist", &["id", "expires_at", "reason"]);
        }
    }
    Ok(())
}
