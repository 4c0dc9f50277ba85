"""Drives Gantry with the oras Python SDK: pushes an artifact (chunked), pushes a second
artifact whose `subject` is the first, finds it through the referrers API, and pulls the
files back unchanged, logged in through the token flow; then reads a repository its token does
not cover (other/thing:v1, pushed by the test): the registry answers 401 insufficient_scope, the
SDK resends the same token, gets 403 with the same challenge and only then fetches a new token. Usage (credentials in ORAS_USER and
ORAS_PASSWORD): python3 oras_referrers.py HOST:PORT WORKDIR"""

import hashlib
import os
import sys

import oras.client
import oras.oci
import requests

host, workdir = sys.argv[1], sys.argv[2]
os.chdir(workdir)
client = oras.client.OrasClient(hostname=host, insecure=True)
user, password = os.environ["ORAS_USER"], os.environ["ORAS_PASSWORD"]
client.login(username=user, password=password, hostname=host, config_path=os.path.join(workdir, "config.json"))
auth = (user, password)

with open("payload.bin", "wb") as f:
    f.write(os.urandom(3 * 1024 * 1024 + 17))
with open("signature.txt", "w") as f:
    f.write("signed by the test\n")

subject_ref = f"{host}/oras/artifact:v1"
client.push(files=["payload.bin"], target=subject_ref, do_chunked=True, chunk_size=1024 * 1024)

accept = "application/vnd.oci.image.manifest.v1+json"
raw = requests.get(f"http://{host}/v2/oras/artifact/manifests/v1", headers={"Accept": accept}, auth=auth)
raw.raise_for_status()
subject_digest = "sha256:" + hashlib.sha256(raw.content).hexdigest()
assert raw.headers["Docker-Content-Digest"] == subject_digest, raw.headers
subject = oras.oci.Subject(mediaType=accept, digest=subject_digest, size=len(raw.content))

client.push(
    files=["signature.txt"],
    target=f"{host}/oras/artifact:sig",
    subject=subject,
    manifest_annotations={"org.example.kind": "signature"},
)

referrers = requests.get(f"http://{host}/v2/oras/artifact/referrers/{subject_digest}", auth=auth)
referrers.raise_for_status()
index = referrers.json()
assert referrers.headers["Content-Type"] == "application/vnd.oci.image.index.v1+json", referrers.headers
assert len(index["manifests"]) == 1, index
entry = index["manifests"][0]
sig = requests.get(f"http://{host}/v2/oras/artifact/manifests/sig", headers={"Accept": accept}, auth=auth)
assert entry["digest"] == "sha256:" + hashlib.sha256(sig.content).hexdigest(), (entry, sig.content)
assert entry["annotations"]["org.example.kind"] == "signature", entry

os.mkdir("out")
files = client.pull(target=subject_ref, outdir="out")
with open("payload.bin", "rb") as a, open(os.path.join("out", "payload.bin"), "rb") as b:
    assert a.read() == b.read(), "pulled payload differs"
# The client's token covers oras/artifact only. Reading another repository with it gets 401
# insufficient_scope; the SDK resends the same token (it refreshes only after a 403), and the
# registry, seeing the same token refused for the same need again, answers 403 with the challenge.
other = client.get_manifest(f"{host}/other/thing:v1")
assert other["schemaVersion"] == 2, other

print("oras ok", subject_digest, entry["digest"], files)
