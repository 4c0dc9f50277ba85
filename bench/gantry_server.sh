# Sourced by the single-server benchmarks (gc.sh, browse.sh) as `. bench/gantry_server.sh NAME`:
# builds a release gantry, starts it on a free loopback port (admin password bench-password,
# projects created on first push, no scheduled GC) with its data under a fresh /tmp/gantry-NAME.*,
# waits for it, and sets WORK, PORT, PID and BENCH_AUTHORIZATION. On exit the server stops and
# WORK is removed, unless KEEP is set.
cargo build --release --quiet --bin gantry
WORK=$(mktemp -d "/tmp/gantry-$1.XXXXXX")
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
GANTRY_LOG=warn GANTRY_ADMIN_PASSWORD=bench-password GANTRY_AUTO_CREATE_PROJECTS=true \
  target/release/gantry serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" --gc-interval-secs 0 >"$WORK/log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; if [ -n "${KEEP:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi' EXIT
for _ in $(seq 200); do [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/v2/")" != 000 ] && break; sleep 0.05; done
BENCH_AUTHORIZATION="Basic $(printf 'admin:bench-password' | base64)"
export BENCH_AUTHORIZATION
