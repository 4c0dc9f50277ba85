"""Online GC at scale: fills a running Gantry with MANIFESTS image manifests of LAYERS blobs
each (MANIFESTS * (LAYERS + 1) blobs), untags half of them, then measures manifest-GET latency
without GC and while a collection (grace 0) runs, the collection's duration and the server's
peak RSS. Usage: python3 gc_bench.py HOST:PORT SERVER_PID MANIFESTS LAYERS
Needs BENCH_AUTHORIZATION (an Authorization header value for an admin); FILL_ONLY=1 stops after
filling (with KEEP=1 bench/gc.sh keeps the data directory for inspection)."""

import concurrent.futures
import hashlib
import http.client
import json
import os
import statistics
import sys
import threading
import time

host, pid, manifests, layers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
AUTH = {"Authorization": os.environ["BENCH_AUTHORIZATION"]}
local = threading.local()


def conn():
    if not hasattr(local, "c"):
        local.c = http.client.HTTPConnection(host, timeout=600)
    return local.c


def request(method, path, body=None, headers=None):
    c = conn()
    c.request(method, path, body=body, headers={**AUTH, **(headers or {})})
    r = c.getresponse()
    data = r.read()
    return r.status, data


def push(i):
    repo = f"gcbench/r{i % 50}"
    descriptors = []
    for j in range(layers + 1):
        blob = f"blob {i} {j}".encode()
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        status, _ = request("POST", f"/v2/{repo}/blobs/uploads/?digest={digest}", blob,
                            {"Content-Type": "application/octet-stream"})
        assert status == 201, status
        descriptors.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": len(blob)})
    config = descriptors[0] | {"mediaType": "application/vnd.oci.image.config.v1+json"}
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": config, "layers": descriptors[1:]}).encode()
    status, _ = request("PUT", f"/v2/{repo}/manifests/t{i}", manifest,
                        {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert status == 201, status
    return repo, f"t{i}"


def peak_rss_mib():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def latencies(tags, stop=None, limit=2000):
    out = []
    i = 0
    while (stop is None and i < limit) or (stop is not None and not stop.is_set()):
        repo, tag = tags[i % len(tags)]
        t0 = time.perf_counter()
        status, _ = request("GET", f"/v2/{repo}/manifests/{tag}", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        assert status == 200, status
        out.append((time.perf_counter() - t0) * 1000)
        i += 1
    return out


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


t0 = time.time()
with concurrent.futures.ThreadPoolExecutor(16) as pool:
    pushed = list(pool.map(push, range(manifests)))
fill = time.time() - t0
for repo, tag in pushed[::2]:
    status, _ = request("DELETE", f"/v2/{repo}/manifests/{tag}")
    assert status == 202, status
kept = pushed[1::2]
time.sleep(1.1)  # everything is now older than a grace window of 0 s
if os.environ.get("FILL_ONLY"):
    print(json.dumps({"fill_secs": round(fill, 1), "peak_rss_mib": round(peak_rss_mib(), 1)}))
    sys.exit(0)
rss_before = peak_rss_mib()
baseline = latencies(kept)

stop = threading.Event()
during = []
reader = threading.Thread(target=lambda: during.extend(latencies(kept, stop)))
reader.start()
c = http.client.HTTPConnection(host, timeout=3600)
t0 = time.time()
c.request("POST", "/api/v1/gc?grace_secs=0", headers=AUTH)
r = c.getresponse()
report = json.loads(r.read())
gc_secs = time.time() - t0
stop.set()
reader.join()
assert r.status == 200, report
print(json.dumps({
    "manifests": manifests, "blobs": manifests * (layers + 1), "fill_secs": round(fill, 1),
    "gc_secs": round(gc_secs, 2), "gc_report": {k: (len(v) if isinstance(v, list) else v) for k, v in report.items()},
    "peak_rss_mib_before_gc": round(rss_before, 1), "peak_rss_mib_after_gc": round(peak_rss_mib(), 1),
    "get_ms_without_gc": {"p50": round(pct(baseline, .5), 2), "p99": round(pct(baseline, .99), 2), "n": len(baseline)},
    "get_ms_during_gc": {"p50": round(pct(during, .5), 2), "p99": round(pct(during, .99), 2), "n": len(during)},
}, indent=1))
