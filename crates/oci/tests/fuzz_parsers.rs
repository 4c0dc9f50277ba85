//! Property-based fuzzing of every parser that sees untrusted input: digests, repository
//! names, tags, references and manifests. None may panic, and what they accept must obey the
//! grammar they enforce.

use gantry_oci::manifest::parse;
use gantry_oci::{media_type, Digest, Reference, RepositoryName, Tag};
use proptest::prelude::*;
use serde_json::{json, Value};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,20}".prop_map(Value::from),
        Just(Value::from(media_type::OCI_MANIFEST)),
        Just(Value::from(2)),
        Just(Value::from(format!("sha256:{}", "a".repeat(64)))),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("schemaVersion".to_string()),
                    Just("mediaType".to_string()),
                    Just("config".to_string()),
                    Just("layers".to_string()),
                    Just("manifests".to_string()),
                    Just("subject".to_string()),
                    Just("digest".to_string()),
                    Just("size".to_string()),
                    Just("artifactType".to_string()),
                    Just("annotations".to_string()),
                    "[a-z]{1,8}",
                ],
                inner,
                0..8
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn content_type() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some(media_type::OCI_MANIFEST.to_string())),
        Just(Some(media_type::OCI_INDEX.to_string())),
        Just(Some(media_type::DOCKER_MANIFEST.to_string())),
        Just(Some(media_type::DOCKER_MANIFEST_LIST.to_string())),
        ".{0,40}".prop_map(Some),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn digest_parsing_never_panics_and_accepts_only_canonical_forms(s in "\\PC{0,140}|(sha256|sha512|md5|SHA256):[0-9a-fA-F]{0,130}") {
        if let Ok(d) = s.parse::<Digest>() {
            prop_assert_eq!(d.to_string(), s.clone());
            prop_assert_eq!(s.parse::<Digest>().unwrap(), d);
        }
    }

    #[test]
    fn accepted_repository_names_cannot_traverse_paths(s in "[a-z0-9./_%-]{0,40}|\\PC{0,40}") {
        if let Ok(name) = RepositoryName::parse(&s) {
            let n = name.as_str();
            prop_assert!(!n.is_empty() && n.len() <= 255);
            prop_assert!(!n.starts_with('/') && !n.ends_with('/') && !n.contains("//"));
            prop_assert!(n.split('/').all(|c| c != "." && c != ".."));
            prop_assert!(n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/".contains(&b)));
        }
    }

    #[test]
    fn accepted_tags_follow_the_grammar(s in "\\PC{0,140}") {
        if let Ok(tag) = Tag::parse(&s) {
            let t = tag.as_str();
            prop_assert!(t.len() <= 128 && !t.starts_with('.') && !t.starts_with('-'));
            prop_assert!(t.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
        }
    }

    #[test]
    fn reference_parsing_never_panics(s in "\\PC{0,140}") {
        let _ = Reference::parse(&s);
    }

    #[test]
    fn manifest_parsing_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512), ct in content_type()) {
        let _ = parse(&bytes, ct.as_deref());
    }

    #[test]
    fn manifest_parsing_never_panics_on_arbitrary_json(value in json_value(), ct in content_type()) {
        let bytes = serde_json::to_vec(&value).unwrap();
        if let Ok(m) = parse(&bytes, ct.as_deref()) {
            // Whatever is accepted is one of the stored types and lists well-formed digests.
            prop_assert!(media_type::MANIFEST_TYPES.contains(&m.media_type.as_str()));
            for d in m.blob_digests().chain(m.manifests.iter().map(|d| &d.digest)) {
                prop_assert_eq!(d.to_string().parse::<Digest>().unwrap(), d.clone());
            }
        }
    }

    #[test]
    fn generated_valid_manifests_parse_with_every_reference(layers in prop::collection::vec((any::<[u8; 8]>(), 0u64..1 << 40), 0..20)) {
        let descriptors: Vec<Value> = layers
            .iter()
            .map(|(seed, size)| json!({"mediaType": media_type::OCI_LAYER_GZIP, "digest": Digest::sha256_of(seed).to_string(), "size": size}))
            .collect();
        let config = Digest::sha256_of(b"config");
        let body = json!({"schemaVersion": 2, "mediaType": media_type::OCI_MANIFEST,
            "config": {"mediaType": media_type::OCI_CONFIG, "digest": config.to_string(), "size": 6}, "layers": descriptors});
        let m = parse(&serde_json::to_vec(&body).unwrap(), Some(media_type::OCI_MANIFEST)).unwrap();
        let expected: Vec<Digest> = std::iter::once(config).chain(layers.iter().map(|(seed, _)| Digest::sha256_of(seed))).collect();
        prop_assert_eq!(m.blob_digests().cloned().collect::<Vec<_>>(), expected);
    }
}
