//! Secrets stored sealed: AES-256-GCM (ring) under a key derived with HKDF-SHA256 from the
//! token signing key, so every server sharing the token key (replicas must) opens what
//! another sealed, and a database copy alone reveals nothing. The sealed form is
//! `v1:` + base64url(12-byte random nonce ‖ ciphertext ‖ 16-byte tag); what it belongs to
//! (e.g. the rule's name) is bound as associated data, so a sealed value moved to another
//! row does not open. A new token key cannot open what the old one sealed: the secrets must
//! be given again.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

const PREFIX: &str = "v1:";
/// HKDF's salt: names this use of the token key, so the derived key serves nothing else.
const SALT: &[u8] = b"gantry sealed secrets v1";

/// Why a sealed value did not open.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("the sealed value is malformed")]
    Malformed,
    #[error(
        "the sealed value does not open with this server's token signing key (sealed under \
         another key, or for something else): give the secret again"
    )]
    WrongKey,
}

/// Seals and opens secrets.
pub struct Sealer {
    key: LessSafeKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer")
    }
}

struct KeyLength;

impl ring::hkdf::KeyType for KeyLength {
    fn len(&self) -> usize {
        AES_256_GCM.key_len()
    }
}

impl Sealer {
    /// The sealer keyed by HKDF-SHA256 of `secret` (the token key's private scalar).
    pub fn derive(secret: &[u8]) -> Sealer {
        let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, SALT).extract(secret);
        let mut bytes = [0u8; 32];
        prk.expand(&[b"aes-256-gcm"], KeyLength)
            .and_then(|okm| okm.fill(&mut bytes))
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        let key = UnboundKey::new(&AES_256_GCM, &bytes).expect("32 bytes is an AES-256 key");
        Sealer {
            key: LessSafeKey::new(key),
        }
    }

    /// `secret` sealed for `context` (what it belongs to).
    pub fn seal(&self, context: &str, secret: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system's random source works");
        let mut sealed = secret.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut sealed,
            )
            .expect("AES-GCM seals any length a secret has");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(out))
    }

    /// The secret `sealed` holds, when it was sealed for `context` by this key.
    pub fn open(&self, context: &str, sealed: &str) -> Result<String, SealError> {
        let encoded = sealed.strip_prefix(PREFIX).ok_or(SealError::Malformed)?;
        let mut bytes = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| SealError::Malformed)?;
        if bytes.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(SealError::Malformed);
        }
        let nonce = Nonce::try_assume_unique_for_key(&bytes[..NONCE_LEN])
            .map_err(|_| SealError::Malformed)?;
        let opened = self
            .key
            .open_in_place(
                nonce,
                Aad::from(context.as_bytes()),
                &mut bytes[NONCE_LEN..],
            )
            .map_err(|_| SealError::WrongKey)?;
        String::from_utf8(opened.to_vec()).map_err(|_| SealError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_context() {
        let sealer = Sealer::derive(b"token key one");
        let sealed = sealer.seal("rule-a", "hunter2");
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains("hunter2"));
        assert_eq!(sealer.open("rule-a", &sealed).unwrap(), "hunter2");
        // Random nonces: sealing twice gives two values.
        assert_ne!(sealer.seal("rule-a", "hunter2"), sealed);
        assert_eq!(
            Sealer::derive(b"token key two").open("rule-a", &sealed),
            Err(SealError::WrongKey)
        );
        assert_eq!(sealer.open("rule-b", &sealed), Err(SealError::WrongKey));
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(sealer.open("rule-a", &tampered).is_err());
        assert_eq!(sealer.open("rule-a", "v1:abc"), Err(SealError::Malformed));
        assert_eq!(sealer.open("rule-a", "hunter2"), Err(SealError::Malformed));
    }
}
