//! BuildKit's registry cache (`--cache-to type=registry,ref=…,mode=max` and `--cache-from`).
//! No BuildKit runs here, so the test pushes what BuildKit's exporter writes
//! (moby/buildkit `cache/remotecache`): without `image-manifest=true` an index whose entries
//! are the cache blobs — layers carrying `containerd.io/uncompressed` and `buildkit/createdat`
//! annotations, and the `application/vnd.buildkit.cacheconfig.v0` config — as an OCI index or,
//! with `oci-mediatypes=false`, a Docker manifest list; with `image-manifest=true` an OCI
//! image manifest whose config is the cache config. Raw HTTP, as BuildKit's pusher speaks it.

mod common;

use common::*;
use gantry_oci::{media_type, Digest};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// The cache config BuildKit writes for `layers` (its `cache/remotecache/v1` layout): a
/// chain of layers, and a record per layer.
fn cache_config(layers: &[Digest]) -> Vec<u8> {
    let chain: Vec<Value> = layers
        .iter()
        .enumerate()
        .map(|(i, blob)| json!({"blob": blob.to_string(), "parent": i as i64 - 1}))
        .collect();
    let records: Vec<Value> = (0..layers.len())
        .map(|i| {
            json!({
                "digest": Digest::sha256_of(format!("record {i}").as_bytes()).to_string(),
                "layers": [{"createdat": "2026-11-30T10:00:00Z", "layer": i}],
                "inputs": if i == 0 { json!([]) } else { json!([[{"link": i - 1}]]) },
            })
        })
        .collect();
    serde_json::to_vec(&json!({"layers": chain, "records": records})).unwrap()
}

/// A cache layer's descriptor, with the annotations BuildKit adds.
fn cache_layer(media_type: &str, content: &[u8]) -> Value {
    let mut d = descriptor(media_type, content);
    d["annotations"] = json!({
        "buildkit/createdat": "2026-11-30T10:00:00.123456789Z",
        "containerd.io/uncompressed": Digest::sha256_of(b"uncompressed").to_string(),
    });
    d
}

/// Pushes the cache blobs of `seed` to `repo`; the layers' contents and the config.
async fn push_cache_blobs(s: &Server, repo: &str, seed: &str) -> (Vec<Vec<u8>>, Vec<u8>) {
    let layers: Vec<Vec<u8>> = (0..3)
        .map(|i| incompressible_bytes(20_000 + i * 1000, seed.len() as u64 * 10 + i as u64))
        .collect();
    for layer in &layers {
        push_blob(s, repo, layer).await;
    }
    let digests: Vec<Digest> = layers.iter().map(|l| Digest::sha256_of(l)).collect();
    let config = cache_config(&digests);
    push_blob(s, repo, &config).await;
    (layers, config)
}

/// What BuildKit exports without `image-manifest=true`: an index (or Docker manifest list)
/// listing the cache blobs.
fn cache_index(index_type: &str, layer_type: &str, layers: &[Vec<u8>], config: &[u8]) -> Vec<u8> {
    let mut entries: Vec<Value> = layers.iter().map(|l| cache_layer(layer_type, l)).collect();
    entries.push(descriptor(media_type::BUILDKIT_CACHE_CONFIG, config));
    serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": index_type, "manifests": entries}))
        .unwrap()
}

/// What BuildKit exports with `image-manifest=true`.
fn cache_image_manifest(layers: &[Vec<u8>], config: &[u8]) -> Vec<u8> {
    let layers: Vec<Value> = layers
        .iter()
        .map(|l| cache_layer(media_type::OCI_LAYER_GZIP, l))
        .collect();
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": descriptor(media_type::BUILDKIT_CACHE_CONFIG, config),
        "layers": layers,
    }))
    .unwrap()
}

async fn pull_bytes(s: &Server, path: &str, accept: &str) -> (StatusCode, Vec<u8>) {
    let r = http()
        .get(s.url(path))
        .header("accept", accept)
        .send()
        .await
        .unwrap();
    (r.status(), r.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread")]
async fn buildkit_caches_in_both_modes_push_pull_byte_identical_and_survive_gc() {
    let s = Server::start();
    api_create_project(&s, "team", false).await;
    let modes = [
        (
            "cache-index-oci",
            media_type::OCI_INDEX,
            media_type::OCI_LAYER_GZIP,
        ),
        (
            "cache-index-docker",
            media_type::DOCKER_MANIFEST_LIST,
            media_type::DOCKER_LAYER_GZIP,
        ),
        ("cache-image-manifest", media_type::OCI_MANIFEST, ""),
    ];
    let mut pushed = Vec::new();
    for (tag, manifest_type, layer_type) in modes {
        let (layers, config) = push_cache_blobs(&s, "team/app", tag).await;
        let manifest = if manifest_type == media_type::OCI_MANIFEST {
            cache_image_manifest(&layers, &config)
        } else {
            cache_index(manifest_type, layer_type, &layers, &config)
        };
        let r = put_manifest(&s, "team/app", tag, manifest_type, &manifest).await;
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{tag}: {}",
            r.text().await.unwrap()
        );
        pushed.push((tag, manifest_type, manifest, layers, config));
    }

    // `--cache-from`: the manifest and every blob back, byte for byte; then again after a
    // collection with no grace window.
    for collected in [false, true] {
        if collected {
            gc_now(&s).await;
        }
        for (tag, manifest_type, manifest, layers, config) in &pushed {
            let (status, body) =
                pull_bytes(&s, &format!("/v2/team/app/manifests/{tag}"), manifest_type).await;
            assert_eq!(status, StatusCode::OK, "{tag}");
            assert_eq!(&body, manifest, "{tag} (after gc: {collected})");
            for blob in layers.iter().chain(std::iter::once(config)) {
                let digest = Digest::sha256_of(blob);
                let (status, body) =
                    pull_bytes(&s, &format!("/v2/team/app/blobs/{digest}"), "*/*").await;
                assert_eq!(
                    status,
                    StatusCode::OK,
                    "{tag}: blob {digest} after gc: {collected}"
                );
                assert_eq!(&body, blob);
            }
        }
    }

    // A cache is an artifact of its own type, and its blobs are its own: a cache index pulled
    // for its tag lists no platforms, its size counts its blobs.
    let listed = get_json(&s, "/api/v1/repositories/team%2Fapp/artifacts").await;
    for (tag, ..) in &pushed {
        let artifact = listed["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["tags"] == json!([tag]))
            .unwrap_or_else(|| panic!("{tag} listed: {listed}"));
        assert!(
            artifact["size_bytes"].as_u64().unwrap() > 60_000,
            "{artifact}"
        );
        assert_eq!(artifact["platforms"], json!([]), "{artifact}");
    }

    // Retention counts no cache as an image: a policy that keeps no image leaves them; rules
    // for caches select them (and, as for images, a cache they leave unselected goes).
    let r = http()
        .put(s.url("/api/v1/projects/team/retention"))
        .json(
            &json!({"rules": [{"tags": {"include": ["*"]}, "keep": {"most_recently_pushed": 0}}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let r = http()
        .post(s.url("/api/v1/projects/team/retention/runs?dry_run=true"))
        .send()
        .await
        .unwrap();
    let plan: Value = r.json().await.unwrap();
    assert_eq!(plan["delete_tags"], json!([]), "{plan}");
    let r = http()
        .put(s.url("/api/v1/projects/team/retention"))
        .json(&json!({"rules": [
            {"buildkit_cache": true, "tags": {"include": ["cache-index-*"]}, "keep": {"most_recently_pushed": 0}},
            {"buildkit_cache": true, "tags": {"include": ["cache-image-*"]}, "keep": "always"},
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let r = http()
        .post(s.url("/api/v1/projects/team/retention/runs"))
        .send()
        .await
        .unwrap();
    let plan: Value = r.json().await.unwrap();
    let mut deleted: Vec<&str> = plan["delete_tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tag"].as_str().unwrap())
        .collect();
    deleted.sort();
    assert_eq!(deleted, ["cache-index-docker", "cache-index-oci"], "{plan}");

    // What the deleted caches referenced goes with the next collection; the kept one stays.
    gc_now(&s).await;
    let (_, _, _, gone_layers, _) = &pushed[0];
    let (status, _) = pull_bytes(
        &s,
        &format!("/v2/team/app/blobs/{}", Digest::sha256_of(&gone_layers[0])),
        "*/*",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (tag, manifest_type, manifest, ..) = &pushed[2];
    let (status, body) =
        pull_bytes(&s, &format!("/v2/team/app/manifests/{tag}"), manifest_type).await;
    assert_eq!((status, &body), (StatusCode::OK, manifest));
}
