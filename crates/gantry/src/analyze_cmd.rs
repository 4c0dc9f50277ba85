//! `gantry analyze`: where the bytes of an image go, from a registry or an OCI layout.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use futures::StreamExt;
use gantry_client::{FetchedManifest, ImageRef, Layout, RegistryClient};
use gantry_inspect::analyze::{self, Report};
use gantry_oci::manifest::{ManifestKind, ParsedManifest};
use gantry_oci::{size, Descriptor, Digest};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

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

/// An image's manifest, config and layer files, ready to analyze.
struct Fetched {
    name: String,
    digest: Digest,
    config: Value,
    /// Each layer's descriptor and the file holding its blob.
    layers: Vec<(Descriptor, PathBuf)>,
}

/// The child of an image index for `platform`, as its descriptor.
fn pick_platform(index: &ManifestAt, platform: &str) -> anyhow::Result<Descriptor> {
    let wanted: gantry_inspect::Platform = platform.parse()?;
    let doc: Value = serde_json::from_slice(&index.manifest.bytes)?;
    let digest = gantry_inspect::select_platform(&doc, &wanted).with_context(|| {
        format!("the image has no {platform} manifest; choose one with --platform")
    })?;
    index
        .parsed
        .manifests
        .iter()
        .find(|child| child.digest == digest)
        .cloned()
        .context("the index's platform entry is not one of its manifests")
}

/// A manifest as fetched, with what it references.
struct ManifestAt {
    manifest: FetchedManifest,
    parsed: ParsedManifest,
}

/// Where `gantry analyze` reads an image from.
enum Source {
    Layout(Layout),
    Registry {
        client: RegistryClient,
        repository: String,
    },
}

impl Source {
    /// The manifest `reference`; `claimed_type` is the media type of the descriptor that named
    /// it (a layout's index.json, an index's child), which says what a manifest without a
    /// `mediaType` field is.
    async fn manifest(
        &self,
        reference: &str,
        claimed_type: Option<&str>,
    ) -> anyhow::Result<ManifestAt> {
        let mut manifest = match self {
            Source::Layout(layout) => {
                layout
                    .read_manifest(&reference.parse()?, claimed_type)
                    .await?
            }
            Source::Registry { client, repository } => {
                client.get_manifest(repository, reference).await?
            }
        };
        let parsed = manifest
            .parse(claimed_type)
            .with_context(|| format!("manifest {}", manifest.digest))?;
        Ok(ManifestAt { manifest, parsed })
    }

    /// A blob as a file: the layout's own, or downloaded (verified) to `path`.
    async fn blob_file(&self, digest: &Digest, path: PathBuf) -> anyhow::Result<PathBuf> {
        match self {
            Source::Layout(layout) => Ok(layout.blob_path(digest)),
            Source::Registry { client, repository } => {
                download(client, repository, digest, &path).await?;
                Ok(path)
            }
        }
    }
}

/// Splits `oci:DIR[:TAG]` (or an existing directory, `DIR[:TAG]` as `gantry push` takes it)
/// from registry references.
fn layout_source(arg: &str) -> Option<(PathBuf, Option<String>)> {
    let existing_dir = |path: &str| Path::new(path).is_dir();
    let rest = match arg.strip_prefix("oci:") {
        Some(rest) => rest,
        None if existing_dir(arg)
            || arg
                .rsplit_once(':')
                .is_some_and(|(dir, _)| existing_dir(dir)) =>
        {
            arg
        }
        None => return None,
    };
    match rest.rsplit_once(':') {
        Some((dir, tag)) if !tag.contains('/') && !dir.is_empty() => {
            Some((PathBuf::from(dir), Some(tag.to_string())))
        }
        _ => Some((PathBuf::from(rest), None)),
    }
}

async fn fetch(args: &AnalyzeArgs, arg: &str, temp: &Path) -> anyhow::Result<Fetched> {
    let (source, reference, claimed_type) = match layout_source(arg) {
        Some((dir, tag)) => {
            let layout = Layout::open(&dir)?;
            let top = layout.find(tag.as_deref())?;
            (
                Source::Layout(layout),
                top.digest.to_string(),
                Some(top.media_type),
            )
        }
        None => {
            let image = ImageRef::parse(arg)?;
            let client = args.remote.client(&image)?;
            let source = Source::Registry {
                client,
                repository: image.repository.as_str().to_string(),
            };
            (source, image.reference.clone(), None)
        }
    };
    let mut top = source.manifest(&reference, claimed_type.as_deref()).await?;
    if top.parsed.kind == ManifestKind::Index {
        let child = pick_platform(&top, &args.platform)?;
        top = source
            .manifest(&child.digest.to_string(), Some(&child.media_type))
            .await?;
    }
    let config = top
        .parsed
        .config
        .as_ref()
        .context("the manifest has no config")?;
    let config = source
        .blob_file(&config.digest, temp.join("config"))
        .await?;
    let config = serde_json::from_slice(&std::fs::read(config)?)?;
    let mut layers = Vec::new();
    for (i, layer) in top.parsed.layers.iter().enumerate() {
        let path = source
            .blob_file(&layer.digest, temp.join(format!("layer{i}")))
            .await?;
        layers.push((layer.clone(), path));
    }
    Ok(Fetched {
        name: arg.to_string(),
        digest: top.manifest.digest,
        config,
        layers,
    })
}

/// Streams a blob (verified against its digest) to a file.
async fn download(
    client: &RegistryClient,
    repo: &str,
    digest: &Digest,
    path: &Path,
) -> anyhow::Result<PathBuf> {
    let mut stream = gantry_client::verify(digest.clone(), client.get_blob(repo, digest).await?);
    let mut file = tokio::fs::File::create(path).await?;
    while let Some(chunk) = stream.next().await {
        file.write_all(&chunk?).await?;
    }
    file.flush().await?;
    Ok(path.to_path_buf())
}

fn analyze_fetched(fetched: &Fetched) -> anyhow::Result<Report> {
    let history: Vec<Option<String>> = fetched.config["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h["empty_layer"] != true)
        .map(|h| h["created_by"].as_str().map(str::to_string))
        .collect();
    let entrypoint = fetched.config["config"]["Entrypoint"][0]
        .as_str()
        .or(fetched.config["config"]["Cmd"][0].as_str())
        .map(str::to_string);
    let mut layers = Vec::new();
    for (i, (layer, path)) in fetched.layers.iter().enumerate() {
        let file = std::fs::File::open(path)
            .with_context(|| format!("cannot read layer {} at {}", layer.digest, path.display()))?;
        layers.push(analyze::LayerInput {
            digest: layer.digest.to_string(),
            media_type: layer.media_type.clone(),
            compressed: layer.size,
            created_by: history.get(i).cloned().flatten(),
            blob: std::io::BufReader::new(file),
        });
    }
    analyze::analyze(layers, entrypoint.as_deref())
        .with_context(|| format!("cannot read the layers of {}", fetched.name))
}

fn signed(delta: i64) -> String {
    let sign = if delta < 0 { "-" } else { "+" };
    format!("{sign}{}", size::format(delta.unsigned_abs()))
}

fn print_report(fetched: &Fetched, report: &Report) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `gantry analyze ./layout:v1` was taken for a registry named "." ("cannot reach
    /// registry https://."), although `gantry push` takes the same argument as a layout.
    #[test]
    fn existing_layout_directory_with_a_tag_is_read_as_a_layout() {
        let dir = tempfile::tempdir().unwrap();
        let layout = dir.path().join("layout");
        std::fs::create_dir(&layout).unwrap();
        let with_tag = format!("{}:v1", layout.display());
        assert_eq!(
            layout_source(&with_tag),
            Some((layout.clone(), Some("v1".to_string())))
        );
        assert_eq!(
            layout_source(layout.to_str().unwrap()),
            Some((layout.clone(), None))
        );
        assert_eq!(layout_source("127.0.0.1:5000/team/app:v1"), None);
    }
}
