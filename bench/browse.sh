#!/usr/bin/env bash
# Browsing at scale (issue 11): a release Gantry with one repository of ARTIFACTS artifacts
# (every tenth signed, a third pulled), then every page of GET …/artifacts is timed under each
# sort, and the repositories page of the project.
#   ARTIFACTS=10000 bench/browse.sh        # the target size
#   KEEP=1 bench/browse.sh                 # keep the data directory (EXPLAIN QUERY PLAN on it)
set -euo pipefail
cd "$(dirname "$0")/.."
ARTIFACTS=${ARTIFACTS:-10000}
PAGE=${PAGE:-100}
cargo build --release --quiet --bin gantry
WORK=$(mktemp -d /tmp/gantry-browse.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
GANTRY_LOG=warn GANTRY_ADMIN_PASSWORD=bench-password GANTRY_AUTO_CREATE_PROJECTS=true \
  target/release/gantry serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" --gc-interval-secs 0 >"$WORK/log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; if [ -n "${KEEP:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi' EXIT
for _ in $(seq 200); do [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/v2/")" != 000 ] && break; sleep 0.05; done
BENCH_AUTHORIZATION="Basic $(printf 'admin:bench-password' | base64)" \
  python3 bench/browse_bench.py "127.0.0.1:$PORT" "$ARTIFACTS" "$PAGE"
