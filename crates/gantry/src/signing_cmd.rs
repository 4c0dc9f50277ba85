//! `gantry signing-policy`: the public keys a project trusts and whether pulls of images
//! without a signature by one of them are refused.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use gantry_signing::TrustedKey;
use reqwest::Method;
use serde_json::{json, Value};

use crate::admin::{print_json, read_secret, ApiArgs};

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
        .manifest_descriptor(store.repository, &image.reference.to_string())
        .await?
        .with_context(|| format!("{} does not exist", args.image))?
        .digest;
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
    match verdict(&subject, &candidates.candidates, &keys) {
        Verdict::Trusted { key, .. } => {
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
        Ok(self
            .client
            .find_manifest(self.repository, reference)
            .await?
            .map(|fetched| gantry_signing::sources::Manifest {
                digest: fetched.digest,
                media_type: fetched.media_type,
                bytes: fetched.bytes.to_vec(),
            }))
    }

    async fn referrers(
        &self,
        subject: &gantry_oci::Digest,
    ) -> Result<Vec<gantry_oci::Descriptor>, Self::Error> {
        Ok(self
            .client
            .referrers(self.repository, subject)
            .await?
            .unwrap_or_default())
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

/// `gantry key`.
#[derive(Subcommand)]
pub enum KeyCommand {
    /// Make a signing key pair in cosign's format: PREFIX.key (sealed) and PREFIX.pub.
    #[command(long_about = KEY_GENERATE_LONG_ABOUT)]
    Generate {
        /// Write PREFIX.key and PREFIX.pub.
        #[arg(long, value_name = "PREFIX", default_value = "cosign")]
        output_key_prefix: String,
        /// Replace files that exist.
        #[arg(long)]
        force: bool,
    },
}

const KEY_GENERATE_LONG_ABOUT: &str =
    "Make an ECDSA P-256 key pair in cosign's format, as `cosign generate-key-pair`\n\
    does: PREFIX.key holds the private key sealed under a password (scrypt and NaCl's\n\
    secretbox, PEM ENCRYPTED SIGSTORE PRIVATE KEY), PREFIX.pub the public key (PEM PUBLIC\n\
    KEY). cosign signs with Gantry's keys and Gantry with cosign's. The password is\n\
    COSIGN_PASSWORD (empty is allowed, as in cosign), else asked for twice.\n\n\
    Examples:\n    \
    gantry key generate                                   # cosign.key, cosign.pub\n    \
    COSIGN_PASSWORD=… gantry key generate --output-key-prefix release\n    \
    gantry signing-policy set team --key release.pub --enforce";

/// The password of a private key: COSIGN_PASSWORD, else asked for (twice when `confirm`).
fn key_password(confirm: bool) -> anyhow::Result<String> {
    if let Ok(password) = std::env::var("COSIGN_PASSWORD") {
        return Ok(password);
    }
    let password = read_secret("Enter password for private key: ")?;
    if confirm && std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        let again = read_secret("Enter password for private key again: ")?;
        anyhow::ensure!(
            password == again,
            "the passwords differ; nothing was written"
        );
    }
    Ok(password)
}

pub fn key(command: KeyCommand) -> anyhow::Result<()> {
    let KeyCommand::Generate {
        output_key_prefix,
        force,
    } = command;
    let private = PathBuf::from(format!("{output_key_prefix}.key"));
    let public = PathBuf::from(format!("{output_key_prefix}.pub"));
    for path in [&private, &public] {
        anyhow::ensure!(
            force || !path.exists(),
            "{} exists; give another --output-key-prefix, or --force to replace it",
            path.display()
        );
    }
    let password = key_password(true)?;
    let (key, pkcs8) = gantry_signing::keyfile::SigningKey::generate();
    write_private(
        &private,
        &gantry_signing::keyfile::encrypt(&pkcs8, password.as_bytes()),
    )?;
    std::fs::write(&public, key.public_pem())
        .with_context(|| format!("cannot write {}", public.display()))?;
    println!(
        "Private key written to {}\nPublic key written to {} ({})",
        private.display(),
        public.display(),
        key.trusted().fingerprint()
    );
    Ok(())
}

/// Writes a private key file readable by its owner only.
fn write_private(path: &std::path::Path, pem: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(pem.as_bytes())?;
    Ok(())
}

/// Reads and opens a cosign private key file (password: COSIGN_PASSWORD, else asked for).
pub fn read_signing_key(
    path: &std::path::Path,
) -> anyhow::Result<gantry_signing::keyfile::SigningKey> {
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the key file {}", path.display()))?;
    let pkcs8 = gantry_signing::keyfile::decrypt(&pem, key_password(false)?.as_bytes())
        .with_context(|| {
            format!(
                "{}: give a private key `gantry key generate` or `cosign generate-key-pair` wrote",
                path.display()
            )
        })?;
    Ok(gantry_signing::keyfile::SigningKey::from_pkcs8(&pkcs8)?)
}

/// How `gantry sign` stores a signature.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum SignatureFormat {
    /// cosign v3's: a Sigstore bundle (DSSE in-toto statement) attached as a referrer.
    Bundle,
    /// cosign v2's: a layer appended to the sha256-<hex>.sig manifest.
    Tag,
}

/// `gantry sign`.
#[derive(clap::Args)]
pub struct SignArgs {
    /// The image: REGISTRY/REPOSITORY[:TAG|@DIGEST]; its digest is what is signed.
    image: String,
    /// The private key file (cosign.key; password in COSIGN_PASSWORD).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// bundle (cosign v3) or tag (cosign v2's sha256-<hex>.sig).
    #[arg(long, value_enum, default_value = "bundle")]
    format: SignatureFormat,
    #[command(flatten)]
    remote: crate::RemoteArgs,
}

/// `gantry sign --help`.
pub const SIGN_LONG_ABOUT: &str =
    "Sign an image's digest with a cosign private key, as cosign does, so that `cosign\n\
    verify`, `gantry verify` and a project's signing policy find the signature. By default a\n\
    Sigstore bundle as cosign v3 writes it (a DSSE in-toto statement of predicate\n\
    https://sigstore.dev/cosign/sign/v1 naming the digest, attached as an OCI referrer, or\n\
    listed by the sha256-<hex> fallback tag where the registry has no referrers API); with\n\
    --format tag, cosign v2's tag scheme (a simple signing payload appended to the\n\
    sha256-<hex>.sig manifest). Key-based and offline: no certificate, no transparency log.\n\
    Reads the image with HEAD only, so it signs in a project that refuses unsigned pulls.\n\n\
    Examples:\n    \
    COSIGN_PASSWORD=… gantry sign --key cosign.key 127.0.0.1:5000/team/api:v1.2.0\n    \
    gantry sign --key cosign.key --format tag 127.0.0.1:5000/team/api@sha256:…";

pub async fn sign(args: SignArgs) -> anyhow::Result<()> {
    let key = read_signing_key(&args.key)?;
    let image = gantry_client::ImageRef::parse(&args.image)
        .with_context(|| format!("{}: give REGISTRY/REPOSITORY[:TAG|@DIGEST]", args.image))?;
    let client = args.remote.client(&image)?;
    let (digest, written) = sign_image(&client, &image, &key, args.format).await?;
    println!(
        "{}@{digest}: signed by {} ({written})",
        image.repository,
        key.trusted().fingerprint()
    );
    Ok(())
}

/// Signs the manifest `image` names with `key`, stored as `format` says: (the signed
/// digest, the signature manifest written: its `.sig` tag or its digest).
pub async fn sign_image(
    client: &gantry_client::RegistryClient,
    image: &gantry_client::ImageRef,
    key: &gantry_signing::keyfile::SigningKey,
    format: SignatureFormat,
) -> anyhow::Result<(gantry_oci::Digest, String)> {
    use gantry_oci::{media_type, Descriptor};
    use gantry_signing::{bundle, cosign};

    let repository = image.repository.as_str();
    let subject = client
        .manifest_descriptor(repository, &image.reference.to_string())
        .await?
        .with_context(|| {
            format!(
                "{}/{repository}:{} does not exist",
                image.registry, image.reference
            )
        })?;
    let digest = subject.digest.to_string();
    let name = format!("{}/{repository}", image.registry);
    let blob =
        |media_type: &str, digest, size: usize| Descriptor::new(media_type, digest, size as u64);
    match format {
        SignatureFormat::Tag => {
            let (payload, signature) = cosign::signature(key, &name, &digest);
            let tag = cosign::signature_tag(&digest).expect("digests have an algorithm");
            let mut layers = match client.find_manifest(repository, &tag).await? {
                Some(mut existing) => existing.parse(None)?.layers,
                None => Vec::new(),
            };
            let size = payload.len();
            let mut layer = blob(
                cosign::SIMPLE_SIGNING,
                client.push_bytes(repository, payload.into()).await?,
                size,
            );
            layer.annotations = Some(
                [(cosign::SIGNATURE_ANNOTATION.to_string(), signature.into())]
                    .into_iter()
                    .collect(),
            );
            layers.push(layer);
            // cosign's config: an empty image whose layers are the payloads.
            let config = serde_json::to_vec(&json!({
                "architecture": "", "os": "", "config": {},
                "rootfs": {
                    "type": "layers",
                    "diff_ids": layers.iter().map(|l| l.digest.to_string()).collect::<Vec<_>>(),
                },
            }))?;
            let size = config.len();
            let config = blob(
                media_type::OCI_CONFIG,
                client.push_bytes(repository, config.into()).await?,
                size,
            );
            let manifest = serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": media_type::OCI_MANIFEST,
                "config": config,
                "layers": layers,
            }))?;
            client
                .put_manifest(repository, &tag, media_type::OCI_MANIFEST, manifest.into())
                .await?;
            Ok((subject.digest, tag))
        }
        SignatureFormat::Bundle => {
            let bundle = bundle::image_signature(key, &name, &digest);
            let size = bundle.len();
            let bundle = blob(
                bundle::BUNDLE_V03,
                client.push_bytes(repository, bundle.into()).await?,
                size,
            );
            client
                .push_bytes(repository, gantry_oci::manifest::EMPTY_CONFIG.into())
                .await?;
            let created = time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)?;
            let manifest = gantry_oci::manifest::referrer_manifest(&bundle, &subject, &created);
            let manifest_digest = gantry_oci::Digest::sha256_of(&manifest);
            let size = manifest.len();
            client
                .put_manifest(
                    repository,
                    &manifest_digest.to_string(),
                    media_type::OCI_MANIFEST,
                    manifest.into(),
                )
                .await?;
            if client
                .referrers(repository, &subject.digest)
                .await?
                .is_none()
            {
                // No referrers API: list the bundle in the fallback tag's index, as cosign does.
                let tag = digest.replacen(':', "-", 1);
                let mut index = match client.find_manifest(repository, &tag).await? {
                    Some(existing) => serde_json::from_slice::<Value>(&existing.bytes)?,
                    None => {
                        json!({"schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": []})
                    }
                };
                let mut entry = blob(media_type::OCI_MANIFEST, manifest_digest.clone(), size);
                entry.artifact_type = Some(bundle::BUNDLE_V03.to_string());
                index["manifests"]
                    .as_array_mut()
                    .with_context(|| format!("{tag} is not a referrers index"))?
                    .push(serde_json::to_value(entry)?);
                client
                    .put_manifest(
                        repository,
                        &tag,
                        media_type::OCI_INDEX,
                        serde_json::to_vec(&index)?.into(),
                    )
                    .await?;
            }
            Ok((subject.digest, manifest_digest.to_string()))
        }
    }
}
