#!/usr/bin/env bash
# Runs every test of the workspace on a fresh Debian machine, and is all the set-up there is:
# installs the real clients and engines the tests drive (skopeo, podman, buildah, umoci, curl,
# containerd, openssl (the TLS tests' CA and s_client), Go, git, Debian's docker-registry,
# Prometheus and promtool, sqlite3, PostgreSQL 15; the oras SDK, moto's S3 server and
# schemathesis in a Python virtual environment under target/), then runs `cargo test`. Most
# tests start the engines they use themselves (each its own containerd, Prometheus, moto server
# or registry on a free port); this script starts one PostgreSQL server, on which the metadata
# suites (gantry-meta, gantry-access) run a second time after the whole workspace ran on SQLite.
# `.ci/run` calls this after its format and lint checks. Extra arguments go to `cargo test`:
#
#   scripts/test-all.sh                       # everything
#   scripts/test-all.sh --test lifecycle gc   # one test binary, filtered
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian packages: the clients and engines, and what builds the Python tools' environment.
packages=(skopeo podman buildah umoci curl openssl containerd docker-registry wrk apache2-utils
  prometheus sqlite3 postgresql-15 ca-certificates golang-go git tzdata python3 python3-venv python3-pip)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "test-all: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python tools, pinned, in a virtual environment of the project's own (Debian's Python refuses
# system-wide pip installs). Its bin/ goes first on PATH, so `python3`, `moto_server` and `st`
# in the tests are these.
tools=${GANTRY_TEST_TOOLS:-$PWD/target/test-tools}
requirements=(oras==0.2.43 'moto[server]==5.2.1' schemathesis==4.32.5)
stamp="$tools/.requirements"
if [ "$(cat "$stamp" 2>/dev/null)" != "${requirements[*]}" ]; then
  echo "test-all: preparing the Python tools in $tools" >&2
  rm -rf "$tools"
  python3 -m venv "$tools"
  "$tools/bin/python3" -m pip install -q --disable-pip-version-check "${requirements[@]}"
  echo "${requirements[*]}" >"$stamp"
fi
export PATH="$tools/bin:$PATH"

cargo test --workspace --locked "$@"

# The metadata suites again, on PostgreSQL (a fresh database per test), and the integration
# tests whose servers keep metadata (each server then gets a database of its own). Left out
# there: the tests of what is about the SQLite file itself (backup, the data directory's
# files, readiness when the file goes away).
if [ $# -eq 0 ]; then
  pg=$(mktemp -d /tmp/gantry-test-pg.XXXXXX)
  trap 'scripts/postgres.sh stop "$pg" || true; rm -rf "$pg"' EXIT
  GANTRY_TEST_POSTGRES=$(scripts/postgres.sh start "$pg")
  export GANTRY_TEST_POSTGRES
  echo "test-all: the metadata suites and integration tests again, on PostgreSQL" >&2
  cargo test --locked -p gantry-meta -p gantry-access
  cargo test --locked -p gantry --test conformance --test clients --test access --test audit \
    --test lifecycle --test archive --test browse --test usage --test deletion
fi
