package dag

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wfsched/wfsched/capture"
	"github.com/wfsched/wfsched/tokenizer"
)

// BenchmarkLoad100k measures the foundation's target: a generated DAG of
// 100,000 nodes and about 200,000 edges, read from wfsched's own format,
// validated and sorted, and its critical path found (target: under 1 s,
// peak memory under 500 MiB; see the README for the figures measured).
func BenchmarkLoad100k(b *testing.B) {
	enc := tokenizer.MustDefault()
	g, err := Generate(GenConfig{Shape: "layered", Nodes: 100_000, Seed: 1}, enc)
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "layered-100k.json")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	if err := WriteJSON(w, g); err != nil {
		b.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	st, _ := os.Stat(path)
	b.Logf("%d nodes, %d edges, %.1f MiB file", len(g.Nodes), len(g.Edges), float64(st.Size())/(1<<20))
	g = nil
	runtime.GC()

	var peak uint64
	b.ResetTimer()
	for b.Loop() {
		gs, err := ReadFile(path, Options{Encoder: enc})
		if err != nil {
			b.Fatal(err)
		}
		topo, err := Analyze(gs[0])
		if err != nil {
			b.Fatal(err)
		}
		path, _ := CriticalPath(topo, CostModel{}.Costs(gs[0]))
		if len(path.Nodes) == 0 {
			b.Fatal("no critical path")
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
	}
	b.ReportMetric(float64(peak)/(1<<20), "MiB-heap-inuse")
}

func BenchmarkAnalyze(b *testing.B) {
	enc := tokenizer.MustDefault()
	for _, n := range []int{1_000, 100_000} {
		g, err := Generate(GenConfig{Shape: "layered", Nodes: n, Seed: 1}, enc)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(filepath.Base(g.ID), func(b *testing.B) {
			for b.Loop() {
				topo, err := Analyze(g)
				if err != nil {
					b.Fatal(err)
				}
				CriticalPath(topo, CostModel{}.Costs(g))
			}
		})
	}
}

func BenchmarkParseSharedSteps(b *testing.B) {
	path := filepath.Join(os.Getenv("WFSCHED_SHARED_TRACES"), "steps", "appworld.json")
	if _, err := os.Stat(path); err != nil || os.Getenv("WFSCHED_SHARED_TRACES") == "" {
		b.Skip("WFSCHED_SHARED_TRACES not set (use an absolute path for benchmarks)")
	}
	st, _ := os.Stat(path)
	b.SetBytes(st.Size())
	for b.Loop() {
		if _, err := ReadFile(path, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFromCapture rebuilds a hash-mode capture of 200 workflows, each
// an agent's 12-step tool loop (a growing conversation) and a sub-agent
// called as a tool: 2,800 calls.
func BenchmarkFromCapture(b *testing.B) {
	enc := tokenizer.MustDefault()
	var recs []capture.Record
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := t0
	msg := func(role, text string, calls []capture.ToolCall, id string) capture.Message {
		return capture.NewMessage(role, text, calls, id, capture.Hash, enc)
	}
	for w := range 200 {
		wf := fmt.Sprintf("wf-%d", w)
		conv := []capture.Message{msg("system", "You research with the tools.", nil, ""), msg("user", fmt.Sprintf("Question %d about caching.", w), nil, "")}
		for s := range 12 {
			call := capture.ToolCall{ID: fmt.Sprintf("call-%d-%d", w, s), Name: "search", Arguments: fmt.Sprintf(`{"q": "step %d of workflow %d"}`, s, w)}
			out := msg("assistant", "", []capture.ToolCall{call}, "")
			recs = append(recs, capture.Record{V: capture.Version, Workflow: wf, Agent: "researcher", RequestID: fmt.Sprintf("r-%d-%d", w, s),
				Status: 200, Arrival: at, End: at.Add(50 * time.Millisecond), Content: capture.Hash, Messages: slices.Clone(conv), Output: out})
			at = at.Add(100 * time.Millisecond)
			conv = append(conv, out, msg("tool", strings.Repeat(fmt.Sprintf("result %d of step %d ", w, s), 20), nil, call.ID))
			if s == 5 {
				sub := msg("assistant", strings.Repeat(fmt.Sprintf("the editor's answer %d ", w), 10), nil, "")
				recs = append(recs, capture.Record{V: capture.Version, Workflow: wf, Agent: "editor", RequestID: fmt.Sprintf("e-%d", w), Status: 200,
					Arrival: at, End: at.Add(50 * time.Millisecond), Content: capture.Hash, Messages: []capture.Message{msg("user", fmt.Sprintf("step 5 of workflow %d", w), nil, "")}, Output: sub})
				at = at.Add(100 * time.Millisecond)
			}
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		gs, err := FromCapture(recs)
		if err != nil || len(gs) != 200 {
			b.Fatal(err, len(gs))
		}
	}
}
