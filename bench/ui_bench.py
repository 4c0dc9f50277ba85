"""The web UI at scale: fills a running Gantry with a project `ui` of REPOSITORIES repositories
(one small image each) and a repository `ui/many` of ARTIFACTS small images, signs in through
the UI's form, then times each page (median and p95 of 20 requests on one keep-alive
connection, after a warm-up) beside the REST API request the page is built on, and sums the
bytes of the first page a browser loads (the sign-in form, its stylesheet and icon) and of the
projects page with its assets.
Usage: python3 ui_bench.py HOST:PORT REPOSITORIES ARTIFACTS (BENCH_AUTHORIZATION: an admin's
Authorization header value)."""

import concurrent.futures
import hashlib
import http.client
import json
import os
import statistics
import sys
import threading
import time
import urllib.parse

host, repositories, artifacts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
AUTH = {"Authorization": os.environ["BENCH_AUTHORIZATION"]}
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
local = threading.local()


def request(method, path, body=None, headers=None):
    if not hasattr(local, "c"):
        local.c = http.client.HTTPConnection(host, timeout=600)
    local.c.request(method, path, body=body, headers=headers or {})
    r = local.c.getresponse()
    return r.status, r.getheaders(), r.read()


def descriptor(media_type, content):
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(content).hexdigest(), "size": len(content)}


def push(repository, tag, n):
    config, layer = f'{{"n":{n},"r":"{repository}"}}'.encode(), f"layer {n} of {repository}".encode()
    for content in (config, layer):
        digest = "sha256:" + hashlib.sha256(content).hexdigest()
        status, _, _ = request("POST", f"/v2/{repository}/blobs/uploads/?digest={digest}", content,
                               {**AUTH, "Content-Type": "application/octet-stream"})
        assert status == 201, status
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST,
                           "config": descriptor("application/vnd.oci.image.config.v1+json", config),
                           "layers": [descriptor("application/vnd.oci.image.layer.v1.tar+gzip", layer)]}).encode()
    status, _, _ = request("PUT", f"/v2/{repository}/manifests/{tag}", manifest, {**AUTH, "Content-Type": MANIFEST})
    assert status == 201, status


started = time.monotonic()
jobs = [(f"ui/r{i:04d}", "v1", i) for i in range(repositories)] + [("ui/many", f"t{i}", i) for i in range(artifacts)]
with concurrent.futures.ThreadPoolExecutor(16) as pool:
    list(pool.map(lambda job: push(*job), jobs))
print(f"fill: {repositories} repositories and {artifacts} artifacts in {time.monotonic() - started:.1f} s", file=sys.stderr)

# Pushed images are scanned in the background: the timings wait for the queue to drain.
for _ in range(1200):
    _, _, body = request("GET", "/api/v1/jobs?state=queued&limit=1", headers=AUTH)
    _, _, running = request("GET", "/api/v1/jobs?state=running&limit=1", headers=AUTH)
    if not json.loads(body)["jobs"] and not json.loads(running)["jobs"]:
        break
    time.sleep(0.5)
print(f"background jobs done after {time.monotonic() - started:.1f} s", file=sys.stderr)

form = urllib.parse.urlencode({"username": "admin", "password": "bench-password", "next": "/"})
status, headers, _ = request("POST", "/login", form, {"Content-Type": "application/x-www-form-urlencoded"})
assert status == 303, status
cookie = [v for k, v in headers if k.lower() == "set-cookie"][0].split(";")[0]
SESSION = {"Cookie": cookie}


def timed(path, headers, n=20):
    request("GET", path, headers=headers)  # warm
    times = []
    for _ in range(n):
        t = time.perf_counter()
        status, _, body = request("GET", path, headers=headers)
        times.append((time.perf_counter() - t) * 1000)
        assert status == 200, (path, status, body[:300])
    times.sort()
    return statistics.median(times), times[int(round(0.95 * (len(times) - 1)))]


def next_token(path):
    _, _, body = request("GET", path, headers=AUTH)
    return json.loads(body)["next"]


def later(api_path, hops):
    """The `page` token `hops` pages into the API listing."""
    token = None
    for _ in range(hops):
        token = next_token(api_path + (f"&page={token}" if token else ""))
    return token


repos_api = "/api/v1/projects/ui/repositories?sort=name&limit=100"
arts_api = "/api/v1/repositories/ui%2Fmany/artifacts?sort=pushed&order=desc&limit=50"
repos_token = later(repos_api, 5)
arts_token = later(arts_api, 100)
pages = [
    (f"project page: the first 100 of {repositories} repositories", "/projects/ui", repos_api),
    ("project page: the sixth page", f"/projects/ui?page={repos_token}", f"{repos_api}&page={repos_token}"),
    (f"repository page: the newest 50 of {artifacts} artifacts", "/repository?name=ui%2Fmany", arts_api),
    ("repository page: the 101st page", f"/repository?name=ui%2Fmany&page={arts_token}", f"{arts_api}&page={arts_token}"),
    ("projects page (2 projects)", "/", "/api/v1/projects"),
]
print("| page | UI p50 | UI p95 | API p50 (what it is built on) | ratio |")
print("|---|---|---|---|---|")
for name, ui, api in pages:
    ui50, ui95 = timed(ui, SESSION)
    api50, _ = timed(api, AUTH)
    print(f"| {name} | {ui50:.1f} ms | {ui95:.1f} ms | {api50:.1f} ms | {ui50 / api50:.1f}x |")


def size(path, headers=None):
    _, _, body = request("GET", path, headers=headers or {})
    return len(body)


assets = size("/static/app.css") + size("/static/favicon.svg")
first = size("/login") + assets
projects = size("/", SESSION) + assets + size("/static/app.js")
print(f"\nfirst page (sign-in form, stylesheet, icon): {first / 1024:.1f} KiB; projects page with its assets: {projects / 1024:.1f} KiB (target: under 200 KB)")
