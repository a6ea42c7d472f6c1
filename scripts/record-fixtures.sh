#!/usr/bin/env bash
# Records the test fixtures of real agent programs (scripts/fixtures, pinned
# with a lock file): runs them against two `wfsched sim` engines through
# `wfsched router --capture` (full content), with OpenTelemetry spans from
# the OpenInference instrumentation of the OpenAI client, and writes the
# capture and the spans to dag/testdata/agents/. Run once, by hand, when the
# fixtures should change; make test reads what it wrote.
# Usage: scripts/record-fixtures.sh [output folder, default dag/testdata/agents]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-dag/testdata/agents}
command -v node >/dev/null || { echo "record-fixtures: needs Node.js"; exit 1; }
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
go build -o "$tmp/wfsched" ./cmd/wfsched
(cd scripts/fixtures && npm ci --no-audit --no-fund --loglevel=error)
wait_url() {
	for _ in $(seq 100); do
		grep -o 'http://127\.0\.0\.1:[0-9]*' "$1" | head -1 && return 0
		sleep 0.1
	done
	cat "$1" >&2
	return 1
}
"$tmp/wfsched" sim --listen 127.0.0.1:0 --instances 2 --time-scale 0.2 --seed 7 --enable-auto-tool-choice >"$tmp/sim.log" 2>&1 &
pids+=($!)
wait_url "$tmp/sim.log" >/dev/null
backends=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$tmp/sim.log" | paste -sd, -)
rm -rf "$out" && mkdir -p "$out"
"$tmp/wfsched" router --backends "$backends" --listen 127.0.0.1:0 --capture "$tmp/capture" --capture-content full >"$tmp/router.log" 2>&1 &
pids+=($!)
url=$(wait_url "$tmp/router.log")
WFSCHED_ROUTER=$url SPANS_FILE=$out/otel-spans.jsonl node scripts/fixtures/record.mjs
sleep 0.5 # the router writes a call's record once its last byte is out
cp "$tmp"/capture/*.jsonl "$out/capture.jsonl"
echo "record-fixtures: wrote $out/capture.jsonl ($(wc -l <"$out/capture.jsonl") calls) and $out/otel-spans.jsonl"
