#!/usr/bin/env bash
# The vulnerability scanner side by side with Debian's govulncheck (0.0~git20230201, binary
# mode) on the same binaries and the same data (the Go database snapshot, laid out for
# govulncheck in its 2023 file format), warm, each command REPEAT times (median, ms):
#   - the hello image: the builder's net/http hello service, as `gantry build` makes it
#     (stripped: gantry only, that govulncheck cannot read stripped binaries) and built plainly
#     (not stripped) for both;
#   - a large binary with many modules (MODULES stand-in modules at vulnerable versions, see
#     crates/gofixtures/examples/many_modules.rs);
#   - `gantry vulndb import` of the snapshot into a fresh store (no peer: govulncheck reads
#     its files as they lie).
# `gantry scan oci:… --db osv-go-all.zip` is what a user runs on a layout in CI: the first scan
# imports the zip into a prepared database in the cache directory, later ones reuse it (warm);
# the cold row is a scan with an empty cache (what a CI job without a kept cache pays). govulncheck runs with -json (its exit status is 3 when it finds something)
# and a database it reads from files, no network. Needs go (golang-go), govulncheck, umoci. Prints a Markdown table.
#
#   bench/scan.sh                 # REPEAT=10 MODULES=200
set -euo pipefail
cd "$(dirname "$0")/.."
REPEAT=${REPEAT:-10}
MODULES=${MODULES:-200}
for tool in go govulncheck umoci bc unzip; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing; install golang-go govulncheck umoci bc unzip" >&2; exit 1; }
done

cargo build --release --quiet -p gantry --bin gantry
cargo build --release --quiet -p gantry-gofixtures --example many_modules
cargo build --release --quiet -p gantry-osv --features test-support --example legacy_govulndb
GANTRY=$PWD/target/release/gantry
SNAPSHOT=$(cd .. && pwd)/shared/testdata/vulndb/osv-go-all.zip
[ -f "$SNAPSHOT" ] || SNAPSHOT=$(cd ../.. && pwd)/shared/testdata/vulndb/osv-go-all.zip
WORK=$(mktemp -d /tmp/gantry-scan.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
GOCACHE=$(go env GOCACHE); export GOCACHE
# govulncheck keeps its cache under HOME, gantry its prepared databases: a fresh one.
export HOME=$WORK/home GOVULNDB=file://$WORK/govulndb GOFLAGS=-mod=mod GOPROXY=off GOTOOLCHAIN=local
mkdir -p "$HOME"
source bench/lib.sh

layout_of() { # binary dir: an OCI layout (tag v1) holding the binary as /usr/bin/app
  umoci init --layout "$2" && umoci new --image "$2:v1"
  umoci unpack --rootless --image "$2:v1" "$WORK/bundle" >/dev/null
  install -D "$1" "$WORK/bundle/rootfs/usr/bin/app"
  umoci repack --image "$2:v1" "$WORK/bundle" && rm -rf "$WORK/bundle"
}
ms() { # median wall time of REPEAT runs of the command, in ms, after one warm-up run
  "$@" >/dev/null 2>&1 || { echo "bench: $* failed" >&2; "$@" >&2; exit 1; }
  local i t0 runs=()
  for i in $(seq "$REPEAT"); do
    t0=$(now); "$@" >/dev/null 2>&1; runs+=("$(echo "($(now) - $t0) * 1000" | bc -l)")
  done
  median "${runs[@]}"
}

echo "preparing: fixtures, layouts, govulncheck's database" >&2
target/release/examples/legacy_govulndb "$SNAPSHOT" "$WORK/govulndb"
SOURCE_DATE_EPOCH=1700000000 "$GANTRY" build -C crates/gantry/tests/fixtures/go/hello \
  --image registry.example.com/team/hello:v1 --output "$WORK/hello-built" >/dev/null
(cd crates/gantry/tests/fixtures/go/hello && CGO_ENABLED=0 go build -trimpath -o "$WORK/hello" .)
modules=$(GOFLAGS= target/release/examples/many_modules "$WORK/many" "$MODULES")
layout_of "$WORK/hello" "$WORK/hello-layout"
layout_of "$WORK/many/many-modules" "$WORK/many-layout"

declare -A T
T[hello_built]=$(ms "$GANTRY" scan "oci:$WORK/hello-built:v1" --db "$SNAPSHOT")
T[hello]=$(ms "$GANTRY" scan "oci:$WORK/hello-layout:v1" --db "$SNAPSHOT")
# The image's own cost: the same scan against a database of the one record that affects it most.
unzip -q -o "$SNAPSHOT" GO-2023-1840.json -d "$WORK/one"
T[hello_one]=$(ms "$GANTRY" scan "oci:$WORK/hello-layout:v1" --db "$WORK/one/GO-2023-1840.json")
T[hello_peer]=$(ms govulncheck -json "$WORK/hello")
scan_cold() { GANTRY_CACHE_DIR=$WORK/cold "$GANTRY" scan "oci:$WORK/hello-layout:v1" --db "$SNAPSHOT"; rm -rf "$WORK/cold"; }
T[hello_cold]=$(ms scan_cold)
T[many]=$(ms "$GANTRY" scan "oci:$WORK/many-layout:v1" --db "$SNAPSHOT")
T[many_peer]=$(ms govulncheck -json "$WORK/many/many-modules")
import_fresh() { rm -rf "$WORK/store"; "$GANTRY" vulndb import "$SNAPSHOT" --data-dir "$WORK/store"; }
T[import]=$(ms import_fresh)

row() { # label gantry-key peer-key
  if [ -n "$3" ]; then
    printf '| %s | %.1f ms | %.1f ms | %.2f× |\n' "$1" "${T[$2]}" "${T[$3]}" "$(echo "${T[$3]} / ${T[$2]}" | bc -l)"
  else
    printf '| %s | %.1f ms | — | — |\n' "$1" "${T[$2]}"
  fi
}
echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r); $(date -u +%Y-%m-%d)"
echo "$(go version); govulncheck $(dpkg-query -W -f='${Version}' govulncheck 2>/dev/null); medians of $REPEAT warm runs; large binary: $modules modules, $(stat -c %s "$WORK/many/many-modules") bytes; hello: $(stat -c %s "$WORK/hello") bytes"
echo
echo "| benchmark | Gantry | govulncheck | govulncheck ÷ Gantry (higher is better) |"
echo "|---|---|---|---|"
row "hello image (\`gantry build\`, stripped; govulncheck cannot read it)" hello_built ""
row "hello binary, not stripped (\`gantry scan oci:… --db zip\` vs \`govulncheck BINARY\`)" hello hello_peer
row "of which the image (the same scan, a one-record database)" hello_one ""
row "the hello scan cold (empty cache: the snapshot imported first)" hello_cold hello_peer
row "large binary, $modules modules" many many_peer
row "\`gantry vulndb import\` of the snapshot, fresh store" import ""
