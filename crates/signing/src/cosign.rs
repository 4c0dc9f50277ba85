//! cosign's tag scheme (sigstore/cosign `specs/SIGNATURE_SPEC.md`): the signatures of image
//! `sha256:<hex>` are the layers of the manifest tagged `sha256-<hex>.sig` in the same
//! repository, each a simple signing payload (media type [`SIMPLE_SIGNING`]) whose signature
//! is the base64 value of its [`SIGNATURE_ANNOTATION`]; a new signature is appended to that
//! manifest as another layer.

use serde::Deserialize;

use crate::SigningError;

/// The media type of a simple signing payload layer.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding the payload's signature, base64.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The most bytes a payload may have (cosign's are a few hundred; a larger one is not read).
pub const MAX_PAYLOAD_BYTES: u64 = 64 * 1024;

/// The tag holding the signatures of `digest` (`sha256:<hex>` → `sha256-<hex>.sig`); `None`
/// for a string that is not `algorithm:hex`.
pub fn signature_tag(digest: &str) -> Option<String> {
    let (algorithm, hex) = digest.split_once(':')?;
    (!algorithm.is_empty() && !hex.is_empty()).then(|| format!("{algorithm}-{hex}.sig"))
}

/// The base64 signature of a `.sig` manifest's layer, when the layer is a signature payload
/// worth reading: of type [`SIMPLE_SIGNING`], at most [`MAX_PAYLOAD_BYTES`], with the
/// signature annotation. `annotations` is the layer descriptor's.
pub fn layer_signature<'a>(
    media_type: &str,
    size: u64,
    annotations: Option<&'a serde_json::Map<String, serde_json::Value>>,
) -> Option<&'a str> {
    if media_type != SIMPLE_SIGNING || size > MAX_PAYLOAD_BYTES {
        return None;
    }
    annotations?.get(SIGNATURE_ANNOTATION)?.as_str()
}

/// The digest a referrer tag names: cosign's tag scheme, `sha256-<hex>.sig` (signatures),
/// `.att` (attestations) and `.sbom` (SBOMs), and the referrers fallback tag `sha256-<hex>`
/// (an index of an image's referrers, distribution-spec "Referrers Tag Schema", as clients
/// write it where a registry lacks the referrers API) → `sha256:<hex>`; `None` for any other
/// tag. Such tags are not versions: what they tag lives and goes with the image they name.
pub fn tag_subject(tag: &str) -> Option<String> {
    let stem = [".sig", ".att", ".sbom"]
        .iter()
        .find_map(|suffix| tag.strip_suffix(suffix))
        .unwrap_or(tag);
    let hex = stem.strip_prefix("sha256-")?;
    (hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then(|| format!("sha256:{hex}"))
}

/// The simple signing payload cosign signs for image `digest` (`sha256:<hex>`) of
/// `docker_reference` (`REGISTRY/REPOSITORY`).
pub fn payload(docker_reference: &str, digest: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": null,
    }))
    .expect("JSON serializes")
}

/// A tag-scheme signature by `key` of image `digest` of `docker_reference`: the payload
/// ([`payload`]) and its signature, base64 (the value of the layer's
/// [`SIGNATURE_ANNOTATION`]).
pub fn signature(
    key: &crate::keyfile::SigningKey,
    docker_reference: &str,
    digest: &str,
) -> (Vec<u8>, String) {
    use base64::Engine as _;
    let payload = payload(docker_reference, digest);
    let signature = base64::engine::general_purpose::STANDARD.encode(key.sign(&payload));
    (payload, signature)
}

#[derive(Deserialize)]
struct Payload {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    image: Image,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

/// The digest a simple signing payload signs (`critical.image.docker-manifest-digest`).
///
/// Errors: [`SigningError::NotAPayload`] when it is not that JSON or its `critical.type` is
/// not `cosign container image signature` (the format's one type).
pub fn signed_digest(payload: &[u8]) -> Result<String, SigningError> {
    let payload: Payload =
        serde_json::from_slice(payload).map_err(|e| SigningError::NotAPayload(e.to_string()))?;
    if payload.critical.kind != "cosign container image signature" {
        return Err(SigningError::NotAPayload(format!(
            "critical.type is {:?}",
            payload.critical.kind
        )));
    }
    Ok(payload.critical.image.docker_manifest_digest)
}
