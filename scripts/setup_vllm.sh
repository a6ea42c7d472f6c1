#!/usr/bin/env bash
# setup_vllm.sh: start, stop and inspect vLLM's OpenAI-compatible server in
# Docker for wfsched. Usage:
#
#   scripts/setup_vllm.sh [start] [--profile P] [--instances N] [--dry-run]
#   scripts/setup_vllm.sh stop|status [--instances N] [--dry-run]
#   scripts/setup_vllm.sh logs [--instances N] [--no-follow] [--dry-run]
#
# With no command it starts the server, as the prototype's script does;
# options may come before or after the command. logs follows the log
# (Ctrl-C stops following; --no-follow prints the last 100 lines).
#
# Profiles (from the prototype's configuration):
#   dev          Llama-3.1-8B-Instruct, 8K context, 64 sequences, 90% GPU memory
#   production   Llama-3.1-8B-Instruct, 16K context, 128 sequences, 92%
#   low-latency  Llama-3.1-8B-Instruct, 4K context, 32 sequences, 85%
#   multi-gpu    Llama-3.1-70B-Instruct, 16K context, 256 sequences, tensor parallel 4
#
# Environment variables override a profile: MODEL, PORT (first instance; the
# others take the next ports), MAX_MODEL_LEN, MAX_NUM_SEQS, GPU_MEMORY_UTIL,
# TENSOR_PARALLEL, CACHE_DIR (Hugging Face cache, mounted into the
# container), HF_TOKEN (for gated models such as Llama), IMAGE, NAME,
# HEALTH_TIMEOUT (seconds to wait for /health). Every server runs with prefix
# caching on and --enable-prompt-tokens-details, so cached-token counts reach
# wfsched. --dry-run prints the exact docker commands and runs nothing.
set -euo pipefail

# usage prints the comment at the top of this file, and nothing after it.
usage() {
	awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"
	exit "${1:-2}"
}

die() {
	printf 'setup_vllm: error: %s\n' "$1" >&2
	if [ -n "${2:-}" ]; then printf 'setup_vllm: hint: %s\n' "$2" >&2; fi
	exit 1
}

cmd=""
profile="dev"
instances=1
dry_run=0
follow=1
while [ $# -gt 0 ]; do
	case "$1" in
	--profile) profile="${2:?--profile needs a value}"; shift 2 ;;
	--instances) instances="${2:?--instances needs a value}"; shift 2 ;;
	--dry-run) dry_run=1; shift ;;
	--no-follow) follow=0; shift ;;
	-h | --help | help) usage 0 ;;
	-*) die "unknown option $1" "see scripts/setup_vllm.sh --help" ;;
	*)
		[ -z "$cmd" ] || die "two commands: $cmd and $1" "give one of start, stop, status or logs"
		cmd="$1"
		shift
		;;
	esac
done
cmd="${cmd:-start}"
case "$instances" in
'' | *[!0-9]* | 0) die "--instances $instances: want a positive number" ;;
esac

case "$profile" in
dev) p_model="meta-llama/Llama-3.1-8B-Instruct"; p_len=8192; p_seqs=64; p_mem=0.90; p_tp=1 ;;
production) p_model="meta-llama/Llama-3.1-8B-Instruct"; p_len=16384; p_seqs=128; p_mem=0.92; p_tp=1 ;;
low-latency) p_model="meta-llama/Llama-3.1-8B-Instruct"; p_len=4096; p_seqs=32; p_mem=0.85; p_tp=1 ;;
multi-gpu) p_model="meta-llama/Llama-3.1-70B-Instruct"; p_len=16384; p_seqs=256; p_mem=0.90; p_tp=4 ;;
*) die "unknown profile $profile" "want dev, production, low-latency or multi-gpu" ;;
esac

MODEL="${MODEL:-$p_model}"
PORT="${PORT:-8000}"
MAX_MODEL_LEN="${MAX_MODEL_LEN:-$p_len}"
MAX_NUM_SEQS="${MAX_NUM_SEQS:-$p_seqs}"
GPU_MEMORY_UTIL="${GPU_MEMORY_UTIL:-$p_mem}"
TENSOR_PARALLEL="${TENSOR_PARALLEL:-$p_tp}"
CACHE_DIR="${CACHE_DIR:-$HOME/.cache/huggingface}"
IMAGE="${IMAGE:-vllm/vllm-openai:v0.10.1}"
NAME="${NAME:-wfsched-vllm}"
HEALTH_TIMEOUT="${HEALTH_TIMEOUT:-900}"

# run prints a command, quoted so it can be pasted, and runs it unless this
# is a dry run.
run() {
	printf '+'
	printf ' %q' "$@"
	printf '\n'
	if [ "$dry_run" -eq 0 ]; then "$@"; fi
}

container() { printf '%s-%d' "$NAME" "$1"; }

check_start() {
	[ "$dry_run" -eq 1 ] && return 0
	command -v docker >/dev/null 2>&1 || die "docker is not installed" "install Docker Engine, then the NVIDIA Container Toolkit"
	docker info >/dev/null 2>&1 || die "the Docker engine is not running or not reachable" "start it (sudo systemctl start docker) or add yourself to the docker group"
	docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q nvidia ||
		die "Docker has no NVIDIA runtime" "install nvidia-container-toolkit and run: sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker"
	command -v nvidia-smi >/dev/null 2>&1 || die "nvidia-smi not found: no NVIDIA driver" "install the NVIDIA driver for your GPU"
	gpus=$(nvidia-smi --query-gpu=index --format=csv,noheader | wc -l)
	need=$((instances * TENSOR_PARALLEL))
	[ "$gpus" -ge "$need" ] || die "$need GPUs needed ($instances instance(s) x tensor parallel $TENSOR_PARALLEL), $gpus found" "use fewer --instances or another profile"
	for ((i = 0; i < instances; i++)); do
		port=$((PORT + i))
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			die "port $port is taken" "stop what uses it, or set PORT"
		fi
	done
	case "$MODEL" in
	meta-llama/* | mistralai/*)
		[ -n "${HF_TOKEN:-}" ] || die "$MODEL is a gated model and HF_TOKEN is not set" "accept the licence on huggingface.co, create a token, export HF_TOKEN=..."
		;;
	esac
	mkdir -p "$CACHE_DIR"
}

start() {
	check_start
	for ((i = 0; i < instances; i++)); do
		port=$((PORT + i))
		first=$((i * TENSOR_PARALLEL))
		devices=$(seq -s, "$first" $((first + TENSOR_PARALLEL - 1)))
		run docker run -d --name "$(container "$i")" --gpus "\"device=$devices\"" --ipc=host \
			-p "127.0.0.1:$port:8000" -v "$CACHE_DIR:/root/.cache/huggingface" \
			-e HF_TOKEN "$IMAGE" \
			--model "$MODEL" --served-model-name "$MODEL" \
			--max-model-len "$MAX_MODEL_LEN" --max-num-seqs "$MAX_NUM_SEQS" \
			--gpu-memory-utilization "$GPU_MEMORY_UTIL" --tensor-parallel-size "$TENSOR_PARALLEL" \
			--enable-prefix-caching --enable-prompt-tokens-details
	done
	if [ "$dry_run" -eq 1 ]; then
		print_usage
		return 0
	fi
	for ((i = 0; i < instances; i++)); do
		url="http://127.0.0.1:$((PORT + i))"
		printf 'setup_vllm: waiting for %s/health (model loading can take minutes; up to %ss)\n' "$url" "$HEALTH_TIMEOUT"
		deadline=$((SECONDS + HEALTH_TIMEOUT))
		until curl -fs "$url/health" >/dev/null 2>&1; do
			if ! docker ps --format '{{.Names}}' | grep -qx "$(container "$i")"; then
				docker logs --tail 30 "$(container "$i")" >&2 || true
				die "container $(container "$i") stopped" "see its log above (out of memory? lower GPU_MEMORY_UTIL or MAX_MODEL_LEN)"
			fi
			[ "$SECONDS" -lt "$deadline" ] || die "$url did not become healthy in ${HEALTH_TIMEOUT}s" "scripts/setup_vllm.sh logs; raise HEALTH_TIMEOUT for large models"
			sleep 5
		done
	done
	print_usage
}

print_usage() {
	urls=()
	for ((i = 0; i < instances; i++)); do urls+=("http://127.0.0.1:$((PORT + i))"); done
	printf 'setup_vllm: %d vLLM server(s) for %s:\n' "$instances" "$MODEL"
	printf '  %s/v1\n' "${urls[@]}"
	if [ "$instances" -eq 1 ]; then
		printf 'Run: bin/wfsched run --dag traces/research-team.json --endpoint %s\n' "${urls[0]}"
	else
		endpoints=""
		for u in "${urls[@]}"; do endpoints="$endpoints --endpoint $u"; done
		printf 'Run behind the router: bin/wfsched run --dag traces/agents-40.json%s --routing-logic workflow-aware --workflows 16 --concurrency 16\n' "$endpoints"
	fi
}

stop() {
	for ((i = 0; i < instances; i++)); do
		run docker rm -f "$(container "$i")"
	done
}

status() {
	for ((i = 0; i < instances; i++)); do
		run docker ps -a --filter "name=^$(container "$i")\$" --format '{{.Names}}\t{{.Status}}\t{{.Ports}}'
		if [ "$dry_run" -eq 0 ]; then
			if curl -fs "http://127.0.0.1:$((PORT + i))/health" >/dev/null 2>&1; then
				echo "healthy: http://127.0.0.1:$((PORT + i))"
			else
				echo "not answering: http://127.0.0.1:$((PORT + i))"
			fi
		fi
	done
}

logs() {
	if [ "$follow" -eq 0 ] || [ "$instances" -eq 1 ]; then
		flags=(--tail 100)
		[ "$follow" -eq 1 ] && flags=(--follow --tail 100)
		for ((i = 0; i < instances; i++)); do
			run docker logs "${flags[@]}" "$(container "$i")"
		done
		return
	fi
	# Several servers: follow them all at once, each line marked.
	for ((i = 0; i < instances; i++)); do
		name=$(container "$i")
		printf '+ docker logs --follow --tail 100 %q (lines marked [%s])\n' "$name" "$name"
		if [ "$dry_run" -eq 0 ]; then
			docker logs --follow --tail 100 "$name" 2>&1 | sed "s/^/[$name] /" &
		fi
	done
	if [ "$dry_run" -eq 0 ]; then wait; fi
}

case "$cmd" in
start) start ;;
stop) stop ;;
status) status ;;
logs) logs ;;
*) die "unknown command $cmd" "want start, stop, status or logs" ;;
esac
