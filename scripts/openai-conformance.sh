#!/usr/bin/env bash
# The official openai Node client (pinned in scripts/conformance) against
# the embedded engine: every request field the engine honours, whole and
# streamed. Skips, with a message, when Node.js is not installed.
# Usage: scripts/openai-conformance.sh [path to wfsched; default: built now]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/servers.sh
source scripts/lib/servers.sh
needs_node openai-conformance
bin=$(wfsched_bin "${1:-}")
dir=scripts/conformance
if [ ! -d "$dir/node_modules/openai" ]; then
	(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
fi
start sim "$bin" sim --listen 127.0.0.1:0 --time-scale 0.01 --enable-auto-tool-choice
url=$urls
WFSCHED_URL=$url/v1 node "$dir/conformance.mjs"
