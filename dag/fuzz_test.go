package dag

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wfsched/wfsched/internal/gzfile"
	"github.com/wfsched/wfsched/internal/testenv"
	"github.com/wfsched/wfsched/tokenizer"
)

// fuzzParse is the property every importer must keep: no panic on any
// input; a parsed graph gets token estimates and either sorts or fails
// with a typed error. Rebuilt graphs (every format but native) must sort:
// the builder only adds edges from earlier nodes to later ones.
func fuzzParse(t *testing.T, data []byte, format string) {
	// A slow input is a bug too (it would stall a server): crash the
	// process so that the fuzzer keeps the input.
	watchdog := time.AfterFunc(10*time.Second, func() {
		panic(fmt.Sprintf("%s input of %d bytes took over 10 s: %.200q", format, len(data), data))
	})
	defer watchdog.Stop()
	gs, err := Parse(data, Options{Format: format})
	if err != nil {
		return
	}
	enc := tokenizer.MustDefault()
	for _, g := range gs {
		EstimateTokens(g, enc)
		topo, err := Analyze(g)
		if err == nil {
			CriticalPath(topo, CostModel{}.Costs(g))
			continue
		}
		if format != "native" {
			t.Fatalf("rebuilt %s graph does not sort: %v", format, err)
		}
		var ce *CycleError
		var ne *NodeError
		var ee *EdgeError
		if !errors.As(err, &ce) && !errors.As(err, &ne) && !errors.As(err, &ee) && !errors.Is(err, ErrEmpty) {
			t.Fatalf("untyped error: %v", err)
		}
	}
}

// addSeeds adds testdata/name and, when the shared traces are there, small
// samples of the given shared files (the first two records of step lists).
func addSeeds(f *testing.F, name string, shared ...string) {
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	if os.Getenv(testenv.SharedTracesVar) == "" {
		return
	}
	dir := testenv.SharedTraces(f)
	for _, pattern := range shared {
		files, _ := filepath.Glob(filepath.Join(dir, pattern))
		for _, p := range files[:min(3, len(files))] {
			data, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			var recs []json.RawMessage
			if json.Unmarshal(data, &recs) == nil && len(recs) > 2 {
				data, _ = json.Marshal(recs[:2])
			}
			f.Add(data)
		}
	}
}

func FuzzParseNative(f *testing.F) {
	addSeeds(f, "native-seed.json")
	f.Add([]byte(`{"format": "wfsched-dag", "version": 1, "nodes": [{"id": "a", "kind": "llm"}, {"id": "b", "kind": "tool"}], "edges": [{"from": "a", "to": "b", "type": "observation"}, {"from": "b", "to": "a", "type": "message"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzParse(t, data, "native")
		checkSame(t, "input", data) // the parallel decode agrees with encoding/json
	})
}

func FuzzParseDAGJSON(f *testing.F) {
	addSeeds(f, "dagjson-seed.json", "dag-json/AppWorld/*.json", "dag-json/AG2/*.json", "dag-json/HyperAgent/*.json")
	f.Fuzz(func(t *testing.T, data []byte) { fuzzParse(t, data, "dag-json") })
}

func FuzzParseSteps(f *testing.F) {
	addSeeds(f, "steps-seed.json", "steps/*.json")
	f.Fuzz(func(t *testing.T, data []byte) { fuzzParse(t, data, "steps") })
}

func FuzzParseAppWorld(f *testing.F) {
	addSeeds(f, "appworld-seed.txt", "appworld-raw/*.txt")
	f.Fuzz(func(t *testing.T, data []byte) { fuzzParse(t, data, "appworld-log") })
}

func FuzzParseChatDev(f *testing.F) {
	addSeeds(f, "chatdev-seed.txt", "other/chatdev_*.txt")
	f.Fuzz(func(t *testing.T, data []byte) { fuzzParse(t, data, "chatdev-log") })
}

func FuzzParseMetaGPT(f *testing.F) {
	addSeeds(f, "metagpt-seed.json", "other/metagpt_run_*.json")
	f.Fuzz(func(t *testing.T, data []byte) { fuzzParse(t, data, "metagpt-run") })
}

func FuzzParseCapture(f *testing.F) {
	addSeeds(f, "capture-seed.jsonl")
	// A workflow of the corpus in each content mode: tool calls with
	// canonical-argument hashes and values, a sub-agent, inferred agents.
	for _, mode := range []string{"full", "hash", "none"} {
		r, err := gzfile.Open(filepath.Join("testdata", "corpus", mode, "capture.jsonl.gz"))
		if err != nil {
			f.Fatal(err)
		}
		data, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			f.Fatal(err)
		}
		// Its first three calls: small, for the fuzzer minimizes each new
		// input it keeps, which takes long on large ones.
		var seed []byte
		n := 0
		for line := range bytes.Lines(data) {
			if n < 3 && bytes.Contains(line, []byte(`"oa-astools-noid-1"`)) {
				seed, n = append(seed, line...), n+1
			}
		}
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) { fuzzParse(t, data, "capture") })
}
