#!/usr/bin/env bash
# Browsing at scale (issue 11): a release Gantry with one repository of ARTIFACTS artifacts
# (every tenth signed, a third pulled), then every page of GET …/artifacts is timed under each
# sort, and the repositories page of the project.
#   ARTIFACTS=10000 bench/browse.sh        # the target size
#   KEEP=1 bench/browse.sh                 # keep the data directory (EXPLAIN QUERY PLAN on it)
set -euo pipefail
cd "$(dirname "$0")/.."
ARTIFACTS=${ARTIFACTS:-10000}
PAGE=${PAGE:-100}
. bench/gantry_server.sh browse
python3 bench/browse_bench.py "127.0.0.1:$PORT" "$ARTIFACTS" "$PAGE"
