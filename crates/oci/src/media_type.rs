//! Media types Gantry understands.

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// The config of BuildKit's registry cache (`--cache-to type=registry`): the config of its
/// image manifest (`image-manifest=true`), or an entry of its index.
pub const BUILDKIT_CACHE_CONFIG: &str = "application/vnd.buildkit.cacheconfig.v0";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// Every manifest media type Gantry stores and serves.
pub const MANIFEST_TYPES: [&str; 4] = [
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];

/// Strips parameters (`; charset=utf-8`) and surrounding blanks from a Content-Type value.
pub fn essence(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

/// How a layer's tar stream is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCompression {
    /// A plain tar stream.
    None,
    Gzip,
    Zstd,
}

/// The compression a layer media type declares: OCI's `…tar`, `…tar+gzip`, `…tar+zstd` (and
/// their non-distributable forms) and Docker's `…rootfs.diff.tar.gzip` /
/// `…foreign.diff.tar.gzip`. `None` for a type that is not a tar layer (or is compressed some
/// other way, e.g. `+encrypted`).
pub fn layer_compression(media_type: &str) -> Option<LayerCompression> {
    let media_type = essence(media_type);
    if media_type.ends_with("tar+gzip") || media_type.ends_with(".tar.gzip") {
        Some(LayerCompression::Gzip)
    } else if media_type.ends_with("tar+zstd") || media_type.ends_with(".tar.zstd") {
        Some(LayerCompression::Zstd)
    } else if media_type.ends_with(".tar") {
        Some(LayerCompression::None)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_compression_follows_the_oci_and_docker_layer_types() {
        for (media_type, compression) in [
            (OCI_LAYER, Some(LayerCompression::None)),
            (OCI_LAYER_GZIP, Some(LayerCompression::Gzip)),
            (OCI_LAYER_ZSTD, Some(LayerCompression::Zstd)),
            (DOCKER_LAYER_GZIP, Some(LayerCompression::Gzip)),
            (
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                Some(LayerCompression::Gzip),
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
                Some(LayerCompression::Zstd),
            ),
            ("application/vnd.oci.image.layer.v1.tar+encrypted", None),
            (OCI_CONFIG, None),
        ] {
            assert_eq!(layer_compression(media_type), compression, "{media_type}");
        }
    }
}
