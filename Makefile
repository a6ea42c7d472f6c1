# wfsched: make run (the main job on the embedded default), make test.
GO      ?= go
BIN     ?= bin/wfsched
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
RUN_TRACE ?= traces/research-team.json

.PHONY: all build test lint bench bench-suite run fuzz clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/wfsched

# Go tests, then the official openai Node client against the engine
# (skipped when Node.js is absent).
test:
	$(GO) test -race -count=1 ./...
	bash scripts/openai-conformance.sh

lint:
	bash scripts/check_tree.sh
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	@if command -v staticcheck >/dev/null 2>&1; then staticcheck ./...; else echo "staticcheck not installed: skipped"; fi
	@if command -v shellcheck >/dev/null 2>&1; then shellcheck scripts/*.sh scripts/lib/*.sh; else echo "shellcheck not installed: skipped"; fi

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# The default benchmark suite, gated against the committed baseline.
bench-suite: build
	$(BIN) bench --suite benchmarks/default.yaml --baseline benchmarks/baseline.json --max-regression 10

# The main job on the embedded default: replay a shipped example trace on
# the in-process engine and write results/<run-id>/.
run: build
	$(BIN) run --dag $(RUN_TRACE)

# Short fuzzing of every importer, of the router's request parsing (its
# bodies, and its heads against net/http's), of its reading of backend
# answers (against net/http's ReadResponse) and of
# the engine's guided decoding
# (FUZZTIME per target).
FUZZTIME ?= 20s
fuzz:
	@for t in FuzzParseNative FuzzParseDAGJSON FuzzParseSteps FuzzParseAppWorld FuzzParseChatDev FuzzParseMetaGPT FuzzParseCapture FuzzParseOTel; do \
		$(GO) test ./dag -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) || exit 1; done
	@for t in FuzzParseCompletion FuzzStripField FuzzParseHead FuzzReadAnswer; do \
		$(GO) test ./router -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) || exit 1; done
	@for t in FuzzGuidedJSON FuzzGuidedRegex; do \
		$(GO) test ./sim -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) || exit 1; done

clean:
	rm -rf bin
