//! Image signatures, cosign-compatible and pure (bytes in, verdicts out).
//!
//! - [`TrustedKey`]: a public key a project trusts, from PEM (`PUBLIC KEY`, the
//!   SubjectPublicKeyInfo cosign writes to `cosign.pub`): ECDSA P-256 and P-384, Ed25519, RSA.
//!   Signatures are checked as cosign makes them: ECDSA as ASN.1 DER over the payload's
//!   SHA-256 (P-384: SHA-384, or SHA-256 as older cosign signed), Ed25519 over the payload
//!   itself, RSA PKCS#1 v1.5 with SHA-256. Verification is ring's, the binary's one crypto
//!   library.
//! - [`cosign`]: cosign's tag scheme: the `sha256-<hex>.sig` tag, the simple signing payload
//!   (`critical.image.docker-manifest-digest`) and the signature annotation.
//! - [`bundle`]: cosign v3's scheme: Sigstore bundles attached as referrers, holding a DSSE
//!   in-toto statement or a message signature.
//! - [`keyfile`]: cosign's password-sealed private key files, and signing with their keys.
//! - [`sources`]: finding and reading an image's signatures of both schemes through a store.
//! - [`verdict`]: what a project's trusted keys make of the signatures found for a digest.
//!
//! Only keys given by the project are trusted: a key or certificate a signature carries
//! (cosign's `dev.sigstore.cosign/certificate` annotation) is never used by itself
//! (GHSA-fx35-mq7g-6g98).

pub mod bundle;
pub mod cosign;
pub mod keyfile;
pub mod sources;

use base64::Engine as _;
use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use sha2::{Digest as _, Sha256};
use spki::der::Decode as _;
use spki::ObjectIdentifier;

/// Why a key or a payload cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// Not a PEM `PUBLIC KEY` (SubjectPublicKeyInfo).
    #[error("not a PEM public key (-----BEGIN PUBLIC KEY-----, as in cosign.pub): {0}")]
    NotAPublicKey(String),
    /// A key of an algorithm cosign signatures are not made with.
    #[error("unsupported key algorithm {0}: give an ECDSA P-256 or P-384, Ed25519 or RSA key")]
    UnsupportedKey(String),
    /// An enforcing policy without keys would refuse every pull.
    #[error("an enforcing signing policy needs at least one trusted key")]
    NoKeys,
    /// A policy's key that cannot be used.
    #[error("key {index} (counted from 0): {error}")]
    Key {
        index: usize,
        error: Box<SigningError>,
    },
    /// A signed payload that is not an image signature's (cosign's simple signing JSON, or
    /// an in-toto statement of cosign's signing predicate).
    #[error("not an image signature payload: {0}")]
    NotAPayload(String),
    /// Not a cosign private key file, or one this cannot sign with.
    #[error("{0}")]
    KeyFile(String),
    /// The password does not open the private key file.
    #[error("the password does not open the private key (COSIGN_PASSWORD)")]
    WrongPassword,
    /// Not a Sigstore bundle's JSON, or one that holds no image signature.
    #[error("not a Sigstore bundle with an image signature: {0}")]
    NotABundle(String),
}

pub(crate) const EC_PUBLIC_KEY: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
pub(crate) const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// A key's algorithm, as the policy shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    EcdsaP256,
    EcdsaP384,
    Ed25519,
    Rsa,
}

impl KeyAlgorithm {
    /// `ecdsa-p256`, `ecdsa-p384`, `ed25519`, `rsa`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::EcdsaP256 => "ecdsa-p256",
            KeyAlgorithm::EcdsaP384 => "ecdsa-p384",
            KeyAlgorithm::Ed25519 => "ed25519",
            KeyAlgorithm::Rsa => "rsa",
        }
    }

    /// The signature schemes a cosign signature by such a key may use.
    fn schemes(self) -> &'static [&'static dyn VerificationAlgorithm] {
        static P256: [&dyn VerificationAlgorithm; 1] = [&signature::ECDSA_P256_SHA256_ASN1];
        static P384: [&dyn VerificationAlgorithm; 2] = [
            &signature::ECDSA_P384_SHA384_ASN1,
            &signature::ECDSA_P384_SHA256_ASN1,
        ];
        static ED25519: [&dyn VerificationAlgorithm; 1] = [&signature::ED25519];
        static RSA: [&dyn VerificationAlgorithm; 1] = [&signature::RSA_PKCS1_2048_8192_SHA256];
        match self {
            KeyAlgorithm::EcdsaP256 => &P256,
            KeyAlgorithm::EcdsaP384 => &P384,
            KeyAlgorithm::Ed25519 => &ED25519,
            KeyAlgorithm::Rsa => &RSA,
        }
    }
}

/// A public key a project trusts.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    algorithm: KeyAlgorithm,
    /// The key as the signature scheme takes it (the SubjectPublicKeyInfo's key bits).
    key: Vec<u8>,
    fingerprint: String,
}

impl TrustedKey {
    /// Reads a PEM `PUBLIC KEY` (SubjectPublicKeyInfo, as `cosign generate-key-pair` writes
    /// `cosign.pub`).
    ///
    /// Errors: [`SigningError::NotAPublicKey`] for anything else (a private key, a
    /// certificate, garbage), [`SigningError::UnsupportedKey`] for other algorithms or curves.
    pub fn from_pem(pem: &str) -> Result<TrustedKey, SigningError> {
        let (label, der) = spki::der::pem::decode_vec(pem.trim().as_bytes())
            .map_err(|e| SigningError::NotAPublicKey(e.to_string()))?;
        if label != "PUBLIC KEY" {
            return Err(SigningError::NotAPublicKey(format!("found {label}")));
        }
        let info = spki::SubjectPublicKeyInfoRef::from_der(&der)
            .map_err(|e| SigningError::NotAPublicKey(e.to_string()))?;
        let oid = info.algorithm.oid;
        let algorithm = if oid == EC_PUBLIC_KEY {
            let curve = info
                .algorithm
                .parameters_oid()
                .map_err(|e| SigningError::UnsupportedKey(format!("EC key: {e}")))?;
            match curve {
                P256 => KeyAlgorithm::EcdsaP256,
                P384 => KeyAlgorithm::EcdsaP384,
                other => return Err(SigningError::UnsupportedKey(format!("EC curve {other}"))),
            }
        } else if oid == ED25519 {
            KeyAlgorithm::Ed25519
        } else if oid == RSA {
            KeyAlgorithm::Rsa
        } else {
            return Err(SigningError::UnsupportedKey(oid.to_string()));
        };
        let key = info
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| SigningError::NotAPublicKey("the key bits are not whole bytes".into()))?
            .to_vec();
        Ok(TrustedKey {
            algorithm,
            key,
            fingerprint: format!("sha256:{}", hex::encode(Sha256::digest(&der))),
        })
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// `sha256:<hex>` of the key's DER SubjectPublicKeyInfo: how policies, verdicts and the
    /// audit log name a key.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Whether `signature` (raw bytes) is this key's over `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        self.algorithm.schemes().iter().any(|scheme| {
            UnparsedPublicKey::new(*scheme, &self.key)
                .verify(message, signature)
                .is_ok()
        })
    }
}

/// A project's signing policy, as stored and as the API takes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningPolicy {
    /// The public keys the project trusts, PEM (`cosign.pub`).
    #[serde(default)]
    pub keys: Vec<String>,
    /// Refuse pulls of images without a trusted signature; off, nothing is refused.
    #[serde(default)]
    pub enforce: bool,
    /// An index with a trusted signature covers the images it lists when they are pulled by
    /// digest (as clients pull a multi-platform image), so only the index needs signing.
    #[serde(default = "yes")]
    pub index_covers_children: bool,
}

fn yes() -> bool {
    true
}

impl Default for SigningPolicy {
    /// No keys, not enforced; an index's signature covers its children.
    fn default() -> Self {
        SigningPolicy {
            keys: Vec::new(),
            enforce: false,
            index_covers_children: true,
        }
    }
}

impl SigningPolicy {
    /// The policy's keys, read.
    ///
    /// Errors: the first key that cannot be read (its position is in the message), or
    /// [`SigningError::NoKeys`] when enforcing without any.
    pub fn trusted_keys(&self) -> Result<Vec<TrustedKey>, SigningError> {
        if self.enforce && self.keys.is_empty() {
            return Err(SigningError::NoKeys);
        }
        self.keys
            .iter()
            .enumerate()
            .map(|(index, pem)| {
                TrustedKey::from_pem(pem).map_err(|e| SigningError::Key {
                    index,
                    error: Box::new(e),
                })
            })
            .collect()
    }
}

/// One signature found for an image.
#[derive(Debug, Clone)]
pub enum Candidate {
    /// cosign's tag scheme: a simple signing payload and its signature, base64 (the layer's
    /// [`cosign::SIGNATURE_ANNOTATION`]).
    SimpleSigning {
        payload: Vec<u8>,
        signature_base64: String,
    },
    /// A Sigstore bundle attached as a referrer (cosign v3), as [`bundle::parse`] read it.
    Bundle(bundle::Content),
}

/// The image whose signatures are judged: its digest (`sha256:<hex>`) and, when the reader
/// has them, its manifest's bytes (what a bundle's message signature is over; without them
/// such a signature counts for nothing).
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub digest: &'a str,
    pub manifest: Option<&'a [u8]>,
}

/// What one candidate says of the subject.
enum Finding<'k> {
    Trusted(&'k TrustedKey),
    OtherDigest(String),
    Nothing,
}

/// The first of `keys` whose signature `signature` over `message` is.
fn signer<'k>(keys: &'k [TrustedKey], message: &[u8], signature: &[u8]) -> Option<&'k TrustedKey> {
    keys.iter().find(|key| key.verifies(message, signature))
}

impl Candidate {
    fn judge<'k>(&self, subject: &Subject<'_>, keys: &'k [TrustedKey]) -> Finding<'k> {
        match self {
            Candidate::SimpleSigning {
                payload,
                signature_base64,
            } => {
                let Ok(signature) =
                    base64::engine::general_purpose::STANDARD.decode(signature_base64.trim())
                else {
                    return Finding::Nothing;
                };
                let Some(key) = signer(keys, payload, &signature) else {
                    return Finding::Nothing;
                };
                match cosign::signed_digest(payload) {
                    Ok(signed) if signed == subject.digest => Finding::Trusted(key),
                    Ok(signed) => Finding::OtherDigest(signed),
                    Err(_) => Finding::Nothing,
                }
            }
            Candidate::Bundle(bundle::Content::Dsse {
                payload_type,
                payload,
                signatures,
            }) => {
                let message = bundle::pae(payload_type, payload);
                let Some(key) = signatures
                    .iter()
                    .find_map(|signature| signer(keys, &message, signature))
                else {
                    return Finding::Nothing;
                };
                match bundle::signed_digests(payload_type, payload) {
                    Ok(signed) if signed.iter().any(|d| d == subject.digest) => {
                        Finding::Trusted(key)
                    }
                    Ok(signed) => signed
                        .into_iter()
                        .next()
                        .map_or(Finding::Nothing, Finding::OtherDigest),
                    Err(_) => Finding::Nothing,
                }
            }
            Candidate::Bundle(bundle::Content::Message { digest, signature }) => {
                // The signature is over the manifest's bytes: one of another digest cannot be
                // checked here, so it says nothing (not even "another digest").
                match subject.manifest {
                    Some(manifest) if *digest == subject.digest => {
                        signer(keys, manifest, signature).map_or(Finding::Nothing, Finding::Trusted)
                    }
                    _ => Finding::Nothing,
                }
            }
        }
    }
}

/// What a project's trusted keys make of an image's signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A trusted key signed this digest: the first such signature, `candidate` its position
    /// among the candidates judged, `key` the key's fingerprint.
    Trusted { key: String, candidate: usize },
    /// No signature at all.
    Unsigned,
    /// Signatures, none valid by a trusted key (unknown keys, tampered payloads, garbage).
    Untrusted,
    /// A trusted key's valid signature, but over another digest.
    OtherDigest { signed: String },
}

impl Verdict {
    /// Why a pull is refused under this verdict; `None` when it is trusted.
    pub fn refusal(&self) -> Option<String> {
        match self {
            Verdict::Trusted { .. } => None,
            Verdict::Unsigned => Some("the image has no signature".into()),
            Verdict::Untrusted => Some("the image has no valid signature by a trusted key".into()),
            Verdict::OtherDigest { signed } => Some(format!(
                "the trusted signature found is for another digest ({signed})"
            )),
        }
    }
}

/// The verdict on `subject` given the signatures found for it and the trusted keys: trusted
/// when any one candidate is a valid signature by any trusted key that names the subject's
/// digest (a simple signing payload's `docker-manifest-digest`, a signing statement's
/// subject, a message signature over the manifest); a bad candidate spoils nothing.
pub fn verdict(subject: &Subject<'_>, candidates: &[Candidate], keys: &[TrustedKey]) -> Verdict {
    if candidates.is_empty() {
        return Verdict::Unsigned;
    }
    let mut other = None;
    for (position, candidate) in candidates.iter().enumerate() {
        match candidate.judge(subject, keys) {
            Finding::Trusted(key) => {
                return Verdict::Trusted {
                    key: key.fingerprint.clone(),
                    candidate: position,
                }
            }
            Finding::OtherDigest(signed) => other = Some(signed),
            Finding::Nothing => {}
        }
    }
    match other {
        Some(signed) => Verdict::OtherDigest { signed },
        None => Verdict::Untrusted,
    }
}

#[cfg(test)]
mod tests;
