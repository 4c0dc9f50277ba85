#!/usr/bin/env bash
# Scale-out benchmark, one run, same clients and data: Gantry with the embedded default
# (SQLite + local disk), Gantry on PostgreSQL + Garage (S3) as one replica and as three
# replicas behind nginx (the reference deploy/nginx/gantry.conf), and CNCF Distribution 2.8.2
# (Debian's docker-registry) with its S3 driver on the same Garage. Prints a Markdown table
# with ratios and writes it to bench/results/replicas.md.
#
#   bench/replicas.sh                 # 256 MiB blobs
#   BLOB_MIB=64 REPEAT=1 bench/replicas.sh
#
# Needs what scripts/test-all.sh installs: PostgreSQL 15, Garage ($GARAGE, or target/garage),
# nginx, wrk, ab, curl, bc, openssl, docker-registry.
set -euo pipefail
cd "$(dirname "$0")/.."

BLOB_MIB=${BLOB_MIB:-256}
CHUNK_MIB=${CHUNK_MIB:-64}
CONNECTIONS=${CONNECTIONS:-32}
DURATION=${DURATION:-10}
PUSHES=${PUSHES:-200}
REPEAT=${REPEAT:-3}
REPLICAS=${REPLICAS:-3}
export GARAGE=${GARAGE:-$PWD/target/garage/bin/garage}

for tool in curl wrk ab bc openssl nginx docker-registry "$GARAGE"; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (scripts/test-all.sh installs it)" >&2; exit 1; }
done

cargo build --release --quiet --bin gantry
GANTRY=$PWD/target/release/gantry
WORK=$(mktemp -d /tmp/gantry-bench.XXXXXX)
# Apart from WORK (private): as root, PostgreSQL runs as its own user, which must reach it.
PG_DIR=$(mktemp -d /tmp/gantry-bench-pg.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  scripts/garage.sh stop "$WORK/garage" 2>/dev/null || true
  scripts/postgres.sh stop "$PG_DIR" 2>/dev/null || true
  [ -n "${KEEP:-}" ] && echo "bench: kept $WORK" >&2 || rm -rf "$WORK" "$PG_DIR"
}
trap cleanup EXIT

source bench/lib.sh
prepare_blobs

echo "starting PostgreSQL and Garage" >&2
PG_ADMIN=$(scripts/postgres.sh start "$PG_DIR")
scripts/garage.sh start "$WORK/garage" >/dev/null
# shellcheck disable=SC1091
source "$WORK/garage/env"
BUCKET=${GANTRY_TEST_S3_BUCKET:?garage.sh names the bucket}
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$WORK/token-key.pem" 2>/dev/null

GANTRY_PASSWORD=bench-password
GANTRY_AUTH="Basic $(printf 'admin:%s' "$GANTRY_PASSWORD" | base64)"
# A Gantry process; extra settings come as NAME=VALUE arguments after the port and directory.
start_gantry() { # port data_dir [NAME=VALUE...]
  local port=$1 dir=$2; shift 2
  mkdir -p "$dir"
  env GANTRY_LOG=warn GANTRY_ADMIN_PASSWORD=$GANTRY_PASSWORD GANTRY_AUTO_CREATE_PROJECTS=true "$@" \
    "$GANTRY" serve --listen "127.0.0.1:$port" --data-dir "$dir" >"$dir.log" 2>&1 &
  SERVER_PID=$!; PIDS+=("$SERVER_PID")
}
# Gantry on the shared engines: database NAME on the PostgreSQL server, PREFIX in the bucket.
scale_out_settings() { # database prefix
  psql "$PG_ADMIN" -qc "CREATE DATABASE $1" >/dev/null
  echo "GANTRY_DATABASE=${PG_ADMIN%/*}/$1" "GANTRY_STORAGE=s3://$BUCKET/$2" \
    "GANTRY_TOKEN_KEY=$WORK/token-key.pem" "GANTRY_TRUSTED_PROXIES=127.0.0.1"
}
start_nginx() { # port upstream...
  local port=$1 dir=$WORK/nginx; shift
  mkdir -p "$dir/temp"
  awk -v port="$port" -v dir="$dir" -v upstreams="$*" '
    /# each replica$/ { if (!done) { n = split(upstreams, u, " "); for (i = 1; i <= n; i++) { line = $0; sub(/10\.0\.0\.11:5000/, u[i], line); print line } done = 1 } next }
    { sub(/listen 80;/, "listen 127.0.0.1:" port ";"); print }
    /^http \{/ { print "    access_log off;"; split("client_body proxy fastcgi uwsgi scgi", t, " "); for (i in t) print "    " t[i] "_temp_path " dir "/temp/" t[i] ";" }
  ' deploy/nginx/gantry.conf >"$dir/nginx.conf"
  nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" -g "daemon off; pid $dir/nginx.pid;" &
  PIDS+=("$!")
}
start_distribution_s3() { # port
  cat > "$WORK/distribution.yml" <<YAML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage:
  s3:
    accesskey: $AWS_ACCESS_KEY_ID
    secretkey: $AWS_SECRET_ACCESS_KEY
    region: $AWS_REGION
    regionendpoint: $AWS_ENDPOINT_URL
    bucket: $BUCKET
    rootdirectory: /distribution
    secure: false
    v4auth: true
  delete: {enabled: true}
  redirect: {disable: true}
http: {addr: 127.0.0.1:$1}
YAML
  # Its AWS SDK refuses a custom CA bundle with its own transport; Garage here is plain HTTP.
  env -u AWS_CA_BUNDLE docker-registry serve "$WORK/distribution.yml" >"$WORK/distribution.log" 2>&1 &
  SERVER_PID=$!; PIDS+=("$SERVER_PID")
}
stop() { for p in "$@"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }

# One topology at a time: each is stopped before the next is measured.
port=$(free_port); start_gantry "$port" "$WORK/embedded"; wait_port "127.0.0.1:$port"
measure embedded "127.0.0.1:$port" "$SERVER_PID" "$GANTRY_AUTH"
stop "$SERVER_PID"

# shellcheck disable=SC2046
port=$(free_port); start_gantry "$port" "$WORK/one" $(scale_out_settings bench_one one); wait_port "127.0.0.1:$port"
measure one "127.0.0.1:$port" "$SERVER_PID" "$GANTRY_AUTH"
stop "$SERVER_PID"

settings=$(scale_out_settings bench_replicas replicas)
replicas=() upstreams=()
for n in $(seq "$REPLICAS"); do
  port=$(free_port)
  # shellcheck disable=SC2086
  start_gantry "$port" "$WORK/replica-$n" $settings
  replicas+=("$SERVER_PID"); upstreams+=("127.0.0.1:$port")
  wait_port "127.0.0.1:$port"
done
port=$(free_port); start_nginx "$port" "${upstreams[@]}"; wait_port "127.0.0.1:$port"
measure replicas "127.0.0.1:$port" "${replicas[*]}" "$GANTRY_AUTH"
stop "${replicas[@]}"

port=$(free_port); start_distribution_s3 "$port"; wait_port "127.0.0.1:$port"
measure distribution "127.0.0.1:$port" "$SERVER_PID"
stop "$SERVER_PID"

row() { # label key unit higher|lower
  local e=${R[embedded,$2]} o=${R[one,$2]} r=${R[replicas,$2]} d=${R[distribution,$2]}
  ratio() { if [ "$4" = higher ]; then echo "$1 / $2" | bc -l; else echo "$2 / $1" | bc -l; fi; }
  printf '| %s | %.2f | %.2f | %.2f | %.2f | %.2f× | %.2f× | %.2f× |\n' "$1 ($3)" "$e" "$o" "$r" "$d" \
    "$(ratio "$o" "$d" "" "$4")" "$(ratio "$r" "$d" "" "$4")" "$(ratio "$r" "$o" "" "$4")"
}
mkdir -p bench/results
{
  echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r); $(date -u +%Y-%m-%d)"
  echo "Blobs: ${BLOB_MIB} MiB (chunked in ${CHUNK_MIB} MiB PATCHes); medians of ${REPEAT} runs; wrk/ab: ${CONNECTIONS} connections, ${DURATION}s; ${PUSHES} concurrent small-image pushes. PostgreSQL 15, Garage and nginx run on the same machine; ${REPLICAS} replicas share it too."
  echo
  echo "| benchmark | embedded (SQLite + disk) | PostgreSQL + Garage, 1 replica | PostgreSQL + Garage, ${REPLICAS} replicas + nginx | Distribution 2.8.2, S3 on Garage | 1 replica ÷ Distribution | ${REPLICAS} replicas ÷ Distribution | ${REPLICAS} replicas ÷ 1 replica |"
  echo "|---|---|---|---|---|---|---|---|"
  row "blob push, monolithic" push_mono "GiB/s" higher
  row "blob push, chunked" push_chunked "GiB/s" higher
  row "blob pull" pull "GiB/s" higher
  row "manifest GET" manifest_get "req/s" higher
  row "blob HEAD" blob_head "req/s" higher
  row "concurrent small-image pushes" pushes "images/s" higher
  row "peak RSS of the registry processes (lower is better)" rss "MiB" lower
} | tee bench/results/replicas.md
