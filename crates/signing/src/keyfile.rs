//! cosign's private key files and signing with them. `cosign generate-key-pair` writes an
//! ECDSA P-256 key as PKCS#8 DER sealed under a password (sigstore/sigstore
//! `pkg/cryptoutils`, go-securesystemslib `encrypted`): PEM `ENCRYPTED SIGSTORE PRIVATE KEY`
//! (older cosign: `ENCRYPTED COSIGN PRIVATE KEY`) around the JSON
//! `{"kdf": {"name": "scrypt", "params": {"N": 32768, "r": 8, "p": 1}, "salt": …},
//! "cipher": {"name": "nacl/secretbox", "nonce": …}, "ciphertext": …}` (base64 fields; a
//! 32-byte salt, a 24-byte nonce; the key is scrypt's 32 bytes, the box NaCl's
//! XSalsa20-Poly1305). Keys written here read in cosign and the other way round.

use base64::Engine as _;
use crypto_secretbox::aead::{Aead as _, KeyInit as _};
use ring::rand::{SecureRandom as _, SystemRandom};
use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_ASN1_SIGNING};
use serde::{Deserialize, Serialize};
use spki::der::Encode as _;

use crate::{SigningError, TrustedKey, EC_PUBLIC_KEY, P256};

/// The PEM label cosign writes.
pub const LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// The label older cosign wrote, still read.
pub const LEGACY_LABEL: &str = "ENCRYPTED COSIGN PRIVATE KEY";
/// scrypt's parameters as cosign sets them: N = 2^15, r = 8, p = 1. Files asking for others
/// are refused (a file could otherwise make reading it cost any amount of memory).
const SCRYPT_LOG_N: u8 = 15;
const SCRYPT_R: u32 = 8;
const SCRYPT_P: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Sealed {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: ScryptParams,
    salt: String,
}

#[derive(Serialize, Deserialize)]
struct ScryptParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Serialize, Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

fn bad(reason: impl Into<String>) -> SigningError {
    SigningError::KeyFile(reason.into())
}

fn box_key(password: &[u8], salt: &[u8]) -> crypto_secretbox::Key {
    let params = scrypt::Params::new(SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P, 32)
        .expect("cosign's scrypt parameters are valid");
    let mut key = crypto_secretbox::Key::default();
    scrypt::scrypt(password, salt, &params, &mut key).expect("32 bytes is a valid length");
    key
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system's random source works");
    bytes
}

/// Seals a PKCS#8 DER private key under `password` as cosign does; the PEM text.
pub fn encrypt(pkcs8: &[u8], password: &[u8]) -> String {
    let salt = random::<32>();
    let nonce = random::<24>();
    let cipher = crypto_secretbox::XSalsa20Poly1305::new(&box_key(password, &salt));
    let ciphertext = cipher
        .encrypt(&nonce.into(), pkcs8)
        .expect("sealing cannot fail");
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let sealed = Sealed {
        kdf: Kdf {
            name: "scrypt".into(),
            params: ScryptParams {
                n: 1 << SCRYPT_LOG_N,
                r: SCRYPT_R,
                p: SCRYPT_P,
            },
            salt: b64(&salt),
        },
        cipher: Cipher {
            name: "nacl/secretbox".into(),
            nonce: b64(&nonce),
        },
        ciphertext: b64(&ciphertext),
    };
    let json = serde_json::to_vec(&sealed).expect("JSON serializes");
    spki::der::pem::encode_string(LABEL, spki::der::pem::LineEnding::LF, &json)
        .expect("PEM encodes")
}

/// Opens a cosign private key file with `password`: the PKCS#8 DER key.
///
/// Errors: [`SigningError::KeyFile`] when it is not such a file (another PEM, other KDF or
/// cipher parameters), [`SigningError::WrongPassword`] when the box does not open.
pub fn decrypt(pem: &str, password: &[u8]) -> Result<Vec<u8>, SigningError> {
    let (label, json) = lenient_pem(pem)?;
    if label != LABEL && label != LEGACY_LABEL {
        return Err(bad(format!(
            "found {label}, not a cosign private key ({LABEL})"
        )));
    }
    let sealed: Sealed = serde_json::from_slice(&json).map_err(|e| bad(e.to_string()))?;
    let params = &sealed.kdf.params;
    if sealed.kdf.name != "scrypt"
        || params.n != 1 << SCRYPT_LOG_N
        || params.r != SCRYPT_R
        || params.p != SCRYPT_P
    {
        return Err(bad(
            "key derivation other than scrypt with N=32768, r=8, p=1 (what cosign writes)",
        ));
    }
    if sealed.cipher.name != "nacl/secretbox" {
        return Err(bad(format!("cipher {:?}", sealed.cipher.name)));
    }
    let field = |name: &str, value: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(value)
            .map_err(|e| bad(format!("{name} is not base64: {e}")))
    };
    let salt = field("kdf.salt", &sealed.kdf.salt)?;
    let nonce: [u8; 24] = field("cipher.nonce", &sealed.cipher.nonce)?
        .try_into()
        .map_err(|_| bad("cipher.nonce is not 24 bytes"))?;
    let ciphertext = field("ciphertext", &sealed.ciphertext)?;
    crypto_secretbox::XSalsa20Poly1305::new(&box_key(password, &salt))
        .decrypt(&nonce.into(), ciphertext.as_slice())
        .map_err(|_| SigningError::WrongPassword)
}

/// The label and bytes of a PEM block read as Go's `encoding/pem` reads it (which is how
/// cosign reads its key files): base64 lines of any length between the BEGIN and END lines.
fn lenient_pem(pem: &str) -> Result<(String, Vec<u8>), SigningError> {
    let mut lines = pem.lines().map(str::trim).skip_while(|l| l.is_empty());
    let label = lines
        .next()
        .and_then(|l| l.strip_prefix("-----BEGIN ")?.strip_suffix("-----"))
        .ok_or_else(|| bad("not a PEM file (no -----BEGIN line)"))?
        .to_string();
    let end = format!("-----END {label}-----");
    let mut body = String::new();
    for line in lines.by_ref() {
        if line == end {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(body)
                .map_err(|e| bad(format!("the PEM body is not base64: {e}")))?;
            return Ok((label, bytes));
        }
        body.push_str(line);
    }
    Err(bad(format!("not a PEM file (no {end} line)")))
}

/// An ECDSA P-256 private key, as cosign generates them; signs as cosign does (ASN.1 DER
/// over the message's SHA-256).
pub struct SigningKey {
    pair: EcdsaKeyPair,
    public_der: Vec<u8>,
}

impl SigningKey {
    /// A new random key and its PKCS#8 DER (what [`encrypt`] seals).
    pub fn generate() -> (SigningKey, Vec<u8>) {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &SystemRandom::new())
                .expect("key generation works");
        let key = SigningKey::from_pkcs8(pkcs8.as_ref()).expect("a generated key reads");
        (key, pkcs8.as_ref().to_vec())
    }

    /// Reads a PKCS#8 DER ECDSA P-256 private key (with its public key, as cosign and
    /// OpenSSL write it).
    ///
    /// Errors: [`SigningError::KeyFile`] for anything else (cosign generates P-256 keys;
    /// others are not signed with here).
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<SigningKey, SigningError> {
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8, &SystemRandom::new())
                .map_err(|e| {
                    bad(format!(
                        "not an ECDSA P-256 PKCS#8 key ({e}); sign with a key `gantry key \
                         generate` or `cosign generate-key-pair` made"
                    ))
                })?;
        let point = spki::der::asn1::BitStringRef::from_bytes(pair.public_key().as_ref())
            .expect("a point is whole bytes");
        let public_der = spki::SubjectPublicKeyInfoRef {
            algorithm: spki::AlgorithmIdentifierRef {
                oid: EC_PUBLIC_KEY,
                parameters: Some((&P256).into()),
            },
            subject_public_key: point,
        }
        .to_der()
        .expect("DER encodes");
        Ok(SigningKey { pair, public_der })
    }

    /// The signature (ASN.1 DER ECDSA over SHA-256) of `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair
            .sign(&SystemRandom::new(), message)
            .expect("signing works")
            .as_ref()
            .to_vec()
    }

    /// The public key as PEM `PUBLIC KEY` (what `cosign.pub` holds).
    pub fn public_pem(&self) -> String {
        spki::der::pem::encode_string(
            "PUBLIC KEY",
            spki::der::pem::LineEnding::LF,
            &self.public_der,
        )
        .expect("PEM encodes")
    }

    /// The public key as a policy trusts it (its fingerprint names it).
    pub fn trusted(&self) -> TrustedKey {
        TrustedKey::from_pem(&self.public_pem()).expect("a P-256 public key reads")
    }
}
