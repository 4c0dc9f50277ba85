//! Replication (`[[replication]]` and rules made through the REST API): what is pushed to a
//! Gantry is copied to another registry — Debian's docker-registry (CNCF Distribution 2.8),
//! which has no referrers API — with its signature and SBOM, as the rule's selectors say;
//! deletions follow when asked; a target that is down gets the push once it is back. Pull
//! rules copy from another Gantry; preheat rules warm an edge cache.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use gantry_oci::{media_type, Digest};
use reqwest::StatusCode;
use serde_json::json;

/// A Gantry replicating `team/*` tags `v*` (and deletions) to `target` (rule `edge`), and
/// tag `v1` to `nightly` every two seconds besides (rule `nightly`).
fn start_replicating(dir: &Path, target: &str, nightly: &str) -> Server {
    let config = dir.join("gantry.toml");
    std::fs::write(
        &config,
        format!(
            "[[replication]]\nname = \"edge\"\nurl = \"http://{target}\"\ndeletions = true\n\
             repositories = {{ include = [\"team/*\"] }}\ntags = {{ include = [\"v*\"] }}\n\n\
             [[replication]]\nname = \"nightly\"\nurl = \"http://{nightly}\"\n\
             repositories = {{ include = [\"team/*\"] }}\ntags = {{ include = [\"v1\"] }}\n\
             schedule = \"*/2 * * * * *\"\nbandwidth_mib = 64\n"
        ),
    )
    .unwrap();
    Server::start_configured(&[("GANTRY_CONFIG", config.to_str().unwrap())])
}

/// The status of a manifest GET at the open registry `addr`.
async fn status_at(addr: &str, repository: &str, reference: &str) -> StatusCode {
    reqwest::Client::new()
        .get(format!(
            "http://{addr}/v2/{repository}/manifests/{reference}"
        ))
        .header(
            "accept",
            format!("{}, {}", media_type::OCI_MANIFEST, media_type::OCI_INDEX),
        )
        .send()
        .await
        .unwrap()
        .status()
}

/// Runs the gantry CLI as admin against `s`; its standard output (it must succeed).
fn gantry(s: &Server, args: &[&str]) -> String {
    run(gantry_on(s).args(args))
}

/// The items of `rule` (`gantry KIND items RULE --json`, KIND `replication` or `preheat`)
/// once `done` holds for them: an item runs on after what a test observes at its target
/// (referrers after the manifest, the edge's listing after the pull), a bounded wait.
async fn items_once(
    s: &Server,
    kind: &str,
    rule: &str,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    eventually(
        Duration::from_secs(30),
        &format!("the items of {rule} done"),
        || async {
            let out = gantry(s, &[kind, "items", rule, "--json"]);
            let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
            let items = listed["items"].as_array()?.clone();
            done(&items).then_some(items)
        },
    )
    .await
}

async fn until_status(addr: &str, repository: &str, reference: &str, want: StatusCode) {
    eventually(
        Duration::from_secs(30),
        &format!("{repository}:{reference} answering {want} at the target"),
        || async { (status_at(addr, repository, reference).await == want).then_some(()) },
    )
    .await;
}

/// Attaches to `digest` of `repository` a cosign tag-scheme signature manifest and an SBOM
/// referrer (OCI 1.1 subject); returns the `.sig` tag and the SBOM manifest's digest.
async fn sign_and_attach(s: &Server, repository: &str, image: &[u8]) -> (String, String) {
    let digest = Digest::sha256_of(image);
    let payload = format!(
        r#"{{"critical":{{"image":{{"docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}}}}"#
    );
    let config = br#"{"architecture":"","os":""}"#;
    push_blob(s, repository, payload.as_bytes()).await;
    push_blob(s, repository, config).await;
    let mut layer = descriptor(
        "application/vnd.dev.cosign.simplesigning.v1+json",
        payload.as_bytes(),
    );
    layer["annotations"] = json!({"dev.cosignproject.cosign/signature": "c2ln"});
    let signature = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": descriptor(media_type::OCI_CONFIG, config),
        "layers": [layer],
    }))
    .unwrap();
    let tag = format!("{}.sig", digest.to_string().replace(':', "-"));
    let r = put_manifest(s, repository, &tag, media_type::OCI_MANIFEST, &signature).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let sbom = br#"{"spdxVersion":"SPDX-2.3"}"#;
    push_blob(s, repository, gantry_oci::manifest::EMPTY_CONFIG).await;
    push_blob(s, repository, sbom).await;
    let referrer = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "artifactType": "application/spdx+json",
        "config": descriptor(media_type::OCI_EMPTY, gantry_oci::manifest::EMPTY_CONFIG),
        "layers": [descriptor("application/spdx+json", sbom)],
        "subject": descriptor(media_type::OCI_MANIFEST, image),
    }))
    .unwrap();
    let sbom_digest =
        push_manifest_by_digest(s, repository, media_type::OCI_MANIFEST, &referrer).await;
    (tag, sbom_digest)
}

#[tokio::test(flavor = "multi_thread")]
async fn pushes_are_replicated_with_their_signatures_as_filtered_and_deletions_follow() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let port = free_port();
    let mut target = Some(Distribution::start_on(dir, port));
    let addr = format!("127.0.0.1:{port}");
    let nightly_dir = dir.join("nightly");
    std::fs::create_dir_all(&nightly_dir).unwrap();
    let nightly = Distribution::start(&nightly_dir);
    let s = start_replicating(dir, &addr, &nightly.1);
    api_create_project(&s, "team", false).await;
    api_create_project(&s, "other", false).await;

    let (v1, v1_digest) = push_image(&s, "team/app", "v1", "one").await;
    let (sig_tag, sbom_digest) = sign_and_attach(&s, "team/app", &v1).await;
    until_status(&addr, "team/app", "v1", StatusCode::OK).await;
    let r = reqwest::Client::new()
        .get(format!("http://{addr}/v2/team/app/manifests/v1"))
        .header("accept", media_type::OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "docker-content-digest"),
        Some(v1_digest.to_string().as_str())
    );
    assert_eq!(
        r.bytes().await.unwrap().as_ref(),
        v1.as_slice(),
        "byte-identical"
    );
    until_status(&addr, "team/app", &sig_tag, StatusCode::OK).await;
    until_status(&addr, "team/app", &sbom_digest, StatusCode::OK).await;

    // Gone at the targets behind Gantry's back: a run by hand puts it back at `edge`, the
    // schedule at `nightly`.
    until_status(&nightly.1, "team/app", "v1", StatusCode::OK).await;
    for target in [addr.as_str(), nightly.1.as_str()] {
        let r = reqwest::Client::new()
            .delete(format!("http://{target}/v2/team/app/manifests/{v1_digest}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }
    let out = gantry(&s, &["replication", "run", "edge"]);
    assert!(
        out.contains("Run ") && out.contains("of edge started"),
        "{out}"
    );
    until_status(&addr, "team/app", "v1", StatusCode::OK).await;
    until_status(&nightly.1, "team/app", "v1", StatusCode::OK).await;
    let listed = gantry(&s, &["replication", "list"]);
    assert!(
        listed.contains("edge") && listed.contains("*/2 * * * * *"),
        "{listed}"
    );

    // Selectors: a dev tag and another project's push stay here (checked once a later push
    // of the same repository, replicated in order after them, is there).
    push_image(&s, "team/app", "dev-1", "dev").await;
    push_image(&s, "other/app", "v1", "other").await;
    let (_, v2_digest) = push_image(&s, "team/app", "v2", "two").await;
    until_status(&addr, "team/app", "v2", StatusCode::OK).await;
    assert_eq!(
        status_at(&addr, "team/app", "dev-1").await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status_at(&addr, "other/app", "v1").await,
        StatusCode::NOT_FOUND
    );

    // A deletion follows.
    let r = http()
        .delete(s.url(&format!("/v2/team/app/manifests/{v2_digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    until_status(
        &addr,
        "team/app",
        &v2_digest.to_string(),
        StatusCode::NOT_FOUND,
    )
    .await;

    // The target down: the push is retried, and delivered once it is back.
    drop(target.take());
    let (_, v3_digest) = push_image(&s, "team/app", "v3", "three").await;
    // v3's own item failed once (not some earlier item's transient failure) before the
    // target comes back.
    let failed_attempt = items_once(&s, "replication", "edge", |items| {
        items.iter().any(|i| {
            i["tag"] == "v3" && i["last_error"].as_str().is_some_and(|e| e.contains("edge"))
        })
    })
    .await;
    let failed_attempt = failed_attempt.iter().find(|i| i["tag"] == "v3").unwrap();
    assert!(failed_attempt["state"] != "failed", "{failed_attempt}");
    target = Some(Distribution::start_on(dir, port));
    eventually(
        Duration::from_secs(60),
        "v3 delivered after the target came back",
        || async {
            let r = reqwest::Client::new()
                .get(format!("http://{addr}/v2/team/app/manifests/v3"))
                .header("accept", media_type::OCI_MANIFEST)
                .send()
                .await
                .ok()?;
            (header(&r, "docker-content-digest") == Some(v3_digest.to_string().as_str()))
                .then_some(())
        },
    )
    .await;
    // Every item of the rule ends succeeded, v3's after more than one attempt.
    let items = items_once(&s, "replication", "edge", |items| {
        items.iter().all(|i| i["state"] == "succeeded")
    })
    .await;
    let v3_item = items.iter().find(|i| i["tag"] == "v3").unwrap();
    assert!(v3_item["attempts"].as_u64().unwrap() > 1, "{v3_item}");
    drop(target);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_preheat_warms_the_edge_with_the_most_pulled_tag_whose_pulls_then_stay_at_the_edge() {
    if single_process_only("the edge's cache fetches are per server") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    // Edge → counting proxy → origin; the proxy learns the origin's address once it runs.
    let proxy = FaultProxy::start(dir, "127.0.0.1:9");
    let edge_dir = dir.join("edge");
    std::fs::create_dir_all(&edge_dir).unwrap();
    let edge_config = edge_dir.join("gantry.toml");
    std::fs::write(
        &edge_config,
        format!(
            "[[upstreams]]\nname = \"origin\"\nurl = \"http://{}\"\nusername = \"admin\"\n\
             password = \"{ADMIN_PASSWORD}\"\n",
            proxy.addr
        ),
    )
    .unwrap();
    let edge = Server::start_configured(&[("GANTRY_CONFIG", edge_config.to_str().unwrap())]);
    let origin_config = dir.join("gantry.toml");
    std::fs::write(
        &origin_config,
        format!(
            "[[preheat]]\nname = \"before-rollout\"\nedge = \"http://{}\"\nedge_project = \"origin\"\n\
             username = \"admin\"\npassword = \"{ADMIN_PASSWORD}\"\nproject = \"team\"\n\
             most_pulled = {{ count = 1, days = 1 }}\nschedule = \"*/2 * * * * *\"\n",
            edge.addr
        ),
    )
    .unwrap();
    let origin = Server::start_configured(&[("GANTRY_CONFIG", origin_config.to_str().unwrap())]);
    proxy.set_origin(&origin.addr);
    api_create_project(&origin, "team", false).await;
    for (tag, pulls) in [("v1", 0), ("v2", 3), ("v3", 1)] {
        push_image(&origin, "team/app", tag, tag).await;
        for _ in 0..pulls {
            let r = http()
                .get(origin.url(&format!("/v2/team/app/manifests/{tag}")))
                .header("accept", media_type::OCI_MANIFEST)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
        }
    }

    // At the next firings the edge gets the most pulled tag, and only that.
    let listed = |tag: &'static str| {
        let edge = &edge;
        async move {
            http()
                .get(edge.url(&format!(
                    "/api/v1/repositories/origin%2Fteam%2Fapp/artifacts/{tag}"
                )))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    eventually(
        Duration::from_secs(60),
        "v2 preheated at the edge",
        || async { (listed("v2").await == StatusCode::OK).then_some(()) },
    )
    .await;
    assert_eq!(listed("v1").await, StatusCode::NOT_FOUND);
    assert_eq!(listed("v3").await, StatusCode::NOT_FOUND);

    // A pull at the edge now asks the origin nothing.
    let asked = proxy.log().len();
    let pulled = dir.join("pulled");
    run(skopeo(dir)
        .args([
            "copy",
            "--src-tls-verify=false",
            "--src-creds",
            &admin_creds(),
        ])
        .arg(format!("docker://{}/origin/team/app:v2", edge.addr))
        .arg(format!("oci:{}:v2", pulled.display())));
    assert_eq!(proxy.log().len(), asked, "{:?}", &proxy.log()[asked..]);

    let rules = gantry(&origin, &["preheat", "list"]);
    assert!(rules.contains("before-rollout"), "{rules}");
    let items = items_once(&origin, "preheat", "before-rollout", |items| {
        items.iter().any(|i| i["state"] == "succeeded")
    })
    .await;
    assert!(items.iter().all(|i| i["tag"] == "v2"), "{items:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_only_rule_replicates_an_image_once_a_trusted_key_signed_it() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let target = Distribution::start(dir);
    let config = dir.join("gantry.toml");
    std::fs::write(
        &config,
        format!(
            "[[replication]]\nname = \"signed\"\nurl = \"http://{}\"\nsigned_only = true\n",
            target.1
        ),
    )
    .unwrap();
    let s = Server::start_configured(&[("GANTRY_CONFIG", config.to_str().unwrap())]);
    api_create_project(&s, "team", false).await;
    let cli = |args: &[&str]| {
        run(gantry_on(&s)
            .args(args)
            .env("COSIGN_PASSWORD", "test-password"))
    };
    let prefix = dir.join("release");
    cli(&[
        "key",
        "generate",
        "--output-key-prefix",
        prefix.to_str().unwrap(),
    ]);
    let public = dir.join("release.pub");
    cli(&[
        "signing-policy",
        "set",
        "team",
        "--registry",
        &s.addr,
        "--key",
        public.to_str().unwrap(),
        "--no-enforce",
    ]);
    // The policy is read through a cache that lives two seconds.
    tokio::time::sleep(Duration::from_millis(2100)).await;

    push_image(&s, "team/app", "v1", "never signed").await;
    let (_, v2_digest) = push_image(&s, "team/app", "v2", "signed after its push").await;
    let key = dir.join("release.key");
    cli(&[
        "sign",
        "--key",
        key.to_str().unwrap(),
        "--format",
        "tag",
        &format!("{}/team/app:v2", s.addr),
    ]);
    until_status(&target.1, "team/app", "v2", StatusCode::OK).await;
    let sig_tag = format!("{}.sig", v2_digest.to_string().replace(':', "-"));
    until_status(&target.1, "team/app", &sig_tag, StatusCode::OK).await;
    // v1's item ran before (one queue per repository): skipped, never sent.
    assert_eq!(
        status_at(&target.1, "team/app", "v1").await,
        StatusCode::NOT_FOUND
    );
    let items = items_once(&s, "replication", "signed", |items| {
        items
            .iter()
            .any(|i| i["tag"] == "v1" && i["state"] == "succeeded")
    })
    .await;
    let v1 = items.iter().find(|i| i["tag"] == "v1").unwrap();
    assert_eq!(
        v1["result"]["skipped"], "not signed by a key its project trusts",
        "{v1}"
    );
}

/// Pushes an image to `repository:tag` whose config carries `labels`.
async fn push_labelled(s: &Server, repository: &str, tag: &str, labels: serde_json::Value) {
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Labels": labels },
    }))
    .unwrap();
    let layer = format!("layer of {repository}:{tag}").into_bytes();
    push_blob(s, repository, &config).await;
    push_blob(s, repository, &layer).await;
    let manifest = image_manifest(&config, &[&layer]);
    let r = put_manifest(s, repository, tag, media_type::OCI_MANIFEST, &manifest).await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

/// Rules made through the REST API (issue 15): a pull rule with credentials, given on the CLI
/// with `--password-stdin` and stored sealed, runs once at its `at` time and copies the
/// remote's tag into its project, with the signature; its run is in the history with its
/// items. A push rule with a label selector made by a project's administrator sends only the
/// labelled image. A project's administrator manages that project's rules only; a rule of the
/// config file cannot be changed through the API.
#[tokio::test(flavor = "multi_thread")]
async fn rules_made_through_the_api_pull_at_their_time_and_push_by_label_with_sealed_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let dist = Distribution::start(dir);
    let config = dir.join("gantry.toml");
    std::fs::write(
        &config,
        "[[replication]]\nname = \"edge\"\nurl = \"http://127.0.0.1:9\"\n\
         repositories = { include = [\"elsewhere/*\"] }\n",
    )
    .unwrap();
    let s = Server::start_configured(&[("GANTRY_CONFIG", config.to_str().unwrap())]);
    let remote = Server::start();
    api_create_project(&remote, "team", false).await;
    let secret = "puller-Secret-4711";
    api_create_user(&remote, "puller", secret, false).await;
    api_set_role(&remote, "team", "puller", "guest").await;
    let (_, v1_digest) = push_image(&remote, "team/app", "v1", "remote-one").await;
    let sig_tag = push_cosign_signature(&remote, "team/app", &v1_digest.to_string()).await;
    push_image(&remote, "team/app", "dev-1", "remote-dev").await;

    api_create_project(&s, "mirror", false).await;
    api_create_project(&s, "team", false).await;
    api_create_user(&s, "lead", "lead-password-1", false).await;
    api_set_role(&s, "team", "lead", "project-admin").await;
    api_create_user(&s, "dev", "dev-password-1", false).await;
    api_set_role(&s, "team", "dev", "developer").await;

    // The pull rule, from the CLI, its password from stdin, due in three seconds.
    let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(3);
    let at = at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let rule_file = dir.join("pull.toml");
    std::fs::write(
        &rule_file,
        format!(
            "name = \"from-remote\"\nkind = \"pull\"\nurl = \"http://{}\"\n\
             username = \"puller\"\nproject = \"mirror\"\n\
             repositories = {{ include = [\"team/app\"] }}\ntags = {{ include = [\"v*\"] }}\n\
             at = \"{at}\"\n",
            remote.addr
        ),
    )
    .unwrap();
    run_with_input(
        gantry_on(&s).args([
            "replication",
            "create",
            rule_file.to_str().unwrap(),
            "--password-stdin",
        ]),
        Some(&format!("{secret}\n")),
    );
    let shown: serde_json::Value =
        serde_json::from_str(&gantry(&s, &["replication", "show", "from-remote"])).unwrap();
    assert_eq!(shown["source"], "api");
    assert_eq!(shown["username"], "puller");
    assert!(shown.get("password").is_none(), "{shown}");
    // The database holds the password sealed.
    assert_no_data_file_holds(&s, secret);

    // At its time the run pulls v1 (not dev-1) with its signature into the project.
    let pulled = |reference: String| {
        let s = &s;
        async move {
            let r = http()
                .get(s.url(&format!("/v2/mirror/team/app/manifests/{reference}")))
                .header("accept", media_type::OCI_MANIFEST)
                .send()
                .await
                .unwrap();
            (r.status() == StatusCode::OK)
                .then(|| header(&r, "docker-content-digest").map(str::to_string))
        }
    };
    let got = eventually(Duration::from_secs(30), "v1 pulled at its time", || {
        pulled("v1".into())
    })
    .await;
    assert_eq!(got.as_deref(), Some(v1_digest.to_string().as_str()));
    eventually(Duration::from_secs(30), "the signature pulled", || {
        pulled(sig_tag.clone())
    })
    .await;
    assert!(
        pulled("dev-1".into()).await.is_none(),
        "dev-1 is not selected"
    );
    let runs = eventually(Duration::from_secs(30), "the run done", || async {
        let out = gantry(&s, &["replication", "runs", "from-remote", "--json"]);
        let runs: serde_json::Value = serde_json::from_str(&out).unwrap();
        let run = runs["runs"].as_array()?.first()?.clone();
        (run["succeeded"] == 1).then_some(runs)
    })
    .await;
    let run = &runs["runs"][0];
    assert_eq!(run["trigger"], "at", "{runs}");
    assert_eq!(run["items"], 1, "{runs}");
    assert_eq!(
        runs["runs"].as_array().unwrap().len(),
        1,
        "at fires once: {runs}"
    );
    let run_id = run["id"].to_string();
    let items = gantry(
        &s,
        &[
            "replication",
            "items",
            "from-remote",
            "--run",
            &run_id,
            "--json",
        ],
    );
    let items: serde_json::Value = serde_json::from_str(&items).unwrap();
    assert_eq!(items["items"][0]["tag"], "v1", "{items}");
    assert_eq!(items["items"][0]["state"], "succeeded", "{items}");

    // A project administrator adds a push rule of the project with a label selector; only
    // the image labelled tier=prod reaches the target.
    let lead = http_as("lead", "lead-password-1");
    let push_rule = json!({
        "name": "prod-only",
        "url": format!("http://{}", dist.1),
        "project": "team",
        "labels": ["tier=prod"],
    });
    let r = lead
        .post(s.url("/api/v1/replication"))
        .json(&push_rule)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let system_wide = json!({"name": "everything", "url": format!("http://{}", dist.1)});
    let r = lead
        .post(s.url("/api/v1/replication"))
        .json(&system_wide)
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::FORBIDDEN, "DENIED").await;
    push_labelled(&s, "team/svc", "v1", json!({"tier": "prod"})).await;
    push_labelled(&s, "team/svc", "v2", json!({"tier": "dev"})).await;
    until_status(&dist.1, "team/svc", "v1", StatusCode::OK).await;
    let items = items_once(&s, "replication", "prod-only", |items| {
        items.len() == 2 && items.iter().all(|i| i["state"] == "succeeded")
    })
    .await;
    let v2 = items.iter().find(|i| i["tag"] == "v2").unwrap();
    assert_eq!(v2["result"]["skipped"], "the labels do not match", "{v2}");
    assert_eq!(
        status_at(&dist.1, "team/svc", "v2").await,
        StatusCode::NOT_FOUND
    );

    // Who sees what: the project's administrator its rules only, a developer none.
    let listed = |client: reqwest::Client, path: &'static str| {
        let url = s.url(path);
        async move { client.get(url).send().await.unwrap() }
    };
    let r = listed(lead.clone(), "/api/v1/replication?project=team").await;
    assert_eq!(r.status(), StatusCode::OK);
    let rules: serde_json::Value = r.json().await.unwrap();
    let names: Vec<&str> = rules["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["prod-only"]);
    let r = listed(lead.clone(), "/api/v1/replication").await;
    assert_error(r, StatusCode::FORBIDDEN, "DENIED").await;
    let dev = http_as("dev", "dev-password-1");
    let r = listed(dev, "/api/v1/replication?project=team").await;
    assert_error(r, StatusCode::FORBIDDEN, "DENIED").await;
    // A rule they may not manage is unknown to them.
    let r = lead
        .delete(s.url("/api/v1/replication/from-remote"))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;

    // A config file's rule is read only here; an API rule is deleted.
    let r = http()
        .delete(s.url("/api/v1/replication/edge"))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::CONFLICT, "CONFLICT").await;
    gantry(&s, &["replication", "delete", "from-remote"]);
    let listed = gantry(&s, &["replication", "list", "--json"]);
    assert!(
        !listed.contains("from-remote") && listed.contains("prod-only"),
        "{listed}"
    );
    drop(dist);
}

/// A one-time rule whose time has passed is changed with that time written back as read (as
/// the UI's change form and `gantry replication update` of a fetched rule do); a time set in
/// the past is still refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_rule_whose_one_time_run_has_passed_can_still_be_changed() {
    let s = Server::start();
    let at = (time::OffsetDateTime::now_utc() + time::Duration::seconds(2))
        .replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let rule = |at: &str, tags: &[&str]| json!({"name": "once", "url": "http://127.0.0.1:9", "at": at, "tags": {"include": tags}});
    let r = http()
        .post(s.url("/api/v1/replication"))
        .json(&rule(&at, &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let put = |body: serde_json::Value| {
        let request = http().put(s.url("/api/v1/replication/once")).json(&body);
        async move { request.send().await.unwrap() }
    };
    let r = put(rule(&at, &["v*"])).await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let shown = get_json(&s, "/api/v1/replication/once").await;
    assert_eq!(
        (&shown["at"], &shown["tags"]["include"]),
        (&json!(at), &json!(["v*"]))
    );
    let error = assert_error(
        put(rule("2020-01-01T00:00:00Z", &["v*"])).await,
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
    )
    .await;
    assert!(error.to_string().contains("in the past"), "{error}");
}

/// What a new user gets wrong in a rule is refused with why; a remote that refuses a rule's
/// credentials fails its run at once, not retried (each try would be a failed login there,
/// and lock the account); a preheat rule file needs no `kind` under `gantry preheat`, and
/// the other command refuses it.
#[tokio::test(flavor = "multi_thread")]
async fn bad_rules_are_refused_with_why_and_refused_credentials_are_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let s = Server::start();
    let remote = Server::start();
    api_create_project(&s, "mirror", false).await;
    api_create_project(&remote, "team", false).await;
    api_create_user(&remote, "puller", "the-right-password", false).await;
    api_set_role(&remote, "team", "puller", "guest").await;
    push_image(&remote, "team/app", "v1", "remote").await;
    let post = |body: serde_json::Value| {
        let request = http().post(s.url("/api/v1/replication")).json(&body);
        async move { request.send().await.unwrap() }
    };
    let nowhere = "http://127.0.0.1:9";
    for (body, says) in [
        (
            json!({"name": "a", "url": "http://u:p@127.0.0.1:9"}),
            "not in the url",
        ),
        (
            json!({"name": "a", "url": "http://127.0.0.1:9/v2/x"}),
            "http(s)://host[:port]",
        ),
        (
            json!({"name": "a", "url": nowhere, "at": "2020-01-01T00:00:00Z"}),
            "in the past",
        ),
        (
            json!({"name": "a", "url": nowhere, "kind": "pull"}),
            "needs a project",
        ),
        (json!({"name": "a b", "url": nowhere}), "letters, digits"),
        (
            json!({"name": "a", "url": nowhere, "username": "", "password": ""}),
            "must not be empty",
        ),
        (
            json!({"name": "a", "url": nowhere, "username": "u"}),
            "--password-stdin",
        ),
    ] {
        let error = assert_error(
            post(body.clone()).await,
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        )
        .await;
        let message = error["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
    }

    let wrong = json!({
        "name": "wrong", "kind": "pull", "url": format!("http://{}", remote.addr),
        "username": "puller", "password": "a-wrong-password", "project": "mirror",
        "repositories": {"include": ["team/app"]},
    });
    assert_eq!(post(wrong).await.status(), StatusCode::CREATED);
    gantry(&s, &["replication", "run", "wrong"]);
    let runs = eventually(Duration::from_secs(30), "the run failed", || async {
        let runs = get_json(&s, "/api/v1/replication/wrong/runs").await;
        (runs["runs"][0]["state"] == "failed").then_some(runs)
    })
    .await;
    let reason = runs["runs"][0]["last_error"].as_str().unwrap();
    assert!(reason.contains("not retried"), "{reason}");
    let jobs = get_json(&s, "/api/v1/jobs?kind=replication-run").await;
    assert_eq!(jobs["jobs"][0]["attempts"], 1, "{jobs}");
    let r = http()
        .get(s.url("/api/v1/replication/wrong/items?run=999999"))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;

    // A [[preheat]] table as a file for `gantry preheat create`: a preheat rule.
    let file = dir.join("preheat.toml");
    std::fs::write(
        &file,
        "name = \"warm\"\nedge = \"http://127.0.0.1:9\"\nproject = \"mirror\"\n",
    )
    .unwrap();
    gantry(&s, &["preheat", "create", file.to_str().unwrap()]);
    let shown: serde_json::Value =
        serde_json::from_str(&gantry(&s, &["preheat", "show", "warm"])).unwrap();
    assert_eq!(shown["kind"], "preheat", "{shown}");
    assert_eq!(shown["url"], "http://127.0.0.1:9", "{shown}");
    let refused = fails(gantry_on(&s).args(["replication", "run", "warm"]));
    assert!(refused.contains("warm is a preheat rule"), "{refused}");
}
