// The test-side cosign v3 signer, none of it Gantry's code: a Sigstore bundle made by
// @sigstore/sign with a key-based signer (no Fulcio, no transparency log: offline), attached to
// an image as an OCI 1.1 referrer by @sigstore/oci, as cosign v3 attaches its signatures
// (cosign specs/BUNDLE_SPEC.md).
//
//   node sigstore_sign.js KEYS NAME REGISTRY/REPOSITORY DIGEST CONTENT [SIGNED_DIGEST]
//
// KEYS/NAME.key (PKCS#8 PEM, ECDSA P-256) is made on first use, its public half written to
// KEYS/NAME.pub. CONTENT is what the bundle holds:
//   dsse         cosign v3's image signature: a DSSE envelope over an in-toto statement of
//                predicate type https://sigstore.dev/cosign/sign/v1 whose subject is
//                SIGNED_DIGEST (default DIGEST);
//   attestation  the same envelope with an SLSA provenance predicate (not a signature);
//   message      a message signature over the manifest's bytes, read from stdin.
// Credentials come from REGISTRY_USERNAME and REGISTRY_PASSWORD (none: an open registry).
// Prints the digest of the bundle's manifest.
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const { DSSEBundleBuilder, MessageSignatureBundleBuilder } = require('@sigstore/sign');
const { bundleToJSON } = require('@sigstore/bundle');
const { attachArtifactToImage } = require('@sigstore/oci');

const [keys, name, image, digest, content, signedDigest = digest] = process.argv.slice(2);

function keyPair() {
  const privatePath = path.join(keys, `${name}.key`);
  if (!fs.existsSync(privatePath)) {
    const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
    fs.writeFileSync(privatePath, privateKey.export({ type: 'pkcs8', format: 'pem' }));
    fs.writeFileSync(path.join(keys, `${name}.pub`), publicKey.export({ type: 'spki', format: 'pem' }));
  }
  const privateKey = crypto.createPrivateKey(fs.readFileSync(privatePath));
  const publicKey = crypto.createPublicKey(privateKey).export({ type: 'spki', format: 'pem' });
  return { privateKey, publicKey };
}

async function main() {
  const { privateKey, publicKey } = keyPair();
  const signer = {
    sign: async (data) => ({
      signature: crypto.sign('sha256', data, privateKey),
      key: { $case: 'publicKey', publicKey, hint: '' },
    }),
  };
  const options = { signer, witnesses: [] };
  let bundle;
  const annotations = {};
  if (content === 'message') {
    bundle = await new MessageSignatureBundleBuilder(options).create({ data: fs.readFileSync(0) });
    annotations['dev.sigstore.bundle.content'] = 'message-signature';
  } else {
    const predicateType = content === 'attestation'
      ? 'https://slsa.dev/provenance/v1'
      : 'https://sigstore.dev/cosign/sign/v1';
    const statement = {
      _type: 'https://in-toto.io/Statement/v1',
      subject: [{ name: image, digest: { sha256: signedDigest.replace(/^sha256:/, '') } }],
      predicateType,
      predicate: {},
    };
    bundle = await new DSSEBundleBuilder(options).create({
      data: Buffer.from(JSON.stringify(statement)),
      type: 'application/vnd.in-toto+json',
    });
    annotations['dev.sigstore.bundle.content'] = 'dsse-envelope';
    annotations['dev.sigstore.bundle.predicateType'] = predicateType;
  }
  const attached = await attachArtifactToImage({
    imageName: image,
    imageDigest: digest,
    artifact: Buffer.from(JSON.stringify(bundleToJSON(bundle))),
    mediaType: bundle.mediaType,
    annotations,
    credentials: process.env.REGISTRY_USERNAME && {
      username: process.env.REGISTRY_USERNAME,
      password: process.env.REGISTRY_PASSWORD,
    },
  });
  process.stdout.write(attached.digest);
}

main().catch((error) => {
  console.error(error, error.cause);
  process.exit(1);
});
