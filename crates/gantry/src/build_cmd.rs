//! `gantry build`: a Go main package into a minimal image, pushed to a registry or written to
//! an OCI layout.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;
use gantry_build::{git, image::rfc3339, BuildOptions, Platform, DEFAULT_LDFLAGS};
use gantry_client::{ImageRef, Layout};
use gantry_oci::Descriptor;

use crate::RemoteArgs;

#[derive(Args)]
pub struct BuildArgs {
    /// The Go main package, relative to --dir [default: .].
    #[arg(default_value = ".")]
    package: String,
    /// Where the image goes: REGISTRY/PROJECT/NAME[:TAG]. NAME is also the binary's name.
    #[arg(long)]
    image: String,
    /// Tags, comma-separated, or `auto`: v1.2.0 for a release tag at HEAD, commit-<sha> always,
    /// dev-latest on a non-release branch. `latest` is never added implicitly.
    #[arg(long, value_delimiter = ',')]
    tags: Vec<String>,
    /// Target platforms, comma-separated; several give one image per platform under an index.
    #[arg(long, value_delimiter = ',', default_value = "linux/amd64")]
    platform: Vec<String>,
    /// The module directory to build in.
    #[arg(short = 'C', long, default_value = ".")]
    dir: PathBuf,
    /// The Go toolchain.
    #[arg(long, env = "GANTRY_GO", default_value = "go")]
    go: PathBuf,
    /// Linker flags.
    #[arg(long, default_value = DEFAULT_LDFLAGS, allow_hyphen_values = true)]
    ldflags: String,
    /// CA certificates to put in the image.
    #[arg(long, default_value = "/etc/ssl/certs/ca-certificates.crt")]
    ca_file: PathBuf,
    /// Also copy the time zone database (/usr/share/zoneinfo).
    #[arg(long)]
    with_tzdata: bool,
    /// The org.opencontainers.image.source label, e.g. https://github.com/acme/payments.
    #[arg(long)]
    source: Option<String>,
    /// Write an OCI image layout to this directory instead of pushing.
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,
    #[command(flatten)]
    remote: RemoteArgs,
}

/// The tags to give the image: `--tags`, `auto` from git, or the one in `--image`.
fn tags(args: &BuildArgs, image: &ImageRef) -> anyhow::Result<Vec<String>> {
    let explicit_in_image = args
        .image
        .rsplit('/')
        .next()
        .is_some_and(|last| last.contains(':') || last.contains('@'));
    let tags = match args.tags.as_slice() {
        [auto] if auto == "auto" => git::tags_for(&args.dir).with_context(|| {
            format!(
                "--tags auto needs a git checkout, and {} is not one",
                args.dir.display()
            )
        })?,
        [] if explicit_in_image => vec![image.reference.clone()],
        [] => bail!(
            "give the image a tag: --image {}:v1.0.0, --tags v1.0.0 or --tags auto (latest is never implied)",
            args.image
        ),
        given => given.to_vec(),
    };
    for tag in &tags {
        gantry_oci::Tag::parse(tag).with_context(|| format!("tag {tag:?} is invalid"))?;
    }
    Ok(tags)
}

/// SOURCE_DATE_EPOCH, else the commit time, else the epoch: never the clock.
fn source_date(dir: &std::path::Path) -> anyhow::Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not Unix seconds")),
        Err(_) => Ok(git::commit_time(dir).unwrap_or(0)),
    }
}

pub async fn run(args: BuildArgs) -> anyhow::Result<()> {
    let image = ImageRef::parse(&args.image)?;
    let tags = tags(&args, &image)?;
    let platforms: Vec<Platform> = args
        .platform
        .iter()
        .map(|p| p.parse())
        .collect::<Result<_, _>>()?;
    let name = image
        .repository
        .as_str()
        .rsplit('/')
        .next()
        .unwrap_or("app")
        .to_string();
    let date = source_date(&args.dir)?;
    let mut labels = BTreeMap::new();
    labels.insert("org.opencontainers.image.created".into(), rfc3339(date));
    labels.insert("org.opencontainers.image.title".into(), name.clone());
    if let Some(revision) = git::revision(&args.dir) {
        labels.insert("org.opencontainers.image.revision".into(), revision);
    }
    if let Some(source) = &args.source {
        labels.insert("org.opencontainers.image.source".into(), source.clone());
    }
    if let Some(version) = tags.iter().find(|t| git::is_release(t)) {
        labels.insert("org.opencontainers.image.version".into(), version.clone());
    }
    let options = BuildOptions {
        go: args.go.clone(),
        dir: args.dir.clone(),
        package: args.package.clone(),
        name,
        platforms,
        ldflags: args.ldflags.clone(),
        ca_file: args.ca_file.clone(),
        tzdata: args
            .with_tzdata
            .then(|| PathBuf::from("/usr/share/zoneinfo")),
        source_date: date,
        labels,
    };

    let temp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let layout_dir = args
        .output
        .clone()
        .unwrap_or_else(|| temp.path().join("layout"));
    let layout = Layout::create(&layout_dir)?;
    let scratch = temp.path().to_path_buf();
    for platform in &options.platforms {
        eprintln!("building {} for {platform}", options.package);
    }
    let built = {
        let (options, layout) = (options.clone(), layout.clone());
        tokio::task::spawn_blocking(move || gantry_build::build(&options, &layout, &scratch))
            .await
            .context("the build task failed")??
    };
    let top = Descriptor {
        media_type: built.media_type.clone(),
        digest: built.digest.clone(),
        size: built.size,
        artifact_type: None,
        annotations: None,
        platform: None,
    };
    for tag in &tags {
        layout.add_to_index(top.clone(), tag)?;
    }
    let sbom_name = |p: &Platform| format!("sbom-{}", p.to_string().replace('/', "-"));
    for p in &built.platforms {
        let sbom = Descriptor {
            media_type: gantry_oci::media_type::OCI_MANIFEST.into(),
            digest: p.sbom.clone(),
            size: p.sbom_size,
            artifact_type: Some(gantry_build::image::SPDX_MEDIA_TYPE.into()),
            annotations: None,
            platform: None,
        };
        layout.add_to_index(sbom, &sbom_name(&p.platform))?;
        eprintln!(
            "  {}: binary {} bytes, manifest {}",
            p.platform, p.binary_size, p.manifest
        );
    }

    if let Some(dir) = &args.output {
        println!(
            "built {} ({}) into {} as {}",
            image.repository,
            built.digest,
            dir.display(),
            tags.join(", ")
        );
        return Ok(());
    }
    let client = args.remote.client(&image)?;
    let bar = crate::progress::Bars::new(args.remote.quiet);
    for tag in &tags {
        let destination = ImageRef {
            reference: tag.clone(),
            ..image.clone()
        };
        gantry_client::push_layout(&layout, Some(tag), &client, &destination, bar.clone()).await?;
    }
    for p in &built.platforms {
        let destination = ImageRef {
            reference: p.sbom.to_string(),
            ..image.clone()
        };
        let progress: Arc<dyn gantry_client::Progress> = Arc::new(gantry_client::Silent);
        gantry_client::push_layout(
            &layout,
            Some(&sbom_name(&p.platform)),
            &client,
            &destination,
            progress,
        )
        .await?;
    }
    bar.finish(&format!(
        "pushed {}/{} ({}) as {}, with an SPDX SBOM per platform",
        image.registry,
        image.repository,
        built.digest,
        tags.join(", ")
    ));
    Ok(())
}
