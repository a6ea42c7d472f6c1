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
# shellcheck source=scripts/lib/servers.sh
source scripts/lib/servers.sh
bin=$(wfsched_bin "")
(cd scripts/fixtures && npm ci --no-audit --no-fund --loglevel=error)
start sim "$bin" sim --listen 127.0.0.1:0 --instances 2 --time-scale 0.2 --seed 7 --enable-auto-tool-choice
backends=$urls
rm -rf "$out" && mkdir -p "$out"
start router "$bin" router --backends "$backends" --listen 127.0.0.1:0 --capture "$tmp/capture" --capture-content full
url=$urls
WFSCHED_ROUTER=$url SPANS_FILE=$out/otel-spans.jsonl node scripts/fixtures/record.mjs
sleep 0.5 # the router writes a call's record once its last byte is out
cp "$tmp"/capture/*.jsonl "$out/capture.jsonl"
echo "record-fixtures: wrote $out/capture.jsonl ($(wc -l <"$out/capture.jsonl") calls) and $out/otel-spans.jsonl"
