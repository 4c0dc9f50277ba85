"""Concurrent small-image pushes: N clients start together, each pushes one image (config
blob, one 64 KiB layer, each by POST + PUT; then the manifest) over its own keep-alive connection. All data is prepared
before the clock starts, so the figure measures the registry, not the client.
Usage: python3 small_pushes.py HOST:PORT N  ->  prints images per second."""

import hashlib
import http.client
import json
import os
import sys
import threading
import time

host, count = sys.argv[1], int(sys.argv[2])
run_id = os.urandom(4).hex()


def prepare(i):
    config = json.dumps({"architecture": "amd64", "os": "linux", "n": i, "run": run_id}).encode()
    layer = os.urandom(65536)
    digest = lambda b: "sha256:" + hashlib.sha256(b).hexdigest()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest(layer), "size": len(layer)}],
    }).encode()
    return f"bench/small-{run_id}-{i}", [(config, digest(config)), (layer, digest(layer))], manifest


images = [prepare(i) for i in range(count)]
start = threading.Barrier(count + 1)
failures = []


AUTH = {"Authorization": os.environ["BENCH_AUTHORIZATION"]} if os.environ.get("BENCH_AUTHORIZATION") else {}


def push(repo, blobs, manifest):
    conn = http.client.HTTPConnection(host, timeout=120)
    start.wait()
    try:
        for body, digest in blobs:
            # POST then PUT: Distribution 2.8 does not take a blob in the POST itself.
            conn.request("POST", f"/v2/{repo}/blobs/uploads/", headers=AUTH)
            r = conn.getresponse(); r.read()
            location = r.getheader("Location", "")
            if r.status != 202 or not location:
                failures.append(f"upload start {r.status}")
                return
            path = location.split(host, 1)[-1]
            separator = "&" if "?" in path else "?"
            conn.request("PUT", f"{path}{separator}digest={digest}", body=body,
                         headers={"Content-Type": "application/octet-stream", **AUTH})
            r = conn.getresponse(); r.read()
            if r.status != 201:
                failures.append(f"blob {r.status}")
                return
        conn.request("PUT", f"/v2/{repo}/manifests/v1", body=manifest,
                     headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json", **AUTH})
        r = conn.getresponse(); r.read()
        if r.status != 201:
            failures.append(f"manifest {r.status}")
    except Exception as e:  # a refused or reset connection counts as a failure
        failures.append(repr(e))
    finally:
        conn.close()


threads = [threading.Thread(target=push, args=image) for image in images]
for t in threads:
    t.start()
start.wait()
t0 = time.monotonic()
for t in threads:
    t.join()
elapsed = time.monotonic() - t0
if failures:
    sys.exit(f"{len(failures)} pushes failed, e.g. {failures[0]}")
print(f"{count / elapsed:.2f}")
