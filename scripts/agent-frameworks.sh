#!/usr/bin/env bash
# Real agent frameworks (the OpenAI Agents SDK and LangGraph.js, pinned in
# scripts/frameworks) through `wfsched router` (workflow-aware) in front of
# two `wfsched sim` engines. Skips, with a message, when Node.js is not
# installed. Usage: scripts/agent-frameworks.sh [path to wfsched; default: built now]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	echo "agent-frameworks: Node.js not installed: skipped"
	exit 0
fi
tmp=$(mktemp -d)
pids=()
cleanup() {
	local rc=$?
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
bin=${1:-}
if [ -z "$bin" ]; then
	bin=$tmp/wfsched
	go build -o "$bin" ./cmd/wfsched
fi
dir=scripts/frameworks
if [ ! -d "$dir/node_modules/@openai/agents" ]; then
	(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
fi
# wait_url LOG: the first http://127.0.0.1:PORT URL the process logs.
wait_url() {
	local url=
	for _ in $(seq 100); do
		url=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$1" | head -1 || true)
		[ -n "$url" ] && { echo "$url"; return 0; }
		sleep 0.1
	done
	cat "$1" >&2
	return 1
}
"$bin" sim --listen 127.0.0.1:0 --instances 2 --time-scale 0.01 --enable-auto-tool-choice >"$tmp/sim.log" 2>&1 &
pids+=($!)
wait_url "$tmp/sim.log" >/dev/null
backends=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$tmp/sim.log" | paste -sd, -)
"$bin" router --backends "$backends" --listen 127.0.0.1:0 >"$tmp/router.log" 2>&1 &
pids+=($!)
url=$(wait_url "$tmp/router.log")
WFSCHED_ROUTER=$url node "$dir/frameworks.mjs"
