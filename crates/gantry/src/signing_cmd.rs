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
    given public keys over its digest, in either of cosign's schemes (the sha256-<hex>.sig tag,\n\
    or cosign v3's Sigstore bundles attached as referrers), as an enforcing signing policy\n\
    checks it. Prints the key that signed it; exits with 1 when none did, saying why (no\n\
    signature, no valid signature by these keys, a signature for another digest). Reads the\n\
    image with HEAD and the signatures' own manifests, so it works in a project that refuses\n\
    the image (where only a bundle's message signature, over the manifest's bytes, cannot be\n\
    checked).\n\n\
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
    use gantry_signing::sources::{self, SignatureStore as _};
    use gantry_signing::{verdict, Subject, Verdict};

    let keys: Vec<TrustedKey> = read_keys(&args.keys)?.into_iter().map(|(_, k)| k).collect();
    let image = gantry_client::ImageRef::parse(&args.image)
        .with_context(|| format!("{}: give REGISTRY/REPOSITORY[:TAG|@DIGEST]", args.image))?;
    let client = args.remote.client(&image)?;
    let store = RemoteSignatures {
        client: &client,
        repository: image.repository.as_str(),
    };
    let digest = client
        .manifest_digest(store.repository, &image.reference.to_string())
        .await?
        .with_context(|| format!("{} does not exist", args.image))?;
    // The manifest's bytes check a bundle's message signature; a project that enforces its
    // policy refuses them to a GET, and then only the other signatures count.
    let manifest = match store.manifest(&digest.to_string()).await {
        Ok(manifest) => manifest.map(|m| m.bytes),
        Err(gantry_client::ClientError::Status { status, .. })
            if status == reqwest::StatusCode::FORBIDDEN =>
        {
            None
        }
        Err(e) => return Err(e.into()),
    };
    let located = sources::locate(&store, &digest).await?;
    let candidates = sources::candidates(&store, &located).await?;
    let subject = Subject {
        digest: &digest.to_string(),
        manifest: manifest.as_deref(),
    };
    match verdict(&subject, &candidates, &keys) {
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

/// A repository's signatures as a registry serves them.
struct RemoteSignatures<'a> {
    client: &'a gantry_client::RegistryClient,
    repository: &'a str,
}

impl gantry_signing::sources::SignatureStore for RemoteSignatures<'_> {
    type Error = gantry_client::ClientError;

    async fn manifest(
        &self,
        reference: &str,
    ) -> Result<Option<gantry_signing::sources::Manifest>, Self::Error> {
        match self.client.get_manifest(self.repository, reference).await {
            Ok(fetched) => Ok(Some(gantry_signing::sources::Manifest {
                digest: fetched.digest,
                media_type: fetched.media_type,
                bytes: fetched.bytes.to_vec(),
            })),
            Err(gantry_client::ClientError::Status { status, .. })
                if status == reqwest::StatusCode::NOT_FOUND =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    async fn referrers(
        &self,
        subject: &gantry_oci::Digest,
    ) -> Result<Vec<gantry_oci::Descriptor>, Self::Error> {
        self.client.referrers(self.repository, subject).await
    }

    async fn blob(&self, digest: &gantry_oci::Digest, size: u64) -> Result<Vec<u8>, Self::Error> {
        use futures::TryStreamExt as _;
        let mut bytes = Vec::with_capacity(size as usize);
        let mut stream = self.client.get_blob(self.repository, digest).await?;
        while let Some(chunk) = stream.try_next().await? {
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }
}
