"""Image size of the hello service: Gantry's image against what the seed recipes would push
for the same binary. Usage: python3 image_size.py LAYOUT_DIR TAG
Prints a Markdown table (compressed bytes).

The scratch recipe (`FROM scratch`, `COPY --from=build` of the CA bundle and of the binary) is
rebuilt here exactly as BuildKit layers it: one tar per COPY, gzip at Go's default level (6).
The alpine recipe needs the alpine base image, which this machine cannot fetch (no Docker Hub);
its row is the binary layer alone, plus the base size when ALPINE_BASE_BYTES is given."""

import gzip
import io
import json
import os
import sys
import tarfile

layout, tag = sys.argv[1], sys.argv[2]


def blob(digest):
    with open(os.path.join(layout, "blobs", "sha256", digest.split(":", 1)[1]), "rb") as f:
        return f.read()


index = json.load(open(os.path.join(layout, "index.json")))
top = next(m for m in index["manifests"]
           if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
manifest = json.loads(blob(top["digest"]))
gantry = sum(layer["size"] for layer in manifest["layers"])
config = json.loads(blob(manifest["config"]["digest"]))
entrypoint = config["config"]["Entrypoint"][0].lstrip("/")

binary = certs = None
for layer in manifest["layers"]:
    with tarfile.open(fileobj=io.BytesIO(blob(layer["digest"])), mode="r:gz") as t:
        for member in t.getmembers():
            if member.name == entrypoint:
                binary = t.extractfile(member).read()
            elif member.name == "etc/ssl/certs/ca-certificates.crt":
                certs = t.extractfile(member).read()


def layer_of(files, level):
    """A BuildKit-style COPY layer: a tar of the files (and their directories), gzipped."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        for path, data in files:
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = tarfile.TarInfo("/".join(parts[:i]))
                d.type, d.mode = tarfile.DIRTYPE, 0o755
                t.addfile(d)
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), 0o755
            t.addfile(info, io.BytesIO(data))
    return len(gzip.compress(raw.getvalue(), compresslevel=level, mtime=0))


binary_gz9 = len(gzip.compress(binary, compresslevel=9, mtime=0))
scratch = layer_of([("etc/ssl/certs/ca-certificates.crt", certs)], 6) + layer_of([("app", binary)], 6)
alpine_binary_layer = layer_of([("app", binary)], 6)
alpine_base = int(os.environ.get("ALPINE_BASE_BYTES", "0"))

kb = lambda n: f"{n / 1000:,.1f} kB"
print("| image of the hello service | compressed | vs. gzip -9 of the binary |")
print("|---|---|---|")
print(f"| the binary alone, gzip -9 (the floor) | {kb(binary_gz9)} | +0 kB |")
print(f"| **`gantry build`** (scratch + CA bundle + nonroot, gzip -9) | **{kb(gantry)}** | +{kb(gantry - binary_gz9)} |")
print(f"| seed recipe on scratch (COPY CA bundle + COPY binary, BuildKit gzip) | {kb(scratch)} | +{kb(scratch - binary_gz9)} |")
if alpine_base:
    total = alpine_base + alpine_binary_layer
    print(f"| seed recipe on alpine (base {kb(alpine_base)} + binary layer) | {kb(total)} | +{kb(total - binary_gz9)} |")
else:
    print(f"| seed recipe on alpine | not measured: binary layer {kb(alpine_binary_layer)} + the alpine base, which this machine cannot fetch | — |")
print(f"\nbinary: {len(binary):,} bytes uncompressed; Gantry's target: at most gzip -9 of the binary + 300 kB "
      f"({kb(binary_gz9 + 300_000)}): {'met' if gantry <= binary_gz9 + 300_000 else 'NOT met'}")
