//! The lifecycle commands: tag rules, retention, quotas, garbage collection and archives.
//! Like the other management commands, each is one or a few REST API calls.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use gantry_lifecycle::retention::Policy;

use crate::admin::{done, list, print_json, table, text, ApiArgs};

#[derive(Subcommand)]
pub enum TagRulesCommand {
    /// Show a project's tag rules.
    Show {
        /// The project whose rules to show.
        project: String,
    },
    /// Replace a project's tag rules (maintainers and project admins).
    #[command(
        long_about = "Replace a project's tag rules (maintainers and project admins).\n\n\
        Patterns are globs (* and ?). Immutable tags can be pushed once and never moved or\n\
        deleted; with allowed patterns, other tags are refused. Example, for the tag convention v1.2.0 / commit-abc123 / dev-latest:\n    \
        gantry tag-rules set team --immutable 'v*' --allowed 'v*,commit-*,dev-*' --refuse-latest"
    )]
    Set {
        /// The project whose rules to replace.
        project: String,
        /// Immutable tag patterns, comma-separated.
        #[arg(long, value_delimiter = ',')]
        immutable: Vec<String>,
        /// Allowed tag patterns, comma-separated [default: every tag].
        #[arg(long, value_delimiter = ',')]
        allowed: Vec<String>,
        /// Refuse the tag latest.
        #[arg(long)]
        refuse_latest: bool,
    },
}

pub async fn tag_rules(args: &ApiArgs, command: TagRulesCommand) -> anyhow::Result<()> {
    let (project, body) = match command {
        TagRulesCommand::Show { project } => (project, None),
        TagRulesCommand::Set {
            project,
            immutable,
            allowed,
            refuse_latest,
        } => (
            project,
            Some(
                json!({"immutable": immutable, "allowed": allowed, "refuse_latest": refuse_latest}),
            ),
        ),
    };
    let method = if body.is_some() {
        Method::PUT
    } else {
        Method::GET
    };
    let rules = args
        .call(
            method,
            &format!("/api/v1/projects/{project}/tag-rules"),
            body,
        )
        .await?;
    if args.json {
        print_json(&rules);
    } else {
        let list = |key: &str| match text(&rules[key]).as_str() {
            "" => "(none)".to_string(),
            t => t.to_string(),
        };
        println!("tag rules of {project}:");
        println!("  immutable:     {}", list("immutable"));
        println!(
            "  allowed:       {}",
            if rules["allowed"].as_array().is_some_and(|a| a.is_empty()) {
                "every tag".to_string()
            } else {
                list("allowed")
            }
        );
        println!("  refuse latest: {}", rules["refuse_latest"]);
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum RetentionCommand {
    /// Show a project's retention policy (TOML by default, or --json).
    Show {
        /// The project whose policy to show.
        project: String,
    },
    /// Replace a project's retention policy from a TOML or JSON file.
    #[command(
        long_about = "Replace a project's retention policy from a TOML or JSON file.\n\n\
        Example, for the tag convention v1.2.0 / commit-abc123 / dev-latest:\n\n    \
        [[rules]]\n    tags = { include = [\"v*\"] }\n    keep = { newest_per_version_line = 3 }\n\n    \
        [[rules]]\n    tags = { include = [\"commit-*\"] }\n    keep = { pushed_within_days = 14 }\n\n    \
        [[rules]]\n    tags = { include = [\"dev-*\"] }\n    keep = { pulled_within_days = 7 }\n\n\
        keep is \"always\" or one of most_recently_pushed, most_recently_pulled,\n\
        pushed_within_days, pulled_within_days, newest_per_version_line = N.\n\n\
        Within the repositories a rule applies to, tags no rule keeps are deleted; a digest\n\
        survives when any of its tags does; everything a surviving manifest reaches (index\n\
        children, signatures, SBOMs) survives with it. An immutable tag rule overrides the\n\
        policy: such tags are kept and reported as protected."
    )]
    Set {
        /// The project whose policy to replace.
        project: String,
        /// The policy: a .toml or .json file.
        file: PathBuf,
    },
    /// Run the policy now; --dry-run lists what would go without deleting anything.
    Run {
        /// The project whose policy to run.
        project: String,
        /// List what would be deleted, and why each survivor stays, without deleting anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// Earlier runs, newest first.
    History {
        /// The project whose runs to list.
        project: String,
    },
}

/// Reads a retention policy file (TOML, or JSON when it starts with `{`) into the policy
/// itself, so a mistake is reported at its line and column in the file the user wrote, with
/// what is accepted there.
fn read_policy(file: &std::path::Path, text: &str) -> anyhow::Result<Policy> {
    let what = "see `gantry retention set --help` for the rules a policy may hold";
    if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| {
            anyhow::anyhow!(
                "{} is not a valid retention policy (JSON): {e}; {what}",
                file.display()
            )
        })
    } else {
        toml::from_str(text).map_err(|e| {
            anyhow::anyhow!(
                "{} is not a valid retention policy: {}{what}",
                file.display(),
                // toml's message names the line and column and shows the line.
                e
            )
        })
    }
}

pub async fn retention(args: &ApiArgs, command: RetentionCommand) -> anyhow::Result<()> {
    match command {
        RetentionCommand::Show { project } => {
            let policy = args
                .call(
                    Method::GET,
                    &format!("/api/v1/projects/{project}/retention"),
                    None,
                )
                .await?;
            if args.json {
                print_json(&policy);
            } else {
                print!(
                    "{}",
                    toml::to_string(&policy).context("the policy has no TOML form")?
                );
            }
        }
        RetentionCommand::Set { project, file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let policy = serde_json::to_value(read_policy(&file, &text)?)?;
            let value = args
                .call(
                    Method::PUT,
                    &format!("/api/v1/projects/{project}/retention"),
                    Some(policy),
                )
                .await?;
            let rules = value["rules"].as_array().map_or(0, Vec::len);
            done(
                args,
                &value,
                &format!("Retention policy of {project} set ({rules} rules)."),
            );
        }
        RetentionCommand::Run { project, dry_run } => {
            let report = args
                .call(
                    Method::POST,
                    &format!("/api/v1/projects/{project}/retention/runs?dry_run={dry_run}"),
                    None,
                )
                .await?;
            if args.json {
                print_json(&report);
                return Ok(());
            }
            let verb = if dry_run { "would delete" } else { "deleted" };
            let items = |key: &str| report[key].as_array().cloned().unwrap_or_default();
            let (tags, manifests, protected) = (
                items("delete_tags"),
                items("delete_manifests"),
                items("protected"),
            );
            println!("{verb} {} tags:", tags.len());
            for t in &tags {
                println!(
                    "  {}:{} — {}",
                    text(&t["repository"]),
                    text(&t["tag"]),
                    text(&t["reason"])
                );
            }
            println!(
                "{verb} {} manifests, freeing {} bytes:",
                manifests.len(),
                report["freed_bytes"]
            );
            for m in &manifests {
                println!(
                    "  {}@{} — {}",
                    text(&m["repository"]),
                    text(&m["digest"]),
                    text(&m["reason"])
                );
            }
            if !protected.is_empty() {
                println!(
                    "protected by immutable tag rules ({} tags; kept, and in none of the totals above):",
                    protected.len()
                );
                for p in &protected {
                    println!(
                        "  {}:{} — immutable pattern {}; the policy alone: {}",
                        text(&p["repository"]),
                        text(&p["tag"]),
                        text(&p["immutable_pattern"]),
                        text(&p["policy_reason"])
                    );
                }
            }
            println!("kept:");
            for s in report["keep"].as_array().into_iter().flatten() {
                // An untagged survivor (an index's child, a signature) is named by its digest.
                let tagged = s["tags"].as_array().is_some_and(|tags| !tags.is_empty());
                let reasons: Vec<String> = s["reasons"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(text)
                    .collect();
                println!(
                    "  {} {} — {}",
                    text(&s["repository"]),
                    text(if tagged { &s["tags"] } else { &s["digest"] }),
                    reasons.join("; ")
                );
            }
        }
        RetentionCommand::History { project } => {
            let runs = args
                .call(
                    Method::GET,
                    &format!("/api/v1/projects/{project}/retention/runs"),
                    None,
                )
                .await?;
            list(
                args,
                &runs,
                "runs",
                &[
                    "at",
                    "actor",
                    "dry_run",
                    "deleted_tags",
                    "deleted_manifests",
                    "freed_bytes",
                ],
            );
        }
    }
    Ok(())
}

pub async fn gc(
    args: &ApiArgs,
    dry_run: bool,
    grace_secs: u64,
    pause_ms: u64,
) -> anyhow::Result<()> {
    if grace_secs == 0 {
        eprintln!(
            "warning: --grace 0s collects everything unreferenced now, including the layers of \
             pushes still under way (their manifests not yet written); run it only while no one pushes"
        );
    }
    let report = args
        .call(
            Method::POST,
            &format!("/api/v1/gc?dry_run={dry_run}&grace_secs={grace_secs}&pause_ms={pause_ms}"),
            None,
        )
        .await?;
    if args.json {
        print_json(&report);
        return Ok(());
    }
    let verb = if dry_run { "would free" } else { "freed" };
    println!(
        "{verb}: {} untagged manifests ({} bytes), {} blob links, {} blobs ({} bytes), {} abandoned uploads, {} empty repositories; {} ms",
        report["manifests"].as_array().map_or(0, Vec::len),
        report["manifest_bytes"],
        report["links"],
        report["blobs"],
        report["blob_bytes"],
        report["uploads"],
        report["repositories"],
        report["millis"]
    );
    Ok(())
}

#[derive(Subcommand)]
pub enum QuotaCommand {
    /// Show a project's usage and limits.
    Show {
        /// The project whose usage to show.
        project: String,
    },
    /// Every project's usage and limits (system administrators).
    List,
    /// Set a project's limits (system administrators).
    #[command(long_about = "Set a project's limits (system administrators).\n\n\
        Storage counts every layer, config and manifest once per project, however many\n\
        repositories or tags share it; artifacts are distinct manifests. A push that would pass\n\
        a limit is refused; deleting always works. Example:\n    \
        gantry quota set team --storage 50GB --artifacts 10000\n    \
        gantry quota set team --storage unlimited")]
    Set {
        /// The project whose limits to set.
        project: String,
        /// Storage limit, e.g. 50GB, 512MiB, or `unlimited`.
        #[arg(long, value_parser = parse_limit_size)]
        storage: Option<Limit>,
        /// Artifact limit, or `unlimited`.
        #[arg(long, value_parser = parse_limit_count)]
        artifacts: Option<Limit>,
    },
    /// Add the usage up from what the project stores and compare with the live figures.
    Recount {
        /// The project whose usage to recount.
        project: String,
    },
}

/// A limit as given on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Unlimited,
    At(u64),
}

fn parse_limit(text: &str, parse: fn(&str) -> Option<u64>, example: &str) -> Result<Limit, String> {
    if text.eq_ignore_ascii_case("unlimited") || text.eq_ignore_ascii_case("none") {
        return Ok(Limit::Unlimited);
    }
    parse(text)
        .map(Limit::At)
        .ok_or_else(|| format!("{text:?} is not a limit: give {example} or `unlimited`"))
}

fn parse_limit_size(text: &str) -> Result<Limit, String> {
    parse_limit(
        text,
        gantry_oci::size::parse,
        "a size such as 50GB or 512MiB",
    )
}

fn parse_limit_count(text: &str) -> Result<Limit, String> {
    parse_limit(text, |t| t.trim().parse().ok(), "a whole number")
}

fn limit_json(limit: Limit) -> Value {
    match limit {
        Limit::Unlimited => Value::Null,
        Limit::At(n) => n.into(),
    }
}

/// `1.2 GB of 50.0 GB (2%)`, or `1.2 GB (unlimited)`.
fn usage_text(used: &Value, limit: &Value, show: fn(u64) -> String) -> String {
    let used = used.as_u64().unwrap_or(0);
    match limit.as_u64() {
        Some(limit) => format!(
            "{} of {} ({}%)",
            show(used),
            show(limit),
            (used as f64 * 100.0 / limit.max(1) as f64).round()
        ),
        None => format!("{} (unlimited)", show(used)),
    }
}

fn storage_text(quota: &Value) -> String {
    usage_text(
        &quota["storage"]["used_bytes"],
        &quota["storage"]["limit_bytes"],
        gantry_oci::size::format,
    )
}

fn artifacts_text(quota: &Value) -> String {
    usage_text(
        &quota["artifacts"]["used"],
        &quota["artifacts"]["limit"],
        |n| n.to_string(),
    )
}

pub async fn quota(args: &ApiArgs, command: QuotaCommand) -> anyhow::Result<()> {
    let path = |project: &str| format!("/api/v1/projects/{project}/quota");
    match command {
        QuotaCommand::Show { project } => {
            let quota = args.call(Method::GET, &path(&project), None).await?;
            if args.json {
                print_json(&quota);
            } else {
                println!("quota of {project}:");
                println!("  storage:   {}", storage_text(&quota));
                println!("  artifacts: {}", artifacts_text(&quota));
            }
        }
        QuotaCommand::List => {
            let quotas = args.call(Method::GET, "/api/v1/quotas", None).await?;
            if args.json {
                print_json(&quotas);
            } else {
                let rows = quotas["quotas"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|q| vec![text(&q["project"]), storage_text(q), artifacts_text(q)])
                    .collect();
                table(&["project", "storage", "artifacts"], rows);
            }
        }
        QuotaCommand::Set {
            project,
            storage,
            artifacts,
        } => {
            if storage.is_none() && artifacts.is_none() {
                anyhow::bail!(
                    "nothing to set: give --storage SIZE and/or --artifacts N (`unlimited` lifts a limit)"
                );
            }
            // Unset flags keep the current limit.
            let current = args.call(Method::GET, &path(&project), None).await?;
            let body = json!({
                "storage_bytes": storage.map_or(current["storage"]["limit_bytes"].clone(), limit_json),
                "artifacts": artifacts.map_or(current["artifacts"]["limit"].clone(), limit_json),
            });
            let quota = args.call(Method::PUT, &path(&project), Some(body)).await?;
            done(
                args,
                &quota,
                &format!(
                    "Quota of {project} set: storage {}, artifacts {}.",
                    storage_text(&quota),
                    artifacts_text(&quota)
                ),
            );
        }
        QuotaCommand::Recount { project } => {
            let recount = args
                .call(Method::POST, &format!("{}/recount", path(&project)), None)
                .await?;
            if args.json {
                print_json(&recount);
            } else {
                let figures = |v: &Value| {
                    format!(
                        "{} in {} artifacts",
                        gantry_oci::size::format(v["bytes"].as_u64().unwrap_or(0)),
                        v["artifacts"]
                    )
                };
                println!("live:    {}", figures(&recount["live"]));
                println!("counted: {}", figures(&recount["counted"]));
                if recount["agree"] == true {
                    println!("The live usage of {project} is exact.");
                } else {
                    println!(
                        "The live usage of {project} had drifted and was corrected; please report this."
                    );
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_sizes_counts_and_unlimited() {
        assert_eq!(parse_limit_size("50GB"), Ok(Limit::At(50_000_000_000)));
        assert_eq!(parse_limit_size("unlimited"), Ok(Limit::Unlimited));
        assert_eq!(parse_limit_count("1000"), Ok(Limit::At(1000)));
        assert!(parse_limit_count("1k")
            .unwrap_err()
            .contains("whole number"));
        assert!(parse_limit_size("lots").unwrap_err().contains("50GB"));
    }
}

/// `gantry archive`: which artifacts to move out, or `--list` to see earlier archives.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("selection").multiple(true).args(
    ["repositories", "tags", "exclude_tags", "pushed_before", "not_pulled_for", "dry_run"]
)))]
pub struct ArchiveArgs {
    /// The project whose artifacts to archive (or list, or delete archives of).
    project: String,
    /// Repositories to look at (globs, e.g. team/api); default: every repository.
    #[arg(long = "repository", value_name = "GLOB")]
    repositories: Vec<String>,
    /// Tags to archive (globs, e.g. 'v*'); default: every tag.
    #[arg(long = "tag", value_name = "GLOB")]
    tags: Vec<String>,
    /// Tags never to archive (globs).
    #[arg(long = "exclude-tag", value_name = "GLOB")]
    exclude_tags: Vec<String>,
    /// Only what was pushed at least this long ago, in days (e.g. 180d).
    #[arg(long, value_parser = parse_days)]
    pushed_before: Option<u64>,
    /// Only what nobody pulled for this long, in days (e.g. 90d).
    #[arg(long, value_parser = parse_days)]
    not_pulled_for: Option<u64>,
    /// List what would be archived without moving anything.
    #[arg(long)]
    dry_run: bool,
    /// List the project's archives instead.
    #[arg(long, conflicts_with = "selection")]
    list: bool,
    /// Delete archive ID for good (its tarball and its record) instead.
    #[arg(long, value_name = "ID", conflicts_with_all = ["selection", "list"])]
    delete: Option<i64>,
}

fn parse_days(text: &str) -> Result<u64, String> {
    let secs = crate::admin::parse_duration(text).map_err(|e| e.to_string())?;
    if secs % 86_400 != 0 {
        return Err(format!(
            "{text:?} is not a whole number of days: give e.g. 180d"
        ));
    }
    Ok(secs / 86_400)
}

pub async fn archive(api: &ApiArgs, args: ArchiveArgs) -> anyhow::Result<()> {
    let path = format!("/api/v1/projects/{}/archives", args.project);
    if let Some(id) = args.delete {
        api.call(Method::DELETE, &format!("{path}/{id}"), None)
            .await?;
        done(
            api,
            &json!({ "deleted": id }),
            &format!("Archive {id} deleted."),
        );
        return Ok(());
    }
    if args.list {
        let archives = api.call(Method::GET, &path, None).await?;
        list(
            api,
            &archives,
            "archives",
            &[
                "id",
                "repository",
                "tags",
                "digest",
                "bytes",
                "archived_at",
                "restored_at",
            ],
        );
        return Ok(());
    }
    let selector = json!({
        "repositories": {"include": args.repositories},
        "tags": {"include": args.tags, "exclude": args.exclude_tags},
        "pushed_before_days": args.pushed_before,
        "not_pulled_for_days": args.not_pulled_for,
    });
    let report = api
        .call(
            Method::POST,
            &format!("{path}?dry_run={}", args.dry_run),
            Some(selector),
        )
        .await?;
    if api.json {
        print_json(&report);
        return Ok(());
    }
    let archived = report["archived"].as_array().cloned().unwrap_or_default();
    let verb = if args.dry_run {
        "would archive"
    } else {
        "archived"
    };
    let total: u64 = archived.iter().filter_map(|a| a["bytes"].as_u64()).sum();
    println!(
        "{verb} {} artifacts ({}) to {}",
        archived.len(),
        gantry_oci::size::format(total),
        text(&report["location"])
    );
    for a in &archived {
        let id = match a["id"].as_i64() {
            Some(id) => format!("#{id} "),
            None => String::new(),
        };
        println!(
            "  {id}{}:{} {}",
            text(&a["repository"]),
            text(&a["tags"]),
            text(&a["digest"])
        );
    }
    for p in report["passed"].as_array().into_iter().flatten() {
        println!(
            "  left {}@{}: {}",
            text(&p["repository"]),
            text(&p["digest"]),
            text(&p["reason"])
        );
    }
    if !args.dry_run && !archived.is_empty() {
        println!("Their blobs are freed by the next garbage collection (`gantry gc`).");
    }
    Ok(())
}

pub async fn restore(api: &ApiArgs, project: &str, ids: &[i64]) -> anyhow::Result<()> {
    for id in ids {
        let report = api
            .call(
                Method::POST,
                &format!("/api/v1/projects/{project}/archives/{id}/restore"),
                None,
            )
            .await
            .with_context(|| {
                format!("cannot restore archive {id} (see `gantry archive {project} --list`)")
            })?;
        if api.json {
            print_json(&report);
        } else {
            println!(
                "restored archive {id}: {}:{} {} ({} manifests, {} blobs, {})",
                text(&report["repository"]),
                text(&report["tags"]),
                text(&report["digest"]),
                report["manifests"],
                report["blobs"],
                gantry_oci::size::format(report["bytes"].as_u64().unwrap_or(0))
            );
        }
    }
    Ok(())
}
