#!/usr/bin/env bash
# Starts a throwaway PostgreSQL 15 server on a free loopback port, for the tests that run the
# metadata suite (and the integration tests, when asked) on PostgreSQL. Prints the admin URL
# (`postgres://gantry@127.0.0.1:PORT/postgres`) on stdout; `scripts/postgres.sh stop DIR` stops it.
#
#   url=$(scripts/postgres.sh start /tmp/gantry-pg)
#   GANTRY_TEST_POSTGRES=$url cargo test -p gantry-meta
#   scripts/postgres.sh stop /tmp/gantry-pg
#
# initdb refuses to run as root, so as root the server runs as the `postgres` user that
# Debian's package creates.
set -euo pipefail
bin=/usr/lib/postgresql/15/bin
action=${1:?start or stop}
dir=${2:?a directory for the cluster}

as_owner() {
  if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$(printf '%q ' "$@")"; else "$@"; fi
}

case "$action" in
start)
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  as_owner "$bin/initdb" -D "$dir/data" -A trust -U gantry -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
  # Durability settings stay at their defaults (fsync on): the tests check crash safety.
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null \
    || { cat "$dir/server.log" >&2; exit 1; }
  echo "postgres://gantry@127.0.0.1:$port/postgres"
  ;;
stop)
  as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
  ;;
*)
  echo "usage: $0 start|stop DIR" >&2
  exit 2
  ;;
esac
