#!/usr/bin/env bash
# router-cpu.sh: the router's throughput, p99 and CPU time per request beside HAProxy and beside
# itself configured as before its own HTTP/1.1 path (--net-http-server, GOGC=100), rounds
# interleaved in one run on one machine. It uses ../shared/bench's backends, HAProxy config and
# wrk script (the same load as router-overhead.sh: streaming chat requests over 1,000 workflow
# ids, 2 instant backends); CPU time is each proxy process's user+system time over the requests
# wrk completed against it.
# Needs: haproxy, wrk, Go. Usage:
#   scripts/router-cpu.sh PATH/TO/wfsched [ROUNDS=3] [DURATION=8s] [BENCH_DIR=../shared/bench]
set -u
WF=${1:?usage: router-cpu.sh PATH/TO/wfsched [ROUNDS] [DURATION] [BENCH_DIR]}
ROUNDS=${2:-3}; DUR=${3:-8s}; BENCH=${4:-$(dirname "$0")/../../shared/bench}
for t in haproxy wrk go ss; do command -v $t >/dev/null || { echo "missing: $t"; exit 2; }; done
[ -f "$BENCH/post-many.lua" ] || { echo "no $BENCH/post-many.lua: give the shared bench directory"; exit 2; }
BENCH=$(cd "$BENCH" && pwd)
tmp=$(mktemp -d); pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
(cd "$BENCH/instant" && go build -o "$tmp/instant" .) || exit 1
"$tmp/instant" -listen 127.0.0.1:9101 & pids+=($!)
"$tmp/instant" -listen 127.0.0.1:9102 & pids+=($!)
haproxy -f "$BENCH/haproxy.cfg" -db >"$tmp/haproxy.log" 2>&1 & pids+=($!)
backends=http://127.0.0.1:9101,http://127.0.0.1:9102
args=(router --backends "$backends" --routing-logic workflow-aware)
GOGC=100 "$WF" "${args[@]}" --net-http-server --listen 127.0.0.1:9400 >"$tmp/r0.log" 2>&1 & pids+=($!)
"$WF" "${args[@]}" --listen 127.0.0.1:9401 >"$tmp/r1.log" 2>&1 & pids+=($!)
sleep 2
# cpu PORT: the listening process's user+system time, in clock ticks.
cpu() {
  local pid
  pid=$(ss -ltnpH "sport = :$1" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
  awk '{print $14+$15}' "/proc/$pid/stat"
}
hz=$(getconf CLK_TCK)
printf '%-6s %-24s %10s %9s %12s\n' round path req/s p99 cpu-us/req
for r in $(seq 1 "$ROUNDS"); do
  for t in haproxy:9200 router-net-http-gogc100:9400 router:9401; do
    name=${t%%:*}; port=${t##*:}
    c0=$(cpu "$port")
    out=$(wrk -t2 -c64 -d"$DUR" --latency -s "$BENCH/post-many.lua" "http://127.0.0.1:$port/v1/chat/completions" 2>&1)
    c1=$(cpu "$port")
    n=$(echo "$out" | awk '/requests in/{print $1}')
    rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
    p99=$(echo "$out" | awk '$1=="99%"{print $2}')
    printf '%-6s %-24s %10s %9s %12.1f\n' "$r" "$name" "$rps" "$p99" "$(awk -v d="$((c1 - c0))" -v hz="$hz" -v n="$n" 'BEGIN{print d * 1000000 / hz / n}')"
  done
done
