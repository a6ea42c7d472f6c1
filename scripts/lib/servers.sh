# shellcheck shell=bash
# Shared by the scripts that start wfsched engines and routers for Node.js
# programs (source it; bash). It makes $tmp (removed at exit with every
# server started), builds wfsched into it unless given one, and starts
# servers on free loopback ports.

# needs_node NAME: exits (0, with a message) when Node.js is not installed.
needs_node() {
	if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
		echo "$1: Node.js not installed: skipped"
		exit 0
	fi
}

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

# wfsched_bin [PATH]: PATH, or wfsched built now into $tmp.
wfsched_bin() {
	if [ -n "${1:-}" ]; then
		echo "$1"
		return
	fi
	go build -o "$tmp/wfsched" ./cmd/wfsched
	echo "$tmp/wfsched"
}

# start NAME CMD...: runs CMD in the background, its output in
# $tmp/NAME.log, and once it logs the URLs it serves sets $urls to them
# (http://127.0.0.1:PORT, comma-separated).
urls=
start() {
	local name=$1
	shift
	"$@" >"$tmp/$name.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 100); do
		if grep -q 'http://127\.0\.0\.1:[0-9]*' "$tmp/$name.log"; then
			# shellcheck disable=SC2034 # read by the scripts that source this
			urls=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$tmp/$name.log" | paste -sd, -)
			return 0
		fi
		sleep 0.1
	done
	cat "$tmp/$name.log" >&2
	return 1
}
