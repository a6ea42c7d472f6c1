#!/usr/bin/env bash
# Records the capture corpus (scripts/fixtures/corpus.mjs: real programs of
# LangGraph.js, the OpenAI Agents SDK, the Vercel AI SDK and the openai
# client, pinned with a lock file) against two `wfsched sim` engines
# through `wfsched router --capture`, once per content mode (full, hash,
# none), each run with the ground truth the programs write, and in full
# mode also the OpenTelemetry spans of the OpenInference instrumentation.
# Writes dag/testdata/corpus/MODE/{capture.jsonl.gz,truth.jsonl,spans.jsonl.gz};
# make test (dag's TestCorpus) compares the rebuilt graphs with the truth.
# Run by hand when the corpus should change, or in CI where Node.js is
# installed (into a temporary folder: scripts/record-corpus.sh DIR).
# Usage: scripts/record-corpus.sh [output folder, default dag/testdata/corpus] [path to wfsched]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-dag/testdata/corpus}
# shellcheck source=scripts/lib/servers.sh
source scripts/lib/servers.sh
needs_node record-corpus
bin=$(wfsched_bin "${2:-}")
(cd scripts/fixtures && npm ci --no-audit --no-fund --loglevel=error)
# The time scale the corpus test reads back (spans carry none).
scale=0.2
start sim "$bin" sim --listen 127.0.0.1:0 --instances 2 --time-scale "$scale" --seed 7 --enable-auto-tool-choice --parallel-tool-calls 2
backends=$urls
for mode in full hash none; do
	dir=$out/$mode
	rm -rf "$dir" && mkdir -p "$dir"
	start "router-$mode" "$bin" router --backends "$backends" --listen 127.0.0.1:0 --capture "$tmp/capture-$mode" --capture-content "$mode"
	spans=
	if [ "$mode" = full ]; then spans=$tmp/spans.jsonl; fi
	WFSCHED_ROUTER=$urls TRUTH_FILE=$dir/truth.jsonl SPANS_FILE=$spans node scripts/fixtures/corpus.mjs >"$tmp/corpus-$mode.log"
	sleep 0.5 # the router writes a call's record once its last byte is out
	cat "$tmp/capture-$mode"/*.jsonl | gzip -9n >"$dir/capture.jsonl.gz"
	if [ -n "$spans" ]; then gzip -9nc "$spans" >"$dir/spans.jsonl.gz"; fi
	echo "record-corpus: $mode: $(zcat "$dir/capture.jsonl.gz" | wc -l) calls, $(wc -l <"$dir/truth.jsonl") workflows"
done
