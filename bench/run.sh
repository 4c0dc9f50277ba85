#!/usr/bin/env bash
# Side-by-side benchmark: Gantry vs CNCF Distribution 2.8.2 (Debian's docker-registry) on this
# machine, same clients, same data, one run. Prints a Markdown table with ratios and writes it
# to bench/results/latest.md. Needs: curl, wrk, ab (apache2-utils), docker-registry.
#
#   bench/run.sh            # full run (1 GiB blobs)
#   BLOB_MIB=256 bench/run.sh   # quicker run with smaller blobs
set -euo pipefail
cd "$(dirname "$0")/.."

BLOB_MIB=${BLOB_MIB:-1024}
CHUNK_MIB=${CHUNK_MIB:-64}
CONNECTIONS=${CONNECTIONS:-32}
DURATION=${DURATION:-10}
PUSHES=${PUSHES:-200}
REPEAT=${REPEAT:-3}   # throughput figures are the median of this many runs

for tool in curl wrk ab bc docker-registry; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing; install wrk apache2-utils bc docker-registry curl" >&2; exit 1; }
done

cargo build --release --quiet --bin gantry
GANTRY=$PWD/target/release/gantry
WORK=$(mktemp -d /tmp/gantry-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

source bench/lib.sh
prepare_blobs

# The start functions run in this shell (never in $(...)), so that PIDS reaches the cleanup trap.
# Gantry runs as shipped, access control on: every request carries the admin's Basic
# credentials (verified once, then cached). Distribution runs without auth, its common setup,
# so Gantry does strictly more work per request.
GANTRY_PASSWORD=bench-password
start_gantry() {
  local port=$1
  GANTRY_LOG=warn GANTRY_ADMIN_PASSWORD=$GANTRY_PASSWORD GANTRY_AUTO_CREATE_PROJECTS=true "$GANTRY" serve --listen "127.0.0.1:$port" --data-dir "$WORK/gantry-data" >"$WORK/gantry.log" 2>&1 &
  SERVER_PID=$!; PIDS+=("$SERVER_PID")
}
start_distribution() {
  local port=$1
  cat > "$WORK/distribution.yml" <<YAML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: $WORK/distribution-data}
  delete: {enabled: true}
http: {addr: 127.0.0.1:$port}
YAML
  docker-registry serve "$WORK/distribution.yml" >"$WORK/distribution.log" 2>&1 &
  SERVER_PID=$!; PIDS+=("$SERVER_PID")
}

# One registry at a time: each is stopped before the other is measured.
gp=$(free_port); start_gantry "$gp"; wait_port "127.0.0.1:$gp"
measure gantry "127.0.0.1:$gp" "$SERVER_PID" "Basic $(printf 'admin:%s' "$GANTRY_PASSWORD" | base64)"
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
dp=$(free_port); start_distribution "$dp"; wait_port "127.0.0.1:$dp"
measure distribution "127.0.0.1:$dp" "$SERVER_PID"
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true

row() { # label key unit higher_is_better
  local g=${R[gantry,$2]} d=${R[distribution,$2]} ratio
  if [ "$4" = higher ]; then ratio=$(echo "$g / $d" | bc -l); else ratio=$(echo "$d / $g" | bc -l); fi
  printf '| %s | %.2f %s | %.2f %s | %.2f× |\n' "$1" "$g" "$3" "$d" "$3" "$ratio"
}
mkdir -p bench/results
{
  echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r); $(date -u +%Y-%m-%d)"
  echo "Blobs: ${BLOB_MIB} MiB (chunked in ${CHUNK_MIB} MiB PATCHes), pushed by a sendfile client; push and pull figures are medians of ${REPEAT} runs; wrk/ab: ${CONNECTIONS} connections, ${DURATION}s; ${PUSHES} concurrent small-image pushes."
  echo
  echo "| benchmark | Gantry | Distribution 2.8.2 | Gantry ÷ Distribution (higher is better) |"
  echo "|---|---|---|---|"
  row "blob push, monolithic" push_mono "GiB/s" higher
  row "blob push, chunked" push_chunked "GiB/s" higher
  row "blob pull" pull "GiB/s" higher
  row "manifest GET" manifest_get "req/s" higher
  row "blob HEAD" blob_head "req/s" higher
  row "concurrent small-image pushes" pushes "images/s" higher
  row "peak RSS (lower is better; ratio = Distribution ÷ Gantry)" rss "MiB" lower
} | tee bench/results/latest.md
