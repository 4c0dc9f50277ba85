//! Against vectors signed by Python's `cryptography` (testdata/make.py), not by this crate.

use super::*;

const DIGEST: &str = "sha256:abababababababababababababababababababababababababababababababab";

fn data(name: &str) -> String {
    std::fs::read_to_string(format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn candidate(payload: &str, signature: &str) -> Candidate {
    Candidate {
        payload: payload.as_bytes().to_vec(),
        signature_base64: signature.to_string(),
    }
}

fn key(name: &str) -> TrustedKey {
    TrustedKey::from_pem(&data(&format!("{name}.pub"))).unwrap()
}

#[test]
fn each_algorithm_cosign_uses_verifies_its_own_signature_and_no_other() {
    let payload = data("payload.json");
    let names = ["p256", "p384", "ed25519", "rsa"];
    for signer in names {
        let signature = data(&format!("{signer}.sig"));
        for name in names {
            let found = verdict(DIGEST, &[candidate(&payload, &signature)], &[key(name)]);
            if signer == name {
                assert_eq!(
                    found,
                    Verdict::Trusted {
                        key: key(name).fingerprint().to_string()
                    },
                    "{signer}"
                );
            } else {
                assert_eq!(found, Verdict::Untrusted, "{signer} by {name}");
            }
        }
    }
    assert_eq!(key("p384").algorithm(), KeyAlgorithm::EcdsaP384);
    assert_eq!(key("rsa").algorithm().as_str(), "rsa");
}

#[test]
fn a_tampered_payload_or_another_digest_is_not_trusted_and_a_bad_signature_spoils_nothing() {
    let payload = data("payload.json");
    let tampered = payload.replace("team/app", "team/app2");
    let signature = data("p256.sig");
    let good = candidate(&payload, &signature);
    let keys = [key("ed25519"), key("p256")];
    assert_eq!(
        verdict(DIGEST, &[candidate(&tampered, &signature)], &keys),
        Verdict::Untrusted
    );
    let other = data("payload-other.json");
    let other_signature = data("p256-other.sig");
    let for_other = candidate(&other, &other_signature);
    assert_eq!(
        verdict(DIGEST, std::slice::from_ref(&for_other), &keys),
        Verdict::OtherDigest {
            signed: format!("sha256:{}", "cd".repeat(32))
        }
    );
    let garbage = candidate("not json", "%%% not base64");
    assert_eq!(
        verdict(DIGEST, &[garbage, for_other, good.clone()], &keys),
        Verdict::Trusted {
            key: key("p256").fingerprint().to_string()
        }
    );
    assert_eq!(verdict(DIGEST, &[], &keys), Verdict::Unsigned);
    assert_eq!(
        verdict(DIGEST, std::slice::from_ref(&good), &[]),
        Verdict::Untrusted
    );
}

#[test]
fn keys_cosign_cannot_sign_with_and_non_keys_are_refused_saying_what_to_give() {
    let k256 = TrustedKey::from_pem(&data("k256.pub")).unwrap_err();
    assert!(matches!(k256, SigningError::UnsupportedKey(_)), "{k256}");
    let private =
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n";
    let error = TrustedKey::from_pem(private).unwrap_err();
    assert!(error.to_string().contains("BEGIN PUBLIC KEY"), "{error}");
    assert!(TrustedKey::from_pem("hello").is_err());
}

#[test]
fn the_signature_tag_is_the_digest_with_a_dash_and_sig() {
    assert_eq!(
        cosign::signature_tag("sha256:abc").as_deref(),
        Some("sha256-abc.sig")
    );
    assert_eq!(cosign::signature_tag("nocolon"), None);
}

#[test]
fn only_cosign_container_image_signatures_are_payloads() {
    let payload = data("payload.json");
    assert_eq!(cosign::signed_digest(payload.as_bytes()).unwrap(), DIGEST);
    let other_type = payload.replace("cosign container image signature", "something else");
    assert!(cosign::signed_digest(other_type.as_bytes()).is_err());
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_key_text_or_payload_is_read_without_panicking(text in "\\PC{0,600}", bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = TrustedKey::from_pem(&text);
            let _ = TrustedKey::from_pem(&format!("-----BEGIN PUBLIC KEY-----\n{text}\n-----END PUBLIC KEY-----\n"));
            let _ = cosign::signed_digest(&bytes);
            let _ = verdict(DIGEST, &[Candidate { payload: bytes.clone(), signature_base64: text.clone() }], &[key("p256")]);
        }
    }
}

#[test]
fn a_policy_reads_its_keys_and_refuses_to_enforce_without_one() {
    let policy: SigningPolicy = serde_json::from_str("{}").unwrap();
    assert_eq!(policy, SigningPolicy::default());
    assert!(policy.index_covers_children && !policy.enforce);
    let enforcing = SigningPolicy {
        enforce: true,
        ..SigningPolicy::default()
    };
    assert!(matches!(
        enforcing.trusted_keys(),
        Err(SigningError::NoKeys)
    ));
    let keys = SigningPolicy {
        keys: vec![data("p256.pub"), "garbage".into()],
        enforce: true,
        ..SigningPolicy::default()
    };
    let error = keys.trusted_keys().unwrap_err();
    assert!(error.to_string().starts_with("key 1"), "{error}");
}

#[test]
fn tag_scheme_tags_name_their_subject() {
    let hex = "ab".repeat(32);
    for suffix in ["sig", "att", "sbom"] {
        assert_eq!(
            cosign::tag_subject(&format!("sha256-{hex}.{suffix}")),
            Some(format!("sha256:{hex}"))
        );
    }
    assert_eq!(cosign::tag_subject(&format!("sha256-{hex}")), None);
    assert_eq!(cosign::tag_subject("sha256-abc.sig"), None);
    assert_eq!(
        cosign::tag_subject(&format!("sha256-{}.sig", "AB".repeat(32))),
        None
    );
    assert_eq!(cosign::tag_subject("v1.2.0"), None);
}
