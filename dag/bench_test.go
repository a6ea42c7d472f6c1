package dag

import (
	"bufio"
	"os"
	"path/filepath"
	"runtime"
	"testing"

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
