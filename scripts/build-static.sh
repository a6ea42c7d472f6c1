#!/usr/bin/env bash
# Builds wfsched as one static binary (no cgo, no libc), as the Dockerfile's
# build stage does, and checks that it is static and runs.
# Usage: scripts/build-static.sh OUTPUT [VERSION from $VERSION, default git describe]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/build-static.sh OUTPUT}
version=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$out" ./cmd/wfsched
if command -v ldd >/dev/null 2>&1 && ldd "$out" 2>&1 | grep -q "=>"; then
	echo "build-static: $out links shared libraries:" >&2
	ldd "$out" >&2
	exit 1
fi
"$out" --version >/dev/null
echo "build-static: $out ($(du -h "$out" | cut -f1), static)"
