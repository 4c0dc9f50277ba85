//! `gantry scan`: an image's packages and known vulnerabilities, from the registry's own scan
//! or, with `--db`, scanned here against an OSV database (for an OCI layout, or in CI without
//! a Gantry server).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use gantry_client::ImageRef;
use gantry_osv::Severity;
use gantry_registry::known_advisories;
use gantry_scanner::report::{sarif, table};
use gantry_scanner::{assess, ScanReport};
use reqwest::Method;
use serde_json::{json, Value};

use crate::image_source::{Opened, Source};
use crate::{vulndb_cache, RemoteArgs};

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    /// Findings as a table, then counts.
    Table,
    /// The report as JSON: per image, `vulnerabilities[]` and `packages[]`.
    Json,
    /// SARIF 2.1.0, for code-scanning dashboards.
    Sarif,
}

/// `gantry scan --help`.
pub const LONG_ABOUT: &str = "An image's packages and known vulnerabilities.\n\n\
    Without --db, asks the registry for its scan of the image (images are scanned on push and\n\
    again whenever the vulnerability database changes); an image not scanned yet is scanned\n\
    now and waited for. With --db, pulls the image and scans it here against the OSV database\n\
    given (an ecosystem's all.zip, a directory of OSV JSON files, or one file; repeat --db for\n\
    several), which also works for an OCI layout and needs no Gantry server. The --db sources\n\
    are imported once into a prepared database in the cache directory and reused while they\n\
    are unchanged (cache that directory in CI).\n\n\
    Go binaries are read from their build info (modules, replacements, the stdlib version) and\n\
    their function table (whether the vulnerable functions are in the binary: REACHABLE);\n\
    Alpine and Debian packages from the package databases.\n\n\
    Examples:\n    \
    gantry scan 127.0.0.1:5000/team/app:v1.2.0\n    \
    gantry scan oci:./layout:v1 --db osv-go-all.zip --fail-on high --reachable-only\n    \
    gantry scan 127.0.0.1:5000/team/app:v1.2.0 --format sarif > results.sarif";

#[derive(Args)]
pub struct ScanArgs {
    /// The image: REGISTRY/REPOSITORY[:TAG|@DIGEST], or an OCI layout as oci:DIR[:TAG].
    image: String,
    /// Scan here against this OSV database instead of asking the registry (a zip, a
    /// directory or a JSON file; repeat for several).
    #[arg(long)]
    db: Vec<PathBuf>,
    /// Where the --db sources are kept prepared between scans (imported once, rebuilt when
    /// they change) [default: $XDG_CACHE_HOME/gantry, else ~/.cache/gantry].
    #[arg(long, env = "GANTRY_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Prepare the --db sources afresh for this scan only, keeping nothing (whatever
    /// --cache-dir says).
    #[arg(long, requires = "db")]
    no_cache: bool,
    /// What to print.
    #[arg(long, value_enum, default_value = "table")]
    format: Output,
    /// Exit with status 1 when a finding is at or above this severity (critical, high, medium,
    /// low, unknown).
    #[arg(long, value_parser = parse_severity)]
    fail_on: Option<Severity>,
    /// With --fail-on: count only findings whose vulnerable functions are in the binary.
    #[arg(long, requires = "fail_on")]
    reachable_only: bool,
    /// How long to wait for the registry to scan an image it has not scanned yet (e.g. 90s,
    /// 5m).
    #[arg(long, default_value = "5m")]
    wait: String,
    #[command(flatten)]
    remote: RemoteArgs,
}

fn parse_severity(text: &str) -> Result<Severity, String> {
    Severity::from_word(text).ok_or_else(|| {
        format!("{text:?} is not a severity: use critical, high, medium, low or unknown")
    })
}

/// One image's scan: its platform (for an index's child), digest and report.
struct Scanned {
    platform: Option<String>,
    digest: String,
    report: ScanReport,
}

pub async fn run(args: ScanArgs) -> anyhow::Result<()> {
    let scanned = if args.db.is_empty() {
        from_registry(&args).await?
    } else {
        scan_here(&args).await?
    };
    match args.format {
        Output::Table => {
            for image in &scanned {
                match &image.platform {
                    Some(platform) => println!("{} {platform} ({})", args.image, image.digest),
                    None => println!("{} ({})", args.image, image.digest),
                }
                println!("{}", table(&image.report));
            }
        }
        Output::Json => {
            let images: Vec<Value> = scanned
                .iter()
                .map(|image| {
                    let mut doc = serde_json::to_value(&image.report).expect("reports serialize");
                    doc["platform"] = json!(image.platform);
                    doc["digest"] = json!(image.digest);
                    doc
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({"image": args.image, "images": images}))?
            );
        }
        Output::Sarif => {
            let runs: Vec<(Option<String>, &ScanReport)> = scanned
                .iter()
                .map(|image| (image.platform.clone(), &image.report))
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&sarif(&args.image, &runs))?
            );
        }
    }
    if let Some(threshold) = args.fail_on {
        let blocking: Vec<&str> = scanned
            .iter()
            .flat_map(|image| &image.report.vulnerabilities)
            .filter(|f| f.severity >= threshold)
            .filter(|f| !args.reachable_only || f.reachable == Some(true))
            .map(|f| f.id.as_str())
            .collect();
        if !blocking.is_empty() {
            bail!(
                "{} finding(s) at or above {threshold}{}: {}",
                blocking.len(),
                if args.reachable_only {
                    " (reachable)"
                } else {
                    ""
                },
                blocking.join(", ")
            );
        }
    }
    Ok(())
}

/// Pulls the image (each image of an index) and scans it here.
async fn scan_here(args: &ScanArgs) -> anyhow::Result<Vec<Scanned>> {
    let cache_dir = if args.no_cache {
        None
    } else {
        args.cache_dir.clone().or_else(vulndb_cache::default_dir)
    };
    let (database, _temporary) =
        vulndb_cache::open(&args.db, cache_dir.as_deref(), args.remote.quiet).await?;
    let Opened { source, top } = Source::open(&args.image, &args.remote).await?;
    let temp = tempfile::tempdir()?;
    let mut scanned = Vec::new();
    for (index, (platform, manifest)) in source.platforms(top).await?.into_iter().enumerate() {
        if !manifest.parsed.is_container_image() {
            continue;
        }
        let dir = temp.path().join(index.to_string());
        std::fs::create_dir(&dir)?;
        let image = source.fetch_image(&args.image, &manifest, &dir).await?;
        let inventory = tokio::task::block_in_place(|| {
            gantry_scanner::inventory(image.layer_inputs()?)
                .with_context(|| format!("cannot read the layers of {}", image.name))
        })?;
        let advisories = known_advisories(&database, &inventory).await?;
        let findings = assess(&inventory, &advisories);
        scanned.push(Scanned {
            platform,
            digest: image.digest.to_string(),
            report: ScanReport::new(inventory, findings),
        });
    }
    if scanned.is_empty() {
        bail!("{} holds no container image to scan", args.image);
    }
    Ok(scanned)
}

/// The registry's scan of the image, asking for one and waiting when an image has none.
async fn from_registry(args: &ScanArgs) -> anyhow::Result<Vec<Scanned>> {
    let image = ImageRef::parse(&args.image).with_context(|| {
        format!(
            "{}: an OCI layout is scanned here; give its OSV database with --db",
            args.image
        )
    })?;
    let wait = Duration::from_secs(crate::admin::parse_duration(&args.wait)?);
    let client = args.remote.client(&image)?;
    let path = format!(
        "/api/v1/repositories/{}/artifacts/{}",
        image.repository.as_str().replace('/', "%2F"),
        image.reference
    );
    let started = Instant::now();
    let mut asked = false;
    loop {
        let scan = client
            .api(Method::GET, &format!("{path}/vulnerabilities"), None)
            .await?;
        let images = scan["images"].as_array().cloned().unwrap_or_default();
        let pending = images.iter().any(|i| i["status"] == "pending");
        if !pending {
            return images
                .into_iter()
                .filter(|i| i["status"] != "not-an-image")
                .map(|i| {
                    if i["status"] == "failed" {
                        bail!(
                            "the registry could not scan {}: {}",
                            i["digest"],
                            i["error"].as_str().unwrap_or("no reason given")
                        );
                    }
                    Ok(Scanned {
                        platform: i["platform"].as_str().map(str::to_string),
                        digest: i["digest"].as_str().unwrap_or_default().to_string(),
                        report: serde_json::from_value(i).context("the registry's scan report")?,
                    })
                })
                .collect();
        }
        if !asked {
            client
                .api(Method::POST, &format!("{path}/scan"), None)
                .await?;
            asked = true;
        }
        if started.elapsed() > wait {
            bail!(
                "the registry has not scanned {} after {}; try again later or wait longer with --wait",
                args.image,
                args.wait
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
