#!/usr/bin/env bash
# The official openai Node client (pinned in scripts/conformance) against
# the embedded engine: every request field the engine honours, whole and
# streamed. Skips, with a message, when Node.js is not installed.
# Usage: scripts/openai-conformance.sh [path to wfsched; default: built now]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	echo "openai-conformance: Node.js not installed: skipped"
	exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bin=${1:-}
if [ -z "$bin" ]; then
	bin=$tmp/wfsched
	go build -o "$bin" ./cmd/wfsched
fi
dir=scripts/conformance
if [ ! -d "$dir/node_modules/openai" ]; then
	(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
fi
log=$tmp/sim.log
"$bin" sim --listen 127.0.0.1:0 --time-scale 0.01 --enable-auto-tool-choice >"$log" 2>&1 &
pid=$!
cleanup() {
	local rc=$?
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
url=
for _ in $(seq 100); do
	url=$(grep -o 'http://127\.0\.0\.1:[0-9]*/v1' "$log" | head -1 || true)
	[ -n "$url" ] && break
	kill -0 "$pid" 2>/dev/null || { cat "$log"; exit 1; }
	sleep 0.1
done
if [ -z "$url" ]; then
	echo "openai-conformance: the engine did not start"
	cat "$log"
	exit 1
fi
WFSCHED_URL=$url node "$dir/conformance.mjs"
