//! Browsing what is stored: `gantry repo list`, `gantry artifact list`, `gantry artifact show`.
//! Each is REST API calls (one per page); the tables show human sizes and relative times,
//! `--json` the API's JSON.

use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{json, Value};

use crate::admin::{print_json, table, text, ApiArgs};

#[derive(Subcommand)]
pub enum RepoCommand {
    /// List a project's repositories with artifact count, size, last push and last pull.
    #[command(
        long_about = "List a project's repositories with their artifact count, size, last push,\n\
        last pull and pulls.\n\n\
        SIZE counts every blob once, however many artifacts of the repository share it. ARTIFACTS\n\
        counts what `gantry artifact list` shows: signatures, SBOMs and the platform images of a\n\
        multi-arch index are listed under their artifact, not counted apart.\n\n\
        Examples:\n    \
        gantry repo list team\n    \
        gantry repo list team --sort size            (largest first)\n    \
        gantry repo list team --sort pulled --order asc --limit 20   (least recently pulled)\n    \
        gantry repo list team --json                 (the API's JSON, every page)"
    )]
    List {
        /// The project whose repositories to list.
        project: String,
        #[command(flatten)]
        paging: Paging,
    },
    /// Delete a repository: every tag, manifest, blob link and upload in it. Tag rules apply
    /// (an immutable tag refuses it all); `gantry gc` then frees the bytes.
    Delete {
        /// The repository, PROJECT/NAME.
        repository: String,
        /// Do not ask for confirmation on a terminal.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
pub enum ArtifactCommand {
    /// List a repository's artifacts: digest, tags, platforms, size, push and pull times.
    #[command(
        long_about = "List a repository's artifacts: digest, tags, platforms, size, push time,\n\
        last pull, pulls, referrers (signatures, SBOMs) and whether they are signed.\n\n\
        SIGNED is what the project's signing policy makes of an image's signatures (cosign's\n\
        .sig tag and Sigstore bundles): `trusted` with the start of the key's fingerprint,\n\
        `untrusted` (signatures, none by a key the project trusts, or it trusts none),\n\
        `other digest` or `unsigned`; `-` for what a policy does not check.\n\n\
        Signatures and SBOMs are listed under the artifact they refer to (the REFERRERS column),\n\
        the platform images of a multi-arch index as its PLATFORMS; `gantry artifact show` shows\n\
        each. SIZE is the manifest, config and layers; for an index, all its platforms, with\n\
        shared layers counted once.\n\n\
        Examples:\n    \
        gantry artifact list team/app                (newest first)\n    \
        gantry artifact list team/app --sort size --limit 10\n    \
        gantry artifact list team/app --sort pulled --order asc   (never or long ago pulled first)"
    )]
    List {
        /// The repository, project included: team/app.
        repository: String,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show one artifact with its tags, platforms, size, pulls and referrers.
    #[command(
        long_about = "Show one artifact with its tags, platforms, size, pulls and referrers.\n\n\
        REF is REPOSITORY:TAG or REPOSITORY@DIGEST (no registry host: that is --registry).\n\
        Signatures, SBOMs and the platform images of an index can be shown by digest too.\n\n\
        Examples:\n    \
        gantry artifact show team/app:v1.2.0\n    \
        gantry artifact show team/app@sha256:4f3c…   --json"
    )]
    Show {
        /// REPOSITORY:TAG or REPOSITORY@DIGEST
        reference: String,
    },
    /// Delete an artifact with all its tags. Tag rules apply (an immutable tag refuses it);
    /// `gantry gc` then frees the bytes.
    #[command(long_about = "Delete an artifact with all its tags.\n\n\
        REF is REPOSITORY:TAG or REPOSITORY@DIGEST: a tag names the artifact it points to, and\n\
        every tag of that artifact goes with it (to remove one tag only: `gantry artifact\n\
        untag`). Tag rules apply: an immutable tag refuses the deletion. The bytes are freed by\n\
        the next garbage collection (`gantry gc`).\n\n\
        Examples:\n    \
        gantry artifact delete team/app:dev-3f2a1c\n    \
        gantry artifact delete team/app@sha256:4f3c… --yes")]
    Delete {
        /// REPOSITORY:TAG or REPOSITORY@DIGEST
        reference: String,
        /// Do not ask for confirmation on a terminal.
        #[arg(long)]
        yes: bool,
    },
    /// Remove one tag; the artifact and its other tags stay. Tag rules apply.
    #[command(
        long_about = "Remove one tag; the artifact and its other tags stay.\n\n\
        Tag rules apply: an immutable tag cannot be removed.\n\n\
        Examples:\n    \
        gantry artifact untag team/app:dev-latest"
    )]
    Untag {
        /// REPOSITORY:TAG, the tag to remove.
        reference: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum SortKey {
    /// Repository name (for artifacts: digest).
    Name,
    /// Last push.
    Pushed,
    /// Last pull (never pulled counts as oldest).
    Pulled,
    /// Size in bytes.
    Size,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Order {
    Asc,
    Desc,
}

/// Sorting and paging of a listing.
#[derive(Args)]
pub struct Paging {
    /// Sort by [default: name for repositories, pushed for artifacts].
    #[arg(long, value_enum)]
    sort: Option<SortKey>,
    /// Direction [default: asc for name; desc otherwise: newest, largest first].
    #[arg(long, value_enum)]
    order: Option<Order>,
    /// Show at most this many rows [default: all, fetched a page of 100 at a time].
    #[arg(long)]
    limit: Option<usize>,
}

/// The path of a repository in the API: its `/` percent-encoded, one path segment.
fn repository_path(repository: &str) -> String {
    format!("/api/v1/repositories/{}", repository.replace('/', "%2F"))
}

/// Fetches pages of `path` until `limit` rows (or the end), one request per page.
async fn fetch_all(
    api: &ApiArgs,
    path: &str,
    key: &str,
    paging: &Paging,
) -> anyhow::Result<Vec<Value>> {
    const PAGE: usize = 100;
    let mut query = Vec::new();
    if let Some(sort) = paging.sort {
        let sort = sort.to_possible_value().expect("not skipped");
        query.push(format!("sort={}", sort.get_name()));
    }
    if let Some(order) = paging.order {
        let order = order.to_possible_value().expect("not skipped");
        query.push(format!("order={}", order.get_name()));
    }
    let mut rows = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let wanted = paging.limit.map_or(PAGE, |l| (l - rows.len()).min(PAGE));
        let mut params = query.clone();
        params.push(format!("limit={wanted}"));
        if let Some(token) = &token {
            params.push(format!("page={token}"));
        }
        let page = api
            .call(Method::GET, &format!("{path}?{}", params.join("&")), None)
            .await?;
        rows.extend(page[key].as_array().cloned().unwrap_or_default());
        token = page["next"].as_str().map(str::to_string);
        let enough = paging.limit.is_some_and(|l| rows.len() >= l);
        if token.is_none() || enough || wanted == 0 {
            return Ok(rows);
        }
    }
}

pub async fn repo(api: &ApiArgs, command: RepoCommand) -> anyhow::Result<()> {
    let (project, paging) = match command {
        RepoCommand::List { project, paging } => (project, paging),
        RepoCommand::Delete { repository, yes } => {
            return crate::admin::delete_repository(api, &repository, yes).await
        }
    };
    let path = format!("/api/v1/projects/{project}/repositories");
    let repositories = fetch_all(api, &path, "repositories", &paging).await?;
    if api.json {
        print_json(&json!({ "repositories": repositories }));
        return Ok(());
    }
    let now = now();
    let rows = repositories
        .iter()
        .map(|r| {
            vec![
                text(&r["name"]),
                text(&r["artifacts"]),
                size(&r["size_bytes"]),
                ago(&r["last_pushed_at"], now),
                ago(&r["last_pulled_at"], now),
                text(&r["pulls"]),
            ]
        })
        .collect();
    table(
        &["name", "artifacts", "size", "pushed", "pulled", "pulls"],
        rows,
    );
    Ok(())
}

pub async fn artifact(api: &ApiArgs, command: ArtifactCommand) -> anyhow::Result<()> {
    match command {
        ArtifactCommand::List { repository, paging } => {
            let path = format!("{}/artifacts", repository_path(&repository));
            let artifacts = fetch_all(api, &path, "artifacts", &paging).await?;
            if api.json {
                print_json(&json!({ "artifacts": artifacts }));
                return Ok(());
            }
            let now = now();
            let rows = artifacts
                .iter()
                .map(|a| {
                    vec![
                        short_digest(&a["digest"]),
                        text(&a["tags"]),
                        platforms(&a["platforms"]),
                        size(&a["size_bytes"]),
                        ago(&a["pushed_at"], now),
                        ago(&a["last_pulled_at"], now),
                        text(&a["pulls"]),
                        referrer_kinds(&a["referrers"]),
                        signed(&a["signature"]),
                    ]
                })
                .collect();
            table(
                &[
                    "digest",
                    "tags",
                    "platforms",
                    "size",
                    "pushed",
                    "pulled",
                    "pulls",
                    "referrers",
                    "signed",
                ],
                rows,
            );
        }
        ArtifactCommand::Delete { reference, yes } => {
            let (repository, artifact) = split_reference(&reference)?;
            crate::admin::confirm(
                &format!("Delete {reference} with all its tags? It cannot be undone."),
                yes,
            )?;
            let path = format!("{}/artifacts/{artifact}", repository_path(repository));
            api.call(Method::DELETE, &path, None).await?;
            let deleted = json!({ "deleted": reference });
            crate::admin::done(api, &deleted, &format!("deleted {reference} with its tags"));
        }
        ArtifactCommand::Untag { reference } => {
            let (repository, tag) = match reference.split_once('@') {
                Some(_) => None,
                None => split_reference(&reference).ok(),
            }
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{reference:?} names no tag: give REPOSITORY:TAG, e.g. team/app:dev-latest"
                )
            })?;
            let path = format!("{}/artifacts/{tag}/tags/{tag}", repository_path(repository));
            api.call(Method::DELETE, &path, None).await?;
            let removed = json!({ "removed_tag": reference });
            crate::admin::done(api, &removed, &format!("removed the tag {reference}"));
        }
        ArtifactCommand::Show { reference } => {
            let (repository, reference) = split_reference(&reference)?;
            let path = format!("{}/artifacts/{reference}", repository_path(repository));
            let a = api.call(Method::GET, &path, None).await?;
            if api.json {
                print_json(&a);
                return Ok(());
            }
            let now = now();
            println!("{repository}@{}", text(&a["digest"]));
            println!("  media type:    {}", text(&a["media_type"]));
            println!("  artifact type: {}", text(&a["artifact_type"]));
            println!("  tags:          {}", text(&a["tags"]));
            println!("  size:          {}", size(&a["size_bytes"]));
            println!("  pushed:        {}", ago(&a["pushed_at"], now));
            println!("  last pulled:   {}", ago(&a["last_pulled_at"], now));
            println!("  pulls:         {}", text(&a["pulls"]));
            let signature = &a["signature"];
            if !signature.is_null() {
                let when = match signature["signed_at"] {
                    Value::Null => String::new(),
                    ref at => format!(", pushed {}", ago(at, now)),
                };
                match signature["key"].as_str() {
                    Some(key) => println!("  signed:        trusted, by {key}{when}"),
                    None => println!("  signed:        {}", signed(signature)),
                }
            }
            let platforms = a["platforms"].as_array().cloned().unwrap_or_default();
            if !platforms.is_empty() {
                println!("  platforms:");
                for p in &platforms {
                    println!("    {:<16} {}", platform(p), text(&p["digest"]));
                }
            }
            let referrers = a["referrers"].as_array().cloned().unwrap_or_default();
            if !referrers.is_empty() {
                println!("  referrers:");
                for r in &referrers {
                    let tag = r["tag"]
                        .as_str()
                        .map(|t| format!("  ({t})"))
                        .unwrap_or_default();
                    println!(
                        "    {}  {}{tag}",
                        text(&r["digest"]),
                        text(&r["artifact_type"])
                    );
                }
            }
        }
    }
    Ok(())
}

/// `team/app:v1` → (`team/app`, `v1`); `team/app@sha256:…` → (`team/app`, `sha256:…`).
fn split_reference(input: &str) -> anyhow::Result<(&str, &str)> {
    let split = match input.split_once('@') {
        Some(split) => Some(split),
        None => input.rsplit_once(':').filter(|(_, tag)| !tag.contains('/')),
    };
    match split {
        Some((repository, reference)) if !repository.is_empty() && !reference.is_empty() => {
            Ok((repository, reference))
        }
        _ => anyhow::bail!(
            "{input:?} names no artifact: give REPOSITORY:TAG or REPOSITORY@DIGEST, \
             e.g. team/app:v1 (see `gantry artifact list team/app`)"
        ),
    }
}

/// The SIGNED column: `trusted sha256:1a2b3c4d`, `untrusted`, `other digest`, `unsigned`;
/// `-` for what a signing policy does not check.
fn signed(signature: &Value) -> String {
    match (signature["state"].as_str(), signature["key"].as_str()) {
        (Some("trusted"), Some(key)) => {
            format!("trusted {}", key.chars().take(15).collect::<String>())
        }
        (Some(state), _) => state.replace('_', " "),
        (None, _) => "-".into(),
    }
}

pub(crate) fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

pub(crate) fn size(value: &Value) -> String {
    value
        .as_u64()
        .map_or_else(|| text(value), gantry_oci::size::format)
}

/// `5 minutes ago`; `never` for null.
pub(crate) fn ago(value: &Value, now: i64) -> String {
    let Some(at) = value.as_i64() else {
        return "never".into();
    };
    let secs = (now - at).max(0);
    let (count, unit) = match secs {
        0..60 => return "just now".into(),
        60..3_600 => (secs / 60, "minute"),
        3_600..86_400 => (secs / 3_600, "hour"),
        86_400..2_592_000 => (secs / 86_400, "day"),
        2_592_000..31_536_000 => (secs / 2_592_000, "month"),
        _ => (secs / 31_536_000, "year"),
    };
    let plural = if count == 1 { "" } else { "s" };
    format!("{count} {unit}{plural} ago")
}

/// `sha256:4f3c2a1b9d8e` (12 hex digits, as `docker images` shows ids).
fn short_digest(value: &Value) -> String {
    let digest = text(value);
    match digest.split_once(':') {
        Some((algorithm, hex)) => format!("{algorithm}:{}", &hex[..hex.len().min(12)]),
        None => digest,
    }
}

/// `linux/arm64/v8`.
fn platform(p: &Value) -> String {
    [&p["os"], &p["architecture"], &p["variant"]]
        .into_iter()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join("/")
}

fn platforms(value: &Value) -> String {
    let all: Vec<String> = value
        .as_array()
        .into_iter()
        .flatten()
        .map(platform)
        .collect();
    if all.is_empty() {
        "-".into()
    } else {
        all.join(",")
    }
}

/// `signature,sbom`: what the referrers are, by artifact type.
fn referrer_kinds(value: &Value) -> String {
    let kinds: Vec<&str> = value
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| match r["artifact_type"].as_str().unwrap_or("") {
            t if t.contains("sig") => "signature",
            t if t.contains("spdx") || t.contains("cyclonedx") || t.contains("sbom") => "sbom",
            "" => "other",
            t => t,
        })
        .collect();
    if kinds.is_empty() {
        "-".into()
    } else {
        kinds.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_at_the_digest_or_the_last_colon_outside_the_path() {
        assert_eq!(split_reference("team/app:v1").unwrap(), ("team/app", "v1"));
        assert_eq!(
            split_reference("team/app@sha256:abc").unwrap(),
            ("team/app", "sha256:abc")
        );
        assert!(split_reference("team/app").is_err());
        assert!(split_reference("team/app:").is_err());
    }

    #[test]
    fn times_read_as_how_long_ago() {
        assert_eq!(ago(&Value::Null, 1000), "never");
        assert_eq!(ago(&json!(990), 1000), "just now");
        assert_eq!(ago(&json!(1000 - 120), 1000), "2 minutes ago");
        assert_eq!(ago(&json!(1000 - 3_600), 1000 + 1), "1 hour ago");
    }
}
