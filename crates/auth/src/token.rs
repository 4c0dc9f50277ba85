//! Registry tokens as the Docker token spec defines them: ES256-signed JWTs whose `access`
//! claim lists the granted (type, name, actions). The verifier accepts only ES256 with this
//! key's `kid`, so `alg: none`, HMAC confusion and foreign keys are refused before any claim
//! is read.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::Scope;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed: {0}")]
    Malformed(&'static str),
    #[error("token algorithm {0:?} is not accepted; only ES256 is")]
    Algorithm(String),
    #[error("token was signed by an unknown key")]
    UnknownKey,
    #[error("token signature is invalid")]
    Signature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token was issued for another service")]
    Audience,
    #[error("token signing key {path}: {reason}")]
    Key { path: String, reason: String },
}

/// One entry of the `access` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl From<&Scope> for Access {
    fn from(scope: &Scope) -> Self {
        let (kind, name) = scope.type_and_name();
        Access {
            kind: kind.to_string(),
            name: name.to_string(),
            actions: scope.actions.iter().cloned().collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    pub jti: String,
    #[serde(default)]
    pub access: Vec<Access>,
}

impl Claims {
    /// Whether the token grants `action` (`pull`, `push`, `delete`) on (`kind`, `name`).
    pub fn allows(&self, kind: &str, name: &str, action: &str) -> bool {
        self.access.iter().any(|a| {
            a.kind == kind && a.name == name && a.actions.iter().any(|x| x == action || x == "*")
        })
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
}

/// Tolerated clock difference for `nbf`, so that a token used at once on another replica works.
const CLOCK_SKEW_SECS: u64 = 30;

/// The registry's signing key and its key id.
pub struct TokenKey {
    signing: SigningKey,
    verifying: VerifyingKey,
    kid: String,
}

/// The key id in libtrust's form (base32 of the first 240 bits of the SHA-256 of the public
/// key's DER, in twelve groups of four), which CNCF Distribution also computes.
fn libtrust_kid(verifying: &VerifyingKey) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let der = verifying
        .to_public_key_der()
        .expect("P-256 public keys encode");
    let hash = sha2::Sha256::digest(der.as_bytes());
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut out = String::new();
    for byte in &hash[..30] {
        bits = (bits << 8) | *byte as u32;
        nbits += 8;
        while nbits >= 5 {
            nbits -= 5;
            out.push(ALPHABET[((bits >> nbits) & 31) as usize] as char);
        }
    }
    out.as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect::<Vec<_>>()
        .join(":")
}

fn key_error(path: &Path, reason: String) -> TokenError {
    TokenError::Key {
        path: path.display().to_string(),
        reason,
    }
}

impl TokenKey {
    pub fn generate() -> TokenKey {
        TokenKey::from_signing(SigningKey::random(&mut rand_core::OsRng))
    }

    fn from_signing(signing: SigningKey) -> TokenKey {
        let verifying = *signing.verifying_key();
        let kid = libtrust_kid(&verifying);
        TokenKey {
            signing,
            verifying,
            kid,
        }
    }

    /// Loads the PKCS#8 PEM P-256 key at `path` (what `openssl genpkey -algorithm EC -pkeyopt
    /// ec_paramgen_curve:P-256` writes). A missing file is an error ([`TokenError::Key`]): a
    /// key given explicitly is shared by replicas, and one made by each of them would not be.
    pub fn load(path: &Path) -> Result<TokenKey, TokenError> {
        let pem = std::fs::read_to_string(path).map_err(|e| key_error(path, e.to_string()))?;
        TokenKey::from_pem(path, &pem)
    }

    fn from_pem(path: &Path, pem: &str) -> Result<TokenKey, TokenError> {
        SigningKey::from_pkcs8_pem(pem)
            .map(TokenKey::from_signing)
            .map_err(|e| key_error(path, format!("not a PKCS#8 P-256 key: {e}")))
    }

    /// Loads the PKCS#8 PEM key at `path`, creating it (mode 0600) on first start.
    pub fn load_or_generate(path: &Path) -> Result<TokenKey, TokenError> {
        let fail = |reason: String| key_error(path, reason);
        match std::fs::read_to_string(path) {
            Ok(pem) => TokenKey::from_pem(path, &pem),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let key = TokenKey::generate();
                let pem = key
                    .signing
                    .to_pkcs8_pem(LineEnding::LF)
                    .map_err(|e| fail(e.to_string()))?;
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| fail(e.to_string()))?;
                file.write_all(pem.as_bytes())
                    .and_then(|_| file.sync_all())
                    .map_err(|e| fail(e.to_string()))?;
                Ok(key)
            }
            Err(e) => Err(fail(e.to_string())),
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The sealer of stored secrets (remote registries' passwords), keyed by this key: every
    /// server that shares the token key opens what another sealed.
    pub fn sealer(&self) -> crate::sealed::Sealer {
        crate::sealed::Sealer::derive(&self.signing.to_bytes())
    }

    /// Signs `claims` into a compact JWS.
    pub fn issue(&self, claims: &Claims) -> String {
        let header = Header {
            alg: "ES256".into(),
            typ: Some("JWT".into()),
            kid: Some(self.kid.clone()),
        };
        let encode = |v: &[u8]| URL_SAFE_NO_PAD.encode(v);
        let signing_input = format!(
            "{}.{}",
            encode(&serde_json::to_vec(&header).expect("header serializes")),
            encode(&serde_json::to_vec(claims).expect("claims serialize"))
        );
        let signature: Signature = self.signing.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", encode(&signature.to_bytes()))
    }

    /// Verifies a token for `audience` at time `now` (Unix seconds) and returns its claims.
    pub fn verify(&self, token: &str, audience: &str, now: u64) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed("expected three dot-separated parts"));
        };
        let decode = |s: &str| {
            URL_SAFE_NO_PAD
                .decode(s)
                .map_err(|_| TokenError::Malformed("invalid base64url"))
        };
        let parsed: Header = serde_json::from_slice(&decode(header)?)
            .map_err(|_| TokenError::Malformed("header is not JSON"))?;
        if parsed.alg != "ES256" {
            return Err(TokenError::Algorithm(parsed.alg));
        }
        if parsed.kid.as_deref() != Some(self.kid.as_str()) {
            return Err(TokenError::UnknownKey);
        }
        let signature =
            Signature::from_slice(&decode(signature)?).map_err(|_| TokenError::Signature)?;
        let signing_input = &token[..header.len() + 1 + payload.len()];
        self.verifying
            .verify(signing_input.as_bytes(), &signature)
            .map_err(|_| TokenError::Signature)?;
        let claims: Claims = serde_json::from_slice(&decode(payload)?)
            .map_err(|_| TokenError::Malformed("claims are not JSON"))?;
        if claims.aud != audience {
            return Err(TokenError::Audience);
        }
        if now >= claims.exp {
            return Err(TokenError::Expired);
        }
        if claims.nbf > now + CLOCK_SKEW_SECS {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn claims() -> Claims {
        let scope = Scope::parse("repository:team-a/app:pull,push").unwrap();
        Claims {
            iss: "gantry".into(),
            sub: "alice".into(),
            aud: "gantry-registry".into(),
            exp: NOW + 300,
            nbf: NOW,
            iat: NOW,
            jti: "id-1".into(),
            access: vec![Access::from(&scope)],
        }
    }

    fn forge(header: &str, payload: &Claims, signature: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(payload).unwrap()),
            URL_SAFE_NO_PAD.encode(signature)
        )
    }

    #[test]
    fn issued_tokens_verify_and_carry_their_access() {
        let key = TokenKey::generate();
        let token = key.issue(&claims());
        let got = key.verify(&token, "gantry-registry", NOW + 10).unwrap();
        assert_eq!(got, claims());
        assert!(got.allows("repository", "team-a/app", "push"));
        assert!(!got.allows("repository", "team-a/app", "delete"));
        assert!(
            !got.allows("repository", "team-b/app", "pull"),
            "a token for project A is not one for B"
        );
    }

    #[test]
    fn alg_none_and_hmac_are_refused() {
        let key = TokenKey::generate();
        let none = forge(r#"{"alg":"none","typ":"JWT"}"#, &claims(), b"");
        assert!(
            matches!(key.verify(&none, "gantry-registry", NOW), Err(TokenError::Algorithm(a)) if a == "none")
        );
        let hmac = forge(
            &format!(r#"{{"alg":"HS256","kid":"{}"}}"#, key.kid()),
            &claims(),
            b"0123456789",
        );
        assert!(matches!(
            key.verify(&hmac, "gantry-registry", NOW),
            Err(TokenError::Algorithm(_))
        ));
    }

    #[test]
    fn tokens_of_another_key_are_refused() {
        let ours = TokenKey::generate();
        let theirs = TokenKey::generate();
        assert!(matches!(
            ours.verify(&theirs.issue(&claims()), "gantry-registry", NOW),
            Err(TokenError::UnknownKey)
        ));
        // Even when the attacker copies our kid into the header.
        let header = format!(r#"{{"alg":"ES256","kid":"{}"}}"#, ours.kid());
        let unsigned = forge(&header, &claims(), &[0u8; 64]);
        let signing_input = unsigned.rsplit_once('.').unwrap().0;
        let signature: Signature = theirs.signing.sign(signing_input.as_bytes());
        let forged = format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        );
        assert!(matches!(
            ours.verify(&forged, "gantry-registry", NOW),
            Err(TokenError::Signature)
        ));
    }

    #[test]
    fn tampered_payload_is_refused() {
        let key = TokenKey::generate();
        let token = key.issue(&claims());
        let (header, rest) = token.split_once('.').unwrap();
        let signature = rest.rsplit_once('.').unwrap().1;
        let mut escalated = claims();
        escalated.access[0].actions.push("delete".into());
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&escalated).unwrap());
        let tampered = format!("{header}.{payload}.{signature}");
        assert!(matches!(
            key.verify(&tampered, "gantry-registry", NOW),
            Err(TokenError::Signature)
        ));
    }

    #[test]
    fn expiry_not_before_and_audience_are_enforced() {
        let key = TokenKey::generate();
        let token = key.issue(&claims());
        assert!(matches!(
            key.verify(&token, "gantry-registry", NOW + 300),
            Err(TokenError::Expired)
        ));
        assert!(matches!(
            key.verify(&token, "other-service", NOW),
            Err(TokenError::Audience)
        ));
        let mut early = claims();
        early.nbf = NOW + 120;
        assert!(matches!(
            key.verify(&key.issue(&early), "gantry-registry", NOW),
            Err(TokenError::NotYetValid)
        ));
        for junk in ["", "a.b", "a.b.c.d", "!!.!!.!!"] {
            assert!(
                matches!(
                    key.verify(junk, "gantry-registry", NOW),
                    Err(TokenError::Malformed(_))
                ),
                "{junk}"
            );
        }
    }

    #[test]
    fn key_is_created_once_with_private_mode_and_reloaded() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token-key.pem");
        let first = TokenKey::load_or_generate(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let again = TokenKey::load_or_generate(&path).unwrap();
        assert_eq!(first.kid(), again.kid());
        assert!(again
            .verify(&first.issue(&claims()), "gantry-registry", NOW)
            .is_ok());
        let kid = first.kid();
        assert_eq!(kid.len(), 59, "{kid}");
        assert_eq!(kid.split(':').count(), 12);
        std::fs::write(&path, "not a key").unwrap();
        assert!(matches!(
            TokenKey::load_or_generate(&path),
            Err(TokenError::Key { .. })
        ));
    }

    #[test]
    fn a_given_key_file_that_is_missing_is_refused_not_generated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared-key.pem");
        let err = TokenKey::load(&path)
            .err()
            .expect("a missing key is refused");
        assert!(
            matches!(&err, TokenError::Key { path: p, .. } if p.ends_with("shared-key.pem")),
            "{err}"
        );
        assert!(!path.exists(), "nothing is generated");
        // A key made beforehand (here by a first server) is what every replica loads.
        let made = TokenKey::load_or_generate(&path).unwrap();
        let loaded = TokenKey::load(&path).unwrap();
        assert_eq!(made.kid(), loaded.kid());
        assert!(loaded
            .verify(&made.issue(&claims()), "gantry-registry", NOW)
            .is_ok());
    }

    proptest::proptest! {
        #[test]
        fn verification_never_panics_on_garbage(token in "\\PC{0,200}|[A-Za-z0-9_-]{0,60}\\.[A-Za-z0-9_-]{0,60}\\.[A-Za-z0-9_-]{0,90}") {
            let key = TokenKey::generate();
            proptest::prop_assert!(key.verify(&token, "gantry-registry", NOW).is_err());
        }
    }
}
