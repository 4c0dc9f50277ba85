//! Browsing what is stored, against the real server: a known set of pushes (a multi-arch
//! index whose platforms share a layer, an image sharing a layer with another repository's,
//! a signature and an SBOM as referrers), known pulls, and every figure the REST API and
//! `gantry … --json` report compared with what this test computes from the bytes it pushed.

mod common;

use std::collections::BTreeSet;

use common::*;
use gantry_oci::{media_type, Digest};
use reqwest::StatusCode;
use serde_json::{json, Value};

const SIGNATURE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
const SBOM: &str = "application/spdx+json";

/// What the test pushed: manifests' bytes and the blobs each references.
#[derive(Default)]
struct Pushed {
    /// (manifest bytes, blobs it references)
    manifests: Vec<(Vec<u8>, Vec<Vec<u8>>)>,
}

impl Pushed {
    /// The repository's size: every manifest, every distinct blob once.
    fn repository_size(&self) -> u64 {
        let blobs: BTreeSet<&Vec<u8>> = self.manifests.iter().flat_map(|(_, b)| b).collect();
        self.manifests
            .iter()
            .map(|(m, _)| m.len() as u64)
            .sum::<u64>()
            + blobs.iter().map(|b| b.len() as u64).sum::<u64>()
    }
}

/// An image's size: manifest, config and layers (distinct).
fn image_size(manifest: &[u8], blobs: &[Vec<u8>]) -> u64 {
    let distinct: BTreeSet<&Vec<u8>> = blobs.iter().collect();
    manifest.len() as u64 + distinct.iter().map(|b| b.len() as u64).sum::<u64>()
}

/// Pushes config and layers, then the manifest under `reference` (a tag, or `None`: by
/// digest); records it in `pushed`; returns the manifest and its digest.
async fn push(
    s: &Server,
    repo: &str,
    reference: Option<&str>,
    manifest: Value,
    blobs: Vec<Vec<u8>>,
    pushed: &mut Pushed,
) -> (Vec<u8>, String) {
    for blob in &blobs {
        push_blob(s, repo, blob).await;
    }
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let content_type = manifest["mediaType"].as_str().unwrap();
    let digest = Digest::sha256_of(&bytes).to_string();
    let r = put_manifest(s, repo, reference.unwrap_or(&digest), content_type, &bytes).await;
    assert_eq!(r.status(), StatusCode::CREATED, "push {repo} {reference:?}");
    pushed.manifests.push((bytes.clone(), blobs));
    (bytes, digest)
}

fn image(config: &[u8], layers: &[&[u8]]) -> Value {
    serde_json::from_slice(&image_manifest(config, layers)).unwrap()
}

/// An artifact manifest (a signature, an SBOM) about `subject`.
fn referrer(artifact_type: &str, payload: &[u8], subject: &[u8]) -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": descriptor(media_type::OCI_EMPTY, b"{}"),
        "layers": [descriptor(artifact_type, payload)],
        "subject": descriptor(media_type::OCI_INDEX, subject),
    })
}

async fn get(s: &Server, path: &str) -> Value {
    let r = http().get(s.url(path)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "GET {path}");
    r.json().await.unwrap()
}

/// Waits (bounded) until the repositories of `project` show `total` pulls of `repo`: each
/// server writes the pulls it counted in batches, so with several replicas those counted by
/// another one appear within the flush interval (see ARCHITECTURE).
async fn wait_for_pulls(s: &Server, project: &str, repo: &str, total: i64) {
    let path = format!("/api/v1/projects/{project}/repositories");
    eventually(
        PULL_COUNT_STALENESS,
        &format!("{total} pulls of {repo}"),
        || async {
            let listed = get(s, &path).await;
            let rows = listed["repositories"].as_array().unwrap().clone();
            rows.iter()
                .any(|r| r["name"] == repo && r["pulls"] == total)
                .then_some(())
        },
    )
    .await
}

/// Pulls (GET) a manifest `times` times.
async fn pull(s: &Server, repo: &str, reference: &str, times: usize) {
    for _ in 0..times {
        let r = http()
            .get(s.url(&format!("/v2/{repo}/manifests/{reference}")))
            .header(
                "accept",
                format!("{},{}", media_type::OCI_INDEX, media_type::OCI_MANIFEST),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
}

fn cli_json(s: &Server, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--registry", &s.addr, "--json"]);
    let out = gantry_as_admin(&all);
    assert!(
        out.status.success(),
        "gantry {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn browse_figures_equal_what_was_pushed_and_pulled() {
    let s = Server::start();
    api_create_project(&s, "shop", false).await;
    let mut app = Pushed::default();
    let mut web = Pushed::default();

    // A multi-arch index: two platform images sharing a layer, pushed by digest.
    let shared = b"a layer both platforms share".to_vec();
    let (amd64_config, amd64_layer) = (
        b"{\"architecture\":\"amd64\"}".to_vec(),
        b"amd64 bits".to_vec(),
    );
    let (arm64_config, arm64_layer) = (
        b"{\"architecture\":\"arm64\"}".to_vec(),
        b"arm64 bits!!".to_vec(),
    );
    let (amd64, amd64_digest) = push(
        &s,
        "shop/app",
        None,
        image(&amd64_config, &[&shared, &amd64_layer]),
        vec![amd64_config.clone(), shared.clone(), amd64_layer.clone()],
        &mut app,
    )
    .await;
    let (arm64, arm64_digest) = push(
        &s,
        "shop/app",
        None,
        image(&arm64_config, &[&shared, &arm64_layer]),
        vec![arm64_config.clone(), shared.clone(), arm64_layer.clone()],
        &mut app,
    )
    .await;
    let mut amd64_entry = descriptor(media_type::OCI_MANIFEST, &amd64);
    amd64_entry["platform"] = json!({"os": "linux", "architecture": "amd64"});
    let mut arm64_entry = descriptor(media_type::OCI_MANIFEST, &arm64);
    arm64_entry["platform"] = json!({"os": "linux", "architecture": "arm64", "variant": "v8"});
    let index_manifest = json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": [amd64_entry, arm64_entry],
    });
    let (index, index_digest) =
        push(&s, "shop/app", Some("v1"), index_manifest, vec![], &mut app).await;
    let r = put_manifest(&s, "shop/app", "latest", media_type::OCI_INDEX, &index).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // A signature and an SBOM of the index, sharing the empty config.
    let (_, signature_digest) = push(
        &s,
        "shop/app",
        None,
        referrer(SIGNATURE, b"signature payload", &index),
        vec![b"{}".to_vec(), b"signature payload".to_vec()],
        &mut app,
    )
    .await;
    let (_, sbom_digest) = push(
        &s,
        "shop/app",
        None,
        referrer(SBOM, b"{\"spdxVersion\":\"SPDX-2.3\"}", &index),
        vec![b"{}".to_vec(), b"{\"spdxVersion\":\"SPDX-2.3\"}".to_vec()],
        &mut app,
    )
    .await;
    // A single image sharing a layer with the platforms and one with shop/web's image.
    let common_layer = b"a base layer two repositories share".to_vec();
    let single_config = b"{\"architecture\":\"amd64\",\"single\":true}".to_vec();
    let (single, single_digest) = push(
        &s,
        "shop/app",
        Some("v2"),
        image(&single_config, &[&shared, &common_layer]),
        vec![single_config.clone(), shared.clone(), common_layer.clone()],
        &mut app,
    )
    .await;
    let web_config = b"{\"architecture\":\"amd64\",\"web\":true}".to_vec();
    let web_layer = b"web bits".to_vec();
    let (web_image, web_digest) = push(
        &s,
        "shop/web",
        Some("stable"),
        image(&web_config, &[&common_layer, &web_layer]),
        vec![web_config.clone(), common_layer.clone(), web_layer.clone()],
        &mut web,
    )
    .await;

    pull(&s, "shop/app", "v1", 3).await;
    pull(&s, "shop/app", &single_digest, 2).await;
    pull(&s, "shop/app", &amd64_digest, 1).await;
    wait_for_pulls(&s, "shop", "shop/app", 6).await;

    // Sizes computed here, from the bytes pushed.
    let index_size = index.len() as u64
        + amd64.len() as u64
        + arm64.len() as u64
        + [
            &amd64_config,
            &arm64_config,
            &shared,
            &amd64_layer,
            &arm64_layer,
        ]
        .iter()
        .map(|b| b.len() as u64)
        .sum::<u64>();
    let single_size = image_size(
        &single,
        &[single_config.clone(), shared.clone(), common_layer.clone()],
    );
    let web_size = image_size(
        &web_image,
        &[web_config.clone(), common_layer.clone(), web_layer.clone()],
    );

    // Repositories.
    let repositories = get(&s, "/api/v1/projects/shop/repositories").await;
    assert_eq!(repositories["next"], Value::Null);
    let listed = repositories["repositories"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    let (app_row, web_row) = (&listed[0], &listed[1]);
    assert_eq!(app_row["name"], "shop/app");
    assert_eq!(app_row["artifacts"], 2, "the index and the single image");
    assert_eq!(app_row["size_bytes"], app.repository_size());
    assert_eq!(app_row["pulls"], 6);
    assert!(app_row["last_pulled_at"].is_i64());
    assert!(app_row["last_pushed_at"].is_i64());
    assert_eq!(web_row["name"], "shop/web");
    assert_eq!(web_row["artifacts"], 1);
    assert_eq!(web_row["size_bytes"], web.repository_size());
    assert_eq!(web_row["size_bytes"], web_size);
    assert_eq!(web_row["pulls"], 0);
    assert_eq!(web_row["last_pulled_at"], Value::Null);

    // Artifacts, newest first by default; referrers and platforms under the index.
    let artifacts = get(&s, "/api/v1/repositories/shop%2Fapp/artifacts").await;
    assert_eq!(artifacts["next"], Value::Null);
    let listed = artifacts["artifacts"].as_array().unwrap();
    let digests: Vec<&str> = listed
        .iter()
        .map(|a| a["digest"].as_str().unwrap())
        .collect();
    assert_eq!(digests, [single_digest.as_str(), index_digest.as_str()]);
    let (single_row, index_row) = (&listed[0], &listed[1]);
    assert_eq!(index_row["media_type"], media_type::OCI_INDEX);
    assert_eq!(index_row["artifact_type"], Value::Null);
    assert_eq!(index_row["tags"], json!(["latest", "v1"]));
    assert_eq!(index_row["size_bytes"], index_size);
    assert_eq!(index_row["pulls"], 3);
    assert!(index_row["last_pulled_at"].is_i64());
    assert_eq!(
        index_row["platforms"],
        json!([
            {"os": "linux", "architecture": "amd64", "digest": amd64_digest},
            {"os": "linux", "architecture": "arm64", "variant": "v8", "digest": arm64_digest},
        ])
    );
    let referrers: Vec<(&str, &str, &str)> = index_row["referrers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["digest"].as_str().unwrap(),
                r["artifact_type"].as_str().unwrap(),
                r["media_type"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        referrers,
        [
            (
                signature_digest.as_str(),
                SIGNATURE,
                media_type::OCI_MANIFEST
            ),
            (sbom_digest.as_str(), SBOM, media_type::OCI_MANIFEST),
        ]
    );
    assert_eq!(single_row["tags"], json!(["v2"]));
    assert_eq!(single_row["size_bytes"], single_size);
    assert_eq!(single_row["artifact_type"], media_type::OCI_CONFIG);
    assert_eq!(single_row["platforms"], json!([]));
    assert_eq!(single_row["referrers"], json!([]));
    assert_eq!(single_row["pulls"], 2);

    // One artifact, by tag and by digest; referrers and platform images too.
    let by_tag = get(&s, "/api/v1/repositories/shop%2Fapp/artifacts/v1").await;
    assert_eq!(&by_tag, index_row);
    let signature = get(
        &s,
        &format!("/api/v1/repositories/shop%2Fapp/artifacts/{signature_digest}"),
    )
    .await;
    assert_eq!(signature["artifact_type"], SIGNATURE);
    assert_eq!(signature["tags"], json!([]));
    let amd64_row = get(
        &s,
        &format!("/api/v1/repositories/shop%2Fapp/artifacts/{amd64_digest}"),
    )
    .await;
    assert_eq!(amd64_row["pulls"], 1);
    assert_eq!(
        amd64_row["size_bytes"],
        image_size(&amd64, &[amd64_config, shared.clone(), amd64_layer])
    );
    let web_row = get(&s, "/api/v1/repositories/shop%2Fweb/artifacts/stable").await;
    assert_eq!(web_row["digest"], web_digest);

    // The CLI shows the API's figures.
    assert_eq!(
        cli_json(&s, &["repo", "list", "shop"])["repositories"],
        repositories["repositories"]
    );
    assert_eq!(
        cli_json(&s, &["artifact", "list", "shop/app"])["artifacts"],
        artifacts["artifacts"]
    );
    assert_eq!(cli_json(&s, &["artifact", "show", "shop/app:v1"]), by_tag);
    assert_eq!(
        cli_json(
            &s,
            &["artifact", "show", &format!("shop/app@{signature_digest}")]
        ),
        signature
    );
    let table = gantry_as_admin(&["repo", "list", "shop", "--registry", &s.addr]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains("shop/app") && table.contains("never"),
        "{table}"
    );
    let table = gantry_as_admin(&["artifact", "list", "shop/app", "--registry", &s.addr]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("linux/amd64,linux/arm64/v8") && table.contains("signature,sbom"),
        "{table}"
    );
}

/// Every page of `path` with `query` and `limit`, following `next`; the rows of `key`.
async fn all_pages(s: &Server, path: &str, key: &str, query: &str, limit: usize) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let page = match &next {
            Some(token) => format!("&page={token}"),
            None => String::new(),
        };
        let body = get(s, &format!("{path}?{query}&limit={limit}{page}")).await;
        let items = body[key].as_array().unwrap();
        assert!(items.len() <= limit);
        rows.extend(items.iter().cloned());
        match body["next"].as_str() {
            Some(token) => next = Some(token.to_string()),
            None => return rows,
        }
    }
}

#[tokio::test]
async fn browse_pages_through_every_sort_exactly_once_in_order() {
    let s = Server::start();
    api_create_project(&s, "many", false).await;
    // Seven images of distinct sizes, pushed in order; some pulled.
    let mut pushed = Vec::new();
    for i in 0..7usize {
        let config = format!("{{\"n\":{i}}}").into_bytes();
        let layer = vec![b'x'; 100 + ((i * 37) % 7) * 50];
        for blob in [&config, &layer] {
            push_blob(&s, "many/app", blob).await;
        }
        let manifest = image_manifest(&config, &[&layer]);
        let r = put_manifest(
            &s,
            "many/app",
            &format!("t{i}"),
            media_type::OCI_MANIFEST,
            &manifest,
        )
        .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let size = manifest.len() + config.len() + layer.len();
        pushed.push((Digest::sha256_of(&manifest).to_string(), size as i64));
    }
    for (i, (digest, _)) in pushed.iter().enumerate().take(4) {
        pull(&s, "many/app", digest, i + 1).await;
    }
    wait_for_pulls(&s, "many", "many/app", 1 + 2 + 3 + 4).await;
    let path = "/api/v1/repositories/many%2Fapp/artifacts";
    let digests = |rows: &[Value]| -> Vec<String> {
        rows.iter()
            .map(|r| r["digest"].as_str().unwrap().to_string())
            .collect()
    };
    // By push time: the push order.
    let newest_first: Vec<String> = pushed.iter().rev().map(|(d, _)| d.clone()).collect();
    for limit in [1, 2, 3, 7, 100] {
        let rows = all_pages(&s, path, "artifacts", "sort=pushed", limit).await;
        assert_eq!(digests(&rows), newest_first, "limit {limit}");
    }
    let rows = all_pages(&s, path, "artifacts", "sort=pushed&order=asc", 2).await;
    assert_eq!(
        digests(&rows),
        newest_first.iter().rev().cloned().collect::<Vec<_>>()
    );
    // By name: the digests in order.
    let mut by_digest: Vec<String> = pushed.iter().map(|(d, _)| d.clone()).collect();
    by_digest.sort();
    let rows = all_pages(&s, path, "artifacts", "sort=name", 3).await;
    assert_eq!(digests(&rows), by_digest);
    // By size, largest first (ties by digest, descending too).
    let mut by_size = pushed.clone();
    by_size.sort_by(|a, b| (b.1, &b.0).cmp(&(a.1, &a.0)));
    let rows = all_pages(&s, path, "artifacts", "sort=size", 2).await;
    assert_eq!(
        digests(&rows),
        by_size.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>()
    );
    let sizes: Vec<i64> = rows
        .iter()
        .map(|r| r["size_bytes"].as_i64().unwrap())
        .collect();
    assert_eq!(sizes, by_size.iter().map(|(_, s)| *s).collect::<Vec<_>>());
    // By last pull, least recent first: the never pulled, then by time.
    let rows = all_pages(&s, path, "artifacts", "sort=pulled&order=asc", 2).await;
    assert_eq!(rows.len(), 7);
    let keys: Vec<(i64, String)> = rows
        .iter()
        .map(|r| {
            (
                r["last_pulled_at"].as_i64().unwrap_or(-1),
                r["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    let pulls: BTreeSet<(String, i64)> = rows
        .iter()
        .map(|r| {
            (
                r["digest"].as_str().unwrap().to_string(),
                r["pulls"].as_i64().unwrap(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, i64)> = pushed
        .iter()
        .enumerate()
        .map(|(i, (d, _))| (d.clone(), if i < 4 { i as i64 + 1 } else { 0 }))
        .collect();
    assert_eq!(pulls, expected);

    // Repositories page too, under every sort.
    for repo in ["many/b", "many/c", "many/d"] {
        push_image(&s, repo, "v1", repo).await;
    }
    let names = |rows: &[Value]| -> Vec<String> {
        rows.iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    };
    let rows = all_pages(
        &s,
        "/api/v1/projects/many/repositories",
        "repositories",
        "sort=name",
        1,
    )
    .await;
    assert_eq!(names(&rows), ["many/app", "many/b", "many/c", "many/d"]);
    let rows = all_pages(
        &s,
        "/api/v1/projects/many/repositories",
        "repositories",
        "sort=pushed",
        1,
    )
    .await;
    assert_eq!(names(&rows), ["many/d", "many/c", "many/b", "many/app"]);
    let rows = all_pages(
        &s,
        "/api/v1/projects/many/repositories",
        "repositories",
        "sort=size",
        3,
    )
    .await;
    assert_eq!(names(&rows)[0], "many/app");
    let rows = all_pages(
        &s,
        "/api/v1/projects/many/repositories",
        "repositories",
        "sort=pulled",
        3,
    )
    .await;
    assert_eq!(
        names(&rows),
        ["many/app", "many/d", "many/c", "many/b"],
        "pulled first, then by name descending"
    );

    // The CLI follows the pages and stops at --limit.
    let cli = cli_json(
        &s,
        &[
            "artifact", "list", "many/app", "--sort", "size", "--limit", "5",
        ],
    );
    assert_eq!(
        digests(cli["artifacts"].as_array().unwrap()),
        by_size
            .iter()
            .take(5)
            .map(|(d, _)| d.clone())
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn browse_refuses_foreign_tokens_unknown_names_and_outsiders() {
    let s = Server::start();
    api_create_project(&s, "team", false).await;
    push_image(&s, "team/app", "v1", "a").await;
    push_image(&s, "team/app", "v2", "b").await;
    let first = get(
        &s,
        "/api/v1/repositories/team%2Fapp/artifacts?sort=pushed&limit=1",
    )
    .await;
    let token = first["next"].as_str().unwrap();
    let admin = http();
    for query in [
        format!("sort=size&limit=1&page={token}"),
        format!("sort=pushed&order=asc&limit=1&page={token}"),
        "page=garbage".to_string(),
        "limit=0".to_string(),
        "sort=colour".to_string(),
    ] {
        let r = admin
            .get(s.url(&format!(
                "/api/v1/repositories/team%2Fapp/artifacts?{query}"
            )))
            .send()
            .await
            .unwrap();
        assert_error(r, StatusCode::BAD_REQUEST, "INVALID_REQUEST").await;
    }
    let r = admin
        .get(s.url("/api/v1/repositories/team%2Fnothing/artifacts"))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "NAME_UNKNOWN").await;
    let r = admin
        .get(s.url("/api/v1/repositories/team%2Fapp/artifacts/v9"))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
    let r = admin
        .get(s.url("/api/v1/projects/nothing/repositories"))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    api_create_user(&s, "eve", "a-password", false).await;
    let eve = http_as("eve", "a-password");
    for path in [
        "/api/v1/projects/team/repositories",
        "/api/v1/repositories/team%2Fapp/artifacts",
        "/api/v1/repositories/team%2Fapp/artifacts/v1",
    ] {
        let r = eve.get(s.url(path)).send().await.unwrap();
        assert_error(r, StatusCode::FORBIDDEN, "DENIED").await;
    }
    let out = gantry_as_admin(&["artifact", "show", "team/app", "--registry", &s.addr]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("REPOSITORY:TAG"));
}

/// The project list gives each project's quota to whoever may pull from it, and its
/// repository count and latest push only to those who may also list its repositories (a
/// limited guest may not).
#[tokio::test]
async fn the_project_list_shows_repository_figures_only_to_those_who_may_list_them() {
    let s = Server::start_configured(&[("GANTRY_AUTO_CREATE_PROJECTS", "false")]);
    api_create_project(&s, "team", false).await;
    for (user, role) in [("guest", "guest"), ("limited", "limited-guest")] {
        api_create_user(&s, user, "a-password", false).await;
        api_set_role(&s, "team", user, role).await;
    }
    push_image(&s, "team/app", "v1", "one").await;
    push_image(&s, "team/web", "v1", "two").await;
    let listed = |user: &'static str| {
        let request = http_as(user, "a-password").get(s.url("/api/v1/projects"));
        async move {
            let body: Value = request.send().await.unwrap().json().await.unwrap();
            body["projects"][0].clone()
        }
    };
    let guest = listed("guest").await;
    assert_eq!(
        (&guest["name"], &guest["repositories"]),
        (&json!("team"), &json!(2))
    );
    assert!(guest["last_pushed_at"].as_i64().unwrap() > 0, "{guest}");
    assert_eq!(guest["quota"]["artifacts"]["used"], 2, "{guest}");
    let limited = listed("limited").await;
    assert_eq!(
        (&limited["repositories"], &limited["last_pushed_at"]),
        (&Value::Null, &Value::Null),
        "{limited}"
    );
    assert_eq!(limited["quota"], guest["quota"]);
}
