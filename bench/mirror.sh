#!/usr/bin/env bash
# The pull-through cache beside its peers, in one run (medians of REPEAT):
#   1. a cold pull of an IMAGE_MIB image (LAYERS random layers) through a Gantry mirror with a
#      fresh cache, against the same pull straight from the origin (target: at most 1.1x): on
#      loopback, and with the origin behind the tests' fault proxy pacing each connection to
#      LINK_MIBPS MiB/s, as an origin across a network sends;
#   2. a warm pull through the Gantry mirror against one through CNCF Distribution in proxy mode
#      (Debian's docker-registry), both caching the same origin;
#   3. the bytes the origin served for CLIENTS concurrent cold pulls through a Gantry mirror, as
#      a multiple of the image (target: 1x), counted by the tests' fault proxy in front of it.
# The origin is Debian's docker-registry; pulls are bench/pull_image.py (manifest, then config
# and layers three at a time, as docker pulls). Prints a Markdown table.
#
#   bench/mirror.sh                   # REPEAT=3 IMAGE_MIB=200 LAYERS=4 CLIENTS=20
set -euo pipefail
cd "$(dirname "$0")/.."
REPEAT=${REPEAT:-3}
IMAGE_MIB=${IMAGE_MIB:-200}
LAYERS=${LAYERS:-4}
CLIENTS=${CLIENTS:-20}
LINK_MIBPS=${LINK_MIBPS:-100}
for tool in curl docker-registry python3 bc; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install curl docker-registry python3 bc)" >&2; exit 1; }
done
cargo build --release --quiet --bin gantry
WORK=$(mktemp -d /tmp/gantry-mirror.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  if [ -n "${KEEP:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
source bench/lib.sh
GANTRY_AUTH="Basic $(printf 'admin:bench-password' | base64)"

distribution() { # name port [proxied-url]: Debian's docker-registry with its data under WORK
  local proxy=""
  [ -n "${3:-}" ] && proxy="proxy: {remoteurl: $3}"
  cat > "$WORK/$1.yml" <<EOF
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $WORK/$1-data}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$2}
$proxy
EOF
  docker-registry serve "$WORK/$1.yml" >"$WORK/$1.log" 2>&1 &
  PIDS+=($!)
  wait_port "127.0.0.1:$2"
}

GANTRY_PID=
gantry_mirror() { # port upstream-host: a Gantry with a fresh data directory caching upstream
  local dir; dir=$(mktemp -d "$WORK/gantry.XXXXXX")
  GANTRY_LOG=warn GANTRY_ADMIN_PASSWORD=bench-password target/release/gantry serve \
    --listen "127.0.0.1:$1" --data-dir "$dir" --gc-interval-secs 0 --upstream "origin=http://$2" >"$dir.log" 2>&1 &
  GANTRY_PID=$!
  PIDS+=("$GANTRY_PID")
  wait_port "127.0.0.1:$1"
}
stop_gantry() { kill "$GANTRY_PID"; wait "$GANTRY_PID" 2>/dev/null || true; }

until_cached() { # gantry-port: the fill job stored bench/img:v1
  for _ in $(seq 600); do
    curl -fsS -H "Authorization: $GANTRY_AUTH" "http://127.0.0.1:$1/api/v1/repositories/origin%2Fbench%2Fimg/artifacts" 2>/dev/null \
      | grep -q '"v1"' && return
    sleep 0.1
  done
  echo "bench: the mirror did not cache the image" >&2; exit 1
}

pull() { # host repository [clients] [authorization]
  BENCH_AUTHORIZATION=${4:-} python3 bench/pull_image.py "$1" "$2" v1 "${3:-1}"
}

cold_round() { # origin-host: prints the seconds of a pull straight from it, then through a fresh mirror of it
  local direct port
  direct=$(pull "$1" bench/img)
  port=$(free_port)
  gantry_mirror "$port" "$1"
  echo "$direct $(pull "127.0.0.1:$port" origin/bench/img 1 "$GANTRY_AUTH")"
  stop_gantry
}

# The origin and the image: LAYERS random layers, a config, a manifest.
ORIGIN_PORT=$(free_port)
distribution origin "$ORIGIN_PORT"
ORIGIN=127.0.0.1:$ORIGIN_PORT
echo "pushing a $IMAGE_MIB MiB image to the origin" >&2
layers=""
for i in $(seq "$LAYERS"); do
  head -c "$((IMAGE_MIB * 1048576 / LAYERS))" /dev/urandom > "$WORK/layer$i"
  digest=sha256:$(sha256sum "$WORK/layer$i" | cut -d' ' -f1)
  push_monolithic "$ORIGIN" "$WORK/layer$i" "$digest" bench/img
  layers="$layers${layers:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"$digest\",\"size\":$(stat -c %s "$WORK/layer$i")}"
done
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' > "$WORK/config"
config=sha256:$(sha256sum "$WORK/config" | cut -d' ' -f1)
push_monolithic "$ORIGIN" "$WORK/config" "$config" bench/img
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[%s]}' \
  "$config" "$(stat -c %s "$WORK/config")" "$layers" > "$WORK/manifest"
curl -fsS -o /dev/null -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
  --data-binary "@$WORK/manifest" "http://$ORIGIN/v2/bench/img/manifests/v1"
IMAGE_BYTES=$(( $(stat -c %s "$WORK/config") + IMAGE_MIB * 1048576 / LAYERS * LAYERS ))

# 1. Cold: a fresh mirror each time, alternating with the direct pull.
echo "== cold pulls" >&2
pull "$ORIGIN" bench/img >/dev/null # the origin's page cache, warm for both
direct=() cold=()
for _ in $(seq "$REPEAT"); do
  read -r d c < <(cold_round "$ORIGIN")
  direct+=("$d") cold+=("$c")
done

# 1b. The same with each connection to the origin paced to LINK_MIBPS.
echo "== cold pulls, origin paced to $LINK_MIBPS MiB/s a connection" >&2
LINK=$WORK/link
mkdir -p "$LINK"
echo $((LINK_MIBPS * 1048576)) > "$LINK/rate"
LINK_PORT=$(free_port)
python3 crates/gantry/tests/fixtures/fault_proxy.py "$ORIGIN" "$LINK_PORT" "$LINK" &
PIDS+=($!)
wait_port "127.0.0.1:$LINK_PORT"
link_direct=() link_cold=()
for _ in $(seq "$REPEAT"); do
  read -r d c < <(cold_round "127.0.0.1:$LINK_PORT")
  link_direct+=("$d") link_cold+=("$c")
done

# 2. Warm: Gantry's cache and Distribution's proxy, each filled by one pull first.
echo "== warm pulls" >&2
port=$(free_port)
gantry_mirror "$port" "$ORIGIN"
pull "127.0.0.1:$port" origin/bench/img 1 "$GANTRY_AUTH" >/dev/null
until_cached "$port"
PROXY_PORT=$(free_port)
distribution proxy "$PROXY_PORT" "http://$ORIGIN"
pull "127.0.0.1:$PROXY_PORT" bench/img >/dev/null
sleep 1
warm=() peer=()
for _ in $(seq "$REPEAT"); do
  warm+=("$(pull "127.0.0.1:$port" origin/bench/img 1 "$GANTRY_AUTH")")
  peer+=("$(pull "127.0.0.1:$PROXY_PORT" bench/img)")
done
stop_gantry

# 3. Origin bytes for CLIENTS concurrent cold pulls, counted in front of the origin.
echo "== $CLIENTS concurrent cold pulls" >&2
STATE=$WORK/counter
mkdir -p "$STATE"
COUNTER_PORT=$(free_port)
python3 crates/gantry/tests/fixtures/fault_proxy.py "$ORIGIN" "$COUNTER_PORT" "$STATE" &
PIDS+=($!)
wait_port "127.0.0.1:$COUNTER_PORT"
port=$(free_port)
gantry_mirror "$port" "127.0.0.1:$COUNTER_PORT"
concurrent=$(pull "127.0.0.1:$port" origin/bench/img "$CLIENTS" "$GANTRY_AUTH")
until_cached "$port"
served=0
while read -r path; do
  digest=${path##*/}
  case "$digest" in
    "$config") served=$((served + $(stat -c %s "$WORK/config")));;
    sha256:*) served=$((served + IMAGE_MIB * 1048576 / LAYERS));;
  esac
done < <(awk '$1 == "done" && $2 ~ /\/blobs\// {print $2}' "$STATE/log")

ratio() { echo "scale=2; $1 / $2" | bc -l; }
d=$(median "${direct[@]}") c=$(median "${cold[@]}") w=$(median "${warm[@]}") p=$(median "${peer[@]}")
ld=$(median "${link_direct[@]}") lc=$(median "${link_cold[@]}")
cat <<EOF

| measure ($IMAGE_MIB MiB image, $LAYERS layers; medians of $REPEAT) | Gantry mirror | peer | ratio | target |
|---|---|---|---|---|
| cold pull on loopback, s (peer: straight from the origin) | $c | $d | $(ratio "$c" "$d")x | ≤ 1.1x |
| cold pull, origin paced to $LINK_MIBPS MiB/s a connection, s (peer: straight from the origin) | $lc | $ld | $(ratio "$lc" "$ld")x | ≤ 1.1x |
| warm pull, s (peer: Distribution 2.8 in proxy mode) | $w | $p | $(ratio "$w" "$p")x | — |
| origin bytes for $CLIENTS concurrent cold pulls, in images | $(ratio "$served" "$IMAGE_BYTES") | — | — | 1x |
| those $CLIENTS pulls, s | $concurrent | — | — | — |
EOF
