//! Manifest parsing and validation. Gantry stores the exact bytes a client pushed; this module
//! only reads them to validate and to learn what they reference.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::media_type::{self, essence};
use crate::Digest;

/// The largest manifest accepted, as in distribution and zot.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON: {0}")]
    Json(String),
    #[error("manifest media type is unknown: Content-Type {content_type:?}, mediaType field {field:?}; send one of {known}", known = media_type::MANIFEST_TYPES.join(", "))]
    UnknownMediaType {
        content_type: String,
        field: Option<String>,
    },
    #[error(
        "Content-Type {content_type:?} does not match the manifest's mediaType field {field:?}"
    )]
    MediaTypeMismatch { content_type: String, field: String },
    #[error("the manifest is declared as {media_type} but its fields are those of {shape}")]
    ShapeMismatch {
        media_type: String,
        shape: &'static str,
    },
    #[error("Docker schema 1 manifests are not supported; push a schema 2 or OCI manifest")]
    Schema1,
    #[error("manifest schemaVersion must be 2")]
    SchemaVersion,
    #[error("manifest field {0:?} is missing or malformed: {1}")]
    Field(&'static str, String),
}

/// A content descriptor as it appears in manifests and indexes.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Value>,
}

impl Descriptor {
    /// A plain descriptor: `media_type`, `digest` and `size` (bytes), nothing else.
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            artifact_type: None,
            annotations: None,
            platform: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// An image manifest (OCI or Docker schema 2): a config and layers, all blobs.
    Image,
    /// An index or manifest list: child manifests.
    Index,
}

/// What a manifest says about its references; the raw bytes are kept by the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedManifest {
    pub media_type: String,
    pub kind: ManifestKind,
    pub config: Option<Descriptor>,
    /// An image's layers; an index's entries that are blobs, not manifests (BuildKit's cache
    /// index lists its cache blobs so).
    pub layers: Vec<Descriptor>,
    /// An index's entries that are manifests.
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    /// `artifactType`, or for an image manifest without one, its config's media type
    /// (what the referrers API reports).
    pub artifact_type: Option<String>,
    pub annotations: Option<Map<String, Value>>,
}

impl ParsedManifest {
    /// Whether this is a container image: an image manifest with an image config (OCI or
    /// Docker) whose layers are all filesystem layers ([`media_type::layer_compression`]),
    /// and no `subject`. Not one: indexes, referrers (signatures, SBOMs, attestations),
    /// cosign's tag-scheme `.sig`/`.att`/`.sbom` manifests (an image config over payload
    /// layers), Helm charts and other artifacts. What the scanner scans and the pull gates
    /// check.
    pub fn is_container_image(&self) -> bool {
        self.kind == ManifestKind::Image
            && self.subject.is_none()
            && self.config.as_ref().is_some_and(|c| {
                c.media_type == media_type::OCI_CONFIG || c.media_type == media_type::DOCKER_CONFIG
            })
            && self
                .layers
                .iter()
                .all(|layer| media_type::layer_compression(&layer.media_type).is_some())
    }

    /// Digests of the blobs this manifest needs (config and layers).
    pub fn blob_digests(&self) -> impl Iterator<Item = &Digest> {
        self.config
            .iter()
            .chain(self.layers.iter())
            .map(|d| &d.digest)
    }
}

fn descriptor(
    value: Option<&Value>,
    field: &'static str,
) -> Result<Option<Descriptor>, ManifestError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v) => Descriptor::deserialize(v)
            .map(Some)
            .map_err(|e| ManifestError::Field(field, e.to_string())),
    }
}

fn descriptors(
    value: Option<&Value>,
    field: &'static str,
    required: bool,
) -> Result<Vec<Descriptor>, ManifestError> {
    match value {
        None | Some(Value::Null) if !required => Ok(Vec::new()),
        None | Some(Value::Null) => Err(ManifestError::Field(field, "required".into())),
        Some(v) => Vec::<Descriptor>::deserialize(v)
            .map_err(|e| ManifestError::Field(field, e.to_string())),
    }
}

/// What a manifest's fields say it is, whatever it declares: `manifests` makes an index,
/// `config` or `layers` an image manifest; both or neither say nothing.
fn shape(object: &Map<String, Value>) -> Option<ManifestKind> {
    let has = |field| !matches!(object.get(field), None | Some(Value::Null));
    match (has("manifests"), has("config") || has("layers")) {
        (true, false) => Some(ManifestKind::Index),
        (false, true) => Some(ManifestKind::Image),
        _ => None,
    }
}

/// Parses and validates manifest bytes.
///
/// `claimed_type` is the media type something outside the document says it has: a manifest
/// PUT's Content-Type, the descriptor that pointed at it (an OCI layout's `index.json`, an
/// index's child), or a registry response's Content-Type. The media type is resolved as
/// Distribution and containerd do:
/// - the document's own `mediaType` field wins; a claimed manifest type that differs is a
///   [`ManifestError::MediaTypeMismatch`];
/// - without the field (it is optional in OCI manifests and indexes, and umoci omits it), a
///   claimed manifest type is trusted;
/// - with neither (no claim, or a generic one such as `application/json`), the fields decide:
///   `manifests` is an OCI index, `config`/`layers` an OCI image manifest (Docker schema 2
///   documents always carry `mediaType`).
///
/// A media type whose kind contradicts the fields (an "index" with `config` and `layers`) is
/// a [`ManifestError::ShapeMismatch`].
pub fn parse(bytes: &[u8], claimed_type: Option<&str>) -> Result<ParsedManifest, ManifestError> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
    let object = value
        .as_object()
        .ok_or_else(|| ManifestError::Json("top level is not an object".into()))?;

    let field = match object.get("mediaType") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ManifestError::Field("mediaType", "not a string".into())),
    };
    let header = claimed_type.map(essence).filter(|s| !s.is_empty());
    if matches!(
        header,
        Some(media_type::DOCKER_SCHEMA1 | media_type::DOCKER_SCHEMA1_SIGNED)
    ) || matches!(
        field.as_deref(),
        Some(media_type::DOCKER_SCHEMA1 | media_type::DOCKER_SCHEMA1_SIGNED)
    ) || object.get("schemaVersion") == Some(&Value::from(1))
    {
        return Err(ManifestError::Schema1);
    }
    let known = |t: &str| media_type::MANIFEST_TYPES.contains(&t);
    let media_type = match (header, field.as_deref()) {
        (Some(h), Some(f)) if known(h) && h != f => {
            return Err(ManifestError::MediaTypeMismatch {
                content_type: h.to_string(),
                field: f.to_string(),
            })
        }
        (_, Some(f)) if known(f) => f.to_string(),
        (Some(h), _) if known(h) => h.to_string(),
        (_, None) => match shape(object) {
            Some(ManifestKind::Index) => media_type::OCI_INDEX.to_string(),
            Some(ManifestKind::Image) => media_type::OCI_MANIFEST.to_string(),
            None => {
                return Err(ManifestError::UnknownMediaType {
                    content_type: header.unwrap_or("").to_string(),
                    field,
                })
            }
        },
        (_, Some(_)) => {
            return Err(ManifestError::UnknownMediaType {
                content_type: header.unwrap_or("").to_string(),
                field,
            })
        }
    };
    if object.get("schemaVersion") != Some(&Value::from(2)) {
        return Err(ManifestError::SchemaVersion);
    }

    let kind = match media_type.as_str() {
        media_type::OCI_INDEX | media_type::DOCKER_MANIFEST_LIST => ManifestKind::Index,
        _ => ManifestKind::Image,
    };
    match shape(object) {
        Some(found) if found != kind => {
            return Err(ManifestError::ShapeMismatch {
                media_type,
                shape: match found {
                    ManifestKind::Index => "an index (manifests)",
                    ManifestKind::Image => "an image manifest (config, layers)",
                },
            })
        }
        _ => {}
    }
    let subject = descriptor(object.get("subject"), "subject")?;
    let annotations = match object.get("annotations") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m.clone()),
        Some(_) => return Err(ManifestError::Field("annotations", "not an object".into())),
    };
    let declared_artifact_type = match object.get("artifactType") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ManifestError::Field("artifactType", "not a string".into())),
    };

    let (config, layers, manifests) = match kind {
        ManifestKind::Image => {
            let config = descriptor(object.get("config"), "config")?
                .ok_or_else(|| ManifestError::Field("config", "required".into()))?;
            let layers = descriptors(object.get("layers"), "layers", true)?;
            (Some(config), layers, Vec::new())
        }
        ManifestKind::Index => {
            // BuildKit's registry cache (`--cache-to type=registry`, without
            // `image-manifest=true`) is an index whose entries are its cache blobs: layers and
            // an `application/vnd.buildkit.cacheconfig.v0` config. An entry that is not a
            // manifest can only be a blob the index references: it is kept as a layer.
            let (manifests, blobs) = descriptors(object.get("manifests"), "manifests", true)?
                .into_iter()
                .partition(|entry| media_type::MANIFEST_TYPES.contains(&entry.media_type.as_str()));
            (None, blobs, manifests)
        }
    };
    // A BuildKit cache index is told by its cache config entry, as a cache image manifest is
    // by its config: both have the cache config's type as their artifact type.
    let artifact_type = declared_artifact_type
        .or_else(|| config.as_ref().map(|c| c.media_type.clone()))
        .or_else(|| {
            layers
                .iter()
                .any(|entry| entry.media_type == media_type::BUILDKIT_CACHE_CONFIG)
                .then(|| media_type::BUILDKIT_CACHE_CONFIG.to_string())
        });

    Ok(ParsedManifest {
        media_type,
        kind,
        config,
        layers,
        manifests,
        subject,
        artifact_type,
        annotations,
    })
}

/// The bytes of the empty config an artifact manifest points at (`application/vnd.oci.empty.v1+json`,
/// image-spec 1.1 "Guidance for an Empty Descriptor").
pub const EMPTY_CONFIG: &[u8] = b"{}";

/// An OCI 1.1 artifact manifest that attaches one blob to `subject`, so that the referrers API
/// finds it (image-spec 1.1 "Guidelines for Artifact Usage"): the empty config, `artifactType`
/// equal to the blob's media type, the blob as its only layer, and `created` (RFC 3339) as
/// `org.opencontainers.image.created`. The same inputs always give the same bytes.
pub fn referrer_manifest(blob: &Descriptor, subject: &Descriptor, created: &str) -> Vec<u8> {
    let empty = Descriptor {
        media_type: media_type::OCI_EMPTY.to_string(),
        digest: Digest::sha256_of(EMPTY_CONFIG),
        size: EMPTY_CONFIG.len() as u64,
        artifact_type: None,
        annotations: None,
        platform: None,
    };
    let doc = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "artifactType": blob.media_type,
        "config": empty,
        "layers": [blob],
        "subject": subject,
        "annotations": {"org.opencontainers.image.created": created},
    });
    serde_json::to_vec(&doc).expect("JSON serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media_type::*;

    /// The pull gate took any manifest with an image config for an image, so cosign's
    /// tag-scheme `.sig` manifests (an OCI image config over simple signing payloads) were
    /// scanned, failed, and refused.
    #[test]
    fn a_cosign_signature_manifest_is_not_a_container_image() {
        let layer = |media_type: &str| serde_json::json!({"mediaType": media_type, "digest": format!("sha256:{}", "a".repeat(64)), "size": 1});
        let image = |layers: Vec<Value>| {
            let bytes = serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": layer(OCI_CONFIG),
                "layers": layers,
            }))
            .unwrap();
            parse(&bytes, Some(OCI_MANIFEST)).unwrap()
        };
        assert!(image(vec![layer(OCI_LAYER_GZIP), layer(DOCKER_LAYER_GZIP)]).is_container_image());
        assert!(image(vec![]).is_container_image());
        assert!(!image(vec![layer(
            "application/vnd.dev.cosign.simplesigning.v1+json"
        )])
        .is_container_image());
        assert!(!image(vec![
            layer(OCI_LAYER_GZIP),
            layer("application/vnd.in-toto+json")
        ])
        .is_container_image());
    }

    #[test]
    fn a_referrer_manifest_parses_as_an_artifact_of_its_blob_type_with_its_subject() {
        let descriptor = |media_type: &str, bytes: &[u8]| Descriptor {
            media_type: media_type.to_string(),
            digest: Digest::sha256_of(bytes),
            size: bytes.len() as u64,
            artifact_type: None,
            annotations: None,
            platform: None,
        };
        let blob = descriptor("application/spdx+json", b"{\"spdxVersion\":\"SPDX-2.3\"}");
        let subject = descriptor(OCI_MANIFEST, b"image");
        let bytes = referrer_manifest(&blob, &subject, "2026-11-30T00:00:00Z");
        assert_eq!(
            bytes,
            referrer_manifest(&blob, &subject, "2026-11-30T00:00:00Z")
        );
        let parsed = parse(&bytes, Some(OCI_MANIFEST)).unwrap();
        assert_eq!(parsed.kind, ManifestKind::Image);
        assert_eq!(
            parsed.artifact_type.as_deref(),
            Some("application/spdx+json")
        );
        assert_eq!(parsed.subject.as_ref(), Some(&subject));
        assert_eq!(parsed.layers, vec![blob]);
        let config = parsed.config.unwrap();
        assert_eq!(config.media_type, OCI_EMPTY);
        assert_eq!(config.digest, Digest::sha256_of(EMPTY_CONFIG));
    }

    fn digest(n: u8) -> String {
        format!("sha256:{}", hex::encode([n; 32]))
    }

    fn image(config_type: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{config_type}","digest":"{}","size":2}},"layers":[{{"mediaType":"{OCI_LAYER_GZIP}","digest":"{}","size":10}}]}}"#,
            digest(1),
            digest(2)
        )
    }

    #[test]
    fn parses_image_manifest_and_lists_blobs() {
        let m = parse(image(OCI_CONFIG).as_bytes(), Some(OCI_MANIFEST)).unwrap();
        assert_eq!(m.kind, ManifestKind::Image);
        let blobs: Vec<String> = m.blob_digests().map(|d| d.to_string()).collect();
        assert_eq!(blobs, vec![digest(1), digest(2)]);
        assert_eq!(m.artifact_type.as_deref(), Some(OCI_CONFIG));
    }

    #[test]
    fn content_type_may_carry_parameters_or_be_missing() {
        assert!(parse(
            image(OCI_CONFIG).as_bytes(),
            Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8")
        )
        .is_ok());
        assert!(parse(image(OCI_CONFIG).as_bytes(), None).is_ok());
    }

    /// An image manifest as umoci writes it: no `mediaType` field (optional in OCI).
    fn image_without_media_type() -> String {
        image(OCI_CONFIG).replacen(&format!(r#""mediaType":"{OCI_MANIFEST}","#), "", 1)
    }

    fn index_without_media_type() -> String {
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":100}}]}}"#,
            digest(3)
        )
    }

    #[test]
    fn manifest_without_media_type_field_takes_the_descriptors_type() {
        let body = image_without_media_type();
        assert!(!body.contains(OCI_MANIFEST));
        let m = parse(body.as_bytes(), Some(OCI_MANIFEST)).unwrap();
        assert_eq!(
            (m.media_type.as_str(), m.kind),
            (OCI_MANIFEST, ManifestKind::Image)
        );
        let m = parse(index_without_media_type().as_bytes(), Some(OCI_INDEX)).unwrap();
        assert_eq!(
            (m.media_type.as_str(), m.kind),
            (OCI_INDEX, ManifestKind::Index)
        );
    }

    #[test]
    fn manifest_without_media_type_field_or_claim_is_known_by_its_fields() {
        for claim in [None, Some(""), Some("application/json")] {
            let m = parse(image_without_media_type().as_bytes(), claim).unwrap();
            assert_eq!(
                (m.media_type.as_str(), m.kind),
                (OCI_MANIFEST, ManifestKind::Image)
            );
            let m = parse(index_without_media_type().as_bytes(), claim).unwrap();
            assert_eq!(
                (m.media_type.as_str(), m.kind),
                (OCI_INDEX, ManifestKind::Index)
            );
        }
    }

    #[test]
    fn docker_schema2_is_read_with_or_without_a_claim() {
        let body = image(DOCKER_CONFIG).replace(OCI_MANIFEST, DOCKER_MANIFEST);
        for claim in [None, Some(DOCKER_MANIFEST)] {
            let m = parse(body.as_bytes(), claim).unwrap();
            assert_eq!(m.media_type, DOCKER_MANIFEST);
        }
    }

    #[test]
    fn claimed_kind_that_contradicts_the_fields_is_refused() {
        assert!(matches!(
            parse(image_without_media_type().as_bytes(), Some(OCI_INDEX)),
            Err(ManifestError::ShapeMismatch { .. })
        ));
        assert!(matches!(
            parse(index_without_media_type().as_bytes(), Some(DOCKER_MANIFEST)),
            Err(ManifestError::ShapeMismatch { .. })
        ));
    }

    #[test]
    fn mismatched_media_type_is_refused() {
        assert!(matches!(
            parse(image(OCI_CONFIG).as_bytes(), Some(DOCKER_MANIFEST)),
            Err(ManifestError::MediaTypeMismatch { .. })
        ));
    }

    #[test]
    fn a_buildkit_cache_index_lists_its_blobs_as_layers() {
        for (index_type, layer_type) in [
            (OCI_INDEX, "application/vnd.oci.image.layer.v1.tar+gzip"),
            (
                DOCKER_MANIFEST_LIST,
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
            ),
        ] {
            let body = format!(
                r#"{{"schemaVersion":2,"mediaType":"{index_type}","manifests":[{{"mediaType":"{layer_type}","digest":"{}","size":10,"annotations":{{"buildkit/createdat":"2026-11-30T10:00:00Z","containerd.io/uncompressed":"{}"}}}},{{"mediaType":"application/vnd.buildkit.cacheconfig.v0","digest":"{}","size":20}},{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":30}}]}}"#,
                digest(1),
                digest(2),
                digest(3),
                digest(4)
            );
            let m = parse(body.as_bytes(), None).unwrap();
            assert_eq!(m.kind, ManifestKind::Index);
            let blobs: Vec<String> = m.blob_digests().map(|d| d.to_string()).collect();
            assert_eq!(blobs, [digest(1), digest(3)]);
            assert_eq!(m.manifests.len(), 1);
            assert_eq!(m.manifests[0].digest.to_string(), digest(4));
            assert!(!m.is_container_image());
            assert_eq!(m.artifact_type.as_deref(), Some(BUILDKIT_CACHE_CONFIG));
        }
    }

    #[test]
    fn index_with_subject_and_artifact_type() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","artifactType":"application/x-test","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":100,"platform":{{"os":"linux","architecture":"amd64"}}}}],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":5}}}}"#,
            digest(3),
            digest(4)
        );
        let m = parse(body.as_bytes(), Some(OCI_INDEX)).unwrap();
        assert_eq!(m.kind, ManifestKind::Index);
        assert_eq!(m.manifests.len(), 1);
        assert_eq!(m.subject.unwrap().digest.to_string(), digest(4));
        assert_eq!(m.artifact_type.as_deref(), Some("application/x-test"));
    }

    #[test]
    fn refuses_malformed() {
        let cases: Vec<(String, Option<&str>)> = vec![
            ("not json".into(), Some(OCI_MANIFEST)),
            ("[]".into(), Some(OCI_MANIFEST)),
            (r#"{"schemaVersion":2}"#.into(), Some("application/json")),
            (r#"{"schemaVersion":1,"name":"x"}"#.into(), None),
            (
                format!(
                    r#"{{"schemaVersion":3,"mediaType":"{OCI_MANIFEST}","config":{{}},"layers":[]}}"#
                ),
                None,
            ),
            (
                format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","layers":[]}}"#),
                None,
            ),
            (
                format!(
                    r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"x","digest":"md5:abc","size":1}},"layers":[]}}"#
                ),
                None,
            ),
            (
                format!(
                    r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"x","digest":"{}","size":-1}},"layers":[]}}"#,
                    digest(1)
                ),
                None,
            ),
            (
                format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}"}}"#),
                None,
            ),
        ];
        for (body, ct) in cases {
            assert!(
                parse(body.as_bytes(), ct).is_err(),
                "{body} should be refused"
            );
        }
    }
}
