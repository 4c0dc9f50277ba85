"""Pulls an image as docker does, discarding the bytes: the manifest by tag, then its config
and layers, three at a time; prints the seconds it took. With CLIENTS > 1, that many pulls run
at once and the time is the slowest one's.

    python3 bench/pull_image.py HOST REPOSITORY TAG [CLIENTS]

BENCH_AUTHORIZATION, when set, is sent as the Authorization header.
"""

import concurrent.futures
import http.client
import json
import os
import sys
import time

HOST, REPO, TAG = sys.argv[1], sys.argv[2], sys.argv[3]
CLIENTS = int(sys.argv[4]) if len(sys.argv) > 4 else 1
HEADERS = {"Authorization": os.environ["BENCH_AUTHORIZATION"]} if os.environ.get("BENCH_AUTHORIZATION") else {}
ACCEPT = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"


def get(path, accept=None):
    connection = http.client.HTTPConnection(HOST, timeout=600)
    headers = dict(HEADERS)
    if accept:
        headers["Accept"] = accept
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    if response.status != 200:
        raise SystemExit(f"GET {path}: {response.status} {response.read()[:300]!r}")
    return connection, response


def blob(digest):
    connection, response = get(f"/v2/{REPO}/blobs/{digest}")
    received = 0
    while True:
        chunk = response.read(1 << 20)
        if not chunk:
            break
        received += len(chunk)
    connection.close()
    return received


def pull():
    connection, response = get(f"/v2/{REPO}/manifests/{TAG}", ACCEPT)
    manifest = json.loads(response.read())
    connection.close()
    digests = [manifest["config"]["digest"]] + [layer["digest"] for layer in manifest["layers"]]
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        return sum(pool.map(blob, digests))


started = time.monotonic()
with concurrent.futures.ThreadPoolExecutor(CLIENTS) as clients:
    list(clients.map(lambda _: pull(), range(CLIENTS)))
print(f"{time.monotonic() - started:.3f}")
