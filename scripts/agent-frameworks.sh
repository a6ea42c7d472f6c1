#!/usr/bin/env bash
# Real agent frameworks (the OpenAI Agents SDK and LangGraph.js, pinned in
# scripts/frameworks) through `wfsched router` (workflow-aware) in front of
# two `wfsched sim` engines. Skips, with a message, when Node.js is not
# installed. Usage: scripts/agent-frameworks.sh [path to wfsched; default: built now]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/servers.sh
source scripts/lib/servers.sh
needs_node agent-frameworks
bin=$(wfsched_bin "${1:-}")
dir=scripts/frameworks
if [ ! -d "$dir/node_modules/@openai/agents" ]; then
	(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
fi
start sim "$bin" sim --listen 127.0.0.1:0 --instances 2 --time-scale 0.01 --enable-auto-tool-choice
backends=$urls
start router "$bin" router --backends "$backends" --listen 127.0.0.1:0
url=$urls
WFSCHED_ROUTER=$url node "$dir/frameworks.mjs"
