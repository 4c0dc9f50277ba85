//! Endpoint-by-endpoint conformance suite, written from the OCI Distribution Spec v1.1:
//! statuses, headers, bodies and error codes, against the real `gantry serve`.

mod common;

use common::*;
use gantry_oci::{media_type, Algorithm, Digest};
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test]
async fn base_endpoint_answers_with_api_version() {
    let s = Server::start();
    for path in ["/v2/", "/v2"] {
        let r = http().get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            header(&r, "docker-distribution-api-version"),
            Some("registry/2.0")
        );
    }
}

#[tokio::test]
async fn unknown_endpoints_and_methods_are_oci_errors() {
    let s = Server::start();
    let c = http();
    assert_error(
        c.get(s.url("/v2/a/unknown/x")).send().await.unwrap(),
        StatusCode::NOT_FOUND,
        "UNSUPPORTED",
    )
    .await;
    assert_error(
        c.get(s.url("/nothing")).send().await.unwrap(),
        StatusCode::NOT_FOUND,
        "UNSUPPORTED",
    )
    .await;
    assert_error(
        c.post(s.url("/v2/a/tags/list")).send().await.unwrap(),
        StatusCode::METHOD_NOT_ALLOWED,
        "UNSUPPORTED",
    )
    .await;
    let r = c.get(s.url("/v2/a/tags/list?n=-1")).send().await.unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "UNSUPPORTED").await;
}

#[tokio::test]
async fn monolithic_upload_then_head_and_get() {
    let s = Server::start();
    let content = b"hello blob".to_vec();
    let digest = Digest::sha256_of(&content);
    let r = http()
        .post(s.url(&format!("/v2/team/app/blobs/uploads/?digest={digest}")))
        .body(content.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        header(&r, "location"),
        Some(format!("/v2/team/app/blobs/{digest}").as_str())
    );
    assert_eq!(
        header(&r, "docker-content-digest"),
        Some(digest.to_string().as_str())
    );

    let r = http()
        .head(s.url(&format!("/v2/team/app/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-length"), Some("10"));
    assert_eq!(
        header(&r, "docker-content-digest"),
        Some(digest.to_string().as_str())
    );

    let r = http()
        .get(s.url(&format!("/v2/team/app/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-type"), Some("application/octet-stream"));
    assert_eq!(r.bytes().await.unwrap(), content);
}

#[tokio::test]
async fn blob_whose_bytes_do_not_match_its_digest_is_refused_and_invisible() {
    let s = Server::start();
    let claimed = Digest::sha256_of(b"what the client claims");
    let r = http()
        .post(s.url(&format!("/v2/r/blobs/uploads/?digest={claimed}")))
        .body("something else")
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    let r = http()
        .head(s.url(&format!("/v2/r/blobs/{claimed}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let actual = Digest::sha256_of(b"something else");
    let r = http()
        .get(s.url(&format!("/v2/r/blobs/{actual}")))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
}

#[tokio::test]
async fn post_then_put_upload() {
    let s = Server::start();
    let c = http();
    let r = c.post(s.url("/v2/r/blobs/uploads/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = header(&r, "location").unwrap().to_string();
    assert!(location.starts_with("/v2/r/blobs/uploads/"));
    assert!(header(&r, "docker-upload-uuid").is_some());
    assert_eq!(header(&r, "range"), Some("0-0"));
    let content = b"two step upload";
    let digest = Digest::sha256_of(content);
    let r = c
        .put(s.url(&format!("{location}?digest={digest}")))
        .body(content.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        header(&r, "docker-content-digest"),
        Some(digest.to_string().as_str())
    );
    // The session is gone once completed.
    let r = c.get(s.url(&location)).send().await.unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
}

#[tokio::test]
async fn chunked_upload_with_status_and_out_of_order_chunk() {
    let s = Server::start();
    let c = http();
    let content: Vec<u8> = (0..30u8).collect();
    let digest = Digest::sha256_of(&content);
    let r = c.post(s.url("/v2/r/blobs/uploads/")).send().await.unwrap();
    let mut location = header(&r, "location").unwrap().to_string();

    for (start, end) in [(0usize, 10usize), (10, 20)] {
        let r = patch_chunk(
            &s,
            &location,
            &format!("{start}-{}", end - 1),
            &content[start..end],
        )
        .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert_eq!(header(&r, "range"), Some(format!("0-{}", end - 1).as_str()));
        location = header(&r, "location").unwrap().to_string();
    }

    let r = c.get(s.url(&location)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "range"), Some("0-19"));
    assert_eq!(header(&r, "location"), Some(location.as_str()));

    // A chunk that does not continue where the upload ends.
    let r = patch_chunk(&s, &location, "25-29", &content[25..30]).await;
    assert_eq!(header(&r, "range"), Some("0-19"));
    assert_error(r, StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID").await;
    // A Content-Range that disagrees with the body's length.
    let r = patch_chunk(&s, &location, "20-29", &content[20..25]).await;
    assert_error(r, StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID").await;

    // Last chunk with the closing PUT.
    let r = c
        .put(s.url(&format!("{location}?digest={digest}")))
        .header("content-range", "20-29")
        .body(content[20..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let got = get_bytes(&s, &format!("/v2/r/blobs/{digest}")).await;
    assert_eq!(got, content);
}

#[tokio::test]
async fn digest_parameter_errors() {
    let s = Server::start();
    let c = http();
    let new_session = || async {
        let r = c.post(s.url("/v2/r/blobs/uploads/")).send().await.unwrap();
        header(&r, "location").unwrap().to_string()
    };
    let location = new_session().await;
    assert_error(
        c.put(s.url(&location)).send().await.unwrap(),
        StatusCode::BAD_REQUEST,
        "DIGEST_INVALID",
    )
    .await;
    let r = c
        .put(s.url(&format!("{location}?digest=sha256:abc")))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    let r = c
        .put(s.url(&format!(
            "{location}?digest=md5:d41d8cd98f00b204e9800998ecf8427e"
        )))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "UNSUPPORTED").await;
    let r = c
        .get(s.url("/v2/r/blobs/sha256:nothex"))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;

    // A wrong digest leaves the session open; the right one then completes it.
    let r = c
        .put(s.url(&format!("{location}?digest={}", Digest::sha256_of(b"x"))))
        .body("y")
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    let r = c
        .put(s.url(&format!("{location}?digest={}", Digest::sha256_of(b"y"))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn sha512_blobs_are_accepted() {
    let s = Server::start();
    let content = b"sha512 content".to_vec();
    let digest = Digest::of(Algorithm::Sha512, &content);
    let r = http()
        .post(s.url(&format!("/v2/r/blobs/uploads/?digest={digest}")))
        .body(content.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let got = http()
        .get(s.url(&format!("/v2/r/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(got.bytes().await.unwrap(), content);
}

#[tokio::test]
async fn cancelled_and_foreign_upload_sessions_are_unknown() {
    let s = Server::start();
    let c = http();
    let r = c.post(s.url("/v2/a/blobs/uploads/")).send().await.unwrap();
    let location = header(&r, "location").unwrap().to_string();
    let id = location.rsplit('/').next().unwrap();
    // The same session id through another repository is not found.
    let r = c
        .get(s.url(&format!("/v2/b/blobs/uploads/{id}")))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    let r = c.delete(s.url(&location)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = c.get(s.url(&location)).send().await.unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    let r = c.patch(s.url(&location)).body("x").send().await.unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    let r = c
        .get(s.url("/v2/a/blobs/uploads/..%2F..%2Fetc"))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
}

#[tokio::test]
async fn range_requests() {
    let s = Server::start();
    let content: Vec<u8> = (0..100u8).collect();
    let digest = push_blob(&s, "r", &content).await;
    let url = s.url(&format!("/v2/r/blobs/{digest}"));
    let c = http();
    let r = c
        .get(&url)
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&r, "content-range"), Some("bytes 10-19/100"));
    assert_eq!(r.bytes().await.unwrap(), content[10..20]);
    let r = c
        .get(&url)
        .header("range", "bytes=-5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap(), content[95..]);
    let r = c
        .get(&url)
        .header("range", "bytes=90-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap(), content[90..]);
    let r = c
        .get(&url)
        .header("range", "bytes=100-200")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "content-range"), Some("bytes */100"));
    assert_error(r, StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID").await;
}

#[tokio::test]
async fn blob_of_another_repository_is_unknown_here_and_cannot_be_referenced() {
    let s = Server::start();
    let config = br#"{"os":"linux"}"#;
    let layer = b"layer";
    push_blob(&s, "owner/app", config).await;
    let layer_digest = push_blob(&s, "owner/app", layer).await;
    // HEAD in a repository that does not hold the blob must say 404 ...
    let r = http()
        .head(s.url(&format!("/v2/thief/app/blobs/{layer_digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // ... consistently with refusing a manifest that references it there.
    let manifest = image_manifest(config, &[layer]);
    let r = put_manifest(&s, "thief/app", "v1", media_type::OCI_MANIFEST, &manifest).await;
    assert_error(r, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN").await;
}

#[tokio::test]
async fn cross_repository_mount() {
    let s = Server::start();
    let c = http();
    let digest = push_blob(&s, "src/app", b"shared layer").await;
    let r = c
        .post(s.url(&format!(
            "/v2/dst/app/blobs/uploads/?mount={digest}&from=src/app"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        header(&r, "location"),
        Some(format!("/v2/dst/app/blobs/{digest}").as_str())
    );
    let r = c
        .head(s.url(&format!("/v2/dst/app/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // From a repository that lacks the blob: an upload session instead.
    let r = c
        .post(s.url(&format!(
            "/v2/dst2/app/blobs/uploads/?mount={digest}&from=empty/repo"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(header(&r, "location")
        .unwrap()
        .starts_with("/v2/dst2/app/blobs/uploads/"));

    // Without `from`: the registry finds the blob by itself.
    let r = c
        .post(s.url(&format!("/v2/dst3/app/blobs/uploads/?mount={digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    // An unknown blob cannot be mounted.
    let unknown = Digest::sha256_of(b"never pushed");
    let r = c
        .post(s.url(&format!(
            "/v2/dst4/app/blobs/uploads/?mount={unknown}&from=src/app"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn blob_delete_unlinks_from_the_repository() {
    let s = Server::start();
    let c = http();
    let digest = push_blob(&s, "a", b"to delete").await;
    push_blob(&s, "b", b"to delete").await;
    let r = c
        .delete(s.url(&format!("/v2/a/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(
        c.head(s.url(&format!("/v2/a/blobs/{digest}")))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        c.head(s.url(&format!("/v2/b/blobs/{digest}")))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let r = c
        .delete(s.url(&format!("/v2/a/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
}

#[tokio::test]
async fn manifest_round_trip_by_tag_and_digest_keeps_exact_bytes() {
    let s = Server::start();
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    push_blob(&s, "team/app", config).await;
    push_blob(&s, "team/app", b"L").await;
    // Unusual but valid formatting must survive byte for byte.
    let manifest = format!(
        "{{\n  \"schemaVersion\": 2,\n  \"mediaType\": \"{}\",\n  \"config\": {},\n  \"layers\": [ {} ]\n}}\n",
        media_type::OCI_MANIFEST,
        descriptor(media_type::OCI_CONFIG, config),
        descriptor(media_type::OCI_LAYER_GZIP, b"L")
    )
    .into_bytes();
    let digest = Digest::sha256_of(&manifest);
    let r = put_manifest(
        &s,
        "team/app",
        "v1.0.0",
        media_type::OCI_MANIFEST,
        &manifest,
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        header(&r, "location"),
        Some(format!("/v2/team/app/manifests/{digest}").as_str())
    );
    assert_eq!(
        header(&r, "docker-content-digest"),
        Some(digest.to_string().as_str())
    );

    for reference in ["v1.0.0".to_string(), digest.to_string()] {
        let url = s.url(&format!("/v2/team/app/manifests/{reference}"));
        let r = http()
            .get(&url)
            .header("accept", media_type::OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "content-type"), Some(media_type::OCI_MANIFEST));
        assert_eq!(
            header(&r, "docker-content-digest"),
            Some(digest.to_string().as_str())
        );
        assert_eq!(r.bytes().await.unwrap(), manifest);
        let r = http().head(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            header(&r, "content-length"),
            Some(manifest.len().to_string().as_str())
        );
        assert_eq!(
            header(&r, "docker-content-digest"),
            Some(digest.to_string().as_str())
        );
    }

    // Pushing by digest works, and a digest that does not match the body is refused.
    let r = put_manifest(
        &s,
        "team/app",
        &digest.to_string(),
        media_type::OCI_MANIFEST,
        &manifest,
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let wrong = Digest::sha256_of(b"other");
    let r = put_manifest(
        &s,
        "team/app",
        &wrong.to_string(),
        media_type::OCI_MANIFEST,
        &manifest,
    )
    .await;
    assert_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
}

#[tokio::test]
async fn invalid_manifests_are_refused_with_the_right_code() {
    let s = Server::start();
    let r = put_manifest(&s, "r", "t", media_type::OCI_MANIFEST, b"{not json").await;
    assert_error(r, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    let r = put_manifest(
        &s,
        "r",
        "t",
        media_type::DOCKER_SCHEMA1_SIGNED,
        br#"{"schemaVersion":1}"#,
    )
    .await;
    assert_error(r, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    let r = put_manifest(&s, "r", "t", "text/plain", br#"{"schemaVersion":2}"#).await;
    assert_error(r, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    let docker = image_manifest(b"c", &[]);
    let r = put_manifest(&s, "r", "t", media_type::DOCKER_MANIFEST, &docker).await;
    assert_error(r, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    // Over the 4 MiB limit.
    let mut big = b"{\"schemaVersion\":2,\"x\":\"".to_vec();
    big.resize(4 * 1024 * 1024 + 10, b'a');
    let r = put_manifest(&s, "r", "t", media_type::OCI_MANIFEST, &big).await;
    assert_error(r, StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID").await;
    // Names and tags.
    let good = image_manifest(b"c", &[]);
    let r = put_manifest(&s, "Upper/Case", "t", media_type::OCI_MANIFEST, &good).await;
    assert_error(r, StatusCode::BAD_REQUEST, "NAME_INVALID").await;
    let r = put_manifest(&s, "r", ".hidden", media_type::OCI_MANIFEST, &good).await;
    assert_error(r, StatusCode::BAD_REQUEST, "TAG_INVALID").await;
}

#[tokio::test]
async fn path_traversal_in_names_is_refused() {
    let s = Server::start();
    for (method, path) in [
        ("GET", "/v2/a/../b/manifests/t"),
        ("GET", "/v2/a/%2E%2E/b/manifests/t"),
        ("GET", "/v2/a/%2e%2e%2fb/manifests/t"),
        ("GET", "/v2/a//b/manifests/t"),
        ("POST", "/v2/../etc/blobs/uploads/"),
        ("GET", "/v2/a/./b/tags/list"),
    ] {
        let (status, body) = raw_request(&s, method, path);
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["errors"][0]["code"], "NAME_INVALID", "{path}: {body}");
    }
}

#[tokio::test]
async fn docker_schema2_manifest_and_manifest_list() {
    let s = Server::start();
    let config = br#"{"architecture":"arm64","os":"linux"}"#;
    push_blob(&s, "d/app", config).await;
    push_blob(&s, "d/app", b"layer").await;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::DOCKER_MANIFEST,
        "config": descriptor("application/vnd.docker.container.image.v1+json", config),
        "layers": [descriptor("application/vnd.docker.image.rootfs.diff.tar.gzip", b"layer")],
    }))
    .unwrap();
    let r = put_manifest(&s, "d/app", "arm64", media_type::DOCKER_MANIFEST, &manifest).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let child = Digest::sha256_of(&manifest);
    let list = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::DOCKER_MANIFEST_LIST,
        "manifests": [{"mediaType": media_type::DOCKER_MANIFEST, "digest": child.to_string(), "size": manifest.len(),
                       "platform": {"architecture": "arm64", "os": "linux"}}],
    }))
    .unwrap();
    let r = put_manifest(
        &s,
        "d/app",
        "multi",
        media_type::DOCKER_MANIFEST_LIST,
        &list,
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = http()
        .get(s.url("/v2/d/app/manifests/multi"))
        .header("accept", media_type::DOCKER_MANIFEST_LIST)
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "content-type"),
        Some(media_type::DOCKER_MANIFEST_LIST)
    );
    assert_eq!(r.bytes().await.unwrap(), list);
}

#[tokio::test]
async fn index_with_an_unknown_child_is_refused() {
    let s = Server::start();
    let missing = Digest::sha256_of(b"missing manifest");
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": [{"mediaType": media_type::OCI_MANIFEST, "digest": missing.to_string(), "size": 10}],
    }))
    .unwrap();
    let r = put_manifest(&s, "r", "idx", media_type::OCI_INDEX, &index).await;
    assert_error(r, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN").await;
}

#[tokio::test]
async fn accept_header_negotiation() {
    let s = Server::start();
    push_image(&s, "r", "v1", "a").await;
    let url = s.url("/v2/r/manifests/v1");
    let c = http();
    let r = c
        .get(&url)
        .header("accept", media_type::DOCKER_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
    let both = format!(
        "{}, {}",
        media_type::DOCKER_MANIFEST,
        media_type::OCI_MANIFEST
    );
    assert_eq!(
        c.get(&url)
            .header("accept", both)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        c.get(&url)
            .header("accept", "*/*")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(c.get(&url).send().await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn artifacts_with_empty_config_and_referrers_api() {
    let s = Server::start();
    let (_, subject) = push_image(&s, "r", "v1", "subject").await;
    let empty = b"{}";
    push_blob(&s, "r", empty).await;
    push_blob(&s, "r", b"signature bytes").await;
    push_blob(&s, "r", b"sbom bytes").await;
    let artifact = |artifact_type: &str, layer: &[u8], annotation: &str| {
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": descriptor(media_type::OCI_EMPTY, empty),
            "layers": [descriptor("application/octet-stream", layer)],
            "subject": {"mediaType": media_type::OCI_MANIFEST, "digest": subject.to_string(), "size": 1},
            "annotations": {"org.example.note": annotation},
        }))
        .unwrap()
    };
    let sig = artifact(
        "application/vnd.example.signature",
        b"signature bytes",
        "sig",
    );
    let sbom = artifact("application/spdx+json", b"sbom bytes", "sbom");
    for body in [&sig, &sbom] {
        let digest = Digest::sha256_of(body);
        let r = put_manifest(&s, "r", &digest.to_string(), media_type::OCI_MANIFEST, body).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(
            header(&r, "oci-subject"),
            Some(subject.to_string().as_str())
        );
    }

    let r = http()
        .get(s.url(&format!("/v2/r/referrers/{subject}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-type"), Some(media_type::OCI_INDEX));
    assert!(header(&r, "oci-filters-applied").is_none());
    let index: Value = r.json().await.unwrap();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], media_type::OCI_INDEX);
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 2);
    let sig_entry = manifests
        .iter()
        .find(|m| m["digest"] == Digest::sha256_of(&sig).to_string())
        .unwrap();
    assert_eq!(
        sig_entry["artifactType"],
        "application/vnd.example.signature"
    );
    assert_eq!(sig_entry["size"], sig.len());
    assert_eq!(sig_entry["mediaType"], media_type::OCI_MANIFEST);
    assert_eq!(sig_entry["annotations"]["org.example.note"], "sig");

    let r = http()
        .get(s.url(&format!(
            "/v2/r/referrers/{subject}?artifactType=application/spdx%2Bjson"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "oci-filters-applied"), Some("artifactType"));
    let index: Value = r.json().await.unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(
        index["manifests"][0]["digest"],
        Digest::sha256_of(&sbom).to_string()
    );

    // No referrers: an empty index, not an error.
    let unknown = Digest::sha256_of(b"nothing refers to me");
    let r = http()
        .get(s.url(&format!("/v2/r/referrers/{unknown}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let index: Value = r.json().await.unwrap();
    assert_eq!(index["manifests"], json!([]));
    let r = http()
        .get(s.url("/v2/r/referrers/sha256:zz"))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
}

#[tokio::test]
async fn tag_list_paginates_lexically_with_link_header() {
    let s = Server::start();
    let (manifest, _) = push_image(&s, "r", "b", "x").await;
    for tag in ["a", "c", "d", "e"] {
        let r = put_manifest(&s, "r", tag, media_type::OCI_MANIFEST, &manifest).await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let c = http();
    let r = c.get(s.url("/v2/r/tags/list")).send().await.unwrap();
    assert!(header(&r, "link").is_none());
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"name": "r", "tags": ["a", "b", "c", "d", "e"]})
    );

    let r = c.get(s.url("/v2/r/tags/list?n=2")).send().await.unwrap();
    assert_eq!(
        header(&r, "link"),
        Some("</v2/r/tags/list?n=2&last=b>; rel=\"next\"")
    );
    assert_eq!(r.json::<Value>().await.unwrap()["tags"], json!(["a", "b"]));
    let r = c
        .get(s.url("/v2/r/tags/list?n=2&last=b"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["tags"], json!(["c", "d"]));
    let r = c
        .get(s.url("/v2/r/tags/list?n=2&last=d"))
        .send()
        .await
        .unwrap();
    assert!(header(&r, "link").is_none());
    assert_eq!(r.json::<Value>().await.unwrap()["tags"], json!(["e"]));
    let r = c.get(s.url("/v2/r/tags/list?n=0")).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["tags"], json!([]));

    let r = c.get(s.url("/v2/unknown/tags/list")).send().await.unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "NAME_UNKNOWN").await;
}

#[tokio::test]
async fn catalog_paginates() {
    let s = Server::start();
    for repo in ["c/x", "a/x", "b/x"] {
        push_image(&s, repo, "v1", repo).await;
    }
    // A repository with only an upload session is not listed.
    http()
        .post(s.url("/v2/z/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let c = http();
    let body: Value = get_json(&s, "/v2/_catalog").await;
    assert_eq!(body, json!({"repositories": ["a/x", "b/x", "c/x"]}));
    let r = c
        .get(s.url("/v2/_catalog?n=1&last=a/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "link"),
        Some("</v2/_catalog?n=1&last=b%2Fx>; rel=\"next\"")
    );
    assert_eq!(
        r.json::<Value>().await.unwrap()["repositories"],
        json!(["b/x"])
    );
}

#[tokio::test]
async fn deleting_a_tag_keeps_the_manifest_and_deleting_the_digest_removes_its_tags() {
    let s = Server::start();
    let (manifest, digest) = push_image(&s, "r", "v1", "x").await;
    assert_eq!(
        put_manifest(&s, "r", "v2", media_type::OCI_MANIFEST, &manifest)
            .await
            .status(),
        StatusCode::CREATED
    );
    let c = http();
    assert_eq!(
        c.delete(s.url("/v2/r/manifests/v1"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::ACCEPTED
    );
    let r = c.get(s.url("/v2/r/manifests/v1")).send().await.unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
    assert_eq!(
        c.get(s.url(&format!("/v2/r/manifests/{digest}")))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        c.get(s.url("/v2/r/manifests/v2"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    assert_eq!(
        c.delete(s.url(&format!("/v2/r/manifests/{digest}")))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::ACCEPTED
    );
    let r = c.get(s.url("/v2/r/manifests/v2")).send().await.unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
    let r = c
        .delete(s.url(&format!("/v2/r/manifests/{digest}")))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
    let tags: Value = get_json(&s, "/v2/r/tags/list").await;
    assert_eq!(tags["tags"], json!([]));
}

#[tokio::test]
async fn upload_session_survives_a_server_restart() {
    let mut s = Server::start();
    let c = http();
    let content: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let digest = Digest::sha256_of(&content);
    let r = c.post(s.url("/v2/r/blobs/uploads/")).send().await.unwrap();
    let location = header(&r, "location").unwrap().to_string();
    let r = patch_chunk(&s, &location, "0-99999", &content[..100_000]).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    s.restart();
    // Connections to the old process are gone.
    let c = http();

    let r = c.get(s.url(&location)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "range"), Some("0-99999"));
    let r = patch_chunk(&s, &location, "100000-199999", &content[100_000..]).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = c
        .put(s.url(&format!("{location}?digest={digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let got = get_bytes(&s, &format!("/v2/r/blobs/{digest}")).await;
    assert_eq!(got, content);
}

#[tokio::test]
async fn graceful_shutdown_on_sigterm() {
    let mut s = Server::start();
    push_image(&s, "r", "v1", "x").await;
    let status = s.terminate();
    assert!(status.success(), "gantry exited with {status}");
}

#[tokio::test]
async fn shutdown_does_not_wait_forever_for_a_stalled_upload() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start_with(
        &dir.path().join("data"),
        &[("GANTRY_DRAIN_TIMEOUT_SECS", "1")],
    );
    let r = http()
        .post(s.url("/v2/r/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let location = header(&r, "location").unwrap().to_string();
    // A client that announces a large chunk, sends a little, then stalls.
    let mut stalled = std::net::TcpStream::connect(&s.addr).unwrap();
    write!(
        stalled,
        "PATCH {location} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\npartial"
    )
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    let status = s.terminate();
    assert!(status.success(), "gantry exited with {status}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "shutdown waited {:?}",
        started.elapsed()
    );
}
