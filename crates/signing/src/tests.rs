//! Against vectors signed by Python's `cryptography` (testdata/make.py), not by this crate.

use super::*;

const DIGEST: &str = "sha256:abababababababababababababababababababababababababababababababab";

fn data(name: &str) -> String {
    std::fs::read_to_string(format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// The image the vectors sign, without its manifest's bytes.
const SUBJECT: Subject<'static> = Subject {
    digest: DIGEST,
    manifest: None,
};

fn candidate(payload: &str, signature: &str) -> Candidate {
    Candidate::SimpleSigning {
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
            let found = verdict(&SUBJECT, &[candidate(&payload, &signature)], &[key(name)]);
            if signer == name {
                assert_eq!(
                    found,
                    Verdict::Trusted {
                        key: key(name).fingerprint().to_string(),
                        candidate: 0
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
        verdict(&SUBJECT, &[candidate(&tampered, &signature)], &keys),
        Verdict::Untrusted
    );
    let other = data("payload-other.json");
    let other_signature = data("p256-other.sig");
    let for_other = candidate(&other, &other_signature);
    assert_eq!(
        verdict(&SUBJECT, std::slice::from_ref(&for_other), &keys),
        Verdict::OtherDigest {
            signed: format!("sha256:{}", "cd".repeat(32))
        }
    );
    let garbage = candidate("not json", "%%% not base64");
    assert_eq!(
        verdict(&SUBJECT, &[garbage, for_other, good.clone()], &keys),
        Verdict::Trusted {
            key: key("p256").fingerprint().to_string(),
            candidate: 2
        }
    );
    assert_eq!(verdict(&SUBJECT, &[], &keys), Verdict::Unsigned);
    assert_eq!(
        verdict(&SUBJECT, std::slice::from_ref(&good), &[]),
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
            let _ = verdict(&SUBJECT, &[Candidate::SimpleSigning { payload: bytes.clone(), signature_base64: text.clone() }], &[key("p256")]);
            let _ = bundle::parse(&bytes);
            let _ = keyfile::decrypt(&text, b"");
            let _ = bundle::signed_digests(bundle::IN_TOTO, &bytes);
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
    // The referrers fallback tag too.
    assert_eq!(
        cosign::tag_subject(&format!("sha256-{hex}")),
        Some(format!("sha256:{hex}"))
    );
    assert_eq!(cosign::tag_subject(&format!("sha256-{hex}.tar")), None);
    assert_eq!(cosign::tag_subject("sha256-abc.sig"), None);
    assert_eq!(
        cosign::tag_subject(&format!("sha256-{}.sig", "AB".repeat(32))),
        None
    );
    assert_eq!(cosign::tag_subject("v1.2.0"), None);
}

/// A bundle vector of testdata/make-bundles.js, read.
fn bundle_candidate(name: &str) -> Candidate {
    Candidate::Bundle(bundle::parse(data(name).as_bytes()).unwrap())
}

#[test]
fn a_cosign_v3_signature_by_sigstore_sign_is_trusted_for_its_subject_only() {
    let keys = [key("p256"), key("bundle")];
    let trusted = Verdict::Trusted {
        key: key("bundle").fingerprint().to_string(),
        candidate: 0,
    };
    let signature = bundle_candidate("bundle-dsse.json");
    assert_eq!(
        verdict(&SUBJECT, std::slice::from_ref(&signature), &keys),
        trusted
    );
    assert_eq!(
        verdict(&SUBJECT, std::slice::from_ref(&signature), &[key("p256")]),
        Verdict::Untrusted
    );
    assert_eq!(
        verdict(
            &SUBJECT,
            &[bundle_candidate("bundle-dsse-other.json")],
            &keys
        ),
        Verdict::OtherDigest {
            signed: format!("sha256:{}", "cd".repeat(32))
        }
    );
    // An attestation by the same key says something of the image, but does not sign it.
    assert_eq!(
        verdict(
            &SUBJECT,
            &[bundle_candidate("bundle-attestation.json")],
            &keys
        ),
        Verdict::Untrusted
    );
    // A tampered statement: the envelope's signature no longer holds.
    let Candidate::Bundle(bundle::Content::Dsse {
        payload_type,
        mut payload,
        signatures,
    }) = signature
    else {
        panic!("a DSSE bundle")
    };
    let at = payload.len() - 5;
    payload[at] ^= 1;
    let tampered = Candidate::Bundle(bundle::Content::Dsse {
        payload_type,
        payload,
        signatures,
    });
    assert_eq!(verdict(&SUBJECT, &[tampered], &keys), Verdict::Untrusted);
}

#[test]
fn a_message_signature_holds_over_the_manifest_bytes_it_names() {
    let manifest = data("manifest.json");
    let digest = format!(
        "sha256:{}",
        hex::encode(Sha256::digest(manifest.as_bytes()))
    );
    let message = bundle_candidate("bundle-message.json");
    let keys = [key("bundle")];
    let subject = Subject {
        digest: &digest,
        manifest: Some(manifest.as_bytes()),
    };
    assert!(matches!(
        verdict(&subject, std::slice::from_ref(&message), &keys),
        Verdict::Trusted { .. }
    ));
    // Without the bytes (a reader refused the manifest) it cannot be checked.
    let blind = Subject {
        manifest: None,
        ..subject
    };
    assert_eq!(
        verdict(&blind, std::slice::from_ref(&message), &keys),
        Verdict::Untrusted
    );
    // Other bytes under the same digest claim: the signature does not hold.
    let forged = Subject {
        manifest: Some(b"{}"),
        ..subject
    };
    assert_eq!(
        verdict(&forged, std::slice::from_ref(&message), &keys),
        Verdict::Untrusted
    );
    // For another image, the message signature says nothing.
    assert_eq!(verdict(&SUBJECT, &[message], &keys), Verdict::Untrusted);
}

#[test]
fn what_is_not_an_image_signing_bundle_is_refused_saying_why() {
    for (json, says) in [
        (r#"{"mediaType":"application/json"}"#, "media type"),
        (
            r#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}"#,
            "exactly one",
        ),
        (
            r#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","messageSignature":{"messageDigest":{"algorithm":"SHA2_512","digest":""},"signature":""}}"#,
            "SHA2_512",
        ),
        (
            r#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","dsseEnvelope":{"payload":"%%","payloadType":"x","signatures":[]}}"#,
            "base64",
        ),
    ] {
        let error = bundle::parse(json.as_bytes()).unwrap_err();
        assert!(error.to_string().contains(says), "{json}: {error}");
    }
    assert!(bundle::is_bundle(bundle::BUNDLE_V03));
    assert!(bundle::is_bundle(
        "application/vnd.dev.sigstore.bundle+json;version=0.2"
    ));
    assert!(!bundle::is_bundle("application/vnd.dev.sigstore.bundlex"));
    assert!(!bundle::is_readable_layer(
        bundle::BUNDLE_V03,
        bundle::MAX_BUNDLE_BYTES + 1
    ));
}

#[test]
fn dsse_pre_authentication_encoding_is_the_protocols() {
    // secure-systems-lab/dsse protocol.md's example: type "http://example.com/HelloWorld",
    // body "hello world".
    assert_eq!(
        bundle::pae("http://example.com/HelloWorld", b"hello world"),
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
    );
}

/// A repository in memory: manifests by tag and by digest, the referrers index, blobs.
#[derive(Default)]
struct Memory {
    manifests: std::collections::HashMap<String, sources::Manifest>,
    referrers: Vec<gantry_oci::Descriptor>,
    blobs: std::collections::HashMap<gantry_oci::Digest, Vec<u8>>,
}

impl Memory {
    fn blob(&mut self, bytes: &[u8]) -> serde_json::Value {
        let digest = gantry_oci::Digest::sha256_of(bytes);
        self.blobs.insert(digest.clone(), bytes.to_vec());
        serde_json::json!({"digest": digest.to_string(), "size": bytes.len()})
    }

    /// Stores manifest JSON under its digest (and `tag`); its descriptor, with `artifact_type`.
    fn manifest(
        &mut self,
        json: &serde_json::Value,
        tag: Option<&str>,
        artifact_type: Option<&str>,
    ) -> gantry_oci::Descriptor {
        let bytes = serde_json::to_vec(json).unwrap();
        let digest = gantry_oci::Digest::sha256_of(&bytes);
        let media_type = json["mediaType"].as_str().unwrap().to_string();
        let held = sources::Manifest {
            digest: digest.clone(),
            media_type: media_type.clone(),
            bytes: bytes.clone(),
        };
        for reference in [Some(digest.to_string().as_str()), tag]
            .into_iter()
            .flatten()
        {
            self.manifests.insert(reference.to_string(), held.clone());
        }
        gantry_oci::Descriptor {
            media_type,
            digest,
            size: bytes.len() as u64,
            artifact_type: artifact_type.map(str::to_string),
            annotations: None,
            platform: None,
        }
    }

    /// A bundle manifest (an artifact of one bundle layer) holding `bundle`.
    fn bundle_manifest(&mut self, bundle: &str) -> gantry_oci::Descriptor {
        let mut layer = self.blob(bundle.as_bytes());
        layer["mediaType"] = bundle::BUNDLE_V03.into();
        let mut config = self.blob(b"{}");
        config["mediaType"] = "application/vnd.oci.empty.v1+json".into();
        self.manifest(
            &serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "artifactType": bundle::BUNDLE_V03,
                "config": config,
                "layers": [layer],
            }),
            None,
            Some(bundle::BUNDLE_V03),
        )
    }
}

impl sources::SignatureStore for Memory {
    type Error = std::convert::Infallible;

    async fn manifest(&self, reference: &str) -> Result<Option<sources::Manifest>, Self::Error> {
        Ok(self.manifests.get(reference).cloned())
    }

    async fn referrers(
        &self,
        _subject: &gantry_oci::Digest,
    ) -> Result<Vec<gantry_oci::Descriptor>, Self::Error> {
        Ok(self.referrers.clone())
    }

    async fn blob(&self, digest: &gantry_oci::Digest, _size: u64) -> Result<Vec<u8>, Self::Error> {
        Ok(self.blobs[digest].clone())
    }
}

#[test]
fn signatures_are_found_in_the_sig_tag_the_referrers_and_the_fallback_tag_each_once() {
    let digest: gantry_oci::Digest = DIGEST.parse().unwrap();
    let mut store = Memory::default();
    // Tag scheme: a payload layer and a layer that is no signature.
    let mut payload = store.blob(data("payload.json").as_bytes());
    payload["mediaType"] = cosign::SIMPLE_SIGNING.into();
    payload["annotations"] = serde_json::json!({cosign::SIGNATURE_ANNOTATION: data("p256.sig")});
    let mut other = store.blob(b"not a signature");
    other["mediaType"] = "text/plain".into();
    let mut config = store.blob(b"{}");
    config["mediaType"] = "application/vnd.oci.image.config.v1+json".into();
    let sig_tag = format!("sha256-{}.sig", "ab".repeat(32));
    store.manifest(
        &serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config,
            "layers": [payload, other],
        }),
        Some(&sig_tag),
        None,
    );
    // Bundles: one a referrer and in the fallback index both, one in the index only, one
    // that is garbage; an SBOM referrer that is no bundle.
    let both = store.bundle_manifest(&data("bundle-dsse.json"));
    let fallback_only = store.bundle_manifest(&data("bundle-dsse-other.json"));
    let garbage = store.bundle_manifest("{\"not\": \"a bundle\"}");
    let mut sbom = store.bundle_manifest("{}");
    sbom.artifact_type = Some("application/spdx+json".into());
    store.referrers = vec![both.clone(), garbage.clone(), sbom];
    store.manifest(
        &serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [both, fallback_only],
        }),
        Some(&format!("sha256-{}", "ab".repeat(32))),
        None,
    );

    let located = futures::executor::block_on(sources::locate(&store, &digest)).unwrap();
    assert!(located.tag_scheme.is_some());
    assert_eq!(located.bundles.len(), 3, "{:?}", located.bundles);
    let found = futures::executor::block_on(sources::candidates(&store, &located)).unwrap();
    // The payload, and the two bundles that read (not the garbage, not the SBOM).
    assert_eq!(found.candidates.len(), 3, "{found:?}");
    assert!(matches!(
        found.candidates[0],
        Candidate::SimpleSigning { .. }
    ));
    assert_eq!(found.holders[0], located.tag_scheme.clone().unwrap());
    let mut bundle_holders = found.holders[1..].to_vec();
    bundle_holders.sort_by_key(|d| d.to_string());
    let mut readable = vec![both.digest.clone(), fallback_only.digest.clone()];
    readable.sort_by_key(|d| d.to_string());
    assert_eq!(bundle_holders, readable);
    let keys = [key("p256"), key("bundle")];
    assert!(matches!(
        verdict(&SUBJECT, &found.candidates, &keys),
        Verdict::Trusted { .. }
    ));
    // The same signatures, the same key; another bundle, another key.
    let again = futures::executor::block_on(sources::locate(&store, &digest)).unwrap();
    assert_eq!(again, located);
    store.referrers.pop();
    store.referrers.pop();
    let fewer = futures::executor::block_on(sources::locate(&store, &digest)).unwrap();
    assert_ne!(fewer, located);
}

#[test]
fn a_sealed_key_opens_with_its_password_only_and_signs_what_the_verdict_trusts() {
    let (key, pkcs8) = keyfile::SigningKey::generate();
    let pem = keyfile::encrypt(&pkcs8, b"correct horse");
    assert!(
        pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"),
        "{pem}"
    );
    assert_eq!(keyfile::decrypt(&pem, b"correct horse").unwrap(), pkcs8);
    assert!(matches!(
        keyfile::decrypt(&pem, b"wrong"),
        Err(SigningError::WrongPassword)
    ));
    assert!(matches!(
        keyfile::decrypt(&data("p256.pub"), b""),
        Err(SigningError::KeyFile(_))
    ));
    let opened =
        keyfile::SigningKey::from_pkcs8(&keyfile::decrypt(&pem, b"correct horse").unwrap())
            .unwrap();
    assert_eq!(opened.public_pem(), key.public_pem());
    let trusted = Verdict::Trusted {
        key: key.trusted().fingerprint().to_string(),
        candidate: 0,
    };
    let (payload, signature_base64) = cosign::signature(&opened, "127.0.0.1:5000/team/app", DIGEST);
    let tag_scheme = Candidate::SimpleSigning {
        payload,
        signature_base64,
    };
    let bundle = Candidate::Bundle(
        bundle::parse(&bundle::image_signature(
            &opened,
            "127.0.0.1:5000/team/app",
            DIGEST,
        ))
        .unwrap(),
    );
    for candidate in [tag_scheme, bundle] {
        assert_eq!(
            verdict(&SUBJECT, std::slice::from_ref(&candidate), &[key.trusted()]),
            trusted
        );
        assert_eq!(
            verdict(&SUBJECT, &[candidate], &[self::key("p256")]),
            Verdict::Untrusted
        );
    }
}
