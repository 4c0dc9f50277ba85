"""Pushes one file as a blob with as little client overhead as possible (the body goes out
with sendfile, zero-copy), so that push benchmarks measure the registry, not the client.
Usage: python3 blob_push.py HOST:PORT REPO FILE DIGEST monolithic|chunked [CHUNK_BYTES]
Sends $BENCH_AUTHORIZATION as the Authorization header when set.
Prints the seconds from the first request to the registry's 201."""

import os
import socket
import sys
import time

host, repo, path, digest, mode = sys.argv[1:6]
chunk = int(sys.argv[6]) if len(sys.argv) > 6 else 64 << 20
size = os.path.getsize(path)
AUTH = [f"Authorization: {os.environ['BENCH_AUTHORIZATION']}"] if os.environ.get("BENCH_AUTHORIZATION") else []
sock = socket.create_connection(tuple(host.rsplit(":", 1)))
reader = sock.makefile("rb")


def request(method, target, headers=(), body=None):
    """Sends a request (body: (file, offset, count)) and returns (status, headers)."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"] + AUTH + list(headers)
    count = body[2] if body else 0
    lines.append(f"Content-Length: {count}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    if body:
        sock.sendfile(body[0], body[1], count)
    status = int(reader.readline().split()[1])
    response = {}
    while (line := reader.readline().decode().strip()):
        name, _, value = line.partition(":")
        response[name.strip().lower()] = value.strip()
    reader.read(int(response.get("content-length", "0")))
    return status, response


def location(response):
    loc = response["location"]
    return loc.split(host, 1)[1] if loc.startswith("http") else loc


def with_digest(target):
    return f"{target}{'&' if '?' in target else '?'}digest={digest}"


with open(path, "rb") as f:
    start = time.monotonic()
    status, response = request("POST", f"/v2/{repo}/blobs/uploads/")
    assert status == 202, status
    target = location(response)
    if mode == "monolithic":
        status, _ = request("PUT", with_digest(target), ["Content-Type: application/octet-stream"], (f, 0, size))
    else:
        offset = 0
        while offset < size:
            n = min(chunk, size - offset)
            status, response = request("PATCH", target, ["Content-Type: application/octet-stream",
                                                         f"Content-Range: {offset}-{offset + n - 1}"], (f, offset, n))
            assert status == 202, status
            target = location(response)
            offset += n
        status, _ = request("PUT", with_digest(target))
    elapsed = time.monotonic() - start
assert status == 201, f"registry answered {status}"
print(f"{elapsed:.3f}")
