// Writes the signing crate's bundle vectors with @sigstore/sign (an independent signer, the
// one the integration tests attach with too): a P-256 key, cosign v3 image signatures (DSSE
// in-toto statements of predicate https://sigstore.dev/cosign/sign/v1) over DIGEST and over
// OTHER, an SLSA attestation over DIGEST (not a signature), and a message signature over
// manifest.json. Run from this directory with the packages of
// crates/gantry/tests/clients/package.json on NODE_PATH; the output is committed (ECDSA
// signatures are randomized, so each run writes new ones).
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const { DSSEBundleBuilder, MessageSignatureBundleBuilder } = require('@sigstore/sign');
const { bundleToJSON } = require('@sigstore/bundle');

const DIGEST = 'ab'.repeat(32);
const OTHER = 'cd'.repeat(32);
const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
const pem = publicKey.export({ type: 'spki', format: 'pem' });
const options = {
  signer: {
    sign: async (data) => ({
      signature: crypto.sign('sha256', data, privateKey),
      key: { $case: 'publicKey', publicKey: pem, hint: '' },
    }),
  },
  witnesses: [],
};

function statement(hex, predicateType) {
  return Buffer.from(JSON.stringify({
    _type: 'https://in-toto.io/Statement/v1',
    subject: [{ name: '127.0.0.1:5000/team/app', digest: { sha256: hex } }],
    predicateType,
    predicate: {},
  }));
}

async function write(name, bundle) {
  fs.writeFileSync(name, JSON.stringify(bundleToJSON(await bundle)));
}

async function main() {
  fs.writeFileSync('bundle.pub', pem);
  const dsse = new DSSEBundleBuilder(options);
  const type = 'application/vnd.in-toto+json';
  const sign = 'https://sigstore.dev/cosign/sign/v1';
  await write('bundle-dsse.json', dsse.create({ data: statement(DIGEST, sign), type }));
  await write('bundle-dsse-other.json', dsse.create({ data: statement(OTHER, sign), type }));
  await write('bundle-attestation.json',
    dsse.create({ data: statement(DIGEST, 'https://slsa.dev/provenance/v1'), type }));
  const manifest = fs.readFileSync('manifest.json');
  await write('bundle-message.json', new MessageSignatureBundleBuilder(options).create({ data: manifest }));
}

main().catch((error) => { console.error(error); process.exit(1); });
