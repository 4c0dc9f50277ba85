#!/usr/bin/env bash
# Image size of the hello service built by `gantry build`, against the seed recipes' images
# for the same binary. Needs go (golang-go) and python3. Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin gantry
WORK=$(mktemp -d /tmp/gantry-size.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
SOURCE_DATE_EPOCH=1700000000 target/release/gantry build -C crates/gantry/tests/fixtures/go/hello \
  --image registry.example.com/team/hello:v1 --output "$WORK/layout" >/dev/null
echo "Go: $(go version)"
python3 bench/image_size.py "$WORK/layout" v1
