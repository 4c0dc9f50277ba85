"""Browsing at scale: fills one repository (browse/app) of a running Gantry with ARTIFACTS small
image manifests (config + a layer of its own + a layer all share, one tag each; every tenth
with a signature referrer and a cosign tag-scheme `.sig` manifest, judged by the project's
signing policy (a report-only policy trusting a key generated here, which signed nothing, so
those images list as `untrusted`); every third pulled), then pages through GET
/api/v1/repositories/browse%2Fapp/artifacts with limit=PAGE under every sort, timing each page
(one request, keep-alive), and checks each walk returns every artifact exactly once.
Usage: python3 browse_bench.py HOST:PORT ARTIFACTS PAGE (BENCH_AUTHORIZATION: an admin's
Authorization header value; SKIP_FILL=1 times a server already filled, e.g. one started on a
directory KEEP=1 bench/browse.sh kept)."""

import concurrent.futures
import hashlib
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time

host, artifacts, page = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
AUTH = {"Authorization": os.environ["BENCH_AUTHORIZATION"]}
REPO = "browse/app"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
local = threading.local()


def request(method, path, body=None, headers=None):
    if not hasattr(local, "c"):
        local.c = http.client.HTTPConnection(host, timeout=600)
    local.c.request(method, path, body=body, headers={**AUTH, **(headers or {})})
    r = local.c.getresponse()
    return r.status, r.read()


def blob(content):
    digest = "sha256:" + hashlib.sha256(content).hexdigest()
    status, _ = request("POST", f"/v2/{REPO}/blobs/uploads/?digest={digest}", content,
                        {"Content-Type": "application/octet-stream"})
    assert status == 201, status
    return digest


def descriptor(media_type, content):
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(content).hexdigest(), "size": len(content)}


SHARED = b"a layer every artifact shares" * 10


def push(i):
    config, layer = f'{{"n":{i}}}'.encode(), f"layer {i} ".encode() * (1 + i % 17)
    for content in (config, layer):
        blob(content)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST,
                           "config": descriptor("application/vnd.oci.image.config.v1+json", config),
                           "layers": [descriptor("application/vnd.oci.image.layer.v1.tar+gzip", c) for c in (SHARED, layer)]}).encode()
    status, _ = request("PUT", f"/v2/{REPO}/manifests/t{i}", manifest, {"Content-Type": MANIFEST})
    assert status == 201, status
    if i % 10 == 0:
        payload = f"signature of {i}".encode()
        blob(payload)
        signature = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST,
                                "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
                                "config": descriptor("application/vnd.oci.empty.v1+json", b"{}"),
                                "layers": [descriptor("application/vnd.dev.cosign.artifact.sig.v1+json", payload)],
                                "subject": descriptor(MANIFEST, manifest)}).encode()
        digest = "sha256:" + hashlib.sha256(signature).hexdigest()
        status, _ = request("PUT", f"/v2/{REPO}/manifests/{digest}", signature, {"Content-Type": MANIFEST})
        assert status == 201, status
        image = "sha256:" + hashlib.sha256(manifest).hexdigest()
        simple = json.dumps({"critical": {"image": {"docker-manifest-digest": image},
                                          "type": "cosign container image signature"}}).encode()
        blob(simple)
        layer = descriptor("application/vnd.dev.cosign.simplesigning.v1+json", simple)
        layer["annotations"] = {"dev.cosignproject.cosign/signature": "bm90IGEgc2lnbmF0dXJl"}
        sig = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST,
                          "config": descriptor("application/vnd.oci.image.config.v1+json", b"{}"),
                          "layers": [layer]}).encode()
        status, _ = request("PUT", f"/v2/{REPO}/manifests/{image.replace(':', '-')}.sig", sig,
                            {"Content-Type": MANIFEST})
        assert status == 201, status
    if i % 3 == 0:
        status, _ = request("GET", f"/v2/{REPO}/manifests/t{i}", headers={"Accept": MANIFEST})
        assert status == 200, status


if not os.environ.get("SKIP_FILL"):
    started = time.monotonic()
    blob(b"{}")  # creates the project
    key = subprocess.run("openssl ecparam -name prime256v1 -genkey -noout | openssl ec -pubout",
                         shell=True, check=True, capture_output=True, text=True).stdout
    status, body = request("PUT", "/api/v1/projects/browse/signing-policy",
                           json.dumps({"keys": [key], "enforce": False}).encode(),
                           {"Content-Type": "application/json"})
    assert status == 200, (status, body)
    blob(SHARED)
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(push, range(artifacts)))
    print(f"fill: {artifacts} artifacts in {time.monotonic() - started:.1f} s", file=sys.stderr)


def walk(query):
    """Every page under `query`: per-page milliseconds and the digests seen (checking that
    the signed tenth, and only it, lists as untrusted)."""
    times, digests, untrusted, token = [], [], 0, None
    while True:
        path = f"/api/v1/repositories/browse%2Fapp/artifacts?{query}&limit={page}"
        if token:
            path += f"&page={token}"
        t = time.perf_counter()
        status, body = request("GET", path)
        times.append((time.perf_counter() - t) * 1000)
        assert status == 200, (status, body)
        body = json.loads(body)
        digests += [a["digest"] for a in body["artifacts"]]
        states = [a["signature"]["state"] for a in body["artifacts"]]
        assert set(states) <= {"untrusted", "unsigned"}, states
        untrusted += states.count("untrusted")
        token = body["next"]
        if not token:
            assert untrusted == (artifacts + 9) // 10, (query, untrusted)
            return times, digests


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


print(f"| sort | pages of {page} | p50 | p95 | max |")
print("|---|---|---|---|---|")
for query in ["sort=pushed", "sort=pushed&order=asc", "sort=name", "sort=pulled", "sort=size"]:
    walk(query)  # warm the page cache
    times, digests = walk(query)
    assert len(digests) == artifacts and len(set(digests)) == artifacts, (query, len(digests), len(set(digests)))
    print(f"| {query} | {len(times)} | {pct(times, 50):.1f} ms | {pct(times, 95):.1f} ms | {max(times):.1f} ms |")
times = []
for _ in range(20):
    t = time.perf_counter()
    status, body = request("GET", "/api/v1/projects/browse/repositories")
    times.append((time.perf_counter() - t) * 1000)
    assert status == 200 and json.loads(body)["repositories"][0]["artifacts"] == artifacts, body[:300]
print(f"| repositories of the project (one repository of {artifacts}) | 20 requests | {pct(times, 50):.1f} ms | {pct(times, 95):.1f} ms | {max(times):.1f} ms |")
