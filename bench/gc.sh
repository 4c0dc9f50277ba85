#!/usr/bin/env bash
# Online garbage collection at scale (issue 5): a release Gantry filled with MANIFESTS manifests
# of LAYERS+1 blobs each; half are untagged, then one collection runs while manifests are read.
#   MANIFESTS=10000 LAYERS=9 bench/gc.sh   # 100 000 blobs, 10 000 manifests (the target size)
set -euo pipefail
cd "$(dirname "$0")/.."
MANIFESTS=${MANIFESTS:-10000}
LAYERS=${LAYERS:-9}
cargo build --release --quiet --bin gantry
WORK=$(mktemp -d /tmp/gantry-gc.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
GANTRY_LOG=warn GANTRY_ADMIN_PASSWORD=bench-password GANTRY_AUTO_CREATE_PROJECTS=true \
  target/release/gantry serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" --gc-interval-secs 0 >"$WORK/log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$WORK"' EXIT
for _ in $(seq 200); do [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/v2/")" != 000 ] && break; sleep 0.05; done
BENCH_AUTHORIZATION="Basic $(printf 'admin:bench-password' | base64)" \
  python3 bench/gc_bench.py "127.0.0.1:$PORT" "$PID" "$MANIFESTS" "$LAYERS"
