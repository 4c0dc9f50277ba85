//! `gantry usage`: how projects and their images grow and are used over time, read from the
//! server's daily snapshots (`GET /api/v1/usage`), and `gantry usage snapshot` to take
//! today's now (`POST /api/v1/usage/snapshots`).

use clap::Subcommand;
use gantry_oci::size;
use reqwest::Method;
use serde_json::Value;

use crate::admin::{print_json, table, ApiArgs};

#[derive(Subcommand)]
pub enum UsageCommand {
    /// Take today's snapshot now (system administrators); it replaces one taken earlier
    /// today. The server takes one by itself each day.
    Snapshot,
}

/// The longest window: a hundred years, as the API allows.
const LONGEST_WINDOW_DAYS: u64 = 36_500;

/// Parses a window: `7d`, `30d`, `12w` (or a number of days) into days.
pub fn parse_window(text: &str) -> Result<u32, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "d"),
    };
    let per_unit = match unit {
        "d" => 1,
        "w" => 7,
        _ => {
            return Err(format!(
                "{text:?} is not a window: give days or weeks, e.g. 7d, 30d or 12w"
            ))
        }
    };
    let days = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(per_unit))
        .ok_or_else(|| format!("{text:?} is not a window: give a number then d or w, e.g. 30d"))?;
    if days > LONGEST_WINDOW_DAYS {
        return Err(format!(
            "{text:?} is too long a window: give at most {LONGEST_WINDOW_DAYS}d"
        ));
    }
    Ok(days as u32)
}

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// One bar per value, scaled between the smallest and the largest (all `▁` when they are
/// equal).
pub fn sparkline(values: &[i64]) -> String {
    let (Some(min), Some(max)) = (values.iter().min(), values.iter().max()) else {
        return String::new();
    };
    let span = (max - min) as f64;
    values
        .iter()
        .map(|v| {
            if span == 0.0 {
                BARS[0]
            } else {
                let level = ((v - min) as f64 / span * (BARS.len() - 1) as f64).round();
                BARS[level as usize]
            }
        })
        .collect()
}

fn bytes_of(value: &Value) -> String {
    size::format(value.as_i64().unwrap_or(0).max(0) as u64)
}

/// `+27.1 MB`, `-3.0 KB`, `+0 B`.
fn signed_bytes(delta: i64) -> String {
    let sign = if delta < 0 { '-' } else { '+' };
    format!("{sign}{}", size::format(delta.unsigned_abs()))
}

/// `+234%`, or `new` when there was nothing before.
fn percent(first: i64, last: i64) -> String {
    if first <= 0 {
        return "new".into();
    }
    format!("{:+.0}%", (last - first) as f64 * 100.0 / first as f64)
}

fn int(value: &Value) -> i64 {
    value.as_i64().unwrap_or(0)
}

fn print_report(report: &Value) {
    println!(
        "Usage from {} to {} (UTC days with a snapshot):",
        report["since"].as_str().unwrap_or("?"),
        report["until"].as_str().unwrap_or("?")
    );
    let projects = report["projects"].as_array().cloned().unwrap_or_default();
    if projects.is_empty() {
        println!(
            "  no snapshots in this window yet: the server takes one a day \
             (`gantry usage snapshot` takes today's now)"
        );
        return;
    }
    let width = projects
        .iter()
        .filter_map(|p| p["project"].as_str())
        .map(str::len)
        .max()
        .unwrap_or(0);
    for project in &projects {
        let days = project["days"].as_array().cloned().unwrap_or_default();
        let (Some(first), Some(last)) = (days.first(), days.last()) else {
            continue;
        };
        let bytes: Vec<i64> = days.iter().map(|d| int(&d["bytes"])).collect();
        let (from, to) = (int(&first["bytes"]), int(&last["bytes"]));
        println!(
            "  {:<width$}  {}  {} → {} ({}, {}); artifacts {} → {}; {} pushes, {} pulls",
            project["project"].as_str().unwrap_or("?"),
            sparkline(&bytes),
            bytes_of(&first["bytes"]),
            bytes_of(&last["bytes"]),
            signed_bytes(to - from),
            percent(from, to),
            first["artifacts"],
            last["artifacts"],
            int(&last["pushes"]) - int(&first["pushes"]),
            int(&last["pulls"]) - int(&first["pulls"]),
        );
    }
    let growers = report["growers"].as_array().cloned().unwrap_or_default();
    println!();
    if growers.is_empty() {
        println!("Biggest growers: none grew in this window.");
    } else {
        println!("Biggest growers:");
        let rows = growers
            .iter()
            .map(|g| {
                vec![
                    g["repository"].as_str().unwrap_or("?").to_string(),
                    bytes_of(&g["first_bytes"]),
                    bytes_of(&g["last_bytes"]),
                    format!(
                        "{} ({})",
                        signed_bytes(int(&g["bytes_growth"])),
                        percent(int(&g["first_bytes"]), int(&g["last_bytes"]))
                    ),
                    g["pushes"].to_string(),
                    g["pulls"].to_string(),
                ]
            })
            .collect();
        table(
            &["repository", "from", "to", "growth", "pushes", "pulls"],
            rows,
        );
    }
    let grown: Vec<&Value> = report["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| int(&v["last"]["bytes"]) > int(&v["first"]["bytes"]))
        .collect();
    println!();
    if grown.is_empty() {
        println!("Images that grew between versions: none.");
        return;
    }
    println!("Images that grew between versions (newest image of each version line):");
    for v in grown {
        let (first, last) = (&v["first"], &v["last"]);
        println!(
            "  {}  {} {} → {} {} ({})",
            v["repository"].as_str().unwrap_or("?"),
            first["tag"].as_str().unwrap_or("?"),
            bytes_of(&first["bytes"]),
            last["tag"].as_str().unwrap_or("?"),
            bytes_of(&last["bytes"]),
            percent(int(&first["bytes"]), int(&last["bytes"]))
        );
    }
}

/// `gantry usage [PROJECT] [--since 30d]` or `gantry usage snapshot`.
pub async fn usage(
    args: &ApiArgs,
    command: Option<UsageCommand>,
    project: Option<String>,
    since_days: u32,
) -> anyhow::Result<()> {
    if let Some(UsageCommand::Snapshot) = command {
        let taken = args
            .call(Method::POST, "/api/v1/usage/snapshots", None)
            .await?;
        crate::admin::done(
            args,
            &taken,
            &format!(
                "Usage snapshot of {} taken: {} projects, {} repositories, {} version lines.",
                taken["day"].as_str().unwrap_or("?"),
                taken["projects"],
                taken["repositories"],
                taken["version_lines"]
            ),
        );
        return Ok(());
    }
    let mut path = format!("/api/v1/usage?since_days={since_days}");
    if let Some(project) = &project {
        path.push_str(&format!("&project={project}"));
    }
    let report = args.call(Method::GET, &path, None).await?;
    if args.json {
        print_json(&report);
    } else {
        print_report(&report);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_days_or_weeks() {
        assert_eq!(parse_window("7d"), Ok(7));
        assert_eq!(parse_window("30d"), Ok(30));
        assert_eq!(parse_window("12w"), Ok(84));
        assert_eq!(parse_window("14"), Ok(14));
        for bad in ["", "d", "3m", "1y", "99999999999999999999d", "36501d"] {
            let err = parse_window(bad).unwrap_err();
            assert!(
                err.contains("e.g.") || err.contains("at most"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn sparkline_scales_between_smallest_and_largest() {
        assert_eq!(sparkline(&[0, 1, 2, 3, 4, 5, 6, 7]), "▁▂▃▄▅▆▇█");
        assert_eq!(sparkline(&[9, 9, 9]), "▁▁▁");
        assert_eq!(sparkline(&[10, 40]), "▁█");
        assert_eq!(sparkline(&[]), "");
    }

    #[test]
    fn changes_read_with_sign_and_percent() {
        assert_eq!(signed_bytes(27_100_000), "+27.1 MB");
        assert_eq!(signed_bytes(-3_000), "-3.0 KB");
        assert_eq!(percent(9_000_000, 30_060_000), "+234%");
        assert_eq!(percent(0, 5), "new");
    }
}
