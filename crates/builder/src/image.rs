//! The JSON documents of an image: config, manifest, index and the SPDX SBOM with the artifact
//! manifest that attaches it to its image. serde_json's maps are sorted, so the same inputs
//! always serialize to the same bytes.

use std::collections::BTreeMap;

use gantry_oci::{media_type, Descriptor, Digest};
use serde_json::{json, Value};

use crate::layer::BuiltLayer;
use crate::Platform;
use gantry_inspect::buildinfo::BuildInfo;

/// The non-root user of generated images (distroless' `nonroot`).
pub const NONROOT: u32 = 65532;
pub const SPDX_MEDIA_TYPE: &str = "application/spdx+json";

/// RFC 3339 of Unix seconds (UTC).
pub fn rfc3339(secs: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

pub fn descriptor(media_type: &str, digest: &Digest, size: u64) -> Value {
    json!({"mediaType": media_type, "digest": digest.to_string(), "size": size})
}

/// A layer of an image being assembled: generated here, or taken from a base image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRef {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    pub diff_id: Digest,
    /// The config history's `created_by` for it.
    pub created_by: String,
}

impl LayerRef {
    pub fn generated(layer: &BuiltLayer, created_by: String) -> LayerRef {
        LayerRef {
            media_type: media_type::OCI_LAYER_GZIP.into(),
            digest: layer.digest.clone(),
            size: layer.size,
            diff_id: layer.diff_id.clone(),
            created_by,
        }
    }
}

/// Docker's name for a gzipped layer; the bytes are the same as OCI's.
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// A base image's layers and config, for building on something other than scratch.
#[derive(Debug, Clone)]
pub struct BaseImage {
    pub config: Value,
    pub layers: Vec<LayerRef>,
}

impl BaseImage {
    /// Reads a base image from its manifest and config documents.
    pub fn from_documents(manifest: &Value, config: &Value) -> Option<BaseImage> {
        let diff_ids = config["rootfs"]["diff_ids"].as_array()?;
        let history: Vec<String> = config["history"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|h| h["empty_layer"] != true)
            .map(|h| h["created_by"].as_str().unwrap_or("base image").to_string())
            .collect();
        let layers = manifest["layers"].as_array()?;
        if layers.len() != diff_ids.len() {
            return None;
        }
        let refs = layers
            .iter()
            .zip(diff_ids)
            .enumerate()
            .map(|(i, (layer, diff_id))| {
                let media_type = match layer["mediaType"].as_str()? {
                    DOCKER_LAYER_GZIP => media_type::OCI_LAYER_GZIP,
                    other => other,
                };
                Some(LayerRef {
                    media_type: media_type.to_string(),
                    digest: layer["digest"].as_str()?.parse().ok()?,
                    size: layer["size"].as_u64()?,
                    diff_id: diff_id.as_str()?.parse().ok()?,
                    created_by: history
                        .get(i)
                        .cloned()
                        .unwrap_or_else(|| "base image".into()),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(BaseImage {
            config: config.clone(),
            layers: refs,
        })
    }
}

/// What the config of one platform's image says.
pub struct ConfigSpec<'a> {
    pub platform: &'a Platform,
    pub created: u64,
    pub entrypoint: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    /// The base image's config, whose environment and labels are kept.
    pub base: Option<&'a Value>,
    /// Every layer, bottom first.
    pub layers: &'a [LayerRef],
}

pub fn config(spec: &ConfigSpec) -> Vec<u8> {
    let created = rfc3339(spec.created);
    let mut env: Vec<Value> = vec![
        json!("PATH=/usr/local/bin:/usr/bin:/bin"),
        json!("SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"),
    ];
    let mut labels: serde_json::Map<String, Value> = serde_json::Map::new();
    let mut history = Vec::new();
    if let Some(base) = spec.base {
        if let Some(base_env) = base["config"]["Env"].as_array() {
            env = base_env.clone();
        }
        if let Some(base_labels) = base["config"]["Labels"].as_object() {
            labels = base_labels.clone();
        }
        history = base["history"].as_array().cloned().unwrap_or_default();
    }
    labels.extend(spec.labels.iter().map(|(k, v)| (k.clone(), json!(v))));
    let own_layers = &spec.layers[history
        .iter()
        .filter(|h| h["empty_layer"] != true)
        .count()
        .min(spec.layers.len())..];
    history.extend(
        own_layers
            .iter()
            .map(|l| json!({"created": created, "created_by": l.created_by})),
    );
    let mut doc = json!({
        "architecture": spec.platform.architecture,
        "os": spec.platform.os,
        "created": created,
        "config": {
            "User": format!("{NONROOT}:{NONROOT}"),
            "Entrypoint": [spec.entrypoint],
            "Env": env,
            "WorkingDir": "/",
            "Labels": labels,
        },
        "rootfs": {
            "type": "layers",
            "diff_ids": spec.layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>(),
        },
        "history": history,
    });
    if let Some(variant) = &spec.platform.variant {
        doc["variant"] = json!(variant);
    }
    serde_json::to_vec(&doc).expect("JSON serializes")
}

pub fn manifest(
    config: (&Digest, u64),
    layers: &[LayerRef],
    annotations: &BTreeMap<String, String>,
) -> Vec<u8> {
    let doc = json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": descriptor(media_type::OCI_CONFIG, config.0, config.1),
        "layers": layers.iter().map(|l| descriptor(&l.media_type, &l.digest, l.size)).collect::<Vec<_>>(),
        "annotations": annotations,
    });
    serde_json::to_vec(&doc).expect("JSON serializes")
}

/// An index over one manifest per platform.
pub fn index(
    manifests: &[(Platform, Digest, u64)],
    annotations: &BTreeMap<String, String>,
) -> Vec<u8> {
    let entries: Vec<Value> = manifests
        .iter()
        .map(|(platform, digest, size)| {
            let mut d = descriptor(media_type::OCI_MANIFEST, digest, *size);
            d["platform"] = platform.to_json();
            d
        })
        .collect();
    let doc = json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": entries,
        "annotations": annotations,
    });
    serde_json::to_vec(&doc).expect("JSON serializes")
}

/// `pkg:golang/<path>@<version>` (the purl of a Go module).
fn purl(path: &str, version: &str) -> String {
    format!("pkg:golang/{path}@{version}")
}

/// An SPDX 2.3 document describing the binary: the main module, every dependency module (with
/// replacements resolved) and the Go standard library, all as packages the main one depends on.
pub fn sbom(info: &BuildInfo, name: &str, created: u64, binary_digest: &Digest) -> Vec<u8> {
    let main = info.main.as_ref();
    let main_path = main.map_or(info.path.as_str(), |m| m.path.as_str());
    let main_version = main.map_or("(devel)", |m| m.version.as_str());
    let package = |id: String, name: &str, version: &str, sum: &str| {
        let mut p = json!({
            "SPDXID": id,
            "name": name,
            "versionInfo": version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": purl(name, version),
            }],
        });
        if let Some(h1) = sum.strip_prefix("h1:") {
            p["comment"] = json!(format!("go.sum h1:{h1}"));
        }
        p
    };
    let mut packages = vec![package(
        "SPDXRef-Package-main".into(),
        main_path,
        main_version,
        "",
    )];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": "SPDXRef-Package-main",
    })];
    let go_version = info.go_version.trim_start_matches("go");
    let stdlib = std::iter::once(("stdlib", go_version, ""));
    let deps = info.deps.iter().map(|d| {
        let used = d.replacement.as_deref().unwrap_or(d);
        (d.path.as_str(), used.version.as_str(), used.sum.as_str())
    });
    for (i, (path, version, sum)) in stdlib.chain(deps).enumerate() {
        let id = format!("SPDXRef-Package-{i}");
        packages.push(package(id.clone(), path, version, sum));
        relationships.push(json!({
            "spdxElementId": "SPDXRef-Package-main",
            "relationshipType": "DEPENDS_ON",
            "relatedSpdxElement": id,
        }));
    }
    let doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": name,
        "documentNamespace": format!("https://gantry.invalid/spdx/{}", binary_digest.hex()),
        "creationInfo": {
            "created": rfc3339(created),
            "creators": [concat!("Tool: gantry-", env!("CARGO_PKG_VERSION"))],
        },
        "packages": packages,
        "relationships": relationships,
    });
    serde_json::to_vec_pretty(&doc).expect("JSON serializes")
}

/// The OCI artifact manifest that attaches an SBOM blob to its subject (found through the
/// referrers API).
pub fn sbom_manifest(sbom: (&Digest, u64), subject: (&Digest, u64), created: u64) -> Vec<u8> {
    let descriptor = |media_type: &str, (digest, size): (&Digest, u64)| {
        Descriptor::new(media_type, digest.clone(), size)
    };
    gantry_oci::manifest::referrer_manifest(
        &descriptor(SPDX_MEDIA_TYPE, sbom),
        &descriptor(media_type::OCI_MANIFEST, subject),
        &rfc3339(created),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_inspect::buildinfo::parse_modinfo;

    #[test]
    fn sbom_lists_main_stdlib_and_dependencies_with_purls() {
        let mut info = parse_modinfo(
            "path\texample.com/hello\nmod\texample.com/hello\t(devel)\t\n\
             dep\texample.com/greet\tv1.2.3\th1:abc=\ndep\tgolang.org/x/text\tv0.3.0\th1:def=\n\
             =>\tgolang.org/x/text\tv0.3.8\th1:ghi=\n",
        );
        info.go_version = "go1.19.8".into();
        let doc: Value =
            serde_json::from_slice(&sbom(&info, "hello", 0, &Digest::sha256_of(b"bin"))).unwrap();
        assert_eq!(doc["spdxVersion"], "SPDX-2.3");
        let names: Vec<(&str, &str)> = doc["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap(),
                    p["versionInfo"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("example.com/hello", "(devel)"),
                ("stdlib", "1.19.8"),
                ("example.com/greet", "v1.2.3"),
                ("golang.org/x/text", "v0.3.8"),
            ]
        );
        assert_eq!(
            doc["packages"][2]["externalRefs"][0]["referenceLocator"],
            "pkg:golang/example.com/greet@v1.2.3"
        );
        assert_eq!(doc["relationships"].as_array().unwrap().len(), 4);
        assert_eq!(doc["creationInfo"]["created"], "1970-01-01T00:00:00Z");
    }
}
