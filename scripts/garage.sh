#!/usr/bin/env bash
# A single-node Garage (S3-compatible object storage) on loopback, for tests and local trials:
#
#   scripts/garage.sh start DIR   # config, data and log in DIR; writes DIR/env and prints it
#   source DIR/env                # GANTRY_TEST_S3_* for the tests, AWS_* for `gantry serve`
#   scripts/garage.sh stop DIR
#
# It lays out the node (one zone, 1 GB), creates the bucket `gantry-test` and a key with read,
# write and owner rights on it. The binary is `garage` on PATH, or $GARAGE
# (`cargo install garage --locked`; scripts/test-all.sh installs it).
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
action=$1
dir=$2
garage=${GARAGE:-garage}
bucket=gantry-test

case "$action" in
start)
  command -v "$garage" >/dev/null || {
    echo "garage.sh: no garage binary: cargo install garage --locked (or set GARAGE)" >&2
    exit 1
  }
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  # Two free loopback ports at once (kept bound together so they differ).
  read -r rpc_port s3_port < <(python3 -c '
import socket
a, b = socket.socket(), socket.socket()
a.bind(("127.0.0.1", 0)); b.bind(("127.0.0.1", 0))
print(a.getsockname()[1], b.getsockname()[1])')
  cat >"$dir/garage.toml" <<EOF
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$(openssl rand -hex 32)"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3_port"
root_domain = ".s3.garage.localhost"
EOF
  g() { "$garage" -c "$dir/garage.toml" "$@"; }
  "$garage" -c "$dir/garage.toml" server >"$dir/garage.log" 2>&1 &
  echo $! >"$dir/garage.pid"
  for _ in $(seq 150); do
    g status >/dev/null 2>&1 && break
    kill -0 "$(cat "$dir/garage.pid")" 2>/dev/null || { cat "$dir/garage.log" >&2; exit 1; }
    sleep 0.2
  done
  node=$(g node id -q | cut -d@ -f1)
  g layout assign -z dc1 -c 1G "$node" >/dev/null
  g layout apply --version 1 >/dev/null
  g bucket create "$bucket" >/dev/null
  key=$(g key create gantry-test-key)
  key_id=$(awk -F': *' '/Key ID/ {print $2; exit}' <<<"$key")
  secret=$(awk -F': *' '/Secret key/ {print $2; exit}' <<<"$key")
  [ -n "$key_id" ] && [ -n "$secret" ] || { echo "garage.sh: no key in: $key" >&2; exit 1; }
  g bucket allow --read --write --owner "$bucket" --key gantry-test-key >/dev/null
  endpoint="http://127.0.0.1:$s3_port"
  # The S3 API answers (any HTTP status) once the layout is applied.
  for _ in $(seq 100); do
    curl -s -o /dev/null "$endpoint/" && break
    sleep 0.1
  done
  cat >"$dir/env" <<EOF
export GANTRY_TEST_S3_ENDPOINT=$endpoint
export GANTRY_TEST_S3_REGION=garage
export GANTRY_TEST_S3_BUCKET=$bucket
export GANTRY_TEST_S3_ACCESS_KEY_ID=$key_id
export GANTRY_TEST_S3_SECRET_ACCESS_KEY=$secret
# For \`gantry serve --storage s3://$bucket\`:
export AWS_ENDPOINT_URL=$endpoint
export AWS_REGION=garage
export AWS_ACCESS_KEY_ID=$key_id
export AWS_SECRET_ACCESS_KEY=$secret
export AWS_ALLOW_HTTP=true
EOF
  cat "$dir/env"
  ;;
stop)
  if [ -f "$dir/garage.pid" ]; then
    pid=$(cat "$dir/garage.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$dir/garage.pid"
  fi
  ;;
*) usage ;;
esac
