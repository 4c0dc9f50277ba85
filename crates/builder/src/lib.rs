//! The Go image builder: static Go binaries into minimal, reproducible OCI images without a
//! Docker daemon. Per platform: `go build` with CGO off and `-trimpath`; a base layer Gantry
//! writes itself (CA certificates, `/etc/passwd` and `/etc/group` with the `nonroot` user 65532,
//! `/tmp`, optionally tzdata); a layer with the binary; a config that runs the binary as 65532;
//! an SPDX SBOM from the binary's Go build info. Several platforms go under one OCI index.
//! Every timestamp is the source date, every tar entry sorted with fixed owners and modes, and
//! the gzip encoder pinned, so the same source gives the same digests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gantry_client::Layout;
use gantry_inspect::buildinfo;
pub use gantry_inspect::Platform;
use gantry_oci::{media_type, Digest};

pub mod git;
mod go;
mod gzip;
pub mod image;
pub mod layer;
pub mod lint;

use image::LayerRef;
use layer::{Content, Entry, LayerSpec};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{message}")]
    Go { message: String },
    #[error(transparent)]
    Platform(#[from] gantry_inspect::PlatformError),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("the built binary has no Go build information: {0}")]
    BuildInfo(#[from] buildinfo::BuildInfoError),
    #[error(transparent)]
    Layout(#[from] gantry_client::ClientError),
    #[error("base image: {0}")]
    Base(String),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> BuildError + 'a {
    move |source| BuildError::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

/// Everything `gantry build` was asked for.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub go: PathBuf,
    /// The module directory to build in.
    pub dir: PathBuf,
    /// The main package relative to `dir`, e.g. `.` or `./cmd/server`.
    pub package: String,
    /// The binary's name in the image (`/usr/local/bin/<name>`).
    pub name: String,
    pub platforms: Vec<Platform>,
    pub ldflags: String,
    /// The CA bundle put at `/etc/ssl/certs/ca-certificates.crt`.
    pub ca_file: PathBuf,
    /// Copy the build host's `/usr/share/zoneinfo` into the image.
    pub tzdata: Option<PathBuf>,
    /// The time stamped on every file and in the config (SOURCE_DATE_EPOCH).
    pub source_date: u64,
    /// OCI labels and annotations (`org.opencontainers.image.*`).
    pub labels: BTreeMap<String, String>,
    /// Build on these images (one per platform, blobs already in the layout) instead of
    /// scratch plus the generated base layer.
    pub base: Option<Vec<(Platform, image::BaseImage)>>,
}

/// One platform's image.
#[derive(Debug, Clone)]
pub struct PlatformImage {
    pub platform: Platform,
    pub manifest: Digest,
    pub manifest_size: u64,
    pub binary: PathBuf,
    pub binary_size: u64,
    /// The SBOM's artifact manifest (its subject is this platform's manifest).
    pub sbom: Digest,
    pub sbom_size: u64,
}

#[derive(Debug, Clone)]
pub struct Built {
    /// The image's top manifest: the platform manifest, or the index over several.
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    pub platforms: Vec<PlatformImage>,
}

pub const CA_BUNDLE: &str = "etc/ssl/certs/ca-certificates.crt";
pub const DEFAULT_LDFLAGS: &str = "-s -w";

fn root_file(content: Content, mode: u32) -> Entry {
    Entry {
        content,
        mode,
        uid: 0,
        gid: 0,
    }
}

/// The base every generated image stands on: what a static Go service needs from an OS.
pub fn base_layer(ca_file: &Path, tzdata: Option<&Path>) -> Result<LayerSpec, BuildError> {
    if !ca_file.is_file() {
        return Err(BuildError::Io {
            what: "CA certificate bundle",
            path: ca_file.display().to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "not found (install ca-certificates or give --ca-file)",
            ),
        });
    }
    let mut spec = LayerSpec::default();
    spec.add(
        CA_BUNDLE,
        root_file(Content::File(ca_file.to_path_buf()), 0o644),
    );
    let nonroot = image::NONROOT;
    spec.add(
        "etc/passwd",
        root_file(
            Content::Bytes(
                format!("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:{nonroot}:{nonroot}:nonroot:/home/nonroot:/sbin/nologin\n")
                    .into_bytes(),
            ),
            0o644,
        ),
    );
    spec.add(
        "etc/group",
        root_file(
            Content::Bytes(format!("root:x:0:\nnonroot:x:{nonroot}:\n").into_bytes()),
            0o644,
        ),
    );
    spec.add(
        "etc/nsswitch.conf",
        root_file(Content::Bytes(b"hosts: files dns\n".to_vec()), 0o644),
    );
    spec.add(
        "home/nonroot",
        Entry {
            content: Content::Directory,
            mode: 0o700,
            uid: nonroot.into(),
            gid: nonroot.into(),
        },
    );
    spec.add("tmp", root_file(Content::Directory, 0o1777));
    if let Some(zoneinfo) = tzdata {
        add_tree(&mut spec, zoneinfo, "usr/share/zoneinfo")?;
    }
    Ok(spec)
}

/// Adds a host directory tree under `prefix`: files 0644, directories 0755, links as links.
fn add_tree(spec: &mut LayerSpec, dir: &Path, prefix: &str) -> Result<(), BuildError> {
    spec.add(prefix, root_file(Content::Directory, 0o755));
    for entry in std::fs::read_dir(dir).map_err(io("directory", dir))? {
        let entry = entry.map_err(io("directory", dir))?;
        let path = entry.path();
        let name = format!("{prefix}/{}", entry.file_name().to_string_lossy());
        let kind = entry.file_type().map_err(io("file", &path))?;
        if kind.is_symlink() {
            let target = std::fs::read_link(&path).map_err(io("link", &path))?;
            spec.add(
                &name,
                root_file(
                    Content::Symlink(target.to_string_lossy().into_owned()),
                    0o777,
                ),
            );
        } else if kind.is_dir() {
            add_tree(spec, &path, &name)?;
        } else {
            spec.add(&name, root_file(Content::File(path), 0o644));
        }
    }
    Ok(())
}

/// Builds the image into `layout` (blobs only; naming it is the caller's business) and returns
/// what was made. `scratch` receives the compiled binaries.
pub fn build(options: &BuildOptions, layout: &Layout, scratch: &Path) -> Result<Built, BuildError> {
    let generated_base = match options.base {
        Some(_) => None,
        None => {
            let spec = base_layer(&options.ca_file, options.tzdata.as_deref())?;
            let layer = write_layer(layout, &spec, options.source_date, "base")?;
            Some(LayerRef::generated(
                &layer,
                "gantry build: CA certificates, nonroot user 65532".into(),
            ))
        }
    };
    let entrypoint = format!("/usr/local/bin/{}", options.name);
    let mut platforms = Vec::new();
    for platform in &options.platforms {
        let binary = go::compile(
            &go::GoBuild {
                go: &options.go,
                dir: &options.dir,
                package: &options.package,
                ldflags: &options.ldflags,
                platform,
            },
            scratch,
        )?;
        let bytes = std::fs::read(&binary).map_err(io("binary", &binary))?;
        let info = buildinfo::parse(&bytes)?;
        let binary_digest = Digest::sha256_of(&bytes);
        let mut app_spec = LayerSpec::default();
        app_spec.add(&entrypoint, root_file(Content::File(binary.clone()), 0o755));
        let app = write_layer(
            layout,
            &app_spec,
            options.source_date,
            &format!("app-{}", binary_digest.hex()),
        )?;
        let base = match &options.base {
            Some(bases) => Some(
                bases
                    .iter()
                    .find(|(p, _)| p == platform)
                    .map(|(_, b)| b)
                    .ok_or_else(|| {
                        BuildError::Base(format!("the base image has no {platform} variant"))
                    })?,
            ),
            None => None,
        };
        let mut layers: Vec<LayerRef> = match base {
            Some(base) => base.layers.clone(),
            None => generated_base.iter().cloned().collect(),
        };
        layers.push(LayerRef::generated(
            &app,
            format!("gantry build: {} ({})", options.package, info.go_version),
        ));
        let config = image::config(&image::ConfigSpec {
            platform,
            created: options.source_date,
            entrypoint: &entrypoint,
            labels: &options.labels,
            base: base.map(|b| &b.config),
            layers: &layers,
        });
        let config_digest = layout.put_bytes(&config)?;
        let manifest = image::manifest(
            (&config_digest, config.len() as u64),
            &layers,
            &options.labels,
        );
        let manifest_digest = layout.put_bytes(&manifest)?;
        let sbom = image::sbom(&info, &options.name, options.source_date, &binary_digest);
        let sbom_digest = layout.put_bytes(&sbom)?;
        layout.put_bytes(b"{}")?;
        let sbom_manifest = image::sbom_manifest(
            (&sbom_digest, sbom.len() as u64),
            (&manifest_digest, manifest.len() as u64),
            options.source_date,
        );
        let sbom_manifest_digest = layout.put_bytes(&sbom_manifest)?;
        platforms.push(PlatformImage {
            platform: platform.clone(),
            manifest: manifest_digest,
            manifest_size: manifest.len() as u64,
            binary,
            binary_size: bytes.len() as u64,
            sbom: sbom_manifest_digest,
            sbom_size: sbom_manifest.len() as u64,
        });
    }
    if let [only] = platforms.as_slice() {
        return Ok(Built {
            media_type: media_type::OCI_MANIFEST.into(),
            digest: only.manifest.clone(),
            size: only.manifest_size,
            platforms,
        });
    }
    let entries: Vec<(Platform, Digest, u64)> = platforms
        .iter()
        .map(|p| (p.platform.clone(), p.manifest.clone(), p.manifest_size))
        .collect();
    let index = image::index(&entries, &options.labels);
    let digest = layout.put_bytes(&index)?;
    Ok(Built {
        media_type: media_type::OCI_INDEX.into(),
        digest,
        size: index.len() as u64,
        platforms,
    })
}

fn write_layer(
    layout: &Layout,
    spec: &LayerSpec,
    mtime: u64,
    name: &str,
) -> Result<layer::BuiltLayer, BuildError> {
    let path = layout.scratch_path(name);
    let built = layer::write(spec, mtime, &path).map_err(io("layer", &path))?;
    layout.adopt(&built.digest, &path)?;
    Ok(built)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_layer_needs_a_ca_bundle() {
        let err = base_layer(Path::new("/nonexistent/ca.crt"), None).unwrap_err();
        assert!(err.to_string().contains("--ca-file"), "{err}");
    }
}
