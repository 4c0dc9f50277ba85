//! `gantry signing-policy`: the public keys a project trusts and whether pulls of images
//! without a signature by one of them are refused.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use gantry_signing::TrustedKey;
use reqwest::Method;
use serde_json::{json, Value};

use crate::admin::{print_json, ApiArgs};

#[derive(Subcommand)]
pub enum SigningPolicyCommand {
    /// The keys a project trusts (fingerprint and algorithm) and whether it enforces.
    Show {
        /// The project.
        project: String,
    },
    /// Replace the keys a project trusts, and turn enforcement on or off (project admins).
    #[command(
        long_about = "Replace the keys a project trusts, and turn enforcement on or off (project admins).\n\n\
        With --enforce, a manifest GET of an image or index of the project answers 403 DENIED\n\
        unless one of the keys made a valid cosign signature (tag scheme: the sha256-<hex>.sig\n\
        tag) over its digest, saying why (no signature, no trusted signature, a signature for\n\
        another digest); the refusal is audited. HEAD, the signatures themselves, attestations,\n\
        SBOMs and other artifacts are never refused. An index with a trusted signature covers the\n\
        images it lists (--no-index-covers-children to make each image need its own).\n\
        Keys are PEM public keys (cosign.pub): ECDSA P-256 or P-384, Ed25519, RSA. A key that a\n\
        signature carries is never trusted by itself.\n\n\
        Examples:\n    \
        gantry signing-policy set team --key cosign.pub --enforce\n    \
        gantry signing-policy set team --key ci.pub --key release.pub --no-enforce"
    )]
    Set {
        /// The project.
        project: String,
        /// A PEM public key file to trust; repeat for several (replaces the keys trusted now).
        #[arg(long = "key", value_name = "FILE", required = true)]
        keys: Vec<PathBuf>,
        /// Refuse pulls of images without a trusted signature.
        #[arg(long, conflicts_with = "no_enforce")]
        enforce: bool,
        /// Only record the keys; refuse nothing [the default].
        #[arg(long)]
        no_enforce: bool,
        /// Make each image of an index need its own signature.
        #[arg(long)]
        no_index_covers_children: bool,
    },
}

fn policy_path(project: &str) -> String {
    format!("/api/v1/projects/{project}/signing-policy")
}

fn show(api: &ApiArgs, project: &str, policy: &Value) {
    if api.json {
        return print_json(policy);
    }
    let keys = policy["keys"].as_array().cloned().unwrap_or_default();
    println!(
        "{project}: {} ({} trusted key{}{})",
        if policy["enforce"] == true {
            "pulls of images without a trusted signature are refused"
        } else {
            "signatures are not enforced"
        },
        keys.len(),
        if keys.len() == 1 { "" } else { "s" },
        if policy["index_covers_children"] == false {
            "; each image of an index needs its own signature"
        } else {
            ""
        }
    );
    for pem in keys.iter().filter_map(|k| k.as_str()) {
        match TrustedKey::from_pem(pem) {
            Ok(key) => println!("  {}  {}", key.fingerprint(), key.algorithm().as_str()),
            Err(e) => println!("  (unreadable: {e})"),
        }
    }
}

pub async fn signing_policy(api: &ApiArgs, command: SigningPolicyCommand) -> anyhow::Result<()> {
    match command {
        SigningPolicyCommand::Show { project } => {
            let policy = api.call(Method::GET, &policy_path(&project), None).await?;
            show(api, &project, &policy);
        }
        SigningPolicyCommand::Set {
            project,
            keys,
            enforce,
            no_enforce: _,
            no_index_covers_children,
        } => {
            let pems: Vec<String> = read_keys(&keys)?.into_iter().map(|(pem, _)| pem).collect();
            let policy = json!({
                "keys": pems,
                "enforce": enforce,
                "index_covers_children": !no_index_covers_children,
            });
            let set = api
                .call(Method::PUT, &policy_path(&project), Some(policy))
                .await?;
            show(api, &project, &set);
        }
    }
    Ok(())
}

/// `gantry verify --help`.
pub const VERIFY_LONG_ABOUT: &str =
    "Check that an image in a registry has a valid cosign signature by one of the\n\
    given public keys over its digest (cosign's tag scheme: the sha256-<hex>.sig tag), as an\n\
    enforcing signing policy checks it. Prints the key that signed it; exits with 1 when none\n\
    did, saying why (no signature, no valid signature by these keys, a signature for another\n\
    digest). Reads with HEAD and the signature's own manifest, so it works in a project that\n\
    refuses the image.\n\n\
    Examples:\n    \
    gantry verify --key cosign.pub 127.0.0.1:5000/team/api:v1.2.0\n    \
    gantry verify --key ci.pub --key release.pub 127.0.0.1:5000/team/api@sha256:…";

/// `gantry verify`.
#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The image: REGISTRY/REPOSITORY[:TAG|@DIGEST].
    image: String,
    /// A PEM public key file (cosign.pub); repeat for several, any one suffices.
    #[arg(long = "key", value_name = "FILE", required = true)]
    keys: Vec<PathBuf>,
    #[command(flatten)]
    remote: crate::RemoteArgs,
}

/// Reads the public key files of `paths`.
fn read_keys(paths: &[PathBuf]) -> anyhow::Result<Vec<(String, TrustedKey)>> {
    paths
        .iter()
        .map(|path| {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the key file {}", path.display()))?;
            let key = TrustedKey::from_pem(&pem).with_context(|| {
                format!(
                    "{}: give a public key (cosign.pub), not a private key or certificate",
                    path.display()
                )
            })?;
            Ok((pem, key))
        })
        .collect()
}

pub async fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    use futures::TryStreamExt as _;
    use gantry_signing::{cosign, verdict, Candidate, Verdict};

    let keys: Vec<TrustedKey> = read_keys(&args.keys)?.into_iter().map(|(_, k)| k).collect();
    let image = gantry_client::ImageRef::parse(&args.image)
        .with_context(|| format!("{}: give REGISTRY/REPOSITORY[:TAG|@DIGEST]", args.image))?;
    let client = args.remote.client(&image)?;
    let repository = image.repository.as_str();
    let reference = image.reference.to_string();
    let digest = client
        .manifest_digest(repository, &reference)
        .await?
        .with_context(|| format!("{} does not exist", args.image))?;
    let mut candidates = Vec::new();
    let tag = cosign::signature_tag(&digest.to_string()).expect("digests have an algorithm");
    let signatures = match client.get_manifest(repository, &tag).await {
        Ok(signatures) => Some(signatures),
        Err(gantry_client::ClientError::Status { status, .. })
            if status == reqwest::StatusCode::NOT_FOUND =>
        {
            None
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(mut signatures) = signatures {
        let parsed = signatures.parse(None)?;
        for layer in &parsed.layers {
            let Some(signature) =
                cosign::layer_signature(&layer.media_type, layer.size, layer.annotations.as_ref())
            else {
                continue;
            };
            let mut payload = Vec::new();
            let mut stream = client.get_blob(repository, &layer.digest).await?;
            while let Some(chunk) = stream.try_next().await? {
                payload.extend_from_slice(&chunk);
            }
            candidates.push(Candidate {
                payload,
                signature_base64: signature.to_string(),
            });
        }
    }
    match verdict(&digest.to_string(), &candidates, &keys) {
        Verdict::Trusted { key } => {
            println!("{}@{digest}: signed by {key}", image.repository);
            Ok(())
        }
        refused => anyhow::bail!(
            "{}@{digest} is not verified: {}",
            image.repository,
            refused.refusal().unwrap_or_default()
        ),
    }
}
