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
            let mut pems = Vec::new();
            for path in &keys {
                let pem = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the key file {}", path.display()))?;
                TrustedKey::from_pem(&pem).with_context(|| {
                    format!(
                        "{}: give a public key (cosign.pub), not a private key or certificate",
                        path.display()
                    )
                })?;
                pems.push(pem);
            }
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
