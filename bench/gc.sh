#!/usr/bin/env bash
# Online garbage collection at scale (issue 5): a release Gantry filled with MANIFESTS manifests
# of LAYERS+1 blobs each; half are untagged, then one collection runs while manifests are read.
#   MANIFESTS=10000 LAYERS=9 bench/gc.sh   # 100 000 blobs, 10 000 manifests (the target size)
set -euo pipefail
cd "$(dirname "$0")/.."
MANIFESTS=${MANIFESTS:-10000}
LAYERS=${LAYERS:-9}
. bench/gantry_server.sh gc
python3 bench/gc_bench.py "127.0.0.1:$PORT" "$PID" "$MANIFESTS" "$LAYERS"
