//! Secrets for robot accounts and CI credentials: 256 random bits, shown once, stored only as
//! a SHA-256 digest (a slow hash adds nothing for secrets this long, and a digest can be looked
//! up by index instead of compared row by row).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand_core::{OsRng, RngCore};
use sha2::Digest as _;

/// A new secret starting with `prefix` (e.g. `gantry_ci_`, so leaked secrets are recognisable
/// by secret scanners), and the digest to store.
pub fn generate(prefix: &str) -> (String, String) {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let secret = format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes));
    let stored = digest(&secret);
    (secret, stored)
}

/// The stored form of a secret: lowercase hex SHA-256.
pub fn digest(secret: &str) -> String {
    hex_encode(&sha2::Sha256::digest(secret.as_bytes()))
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_unique_and_stored_as_their_digest() {
        let (a, stored_a) = generate("gantry_ci_");
        let (b, _) = generate("gantry_ci_");
        assert!(a.starts_with("gantry_ci_") && a.len() == "gantry_ci_".len() + 43);
        assert_ne!(a, b);
        assert_eq!(stored_a, digest(&a));
        assert_eq!(stored_a.len(), 64);
        assert!(
            !stored_a.contains(&a[10..]),
            "the stored form does not contain the secret"
        );
        assert_eq!(
            digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
