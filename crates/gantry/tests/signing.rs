//! The signing policy on the real binary: signatures in cosign's tag scheme made by a
//! test-side signer (Python's `cryptography`, ECDSA P-256 over the simple signing payload, as
//! cosign signs), keys trusted with `gantry signing-policy set`, pulls by skopeo and podman.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use common::*;
use gantry_oci::{media_type, Digest};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Signs `payload` with the test-side key `name` under `keys` (made on first use, its public
/// half written to `<name>.pub`); the signature, base64, as cosign's annotation holds it.
fn python_sign(keys: &Path, name: &str, payload: &[u8]) -> String {
    const SIGNER: &str = "import base64, os, sys\n\
        from cryptography.hazmat.primitives import hashes, serialization\n\
        from cryptography.hazmat.primitives.asymmetric import ec\n\
        keys, name = sys.argv[1], sys.argv[2]\n\
        private = os.path.join(keys, name + '.key')\n\
        if not os.path.exists(private):\n\
        \x20   key = ec.generate_private_key(ec.SECP256R1())\n\
        \x20   open(private, 'wb').write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))\n\
        \x20   open(os.path.join(keys, name + '.pub'), 'wb').write(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))\n\
        key = serialization.load_pem_private_key(open(private, 'rb').read(), None)\n\
        sys.stdout.write(base64.b64encode(key.sign(sys.stdin.buffer.read(), ec.ECDSA(hashes.SHA256()))).decode())\n";
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(SIGNER)
        .arg(keys)
        .arg(name)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), payload).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the signer failed");
    String::from_utf8(out.stdout).unwrap()
}

/// (payload, base64 signature) pairs: the layers of a `.sig` manifest.
type Signatures = Vec<(Vec<u8>, String)>;

/// cosign's simple signing payload for `digest` of `repository`.
fn payload(server: &Server, repository: &str, digest: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "critical": {
            "identity": {"docker-reference": format!("{}/{repository}", server.addr)},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": null,
    }))
    .unwrap()
}

/// With replicas, waits out what the others keep after a signing policy or a signature
/// changed: a policy and a verdict are used for up to two seconds (crates/registry/src/
/// signing.rs); the process that made the change forgets at once, so one process waits for
/// nothing.
fn until_every_replica_sees_the_change() {
    if replicated() {
        std::thread::sleep(std::time::Duration::from_millis(2200));
    }
}

/// Replaces the `sha256-<hex>.sig` manifest of `digest` with one layer per (payload,
/// signature), as cosign writes it (an OCI image config over the payload layers).
async fn push_signatures(
    server: &Server,
    repository: &str,
    digest: &str,
    signatures: &[(Vec<u8>, String)],
) {
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for (payload, signature) in signatures {
        push_blob(server, repository, payload).await;
        let mut layer = descriptor("application/vnd.dev.cosign.simplesigning.v1+json", payload);
        layer["annotations"] = json!({"dev.cosignproject.cosign/signature": signature});
        layers.push(layer);
        diff_ids.push(Digest::sha256_of(payload).to_string());
    }
    let config = serde_json::to_vec(&json!({
        "architecture": "", "os": "", "config": {},
        "created": "0001-01-01T00:00:00Z",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    push_blob(server, repository, &config).await;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": descriptor(media_type::OCI_CONFIG, &config),
        "layers": layers,
    }))
    .unwrap();
    let tag = format!("{}.sig", digest.replace(':', "-"));
    let put = put_manifest(
        server,
        repository,
        &tag,
        media_type::OCI_MANIFEST,
        &manifest,
    )
    .await;
    assert_eq!(put.status(), StatusCode::CREATED);
    until_every_replica_sees_the_change();
}

/// `gantry signing-policy set team` with the keys and flags given.
fn set_policy(server: &Server, keys: &[&Path], flags: &[&str]) {
    let mut args = vec!["signing-policy", "set", "team", "--registry", &server.addr];
    let keys: Vec<String> = keys.iter().map(|k| k.display().to_string()).collect();
    for key in &keys {
        args.extend(["--key", key]);
    }
    args.extend(flags);
    let out = gantry_as_admin(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    until_every_replica_sees_the_change();
}

async fn get_status(server: &Server, reference: &str, accept: &str) -> StatusCode {
    http()
        .get(server.url(&format!("/v2/team/app/manifests/{reference}")))
        .header("accept", accept)
        .send()
        .await
        .unwrap()
        .status()
}

/// A server with project `team` holding one image, `team/app:v1`, pushed by skopeo (logged
/// in as admin) with a file `etc/motd` of `motd`; a work directory with an empty `keys/`.
/// (server, work directory, keys directory, the image's digest).
async fn server_with_image(motd: &[u8]) -> (Server, tempfile::TempDir, PathBuf, String) {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    api_create_project(&server, "team", false).await;
    make_layout(dir.path(), "v1", &[("etc/motd", motd)]);
    login(dir.path(), &server, "admin", ADMIN_PASSWORD);
    run(skopeo(dir.path())
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", dir.path().join("layout").display()))
        .arg(format!("docker://{}/team/app:v1", server.addr)));
    let digest = index_digest(&dir.path().join("layout"));
    (server, dir, keys, digest)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_enforcing_project_pulls_only_images_signed_by_a_trusted_key() {
    let (server, dir, keys, digest) = server_with_image(b"signed images only").await;
    let signed = payload(&server, "team/app", &digest);
    let trusted_signature = python_sign(&keys, "trusted", &signed);
    let untrusted_signature = python_sign(&keys, "untrusted", &signed);
    let trusted = keys.join("trusted.pub");
    set_policy(&server, &[&trusted], &["--enforce"]);

    // Unsigned: refused by skopeo and podman, saying why; HEAD still answers.
    let refused = skopeo_pull(&server, dir.path(), "team/app:v1").unwrap_err();
    assert!(refused.contains("has no signature"), "{refused}");
    let podman_err = podman_pull(&server, dir.path(), "team/app:v1").unwrap_err();
    assert!(podman_err.contains("signing policy"), "{podman_err}");
    let head = http()
        .head(server.url("/v2/team/app/manifests/v1"))
        .header("accept", media_type::OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    let get = http()
        .get(server.url("/v2/team/app/manifests/v1"))
        .header("accept", media_type::OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    let error = assert_error(get, StatusCode::FORBIDDEN, "DENIED").await;
    assert!(error.to_string().contains("signing policy"), "{error}");

    // `gantry verify` says the same of the unsigned image.
    let unsigned = gantry_as_admin(&[
        "verify",
        "--key",
        trusted.to_str().unwrap(),
        &format!("{}/team/app:v1", server.addr),
    ]);
    assert_eq!(unsigned.status.code(), Some(1));
    let said = String::from_utf8_lossy(&unsigned.stderr);
    assert!(said.contains("has no signature"), "{said}");

    // Each kind of signature that must not do, then a good one among bad ones.
    let other_digest = format!("sha256:{}", "0".repeat(64));
    let for_other = payload(&server, "team/app", &other_digest);
    let mut tampered = signed.clone();
    let at = tampered.len() - 3;
    tampered[at] ^= 1;
    let cases: Vec<(Signatures, Option<&str>)> = vec![
        (
            vec![(signed.clone(), untrusted_signature.clone())],
            Some("no valid signature by a trusted key"),
        ),
        (
            vec![(for_other.clone(), python_sign(&keys, "trusted", &for_other))],
            Some("for another digest"),
        ),
        (
            vec![(tampered, trusted_signature.clone())],
            Some("no valid signature by a trusted key"),
        ),
        (
            vec![
                (signed.clone(), untrusted_signature.clone()),
                (signed.clone(), "bm90IGEgc2lnbmF0dXJl".to_string()),
                (signed.clone(), trusted_signature.clone()),
            ],
            None,
        ),
    ];
    for (signatures, refusal) in cases {
        push_signatures(&server, "team/app", &digest, &signatures).await;
        match (skopeo_pull(&server, dir.path(), "team/app:v1"), refusal) {
            (Err(error), Some(expected)) => assert!(error.contains(expected), "{error}"),
            (Ok(()), None) => {}
            (outcome, expected) => panic!("{outcome:?}, expected {expected:?}"),
        }
    }
    podman_pull(&server, dir.path(), "team/app:v1").unwrap();

    // `gantry verify` finds the same: the trusted key signed it, a stranger did not.
    let image = format!("{}/team/app:v1", server.addr);
    let untrusted = keys.join("untrusted.pub");
    python_sign(&keys, "stranger", b"makes the key");
    let stranger = keys.join("stranger.pub");
    let verified = gantry_as_admin(&["verify", "--key", trusted.to_str().unwrap(), &image]);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    let fingerprint = |pem: &Path| {
        let der = std::process::Command::new("openssl")
            .args(["pkey", "-pubin", "-outform", "DER", "-in"])
            .arg(pem)
            .output()
            .unwrap()
            .stdout;
        Digest::sha256_of(&der).to_string()
    };
    assert!(
        String::from_utf8_lossy(&verified.stdout).contains(&fingerprint(&trusted)),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );
    let not_verified = gantry_as_admin(&["verify", "--key", stranger.to_str().unwrap(), &image]);
    assert_eq!(not_verified.status.code(), Some(1));
    let said = String::from_utf8_lossy(&not_verified.stderr);
    assert!(
        said.contains("no valid signature by a trusted key"),
        "{said}"
    );

    // The signatures themselves are never refused.
    let sig_tag = format!("{}.sig", digest.replace(':', "-"));
    assert_eq!(
        get_status(&server, &sig_tag, media_type::OCI_MANIFEST).await,
        StatusCode::OK
    );

    // The key removed from the policy: refused again, while `gantry verify` with it still
    // passes (it reads with HEAD and the signature's own manifest, never refused).
    set_policy(&server, &[&untrusted], &["--enforce"]);
    push_signatures(
        &server,
        "team/app",
        &digest,
        &[(signed.clone(), trusted_signature.clone())],
    )
    .await;
    let refused = skopeo_pull(&server, dir.path(), "team/app:v1").unwrap_err();
    assert!(
        refused.contains("no valid signature by a trusted key"),
        "{refused}"
    );
    let verified = gantry_as_admin(&["verify", "--key", trusted.to_str().unwrap(), &image]);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    set_policy(&server, &[&untrusted], &["--no-enforce"]);
    skopeo_pull(&server, dir.path(), "team/app:v1").unwrap();

    // The refusals are audited.
    // (Written off the request path: eventually.)
    eventually(
        std::time::Duration::from_secs(5),
        "the refusals and the policy changes are audited",
        || async {
            let audit = get_json(&server, "/api/v1/audit?project=team")
                .await
                .to_string();
            (audit.contains("signing policy") && audit.contains("signing-policy.set")).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_index_covers_its_images_pulled_by_digest_unless_told_otherwise() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    api_create_project(&server, "team", false).await;
    let (amd64, amd64_digest) = push_image(&server, "team/app", "amd64", "amd64").await;
    let (arm64, arm64_digest) = push_image(&server, "team/app", "arm64", "arm64").await;
    let platform = |os: &str, arch: &str, manifest: &[u8]| {
        let mut entry = descriptor(media_type::OCI_MANIFEST, manifest);
        entry["platform"] = json!({"os": os, "architecture": arch});
        entry
    };
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": [platform("linux", "amd64", &amd64), platform("linux", "arm64", &arm64)],
    }))
    .unwrap();
    let put = put_manifest(&server, "team/app", "v1", media_type::OCI_INDEX, &index).await;
    assert_eq!(put.status(), StatusCode::CREATED);
    let index_digest = Digest::sha256_of(&index).to_string();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let signed = payload(&server, "team/app", &index_digest);
    let signature = python_sign(&keys, "release", &signed);
    push_signatures(&server, "team/app", &index_digest, &[(signed, signature)]).await;
    let key = keys.join("release.pub");
    set_policy(&server, &[&key], &["--enforce"]);

    let any = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json";
    assert_eq!(get_status(&server, "v1", any).await, StatusCode::OK);
    for child in [&amd64_digest, &arm64_digest] {
        assert_eq!(
            get_status(&server, &child.to_string(), any).await,
            StatusCode::OK
        );
    }
    // The same image by a tag of its own is covered too: the index lists it.
    assert_eq!(get_status(&server, "amd64", any).await, StatusCode::OK);

    set_policy(
        &server,
        &[&key],
        &["--enforce", "--no-index-covers-children"],
    );
    assert_eq!(get_status(&server, "v1", any).await, StatusCode::OK);
    assert_eq!(
        get_status(&server, &amd64_digest.to_string(), any).await,
        StatusCode::FORBIDDEN
    );

    // The policy as the CLI shows it: the key's fingerprint and algorithm.
    let out = gantry_as_admin(&["signing-policy", "show", "team", "--registry", &server.addr]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("ecdsa-p256") && shown.contains("are refused"),
        "{shown}"
    );
    let policy: Value = get_json(&server, "/api/v1/projects/team/signing-policy").await;
    assert_eq!(policy["index_covers_children"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_with_a_key_that_is_not_a_public_key_is_refused_and_changes_nothing() {
    let server = Server::start();
    api_create_project(&server, "team", false).await;
    let response = http()
        .put(server.url("/api/v1/projects/team/signing-policy"))
        .json(&json!({"keys": ["-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n"], "enforce": true}))
        .send()
        .await
        .unwrap();
    let error = assert_error(response, StatusCode::BAD_REQUEST, "INVALID_REQUEST").await;
    assert!(error.to_string().contains("PUBLIC KEY"), "{error}");
    let response = http()
        .put(server.url("/api/v1/projects/team/signing-policy"))
        .json(&json!({"keys": [], "enforce": true}))
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::BAD_REQUEST, "INVALID_REQUEST").await;
    let policy = get_json(&server, "/api/v1/projects/team/signing-policy").await;
    assert_eq!(
        policy,
        json!({"keys": [], "enforce": false, "index_covers_children": true})
    );
}

/// The vulnerability gate took cosign's `.sig` manifests (an image config over signing
/// payloads) for images and refused them as unscanned or failed scans.
#[tokio::test(flavor = "multi_thread")]
async fn the_vulnerability_gate_never_refuses_a_cosign_signature_manifest() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    api_create_project(&server, "team", false).await;
    let (_, digest) = push_image(&server, "team/app", "v1", "gated").await;
    let signed = payload(&server, "team/app", &digest.to_string());
    let signature = python_sign(dir.path(), "any", &signed);
    push_signatures(
        &server,
        "team/app",
        &digest.to_string(),
        &[(signed, signature)],
    )
    .await;
    let response = http()
        .put(server.url("/api/v1/projects/team/vulnerability-policy"))
        .json(&json!({"block_severity": "LOW", "unscanned": "refuse", "scan_on_push": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        get_status(&server, "v1", media_type::OCI_MANIFEST).await,
        StatusCode::FORBIDDEN
    );
    let sig_tag = format!("{}.sig", digest.to_string().replace(':', "-"));
    assert_eq!(
        get_status(&server, &sig_tag, media_type::OCI_MANIFEST).await,
        StatusCode::OK
    );
}

/// Who attaches a cosign v3 bundle, and where: `image` is REGISTRY/REPOSITORY, `login` the
/// credentials (none for an open registry).
struct Attach<'a> {
    keys: &'a Path,
    image: &'a str,
    login: Option<(&'a str, &'a str)>,
}

impl Attach<'_> {
    /// Runs the test-side cosign v3 signer (tests/clients/sigstore_sign.js: @sigstore/sign and
    /// @sigstore/oci, on NODE_PATH as scripts/test-all.sh installs them): a bundle holding
    /// `content` (`dsse`, `attestation` or `message`) by key `name` (made on first use,
    /// `<name>.pub` beside it) over `signed` (default `digest`), attached to `digest`; `stdin`
    /// is the manifest a message signature is over. The bundle manifest's digest.
    fn sign(
        &self,
        name: &str,
        digest: &str,
        content: &str,
        signed: Option<&str>,
        stdin: &[u8],
    ) -> String {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/sigstore_sign.js");
        let mut command = Command::new("node");
        command
            .arg(script)
            .arg(self.keys)
            .args([name, self.image, digest, content, signed.unwrap_or(digest)])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if let Some((user, password)) = self.login {
            command
                .env("REGISTRY_USERNAME", user)
                .env("REGISTRY_PASSWORD", password);
        }
        let mut child = command
            .spawn()
            .expect("node (scripts/test-all.sh installs its packages)");
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "sigstore_sign.js failed (NODE_PATH must hold @sigstore/sign and @sigstore/oci, as \
             scripts/test-all.sh installs them): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        until_every_replica_sees_the_change();
        String::from_utf8(out.stdout).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cosign_v3_bundles_by_sigstore_sign_decide_pulls_as_tag_scheme_signatures_do() {
    let (server, dir, keys, digest) = server_with_image(b"signed by bundles").await;
    let image = format!("{}/team/app", server.addr);
    let attach = Attach {
        keys: &keys,
        image: &image,
        login: Some(("admin", ADMIN_PASSWORD)),
    };
    let other_digest = format!("sha256:{}", "0".repeat(64));
    // An attestation by the key about to be trusted says something of the image, but does
    // not sign it.
    let attestation = attach.sign("trusted", &digest, "attestation", None, b"");
    let trusted = keys.join("trusted.pub");
    set_policy(&server, &[&trusted], &["--enforce"]);
    let refused = skopeo_pull(&server, dir.path(), "team/app:v1").unwrap_err();
    assert!(
        refused.contains("no valid signature by a trusted key"),
        "{refused}"
    );
    // Named for the policy that refused (it once said "vulnerability policy" for both).
    assert!(
        refused.contains("team's signing policy") && !refused.contains("vulnerability"),
        "{refused}"
    );
    let cases = [
        (
            "stranger",
            None,
            Some("no valid signature by a trusted key"),
        ),
        (
            "trusted",
            Some(other_digest.as_str()),
            Some("for another digest"),
        ),
        // Among the bad ones, one good: enough.
        ("trusted", None, None),
    ];
    for (key, signed, refusal) in cases {
        attach.sign(key, &digest, "dsse", signed, b"");
        match (skopeo_pull(&server, dir.path(), "team/app:v1"), refusal) {
            (Err(error), Some(expected)) => assert!(error.contains(expected), "{key}: {error}"),
            (Ok(()), None) => {}
            (outcome, expected) => panic!("{key} {signed:?}: {outcome:?}, expected {expected:?}"),
        }
    }
    podman_pull(&server, dir.path(), "team/app:v1").unwrap();
    let verified = gantry_as_admin(&[
        "verify",
        "--key",
        trusted.to_str().unwrap(),
        &format!("{image}:v1"),
    ]);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );

    // The bundles themselves (and the attestation) are never refused, nor is their listing.
    for referrer in [&attestation] {
        assert_eq!(
            get_status(&server, referrer, media_type::OCI_MANIFEST).await,
            StatusCode::OK
        );
    }
    let referrers = get_json(&server, &format!("/v2/team/app/referrers/{digest}")).await;
    assert_eq!(
        referrers["manifests"].as_array().unwrap().len(),
        4,
        "{referrers}"
    );

    // The key removed from the policy: refused again.
    let elsewhere = trusted_elsewhere(&keys);
    set_policy(&server, &[&elsewhere], &["--enforce"]);
    let refused = skopeo_pull(&server, dir.path(), "team/app:v1").unwrap_err();
    assert!(
        refused.contains("no valid signature by a trusted key"),
        "{refused}"
    );

    // A message signature over the manifest's bytes, on a second image.
    let (manifest, second) = push_image(&server, "team/app", "v2", "message").await;
    let second = second.to_string();
    let stranger = keys.join("stranger.pub");
    set_policy(&server, &[&stranger], &["--enforce"]);
    attach.sign("stranger", &second, "message", None, &manifest);
    assert_eq!(
        get_status(&server, "v2", media_type::OCI_MANIFEST).await,
        StatusCode::OK
    );
    // A signature's bundle deleted: the image is refused again (at once by the process that
    // deleted it, within two seconds by the others).
    let bundle = get_json(&server, &format!("/v2/team/app/referrers/{second}")).await["manifests"]
        [0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let deleted = http()
        .delete(server.url(&format!("/v2/team/app/manifests/{bundle}")))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::ACCEPTED);
    until_every_replica_sees_the_change();
    assert_eq!(
        get_status(&server, "v2", media_type::OCI_MANIFEST).await,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn gantry_verify_reads_a_bundle_from_the_fallback_tag_of_a_registry_without_referrers() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let peer = Distribution::start(dir.path());
    make_layout(dir.path(), "v1", &[("etc/motd", b"signed elsewhere")]);
    run(skopeo(dir.path())
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", dir.path().join("layout").display()))
        .arg(format!("docker://{}/team/app:v1", peer.1)));
    let digest = index_digest(&dir.path().join("layout"));
    let image = format!("{}/team/app", peer.1);
    let attach = Attach {
        keys: &keys,
        image: &image,
        login: None,
    };
    attach.sign("release", &digest, "dsse", None, b"");
    // The signer found no referrers API and wrote the fallback index.
    let fallback = http()
        .get(format!(
            "http://{}/v2/team/app/manifests/{}",
            peer.1,
            digest.replace(':', "-")
        ))
        .header("accept", media_type::OCI_INDEX)
        .send()
        .await
        .unwrap();
    assert_eq!(fallback.status(), StatusCode::OK);
    let key = keys.join("release.pub");
    let verified = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args([
            "verify",
            "--key",
            key.to_str().unwrap(),
            &format!("{image}:v1"),
        ])
        .output()
        .unwrap();
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    let stranger = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args([
            "verify",
            "--key",
            trusted_elsewhere(&keys).to_str().unwrap(),
            &format!("{image}:v1"),
        ])
        .output()
        .unwrap();
    assert_eq!(stranger.status.code(), Some(1));
}

/// A key that signed nothing here.
fn trusted_elsewhere(keys: &Path) -> PathBuf {
    python_sign(keys, "elsewhere", b"makes the key");
    keys.join("elsewhere.pub")
}

/// The test-side half of cosign's key files and signatures, in Python (`cryptography`,
/// `hashlib.scrypt`, pynacl's SecretBox): `seal KEYS NAME PASSWORD` writes a new P-256 key as
/// cosign does (NAME.key, NAME.pub); `open KEYS NAME PASSWORD` opens NAME.key and prints its
/// public key PEM; `verify PUB MESSAGE_FILE SIGNATURE_BASE64` exits 0 when the ECDSA
/// signature holds.
const PYTHON_COSIGN: &str = r#"
import base64, hashlib, json, os, sys
import nacl.secret, nacl.utils
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

def box(password, salt):
    return nacl.secret.SecretBox(hashlib.scrypt(password.encode(), salt=salt, n=32768, r=8, p=1, maxmem=64 * 1024 * 1024, dklen=32))

command = sys.argv[1]
if command == "seal":
    keys, name, password = sys.argv[2:5]
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    salt, nonce = os.urandom(32), nacl.utils.random(24)
    sealed = box(password, salt).encrypt(der, nonce).ciphertext
    doc = {"kdf": {"name": "scrypt", "params": {"N": 32768, "r": 8, "p": 1}, "salt": base64.b64encode(salt).decode()},
           "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
           "ciphertext": base64.b64encode(sealed).decode()}
    body = base64.encodebytes(json.dumps(doc).encode()).decode()
    open(os.path.join(keys, name + ".key"), "w").write("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n" + body + "-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    open(os.path.join(keys, name + ".pub"), "wb").write(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
elif command == "open":
    keys, name, password = sys.argv[2:5]
    lines = open(os.path.join(keys, name + ".key")).read().strip().splitlines()
    assert lines[0] == "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----", lines[0]
    doc = json.loads(base64.b64decode("".join(lines[1:-1])))
    assert doc["kdf"]["params"] == {"N": 32768, "r": 8, "p": 1} and doc["cipher"]["name"] == "nacl/secretbox"
    der = box(password, base64.b64decode(doc["kdf"]["salt"])).decrypt(base64.b64decode(doc["ciphertext"]), base64.b64decode(doc["cipher"]["nonce"]))
    key = serialization.load_der_private_key(der, None)
    sys.stdout.write(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode())
elif command == "verify":
    public, message, signature = sys.argv[2:5]
    key = serialization.load_pem_public_key(open(public, "rb").read())
    key.verify(base64.b64decode(signature), open(message, "rb").read(), ec.ECDSA(hashes.SHA256()))
"#;

/// `gantry_as_admin` with COSIGN_PASSWORD `test-password`.
fn gantry_with_key_password(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(args)
        .env("GANTRY_USERNAME", "admin")
        .env("GANTRY_PASSWORD", ADMIN_PASSWORD)
        .env("COSIGN_PASSWORD", "test-password")
        .output()
        .unwrap()
}

fn python_cosign(args: &[&str]) -> std::process::Output {
    Command::new("python3")
        .arg("-c")
        .arg(PYTHON_COSIGN)
        .args(args)
        .output()
        .unwrap()
}

/// Whether the test-side verifier finds `signature` (base64) by `public` over `message`.
fn python_verifies(dir: &Path, public: &Path, message: &[u8], signature: &str) -> bool {
    let file = dir.join("message");
    std::fs::write(&file, message).unwrap();
    python_cosign(&[
        "verify",
        public.to_str().unwrap(),
        file.to_str().unwrap(),
        signature,
    ])
    .status
    .success()
}

#[tokio::test(flavor = "multi_thread")]
async fn gantry_keys_and_signatures_are_cosigns_formats_as_an_independent_implementation_reads_them(
) {
    let (server, dir, keys, digest) = server_with_image(b"signed by gantry").await;
    let keys_arg = keys.to_str().unwrap();
    // `gantry key generate` writes what the test side opens with the same password only.
    let generate = gantry_with_key_password(&[
        "key",
        "generate",
        "--output-key-prefix",
        keys.join("gantry").to_str().unwrap(),
    ]);
    assert!(
        generate.status.success(),
        "{}",
        String::from_utf8_lossy(&generate.stderr)
    );
    let opened = python_cosign(&["open", keys_arg, "gantry", "test-password"]);
    assert!(
        opened.status.success(),
        "{}",
        String::from_utf8_lossy(&opened.stderr)
    );
    assert_eq!(
        String::from_utf8(opened.stdout).unwrap(),
        std::fs::read_to_string(keys.join("gantry.pub")).unwrap()
    );
    assert!(!python_cosign(&["open", keys_arg, "gantry", "another"])
        .status
        .success());
    let again = gantry_with_key_password(&[
        "key",
        "generate",
        "--output-key-prefix",
        keys.join("gantry").to_str().unwrap(),
    ]);
    assert!(!again.status.success(), "an existing key was overwritten");

    // A key the test side sealed signs with `gantry sign`, in both formats.
    assert!(
        python_cosign(&["seal", keys_arg, "python", "test-password"])
            .status
            .success()
    );
    let public = keys.join("python.pub");
    let image = format!("{}/team/app:v1", server.addr);
    for format in ["tag", "bundle"] {
        let signed = gantry_with_key_password(&[
            "sign",
            "--key",
            keys.join("python.key").to_str().unwrap(),
            "--format",
            format,
            &image,
        ]);
        assert!(
            signed.status.success(),
            "{format}: {}",
            String::from_utf8_lossy(&signed.stderr)
        );
    }
    until_every_replica_sees_the_change();
    let wrong = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args([
            "sign",
            "--key",
            keys.join("python.key").to_str().unwrap(),
            &image,
        ])
        .env("COSIGN_PASSWORD", "wrong")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("password"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );

    // The test side verifies the tag-scheme signature…
    let sig_tag = format!("{}.sig", digest.replace(':', "-"));
    let sig: Value = serde_json::from_slice(
        &get_bytes(&server, &format!("/v2/team/app/manifests/{sig_tag}")).await,
    )
    .unwrap();
    let layer = &sig["layers"][0];
    assert_eq!(
        layer["mediaType"],
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );
    let payload = get_bytes(
        &server,
        &format!("/v2/team/app/blobs/{}", layer["digest"].as_str().unwrap()),
    )
    .await;
    let said: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(
        said["critical"]["image"]["docker-manifest-digest"],
        digest.as_str()
    );
    let signature = layer["annotations"]["dev.cosignproject.cosign/signature"]
        .as_str()
        .unwrap();
    assert!(python_verifies(dir.path(), &public, &payload, signature));
    assert!(!python_verifies(
        dir.path(),
        &keys.join("gantry.pub"),
        &payload,
        signature
    ));

    // …and the bundle: a referrer whose DSSE envelope holds over the statement's PAE.
    let referrers = get_json(&server, &format!("/v2/team/app/referrers/{digest}")).await;
    let referrer = &referrers["manifests"][0];
    assert_eq!(
        referrer["artifactType"],
        "application/vnd.dev.sigstore.bundle.v0.3+json"
    );
    let manifest: Value = serde_json::from_slice(
        &get_bytes(
            &server,
            &format!(
                "/v2/team/app/manifests/{}",
                referrer["digest"].as_str().unwrap()
            ),
        )
        .await,
    )
    .unwrap();
    let bundle: Value = serde_json::from_slice(
        &get_bytes(
            &server,
            &format!(
                "/v2/team/app/blobs/{}",
                manifest["layers"][0]["digest"].as_str().unwrap()
            ),
        )
        .await,
    )
    .unwrap();
    let envelope = &bundle["dsseEnvelope"];
    let statement = base64::engine::general_purpose::STANDARD
        .decode(envelope["payload"].as_str().unwrap())
        .unwrap();
    let payload_type = envelope["payloadType"].as_str().unwrap();
    assert_eq!(payload_type, "application/vnd.in-toto+json");
    let mut pae = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        statement.len()
    )
    .into_bytes();
    pae.extend_from_slice(&statement);
    assert!(python_verifies(
        dir.path(),
        &public,
        &pae,
        envelope["signatures"][0]["sig"].as_str().unwrap()
    ));
    let statement: Value = serde_json::from_slice(&statement).unwrap();
    assert_eq!(
        statement["predicateType"],
        "https://sigstore.dev/cosign/sign/v1"
    );
    assert_eq!(
        statement["subject"][0]["digest"]["sha256"],
        digest.trim_start_matches("sha256:")
    );

    // What the test side sealed, Gantry verifies; an enforcing project pulls it.
    let verified = gantry_as_admin(&["verify", "--key", public.to_str().unwrap(), &image]);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    set_policy(&server, &[&public], &["--enforce"]);
    skopeo_pull(&server, dir.path(), "team/app:v1").unwrap();
}

/// The artifacts of `team/app` as the REST API lists them, by digest.
async fn listed_artifacts(server: &Server) -> std::collections::HashMap<String, Value> {
    get_json(server, "/api/v1/repositories/team%2Fapp/artifacts").await["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["digest"].as_str().unwrap().to_string(), a.clone()))
        .collect()
}

/// The fingerprint `gantry signing-policy show` lists for the key in `public`.
fn fingerprint(public: &Path) -> String {
    let pem = std::fs::read_to_string(public).unwrap();
    let der = base64::engine::general_purpose::STANDARD
        .decode(
            pem.lines()
                .filter(|l| !l.starts_with("-----"))
                .collect::<String>(),
        )
        .unwrap();
    Digest::sha256_of(&der).to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_artifact_listing_shows_which_trusted_key_signed_each_image_and_when() {
    let (server, dir, keys, v1) = server_with_image(b"v1").await;
    // A second image, to be signed in the bundle scheme by `gantry sign`.
    let second = tempfile::tempdir().unwrap();
    make_layout(second.path(), "v2", &[("etc/motd", b"v2")]);
    run(skopeo(dir.path())
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v2", second.path().join("layout").display()))
        .arg(format!("docker://{}/team/app:v2", server.addr)));
    let v2 = index_digest(&second.path().join("layout"));
    let signed_v1 = payload(&server, "team/app", &v1);
    let signature = python_sign(&keys, "trusted", &signed_v1);
    push_signatures(&server, "team/app", &v1, &[(signed_v1, signature)]).await;
    let generate = gantry_with_key_password(&[
        "key",
        "generate",
        "--output-key-prefix",
        keys.join("gantry").to_str().unwrap(),
    ]);
    assert!(generate.status.success());
    let sign = gantry_with_key_password(&[
        "sign",
        "--key",
        keys.join("gantry.key").to_str().unwrap(),
        "--format",
        "bundle",
        &format!("{}/team/app@{v2}", server.addr),
    ]);
    assert!(
        sign.status.success(),
        "{}",
        String::from_utf8_lossy(&sign.stderr)
    );
    until_every_replica_sees_the_change();

    // No key trusted yet: signatures, none trusted. The `.sig` manifest is listed under the
    // image it signs, with its tag, not as an artifact of its own.
    let listed = listed_artifacts(&server).await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[&v1]["signature"]["state"], "untrusted");
    assert_eq!(listed[&v2]["signature"]["state"], "untrusted");
    let sig_tag = format!("{}.sig", v1.replace(':', "-"));
    let referrers = listed[&v1]["referrers"].as_array().unwrap();
    assert!(
        referrers.iter().any(|r| r["tag"] == sig_tag.as_str()),
        "{referrers:?}"
    );

    // Trusting the tag-scheme signer's key: v1 trusted by it, when its `.sig` was pushed.
    set_policy(&server, &[&keys.join("trusted.pub")], &["--no-enforce"]);
    let listed = listed_artifacts(&server).await;
    let v1_signature = &listed[&v1]["signature"];
    assert_eq!(v1_signature["state"], "trusted", "{v1_signature}");
    assert_eq!(v1_signature["key"], fingerprint(&keys.join("trusted.pub")));
    let sig_pushed = referrers
        .iter()
        .find(|r| r["tag"] == sig_tag.as_str())
        .unwrap()["pushed_at"]
        .clone();
    assert_eq!(v1_signature["signed_at"], sig_pushed);
    assert_eq!(listed[&v2]["signature"]["state"], "untrusted");

    // Trusting both: v2 trusted by the bundle's key, when the bundle was pushed.
    set_policy(
        &server,
        &[&keys.join("trusted.pub"), &keys.join("gantry.pub")],
        &["--no-enforce"],
    );
    let listed = listed_artifacts(&server).await;
    let v2_signature = &listed[&v2]["signature"];
    assert_eq!(v2_signature["state"], "trusted", "{v2_signature}");
    assert_eq!(v2_signature["key"], fingerprint(&keys.join("gantry.pub")));
    let bundle = listed[&v2]["referrers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["artifact_type"] == "application/vnd.dev.sigstore.bundle.v0.3+json")
        .cloned()
        .unwrap();
    assert_eq!(v2_signature["signed_at"], bundle["pushed_at"]);

    // The CLI's SIGNED column and `artifact show`.
    let list = gantry_as_admin(&["artifact", "list", "team/app", "--registry", &server.addr]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success(), "{text}");
    assert!(text.contains("SIGNED"), "{text}");
    let short = |public: &str| {
        fingerprint(&keys.join(public))
            .chars()
            .take(15)
            .collect::<String>()
    };
    assert!(
        text.contains(&format!("trusted {}", short("trusted.pub"))),
        "{text}"
    );
    assert!(
        text.contains(&format!("trusted {}", short("gantry.pub"))),
        "{text}"
    );
    let show = gantry_as_admin(&[
        "artifact",
        "show",
        &format!("team/app@{v1}"),
        "--registry",
        &server.addr,
    ]);
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(
        text.contains(&format!(
            "signed:        trusted, by {}",
            fingerprint(&keys.join("trusted.pub"))
        )),
        "{text}"
    );
    assert!(text.contains(&sig_tag), "{text}");
}
