#!/usr/bin/env bash
# Rebuilds traces/mast/, the subset of the MAST traces (CC-BY-4.0) that
# wfsched ships so that its examples run from a fresh clone, from the full
# set in ../shared/traces (or $1). Deterministic: the same input gives the
# same bytes (gzip -n). A maintainer's tool: CI and the tests read what it
# wrote, they do not run it. Needs python3 (JSON subsets) and gzip.
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:-../shared/traces}
out=traces/mast
for t in python3 gzip; do command -v $t >/dev/null || { echo "missing: $t" >&2; exit 2; }; done
[ -d "$src/steps" ] || { echo "$src: not the shared traces folder (no steps/)" >&2; exit 2; }
mkdir -p "$out/dag-json"
gz() { gzip -9nc "$1" >"$2"; }
# The AppWorld step lists whole (30 records), and the first records of the
# other frameworks' (the same JSON, records cut).
gz "$src/steps/appworld.json" "$out/appworld-steps.json.gz"
for spec in ag2:20 metagpt:20 hyperagent:4 openmanus:5; do
	name=${spec%%:*}; n=${spec##*:}
	python3 - "$src/steps/$name.json" "$n" >"$out/.tmp.json" <<'PY'
import json, sys
records = json.load(open(sys.argv[1], encoding="utf-8"))
json.dump(records[: int(sys.argv[2])], sys.stdout, ensure_ascii=False, indent=1)
sys.stdout.write("\n")
PY
	gz "$out/.tmp.json" "$out/$name-steps.json.gz"
	rm "$out/.tmp.json"
done
# One raw AppWorld log, and the DAG JSON of a few tasks per framework.
gz "$src/appworld-raw/b119b1f_2.txt" "$out/b119b1f_2.txt.gz"
for f in AppWorld/aa8502b_1 AppWorld/692c77d_1 AppWorld/82e2fac_1 AppWorld/ccb4494_1 AppWorld/cf6abd2_1 \
	AG2/02da9c1f-7c36-5739-b723-33a7d4f8e7e7 AG2/08a6477e-37a2-5633-8a6e-478b568a578e \
	HyperAgent/django__django-10924 HyperAgent/django__django-11742; do
	fw=${f%%/*}; task=${f##*/}
	mkdir -p "$out/dag-json/$fw"
	gz "$src/dag-json/${f}_dag.json" "$out/dag-json/$fw/${task}_dag.json.gz"
done
echo "wrote $(find "$out" -name '*.gz' | wc -l) files, $(du -sh "$out" | cut -f1)"
