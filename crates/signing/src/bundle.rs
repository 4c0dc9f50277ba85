//! cosign v3's signatures: Sigstore bundles (protobuf-specs `sigstore_bundle.proto`, in its
//! JSON form) attached to an image as OCI 1.1 referrers of artifact type [`BUNDLE_V03`]
//! (cosign `specs/BUNDLE_SPEC.md`; a registry without the referrers API gets the
//! `sha256-<hex>` fallback tag instead). An image signature is either
//! - a DSSE envelope (`dsseEnvelope`) over an in-toto statement of predicate type
//!   [`SIGN_PREDICATE`] whose subjects name the image's digest (what `cosign sign` writes), or
//! - a message signature (`messageSignature`) over the image manifest's bytes, its
//!   `messageDigest` being the manifest's SHA-256.
//!
//! Only the signature is read. The key, certificate or transparency log entries a bundle
//! carries (`verificationMaterial`) are never trusted by themselves: the project's keys decide.

use base64::Engine as _;
use serde::Deserialize;

use crate::SigningError;

/// The media type (and referrer artifact type) of a v0.3 bundle, as cosign v3 attaches them.
pub const BUNDLE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// The predicate type of the in-toto statement cosign v3 signs for an image.
pub const SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";
/// The DSSE payload type of an in-toto statement.
pub const IN_TOTO: &str = "application/vnd.in-toto+json";
/// The most bytes a bundle may have to be read (a key-signed one is ~1 KB, one with a
/// certificate chain and log entries a few KB).
pub const MAX_BUNDLE_BYTES: u64 = 256 * 1024;

/// Whether a referrer's artifact type (or a layer's media type) is a Sigstore bundle: v0.3
/// (`application/vnd.dev.sigstore.bundle.v0.3+json`) or the older
/// `application/vnd.dev.sigstore.bundle+json;version=0.x`.
pub fn is_bundle(media_type: &str) -> bool {
    media_type
        .strip_prefix("application/vnd.dev.sigstore.bundle")
        .is_some_and(|rest| {
            rest.starts_with("+json;version=")
                || rest
                    .strip_prefix(".v")
                    .is_some_and(|v| v.ends_with("+json"))
        })
}

/// Whether a bundle manifest's layer is a bundle worth reading: of a bundle's media type and
/// at most [`MAX_BUNDLE_BYTES`].
pub fn is_readable_layer(media_type: &str, size: u64) -> bool {
    is_bundle(media_type) && size <= MAX_BUNDLE_BYTES
}

/// What an image-signing bundle signs, read from its JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// A DSSE envelope: its signatures are over the pre-authentication encoding of
    /// `payload_type` and `payload` ([`pae`]).
    Dsse {
        payload_type: String,
        payload: Vec<u8>,
        signatures: Vec<Vec<u8>>,
    },
    /// A signature over the message (an image manifest's bytes) whose SHA-256 is `digest`
    /// (`sha256:<hex>`).
    Message { digest: String, signature: Vec<u8> },
}

/// DSSE's pre-authentication encoding (secure-systems-lab/dsse `protocol.md`):
/// `DSSEv1 <len(type)> <type> <len(payload)> <payload>`, lengths as decimal ASCII.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// The bundle cosign v3 attaches as an image's signature, signed by `key`: a DSSE envelope
/// over an in-toto statement of predicate [`SIGN_PREDICATE`] whose one subject is image
/// `digest` (`sha256:<hex>`) named `name` (`REGISTRY/REPOSITORY`); the public key's hint is
/// its fingerprint. No certificate and no transparency log entry (offline, key-based). The
/// bundle's JSON.
pub fn image_signature(key: &crate::keyfile::SigningKey, name: &str, digest: &str) -> Vec<u8> {
    let (algorithm, hex) = digest.split_once(':').unwrap_or(("sha256", digest));
    let statement = serde_json::to_vec(&serde_json::json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": name, "digest": {algorithm: hex}}],
        "predicateType": SIGN_PREDICATE,
        "predicate": {},
    }))
    .expect("JSON serializes");
    let signature = key.sign(&pae(IN_TOTO, &statement));
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    serde_json::to_vec(&serde_json::json!({
        "mediaType": BUNDLE_V03,
        "verificationMaterial": {"publicKey": {"hint": key.trusted().fingerprint()}},
        "dsseEnvelope": {
            "payload": b64(&statement),
            "payloadType": IN_TOTO,
            "signatures": [{"sig": b64(&signature), "keyid": ""}],
        },
    }))
    .expect("JSON serializes")
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bundle {
    media_type: String,
    dsse_envelope: Option<Envelope>,
    message_signature: Option<MessageSignature>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    payload: String,
    payload_type: String,
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Deserialize)]
struct EnvelopeSignature {
    sig: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageSignature {
    message_digest: MessageDigest,
    signature: String,
}

#[derive(Deserialize)]
struct MessageDigest {
    algorithm: String,
    digest: String,
}

fn base64_field(field: &str, value: &str) -> Result<Vec<u8>, SigningError> {
    base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|e| SigningError::NotABundle(format!("{field} is not base64: {e}")))
}

/// Reads a bundle's JSON.
///
/// Errors: [`SigningError::NotABundle`] when it is not a bundle's JSON, its media type is not
/// a bundle's, it holds neither content (or both), a base64 field does not decode, or a
/// message digest is not SHA-256 (`SHA2_256`, the one algorithm cosign signs images with).
pub fn parse(json: &[u8]) -> Result<Content, SigningError> {
    let bundle: Bundle =
        serde_json::from_slice(json).map_err(|e| SigningError::NotABundle(e.to_string()))?;
    if !is_bundle(&bundle.media_type) {
        return Err(SigningError::NotABundle(format!(
            "media type {:?}",
            bundle.media_type
        )));
    }
    match (bundle.dsse_envelope, bundle.message_signature) {
        (Some(envelope), None) => Ok(Content::Dsse {
            payload: base64_field("dsseEnvelope.payload", &envelope.payload)?,
            payload_type: envelope.payload_type,
            signatures: envelope
                .signatures
                .iter()
                .map(|s| base64_field("dsseEnvelope.signatures[].sig", &s.sig))
                .collect::<Result<_, _>>()?,
        }),
        (None, Some(message)) => {
            if message.message_digest.algorithm != "SHA2_256" {
                return Err(SigningError::NotABundle(format!(
                    "message digest algorithm {:?} (images are signed over SHA2_256)",
                    message.message_digest.algorithm
                )));
            }
            let digest = base64_field(
                "messageSignature.messageDigest.digest",
                &message.message_digest.digest,
            )?;
            Ok(Content::Message {
                digest: format!("sha256:{}", hex::encode(digest)),
                signature: base64_field("messageSignature.signature", &message.signature)?,
            })
        }
        _ => Err(SigningError::NotABundle(
            "a bundle holds exactly one of dsseEnvelope and messageSignature".into(),
        )),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Statement {
    #[serde(rename = "_type")]
    kind: String,
    predicate_type: String,
    subject: Vec<StatementSubject>,
}

#[derive(Deserialize)]
struct StatementSubject {
    digest: std::collections::BTreeMap<String, String>,
}

/// The digests (`sha256:<hex>`) an image signature's in-toto statement names as its
/// subjects.
///
/// Errors: [`SigningError::NotAPayload`] when the payload type is not in-toto's, the payload
/// is not an in-toto statement (`https://in-toto.io/Statement/v0.1` or `/v1`), or its
/// predicate type is not [`SIGN_PREDICATE`]: an attestation (provenance, an SBOM) signed by
/// a trusted key says something about the image, but is not its signature.
pub fn signed_digests(payload_type: &str, payload: &[u8]) -> Result<Vec<String>, SigningError> {
    if payload_type != IN_TOTO {
        return Err(SigningError::NotAPayload(format!(
            "DSSE payload type {payload_type:?}, not {IN_TOTO}"
        )));
    }
    let statement: Statement =
        serde_json::from_slice(payload).map_err(|e| SigningError::NotAPayload(e.to_string()))?;
    if !statement.kind.starts_with("https://in-toto.io/Statement/") {
        return Err(SigningError::NotAPayload(format!(
            "statement _type {:?}",
            statement.kind
        )));
    }
    if statement.predicate_type != SIGN_PREDICATE {
        return Err(SigningError::NotAPayload(format!(
            "predicate type {:?} is an attestation, not an image signature ({SIGN_PREDICATE})",
            statement.predicate_type
        )));
    }
    Ok(statement
        .subject
        .iter()
        .flat_map(|s| s.digest.iter())
        .map(|(algorithm, hex)| format!("{algorithm}:{hex}"))
        .collect())
}
