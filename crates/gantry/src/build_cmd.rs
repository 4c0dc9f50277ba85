//! `gantry build`: a Go main package into a minimal image, pushed to a registry or written to
//! an OCI layout.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;
use gantry_builder::image::{rfc3339, BaseImage};
use gantry_builder::{git, BuildOptions, Platform, DEFAULT_LDFLAGS};
use gantry_client::{ImageRef, Layout};
use gantry_inspect::select_platform;
use gantry_oci::Descriptor;
use serde_json::Value;

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
    /// The org.opencontainers.image.source label [default: the git remote origin's URL].
    #[arg(long)]
    source: Option<String>,
    /// Build on this image (from a registry, e.g. REGISTRY/library/alpine:3.20) instead of
    /// scratch with Gantry's CA-certificates-and-nonroot layer.
    #[arg(long, value_name = "IMAGE")]
    base: Option<String>,
    /// Instead of pushing: write an OCI image layout to DIR, or a tarball for `docker load` /
    /// `podman load` with docker-archive:FILE.tar (one platform).
    #[arg(long, value_name = "DIR|docker-archive:FILE")]
    output: Option<String>,
    /// Sign what is pushed (the index, or the one image) with this cosign private key
    /// (password: COSIGN_PASSWORD), as `gantry sign` does: a cosign v3 bundle.
    #[arg(long, value_name = "FILE", conflicts_with = "output")]
    sign_key: Option<PathBuf>,
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
    // Opened first: a wrong password fails before the build, not after the push.
    let signing_key = args
        .sign_key
        .as_deref()
        .map(crate::signing_cmd::read_signing_key)
        .transpose()?;
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
    if let Some(source) = args.source.clone().or_else(|| git::origin_url(&args.dir)) {
        labels.insert("org.opencontainers.image.source".into(), source);
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
        base: None,
    };

    let temp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let archive = args
        .output
        .as_deref()
        .and_then(|o| o.strip_prefix("docker-archive:"))
        .map(PathBuf::from);
    if archive.is_some() && options.platforms.len() != 1 {
        bail!("a docker-archive holds one platform: give a single --platform");
    }
    let layout_dir = match (&args.output, &archive) {
        (Some(dir), None) => PathBuf::from(dir),
        _ => temp.path().join("layout"),
    };
    let layout = Layout::create(&layout_dir)?;
    let mut options = options;
    if let Some(base) = &args.base {
        options.base = Some(resolve_base(&args, base, &layout, &options.platforms).await?);
    }
    let scratch = temp.path().to_path_buf();
    for platform in &options.platforms {
        eprintln!("building {} for {platform}", options.package);
    }
    let built = {
        let (options, layout) = (options.clone(), layout.clone());
        tokio::task::spawn_blocking(move || gantry_builder::build(&options, &layout, &scratch))
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
            artifact_type: Some(gantry_builder::image::SPDX_MEDIA_TYPE.into()),
            annotations: None,
            platform: None,
        };
        layout.add_to_index(sbom, &sbom_name(&p.platform))?;
        eprintln!(
            "  {}: binary {} bytes, manifest {}",
            p.platform, p.binary_size, p.manifest
        );
    }

    if let Some(file) = &archive {
        write_docker_archive(&layout, &layout_dir, &built, &image, &tags, file)?;
        println!(
            "built {} ({}) into {} for docker load / podman load, as {}",
            image.repository,
            built.digest,
            file.display(),
            tags.join(", ")
        );
        return Ok(());
    }
    if let Some(dir) = &args.output {
        println!(
            "built {} ({}) into {} as {}",
            image.repository,
            built.digest,
            dir,
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
    let mut signed = String::new();
    if let Some(key) = &signing_key {
        let pushed = ImageRef {
            reference: built.digest.to_string(),
            ..image.clone()
        };
        let format = crate::signing_cmd::SignatureFormat::Bundle;
        crate::signing_cmd::sign_image(&client, &pushed, key, format).await?;
        signed = format!(", signed by {}", key.trusted().fingerprint());
    }
    bar.finish(&format!(
        "pushed {}/{} ({}) as {}, with an SPDX SBOM per platform{signed}",
        image.registry,
        image.repository,
        built.digest,
        tags.join(", ")
    ));
    Ok(())
}

/// Pulls the base image into the layout and reads, per platform, its layers and config.
async fn resolve_base(
    args: &BuildArgs,
    base: &str,
    layout: &Layout,
    platforms: &[Platform],
) -> anyhow::Result<Vec<(Platform, BaseImage)>> {
    const BASE_NAME: &str = "gantry-base";
    let base_ref = ImageRef::parse(base)?;
    let client = args.remote.client(&base_ref)?;
    eprintln!("pulling base image {base}");
    gantry_client::pull_to_layout(
        &client,
        &base_ref,
        layout,
        BASE_NAME,
        Arc::new(gantry_client::Silent),
    )
    .await
    .with_context(|| format!("cannot pull the base image {base}"))?;
    let top = layout.find(Some(BASE_NAME))?;
    layout.remove_from_index(BASE_NAME)?;
    let top_doc: Value = serde_json::from_slice(&layout.read_blob(&top.digest).await?)?;
    let mut bases = Vec::new();
    for platform in platforms {
        let manifest_digest = if top_doc["manifests"].is_array() {
            select_platform(&top_doc, platform)
                .with_context(|| format!("the base image {base} has no {platform} variant"))?
        } else {
            top.digest.clone()
        };
        let manifest: Value = serde_json::from_slice(&layout.read_blob(&manifest_digest).await?)?;
        let config_digest: gantry_oci::Digest = manifest["config"]["digest"]
            .as_str()
            .context("the base manifest has no config")?
            .parse()?;
        let config: Value = serde_json::from_slice(&layout.read_blob(&config_digest).await?)?;
        let image = BaseImage::from_documents(&manifest, &config)
            .with_context(|| format!("the base image {base} has a malformed manifest or config"))?;
        bases.push((platform.clone(), image));
    }
    Ok(bases)
}

/// A tarball `docker load` and `podman load` accept: the OCI layout (what `docker save` writes
/// since Docker 25) plus the classic `manifest.json`.
fn write_docker_archive(
    layout: &Layout,
    layout_dir: &std::path::Path,
    built: &gantry_builder::Built,
    image: &ImageRef,
    tags: &[String],
    file: &std::path::Path,
) -> anyhow::Result<()> {
    let manifest: Value = serde_json::from_slice(&std::fs::read(layout.blob_path(&built.digest))?)?;
    let blob = |d: &Value| {
        format!(
            "blobs/sha256/{}",
            d["digest"]
                .as_str()
                .unwrap_or("")
                .trim_start_matches("sha256:")
        )
    };
    let repo_tags: Vec<String> = tags
        .iter()
        .map(|t| format!("{}/{}:{t}", image.registry, image.repository))
        .collect();
    let docker_manifest = serde_json::json!([{
        "Config": blob(&manifest["config"]),
        "RepoTags": repo_tags,
        "Layers": manifest["layers"].as_array().into_iter().flatten().map(blob).collect::<Vec<_>>(),
    }]);
    let out =
        std::fs::File::create(file).with_context(|| format!("cannot create {}", file.display()))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(out));
    tar.mode(tar::HeaderMode::Deterministic);
    tar.follow_symlinks(false);
    for name in ["oci-layout", "index.json"] {
        tar.append_path_with_name(layout_dir.join(name), name)?;
    }
    let mut blobs: Vec<PathBuf> = std::fs::read_dir(layout_dir.join("blobs/sha256"))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    blobs.sort();
    for path in blobs {
        let name = format!(
            "blobs/sha256/{}",
            path.file_name().unwrap_or_default().to_string_lossy()
        );
        tar.append_path_with_name(&path, name)?;
    }
    let bytes = serde_json::to_vec(&docker_manifest)?;
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    tar.append_data(&mut header, "manifest.json", bytes.as_slice())?;
    tar.into_inner()?
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    Ok(())
}
