#!/usr/bin/env bash
# The web UI at scale (issue 16): a release Gantry with a project of REPOSITORIES repositories and
# a repository of ARTIFACTS artifacts, then the server time of each UI page (signed in, the
# session cookie) beside the REST API request it is built on, and the bytes the first page
# transfers. Prints a Markdown table.
#   bench/ui.sh                                  # REPOSITORIES=1000 ARTIFACTS=10000
#   KEEP=1 bench/ui.sh                           # keep the data directory
set -euo pipefail
cd "$(dirname "$0")/.."
REPOSITORIES=${REPOSITORIES:-1000}
ARTIFACTS=${ARTIFACTS:-10000}
. bench/gantry_server.sh ui
python3 bench/ui_bench.py "127.0.0.1:$PORT" "$REPOSITORIES" "$ARTIFACTS"
