#!/usr/bin/env python3
"""Writes the signing crate's test vectors with Python's `cryptography` (an independent signer,
as cosign signs): one key pair per algorithm cosign uses, each key's signature over a simple
signing payload, base64 as cosign's annotation holds it. Run from this directory; the output
is committed (ECDSA signatures are randomized, so each run writes new ones)."""
import base64, json
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32

def payload(digest):
    return json.dumps({
        "critical": {
            "identity": {"docker-reference": "127.0.0.1:5000/team/app"},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": None,
    }, separators=(",", ":")).encode()

keys = {
    "p256": ec.generate_private_key(ec.SECP256R1()),
    "p384": ec.generate_private_key(ec.SECP384R1()),
    "ed25519": ed25519.Ed25519PrivateKey.generate(),
    "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
}

def sign(name, key, data):
    if name == "p256":
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if name == "p384":
        return key.sign(data, ec.ECDSA(hashes.SHA384()))
    if name == "ed25519":
        return key.sign(data)
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())

with open("payload.json", "wb") as f:
    f.write(payload(DIGEST))
with open("payload-other.json", "wb") as f:
    f.write(payload(OTHER))
for name, key in keys.items():
    with open(f"{name}.pub", "wb") as f:
        f.write(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    with open(f"{name}.sig", "w") as f:
        f.write(base64.b64encode(sign(name, key, payload(DIGEST))).decode())
with open("p256-other.sig", "w") as f:
    f.write(base64.b64encode(sign("p256", keys["p256"], payload(OTHER))).decode())
# A P-256 key cosign does not use a curve of: secp256k1.
with open("k256.pub", "wb") as f:
    f.write(ec.generate_private_key(ec.SECP256K1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
