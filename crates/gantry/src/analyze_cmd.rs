//! `gantry analyze`: where the bytes of an image go, from a registry or an OCI layout.

use std::path::Path;

use anyhow::{bail, Context};
use clap::Args;
use gantry_inspect::analyze::{self, Report};
use gantry_oci::manifest::ManifestKind;
use gantry_oci::size;
use serde_json::json;

use crate::image_source::{pick_platform, FetchedImage, Opened, Source};
use crate::RemoteArgs;

#[derive(Args)]
pub struct AnalyzeArgs {
    /// The image: REGISTRY/REPOSITORY[:TAG|@DIGEST], or an OCI layout as oci:DIR[:TAG].
    image: String,
    /// A second image to compare with the first (what grew, what shrank).
    compare: Option<String>,
    /// Fail (exit 1) when the compressed image is larger, e.g. 10MB or 9.5MiB.
    #[arg(long)]
    budget: Option<String>,
    /// The platform to analyze in a multi-platform image.
    #[arg(long, default_value = "linux/amd64")]
    platform: String,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: RemoteArgs,
}

fn analyze_fetched(fetched: &FetchedImage) -> anyhow::Result<Report> {
    let entrypoint = fetched.config["config"]["Entrypoint"][0]
        .as_str()
        .or(fetched.config["config"]["Cmd"][0].as_str())
        .map(str::to_string);
    analyze::analyze(fetched.layer_inputs()?, entrypoint.as_deref())
        .with_context(|| format!("cannot read the layers of {}", fetched.name))
}

/// The image `arg` (for an index, its `--platform` manifest), blobs downloaded under `temp`.
async fn fetch(args: &AnalyzeArgs, arg: &str, temp: &Path) -> anyhow::Result<FetchedImage> {
    let Opened { source, mut top } = Source::open(arg, &args.remote).await?;
    if top.parsed.kind == ManifestKind::Index {
        let child = pick_platform(&top, &args.platform)?;
        top = source
            .manifest(&child.digest.to_string(), Some(&child.media_type))
            .await?;
    }
    source.fetch_image(arg, &top, temp).await
}

fn signed(delta: i64) -> String {
    let sign = if delta < 0 { "-" } else { "+" };
    format!("{sign}{}", size::format(delta.unsigned_abs()))
}

fn print_report(fetched: &FetchedImage, report: &Report) {
    println!("{} ({})", fetched.name, fetched.digest);
    println!(
        "{:<6} {:>11} {:>13} {:>6}  CREATED BY",
        "LAYER", "COMPRESSED", "UNCOMPRESSED", "FILES"
    );
    for (i, layer) in report.layers.iter().enumerate() {
        println!(
            "{i:<6} {:>11} {:>13} {:>6}  {}",
            size::format(layer.compressed),
            size::format(layer.uncompressed),
            layer.files,
            layer.created_by.as_deref().unwrap_or("-")
        );
    }
    println!(
        "{:<6} {:>11} {:>13}",
        "total",
        size::format(report.compressed),
        size::format(report.uncompressed)
    );
    println!("\nLargest files:");
    for f in &report.largest {
        println!(
            "  {:>10}  /{} (layer {})",
            size::format(f.size),
            f.path,
            f.layer
        );
    }
    println!(
        "\nWasted: {} in {} files overwritten or deleted by later layers",
        size::format(report.wasted_bytes),
        report.wasted.len()
    );
    for w in report.wasted.iter().take(10) {
        println!(
            "  {:>10}  /{} (layer {}, {} by layer {})",
            size::format(w.size),
            w.path,
            w.layer,
            w.how,
            w.by
        );
    }
    match &report.binary {
        Some(b) if b.elf => println!(
            "\nBinary {}: {}, {}, {}{}",
            b.path,
            size::format(b.size),
            if b.static_linked == Some(true) {
                "static"
            } else {
                "dynamically linked (needs a libc in the image)"
            },
            if b.stripped == Some(true) {
                "stripped"
            } else {
                "not stripped (build with -ldflags=\"-s -w\")"
            },
            match (&b.go_version, b.modules) {
                (Some(v), Some(m)) => format!(", {v}, {m} dependency modules"),
                _ => ", not a Go binary".to_string(),
            }
        ),
        Some(b) => println!(
            "\nEntrypoint {}: not an ELF binary ({})",
            b.path,
            size::format(b.size)
        ),
        None => println!("\nEntrypoint: not found in the image"),
    }
}

pub async fn run(args: AnalyzeArgs) -> anyhow::Result<()> {
    let temp = tempfile::tempdir()?;
    let first_dir = temp.path().join("a");
    std::fs::create_dir(&first_dir)?;
    let first = fetch(&args, &args.image, &first_dir).await?;
    let report = tokio::task::block_in_place(|| analyze_fetched(&first))?;
    if let Some(other) = &args.compare {
        let second_dir = temp.path().join("b");
        std::fs::create_dir(&second_dir)?;
        let second = fetch(&args, other, &second_dir).await?;
        let after = tokio::task::block_in_place(|| analyze_fetched(&second))?;
        let diff = analyze::compare(&report, &after);
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &json!({"before": report, "after": after, "comparison": diff})
                )?
            );
        } else {
            println!("{} → {}", first.name, second.name);
            println!(
                "compressed {} ({} → {}), uncompressed {}",
                signed(diff.compressed_delta),
                size::format(report.compressed),
                size::format(after.compressed),
                signed(diff.uncompressed_delta)
            );
            for (path, before, now) in diff.changed.iter().take(20) {
                println!(
                    "  {:>11}  /{path} ({} → {})",
                    signed(*now as i64 - *before as i64),
                    size::format(*before),
                    size::format(*now)
                );
            }
        }
        return Ok(());
    }
    let budget = match &args.budget {
        Some(text) => Some(size::parse(text).with_context(|| {
            format!("budget {text:?} is not a size such as 10MB, 9.5MiB or 500KB")
        })?),
        None => None,
    };
    if args.json {
        let mut doc = serde_json::to_value(&report)?;
        doc["image"] = json!(first.name);
        doc["digest"] = json!(first.digest.to_string());
        if let Some(budget) = budget {
            doc["budget"] = json!({"bytes": budget, "within": report.compressed <= budget});
        }
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print_report(&first, &report);
        if let Some(budget) = budget {
            let verdict = if report.compressed <= budget {
                "within"
            } else {
                "OVER"
            };
            println!(
                "\nBudget {}: {verdict} ({} compressed, {:.0}%)",
                size::format(budget),
                size::format(report.compressed),
                report.compressed as f64 * 100.0 / budget.max(1) as f64
            );
        }
    }
    if let Some(budget) = budget.filter(|b| report.compressed > *b) {
        bail!(
            "the image is {} compressed, over the budget of {}",
            size::format(report.compressed),
            size::format(budget)
        );
    }
    Ok(())
}
