//! The signing policy on the real binary: signatures in cosign's tag scheme made by a
//! test-side signer (Python's `cryptography`, ECDSA P-256 over the simple signing payload, as
//! cosign signs), keys trusted with `gantry signing-policy set`, pulls by skopeo and podman.

mod common;

use std::path::Path;
use std::process::Command;

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

#[tokio::test(flavor = "multi_thread")]
async fn an_enforcing_project_pulls_only_images_signed_by_a_trusted_key() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    api_create_project(&server, "team", false).await;
    make_layout(dir.path(), "v1", &[("etc/motd", b"signed images only")]);
    login(dir.path(), &server, "admin", ADMIN_PASSWORD);
    run(skopeo(dir.path())
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", dir.path().join("layout").display()))
        .arg(format!("docker://{}/team/app:v1", server.addr)));
    let digest = http()
        .head(server.url("/v2/team/app/manifests/v1"))
        .header("accept", media_type::OCI_MANIFEST)
        .send()
        .await
        .unwrap()
        .headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_string();
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
    let audit = get_json(&server, "/api/v1/audit?project=team").await;
    assert!(audit.to_string().contains("signing policy"), "{audit}");
    assert!(audit.to_string().contains("signing-policy.set"), "{audit}");
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
