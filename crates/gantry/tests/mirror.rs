//! The pull-through cache, with real clients in front and a real registry behind: Debian's
//! docker-registry (CNCF Distribution 2.8) as the origin, reached through a small
//! fault-injecting proxy (`fixtures/fault_proxy.py`) that counts what the origin serves,
//! answers 429 or sends blobs slowly when told. Clients: skopeo, podman (a `registries.conf`
//! mirror with a path prefix), containerd (`hosts.toml` mirror, which adds `?ns=`), and raw
//! HTTP for docker's `registry-mirrors` flow (no docker engine runs here).

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use gantry_oci::Digest;
use reqwest::StatusCode;
use serde_json::Value;

/// A Gantry whose `[[upstreams]]` names `upstream` as `origin` (the default upstream, its
/// cache public) and whose tags are checked again after a second.
fn start_mirror(dir: &Path, upstream: &str) -> Server {
    start_mirror_with(dir, upstream, "")
}

/// [`start_mirror`] with more lines for the `[[upstreams]]` table.
fn start_mirror_with(dir: &Path, upstream: &str, more: &str) -> Server {
    let config = dir.join("gantry.toml");
    std::fs::write(
        &config,
        format!(
            "[[upstreams]]\nname = \"origin\"\nurl = \"http://{upstream}\"\ndefault = true\n\
             public = true\n{more}\n[mirror]\nrevalidate_after_secs = 1\n"
        ),
    )
    .unwrap();
    Server::start_configured(&[("GANTRY_CONFIG", config.to_str().unwrap())])
}

/// Pushes a one-layer image holding `files` to `origin` as `repository:tag` with skopeo;
/// returns its manifest digest.
fn push_to_origin(dir: &Path, origin: &str, reference: &str, files: &[(&str, &[u8])]) -> String {
    let tag = reference.rsplit_once(':').unwrap().1;
    let work = dir.join(format!("src-{}", reference.replace(['/', ':'], "-")));
    std::fs::create_dir_all(&work).unwrap();
    make_layout(&work, tag, files);
    let layout = work.join("layout");
    run(skopeo(dir)
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("docker://{origin}/{reference}")));
    index_digest(&layout)
}

/// Pushes `blob` to `repository` of an open registry at `addr` (POST, then PUT with the bytes).
async fn push_blob_to(addr: &str, repository: &str, blob: &[u8]) {
    let client = reqwest::Client::new();
    let r = client
        .post(format!("http://{addr}/v2/{repository}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = header(&r, "location").unwrap().to_string();
    let location = if location.starts_with("http") {
        location
    } else {
        format!("http://{addr}{location}")
    };
    let separator = if location.contains('?') { '&' } else { '?' };
    let r = client
        .put(format!(
            "{location}{separator}digest={}",
            Digest::sha256_of(blob)
        ))
        .body(blob.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}

/// Signs `digest` of `repository` at the open registry `addr` in cosign's tag scheme: a
/// `sha256-<hex>.sig` manifest over a simple signing payload (the signature itself is not
/// checked here); returns the tag.
async fn push_signature_to(addr: &str, repository: &str, digest: &str) -> String {
    let payload = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"{addr}/{repository}"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}},"optional":null}}"#
    );
    let config =
        br#"{"architecture":"","os":"","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#;
    push_blob_to(addr, repository, payload.as_bytes()).await;
    push_blob_to(addr, repository, config).await;
    let mut layer = descriptor(
        "application/vnd.dev.cosign.simplesigning.v1+json",
        payload.as_bytes(),
    );
    layer["annotations"] =
        serde_json::json!({"dev.cosignproject.cosign/signature": "c2lnbmF0dXJl"});
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": gantry_oci::media_type::OCI_MANIFEST,
        "config": descriptor(gantry_oci::media_type::OCI_CONFIG, config),
        "layers": [layer],
    }))
    .unwrap();
    let tag = format!("{}.sig", digest.replace(':', "-"));
    let r = reqwest::Client::new()
        .put(format!("http://{addr}/v2/{repository}/manifests/{tag}"))
        .header("content-type", gantry_oci::media_type::OCI_MANIFEST)
        .body(manifest)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    tag
}

/// The manifest digest skopeo sees at `reference` (a `docker://` reference without scheme).
fn skopeo_digest(dir: &Path, reference: &str, creds: Option<&str>) -> String {
    let mut cmd = skopeo(dir);
    cmd.args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"]);
    if let Some(creds) = creds {
        cmd.args(["--creds", creds]);
    }
    run(cmd.arg(format!("docker://{reference}")))
        .trim()
        .to_string()
}

/// The tags the cache holds for `repository` (the artifact listing; a tag list of a cache
/// repository is the upstream's).
async fn cached_tags(server: &Server, repository: &str) -> Vec<String> {
    let r = http()
        .get(server.url(&format!(
            "/api/v1/repositories/{}/artifacts",
            repository.replace('/', "%2F")
        )))
        .send()
        .await
        .unwrap();
    if r.status() != StatusCode::OK {
        return Vec::new();
    }
    let body: Value = r.json().await.unwrap();
    body["artifacts"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|artifact| artifact["tags"].as_array().cloned().unwrap_or_default())
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

async fn get(server: &Server, path: &str) -> reqwest::Response {
    http().get(server.url(path)).send().await.unwrap()
}

/// Waits until the cache holds `repository:tag` (its fill job ran).
async fn until_cached(server: &Server, repository: &str, tag: &str) {
    eventually(
        Duration::from_secs(30),
        &format!("{repository}:{tag} cached"),
        || async {
            cached_tags(server, repository)
                .await
                .iter()
                .any(|t| t == tag)
                .then_some(())
        },
    )
    .await;
}

/// The value of metric `name` whose labels include every one of `labels` (`key="value"`),
/// summed over the replicas (each counts what it answered).
async fn metric(server: &Server, name: &str, labels: &[&str]) -> f64 {
    let mut sum = 0.0;
    for i in 0..server.replicas() {
        let text = metrics_text(&server.replica_base(i)).await;
        sum += text
            .lines()
            .filter(|line| line.starts_with(&format!("{name}{{")))
            .filter(|line| labels.iter().all(|label| line.contains(label)))
            .find_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
            .unwrap_or(0.0);
    }
    sum
}

#[tokio::test(flavor = "multi_thread")]
async fn cached_images_pull_through_the_mirror_with_the_origin_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let origin = Distribution::start(dir);
    let mut proxy = FaultProxy::start(dir, &origin.1);
    let pushed = push_to_origin(dir, &origin.1, "team/app:v1", &[("etc/motd", b"mirrored")]);
    push_to_origin(
        dir,
        &origin.1,
        "team/app:v2",
        &[("etc/motd", b"never pulled")],
    );
    let signature_tag = push_signature_to(&origin.1, "team/app", &pushed).await;
    let server = start_mirror(dir, &proxy.addr);

    // containerd, with the mirror in hosts.toml for the origin's host: it adds `?ns=` and
    // sends no credentials (the cache project is public).
    let hosts = dir.join("hosts").join(&proxy.addr);
    std::fs::create_dir_all(&hosts).unwrap();
    std::fs::write(
        hosts.join("hosts.toml"),
        format!(
            "server = \"http://{}\"\n\n[host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            proxy.addr, server.addr
        ),
    )
    .unwrap();
    let containerd = Containerd::start(&dir.join("containerd"));
    let image = format!("{}/team/app:v1", proxy.addr);
    run(containerd
        .ctr(&["images", "pull", "--hosts-dir"])
        .arg(dir.join("hosts"))
        .arg(&image));
    let listed = run(&mut containerd.ctr(&["images", "ls", "-q"]));
    assert!(listed.contains(&image), "{listed}");
    let through_mirror = proxy
        .log()
        .iter()
        .filter(|l| l.starts_with("GET /v2/team/app/"))
        .count();
    assert!(
        through_mirror > 0,
        "Gantry fetched from the origin: {:?}",
        proxy.log()
    );
    until_cached(&server, "origin/team/app", "v1").await;
    // Its cosign signature (the tag scheme: the origin has no referrers API) comes with it.
    eventually(Duration::from_secs(30), "the signature cached", || async {
        let listed = get_json(
            &server,
            &format!("/api/v1/repositories/origin%2Fteam%2Fapp/artifacts/{pushed}"),
        )
        .await;
        listed["referrers"]
            .as_array()?
            .iter()
            .any(|r| r["tag"] == signature_tag.as_str())
            .then_some(())
    })
    .await;

    // skopeo with the project prefix (as Harbor's proxy projects are named) gets the same
    // image, and so does docker's registry-mirrors flow: no prefix, a token for the name it
    // knows.
    assert_eq!(
        skopeo_digest(
            dir,
            &format!("{}/origin/team/app:v1", server.addr),
            Some(&admin_creds())
        ),
        pushed
    );
    let token: Value = anonymous()
        .get(server.url("/auth/token?scope=repository:team/app:pull"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = anonymous()
        .get(server.url("/v2/team/app/manifests/v1"))
        .bearer_auth(token["token"].as_str().unwrap())
        .header("accept", gantry_oci::media_type::OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "docker-content-digest"), Some(pushed.as_str()));

    // A cache repository's tags are the upstream's.
    let tags = get_json(&server, "/v2/origin/team/app/tags/list").await;
    assert_eq!(
        tags["tags"],
        serde_json::json!([signature_tag.as_str(), "v1", "v2"])
    );
    assert_eq!(tags["name"], "origin/team/app");

    // The origin is gone, and the tag is due for a check: the cached copy is served, to
    // podman through its registries.conf mirror with the project prefix.
    proxy.stop();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let conf = dir.join("registries.conf");
    std::fs::write(
        &conf,
        format!(
            "[[registry]]\nlocation = \"{}\"\ninsecure = true\n\n[[registry.mirror]]\n\
             location = \"{}/origin\"\ninsecure = true\n",
            proxy.addr, server.addr
        ),
    )
    .unwrap();
    run(podman(dir, &["pull", &image]).env("CONTAINERS_REGISTRIES_CONF", &conf));
    assert_eq!(
        skopeo_digest(
            dir,
            &format!("{}/origin/team/app:v1", server.addr),
            Some(&admin_creds())
        ),
        pushed
    );
    assert!(
        metric(
            &server,
            "gantry_mirror_answers_total",
            &["answer=\"stale\"", "upstream=\"origin\""]
        )
        .await
            >= 2.0
    );
    assert!(
        metric(
            &server,
            "gantry_mirror_upstream_failures_total",
            &["kind=\"unreachable\""]
        )
        .await
            >= 2.0
    );

    let r = http()
        .get(server.url(&format!("/v2/origin/team/app/manifests/{signature_tag}")))
        .header("accept", gantry_oci::media_type::OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "the signature served from the cache"
    );

    // The tag list is what the cache holds.
    let tags = get_json(&server, "/v2/origin/team/app/tags/list").await;
    assert_eq!(tags["tags"], serde_json::json!([signature_tag, "v1"]));

    // What was never cached says the upstream failed, not "not found".
    let r = get(&server, "/v2/origin/team/app/manifests/v2").await;
    let body = assert_error(r, StatusCode::BAD_GATEWAY, "UNAVAILABLE").await;
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("upstream origin"), "{message}");

    // A cache project takes no pushes.
    let r = http()
        .post(server.url("/v2/origin/team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let body = assert_error(r, StatusCode::FORBIDDEN, "DENIED").await;
    assert!(body.to_string().contains("pull-through cache"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_429_reaches_only_what_the_cache_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let origin = Distribution::start(dir);
    let proxy = FaultProxy::start(dir, &origin.1);
    let pushed = push_to_origin(dir, &origin.1, "team/app:v1", &[("etc/motd", b"cached")]);
    push_to_origin(
        dir,
        &origin.1,
        "team/app:v2",
        &[("etc/motd", b"not cached")],
    );
    let server = start_mirror(dir, &proxy.addr);
    let mirrored = format!("{}/origin/team/app", server.addr);
    let pulled = dir.join("pulled");
    run(skopeo(dir)
        .args([
            "copy",
            "--src-tls-verify=false",
            "--src-creds",
            &admin_creds(),
        ])
        .arg(format!("docker://{mirrored}:v1"))
        .arg(format!("oci:{}:v1", pulled.display())));
    until_cached(&server, "origin/team/app", "v1").await;

    proxy.set_mode("429");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        skopeo_digest(dir, &format!("{mirrored}:v1"), Some(&admin_creds())),
        pushed
    );
    let r = get(&server, "/v2/origin/team/app/manifests/v2").await;
    assert_eq!(header(&r, "retry-after"), Some("7"));
    let body = assert_error(r, StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS").await;
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("upstream origin answered 429"),
        "{message}"
    );
    let unknown = Digest::sha256_of(b"a blob the cache lacks");
    let r = get(&server, &format!("/v2/origin/team/app/blobs/{unknown}")).await;
    assert_error(r, StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS").await;
    assert!(
        metric(
            &server,
            "gantry_mirror_upstream_failures_total",
            &["kind=\"429\""]
        )
        .await
            >= 2.0
    );

    // Back to normal: what the upstream lacks is "unknown" as it says.
    proxy.set_mode("");
    let r = get(&server, "/v2/origin/team/app/manifests/v9").await;
    let body = assert_error(r, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
    assert!(
        body.to_string()
            .contains("upstream origin does not have it"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_cold_pulls_of_one_blob_reach_the_origin_once_and_stream_before_it_is_complete() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let origin = Distribution::start(dir);
    let proxy = FaultProxy::start(dir, &origin.1);
    let big = incompressible_bytes(6 << 20, 7);
    push_to_origin(dir, &origin.1, "team/big:v1", &[("big.bin", &big)]);
    let manifest: Value = reqwest::Client::new()
        .get(format!("http://{}/v2/team/big/manifests/v1", origin.1))
        .header("accept", gantry_oci::media_type::OCI_MANIFEST)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let size = manifest["layers"][0]["size"].as_u64().unwrap();
    let server = start_mirror(dir, &proxy.addr);
    proxy.send_blobs_slowly();
    let path = format!("/v2/origin/team/big/blobs/{layer}");
    let origin_path = format!("/v2/team/big/blobs/{layer}");

    // The first client has bytes while the origin is still sending.
    let mut first = http().get(server.url(&path)).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let chunk = first.chunk().await.unwrap().expect("a first chunk");
    assert!(!chunk.is_empty());
    assert_eq!(
        proxy.count(&format!("done {origin_path}")),
        0,
        "the origin finished sending before the first client got a byte"
    );
    let clients = (0..19).map(|_| {
        let url = server.url(&path);
        tokio::spawn(async move { hash_body(http().get(url).send().await.unwrap()).await })
    });
    let mut rest = chunk.len() as u64;
    let mut hasher = gantry_oci::Hasher::new(gantry_oci::Algorithm::Sha256);
    hasher.update(&chunk);
    while let Some(chunk) = first.chunk().await.unwrap() {
        rest += chunk.len() as u64;
        hasher.update(&chunk);
    }
    assert_eq!((rest, hasher.finish().to_string()), (size, layer.clone()));
    for client in clients {
        let (received, digest) = client.await.unwrap();
        assert_eq!((received, digest.to_string()), (size, layer.clone()));
    }
    assert_eq!(
        proxy.count(&format!("GET {origin_path}")),
        1,
        "{:?}",
        proxy.log()
    );

    // Stored: later pulls are served from the cache, ranges too.
    // Stored once a HEAD no longer asks the origin.
    let head_at_origin = format!("HEAD {origin_path}");
    eventually(Duration::from_secs(30), "the blob stored", || async {
        let asked = proxy.count(&head_at_origin);
        let r = http().head(server.url(&path)).send().await.unwrap();
        (r.status() == StatusCode::OK && proxy.count(&head_at_origin) == asked).then_some(())
    })
    .await;
    assert!(server.stores_blob(&layer.parse::<Digest>().unwrap()).await);
    let r = http()
        .get(server.url(&path))
        .header("range", "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(proxy.count(&format!("GET {origin_path}")), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_asking_for_bearer_tokens_is_pulled_through_with_its_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let origin = Distribution::start(dir);
    let proxy = FaultProxy::start(dir, &origin.1);
    let pushed = push_to_origin(
        dir,
        &origin.1,
        "team/app:v1",
        &[("etc/motd", b"behind tokens")],
    );
    std::fs::write(proxy.state.join("token"), "puller:s3cret").unwrap();
    let server = start_mirror_with(
        dir,
        &proxy.addr,
        "username = \"puller\"\npassword = \"s3cret\"\n",
    );
    let mirrored = format!("{}/origin/team/app:v1", server.addr);
    assert_eq!(skopeo_digest(dir, &mirrored, Some(&admin_creds())), pushed);
    let log = proxy.log();
    assert!(
        log.iter()
            .any(|l| l.starts_with("GET /token?") && l.contains("repository%3Ateam%2Fapp%3Apull")),
        "{log:?}"
    );
    until_cached(&server, "origin/team/app", "v1").await;

    // Credentials the realm refuses: the upstream's refusal, as what it is.
    std::fs::write(proxy.state.join("token"), "puller:changed").unwrap();
    let r = get(&server, "/v2/origin/team/other/manifests/v1").await;
    let body = assert_error(r, StatusCode::BAD_GATEWAY, "UNAVAILABLE").await;
    assert!(body.to_string().contains("401"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gantry_origins_multi_arch_image_is_cached_with_its_platforms_and_referrers() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let mut origin = Server::start();
    api_create_project(&origin, "team", false).await;
    let (amd64, amd64_digest) = push_image(&origin, "team/multi", "amd64-only", "amd64").await;
    let (arm64, arm64_digest) = push_image(&origin, "team/multi", "arm64-only", "arm64").await;
    let platform = |manifest: &[u8], arch: &str| {
        let mut d = descriptor(gantry_oci::media_type::OCI_MANIFEST, manifest);
        d["platform"] = serde_json::json!({"os": "linux", "architecture": arch});
        d
    };
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": gantry_oci::media_type::OCI_INDEX,
        "manifests": [platform(&amd64, "amd64"), platform(&arm64, "arm64")],
    }))
    .unwrap();
    let r = put_manifest(
        &origin,
        "team/multi",
        "v1",
        gantry_oci::media_type::OCI_INDEX,
        &index,
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let index_sha = Digest::sha256_of(&index);
    // An SBOM attached to the index (OCI 1.1 subject), which the origin's referrers API lists.
    let sbom = br#"{"spdxVersion":"SPDX-2.3"}"#;
    push_blob(&origin, "team/multi", gantry_oci::manifest::EMPTY_CONFIG).await;
    push_blob(&origin, "team/multi", sbom).await;
    let referrer = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": gantry_oci::media_type::OCI_MANIFEST,
        "artifactType": "application/spdx+json",
        "config": descriptor(gantry_oci::media_type::OCI_EMPTY, gantry_oci::manifest::EMPTY_CONFIG),
        "layers": [descriptor("application/spdx+json", sbom)],
        "subject": descriptor(gantry_oci::media_type::OCI_INDEX, &index),
    }))
    .unwrap();
    let referrer_digest = push_manifest_by_digest(
        &origin,
        "team/multi",
        gantry_oci::media_type::OCI_MANIFEST,
        &referrer,
    )
    .await;

    let server = start_mirror_with(
        dir,
        &origin.addr,
        &format!("username = \"admin\"\npassword = \"{ADMIN_PASSWORD}\"\n"),
    );
    // Every platform, as `skopeo copy --all` pulls a multi-arch image.
    let pulled = dir.join("pulled");
    run(skopeo(dir)
        .args([
            "copy",
            "--all",
            "--src-tls-verify=false",
            "--src-creds",
            &admin_creds(),
        ])
        .arg(format!("docker://{}/origin/team/multi:v1", server.addr))
        .arg(format!("oci:{}:v1", pulled.display())));
    let served = run(skopeo(dir)
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            &admin_creds(),
        ])
        .arg(format!("docker://{}/origin/team/multi:v1", server.addr)));
    assert_eq!(
        served.as_bytes(),
        index.as_slice(),
        "the index as the origin has it"
    );
    until_cached(&server, "origin/team/multi", "v1").await;
    let referrers = eventually(Duration::from_secs(30), "the SBOM cached", || async {
        let listed = get_json(
            &server,
            &format!("/v2/origin/team/multi/referrers/{index_sha}"),
        )
        .await;
        (!listed["manifests"].as_array()?.is_empty()).then_some(listed)
    })
    .await;
    assert_eq!(
        referrers["manifests"][0]["digest"],
        referrer_digest.as_str()
    );
    assert_eq!(
        referrers["manifests"][0]["artifactType"],
        "application/spdx+json"
    );

    // With the origin gone, the index, both platforms and the SBOM come from the cache.
    origin.terminate();
    for digest in [
        index_sha.to_string(),
        amd64_digest.to_string(),
        arm64_digest.to_string(),
        referrer_digest.clone(),
    ] {
        let r = http()
            .get(server.url(&format!("/v2/origin/team/multi/manifests/{digest}")))
            .header("accept", "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{digest}");
    }
    let pulled_again = dir.join("pulled-again");
    run(skopeo(dir)
        .args([
            "copy",
            "--all",
            "--src-tls-verify=false",
            "--src-creds",
            &admin_creds(),
        ])
        .arg(format!("docker://{}/origin/team/multi:v1", server.addr))
        .arg(format!("oci:{}:v1", pulled_again.display())));
}

/// What refers to a cached image and reaches the upstream later (a signature made after the
/// image was cached) is cached once a pull revalidates the image's tag.
#[tokio::test(flavor = "multi_thread")]
async fn a_signature_made_after_the_image_was_cached_arrives_when_its_tag_is_revalidated() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let origin = Distribution::start(dir);
    let pushed = push_to_origin(dir, &origin.1, "team/app:v1", &[("etc/motd", b"early")]);
    let server = start_mirror(dir, &origin.1);
    let r = get(&server, "/v2/origin/team/app/manifests/v1").await;
    assert_eq!(r.status(), StatusCode::OK);
    until_cached(&server, "origin/team/app", "v1").await;
    let signature_tag = push_signature_to(&origin.1, "team/app", &pushed).await;
    let referrers = || async {
        let listed = get_json(
            &server,
            &format!("/api/v1/repositories/origin%2Fteam%2Fapp/artifacts/{pushed}"),
        )
        .await;
        listed["referrers"].as_array().cloned().unwrap_or_default()
    };
    assert!(referrers().await.is_empty(), "not signed when cached");
    // Past the revalidation interval (1 s), a pull asks the upstream about the tag.
    eventually(
        Duration::from_secs(30),
        "the later signature cached",
        || async {
            tokio::time::sleep(Duration::from_millis(1100)).await;
            let r = get(&server, "/v2/origin/team/app/manifests/v1").await;
            assert_eq!(r.status(), StatusCode::OK);
            referrers()
                .await
                .iter()
                .any(|r| r["tag"] == signature_tag.as_str())
                .then_some(())
        },
    )
    .await;
}

/// The origin on another host (a network namespace behind a veth pair): images pull through
/// the mirror across the link. With the origin's end of the link down (packets dropped, so
/// the upstream times out rather than refusing), cached images still pull, and what was never
/// cached fails within the configured connect timeout as the upstream's unavailability; with
/// the link back, it pulls.
#[tokio::test(flavor = "multi_thread")]
async fn with_the_origins_host_cut_off_cached_images_pull_and_the_rest_fail_as_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let origin_host = NetHost::create(0);
    let origin = Distribution::start_at(
        dir,
        &format!("{}:5000", origin_host.ns_ip),
        origin_host.command("docker-registry"),
    );
    push_to_origin(
        dir,
        &origin.1,
        "team/app:v1",
        &[("etc/motd", b"across the link")],
    );
    push_to_origin(dir, &origin.1, "team/app:v2", &[("etc/motd", b"not yet")]);
    let config = dir.join("gantry.toml");
    std::fs::write(
        &config,
        format!(
            "[[upstreams]]\nname = \"origin\"\nurl = \"http://{}\"\npublic = true\n\n\
             [mirror]\nrevalidate_after_secs = 1\nconnect_timeout_secs = 1\nread_timeout_secs = 2\n",
            origin.1
        ),
    )
    .unwrap();
    let server = Server::start_configured(&[("GANTRY_CONFIG", config.to_str().unwrap())]);
    skopeo_pull(&server, dir, "origin/team/app:v1").unwrap();
    until_cached(&server, "origin/team/app", "v1").await;

    origin_host.set_reachable(false);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    skopeo_pull(&server, dir, "origin/team/app:v1").expect("the cached image pulls");
    let asked = std::time::Instant::now();
    let r = get(&server, "/v2/origin/team/app/manifests/v2").await;
    let body = assert_error(r, StatusCode::BAD_GATEWAY, "UNAVAILABLE").await;
    assert!(
        asked.elapsed() < Duration::from_secs(9),
        "the 1 s connect timeout applies, not the 10 s default: {:?}",
        asked.elapsed()
    );
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("upstream origin"), "{message}");

    origin_host.set_reachable(true);
    eventually(
        Duration::from_secs(30),
        "v2 pulled once the link is back",
        || async { skopeo_pull(&server, dir, "origin/team/app:v2").ok() },
    )
    .await;
    drop(origin);
}
