package main

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/wfsched/wfsched/internal/testenv"
)

// layered100k writes the 100,000-node layered DAG the inspect benchmarks
// read (WFSCHED_INSPECT_FILE names one instead).
func layered100k(b *testing.B) string {
	if path := os.Getenv("WFSCHED_INSPECT_FILE"); path != "" {
		return path
	}
	path := filepath.Join(b.TempDir(), "layered-100k.json")
	if code := execute(context.Background(), []string{"gen", "--shape", "layered", "--nodes", "100000", "-o", path}, io.Discard, io.Discard); code != 0 {
		b.Fatal("gen failed")
	}
	return path
}

// BenchmarkInspect100k runs `wfsched inspect` in-process on a 100,000-node
// layered DAG (for profiling: -cpuprofile).
func BenchmarkInspect100k(b *testing.B) {
	path := layered100k(b)
	b.ResetTimer()
	for b.Loop() {
		if code := execute(context.Background(), []string{"inspect", path}, io.Discard, io.Discard); code != 0 {
			b.Fatal("inspect failed")
		}
	}
}

// BenchmarkInspectVsPython times, end to end as processes, `wfsched
// inspect` and the shared Python yardstick (../shared/bench/pykahn.py:
// json.load and Kahn's algorithm) on the same 100,000-node file, runs
// interleaved, and reports each one's median and the ratio (the target:
// wfsched at least 3 times faster).
//
//	WFSCHED_SHARED_TRACES=../shared/traces go test ./cmd/wfsched -run '^$' -bench InspectVsPython -benchtime 5x
func BenchmarkInspectVsPython(b *testing.B) {
	py := filepath.Join(filepath.Dir(testenv.SharedTraces(b)), "bench", "pykahn.py")
	if _, err := os.Stat(py); err != nil {
		b.Skipf("no yardstick: %v", err)
	}
	python, err := exec.LookPath("python3")
	if err != nil {
		b.Skip("python3 is not installed")
	}
	bin := filepath.Join(b.TempDir(), "wfsched")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	path := layered100k(b)
	timed := func(name string, args ...string) time.Duration {
		start := time.Now()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			b.Fatalf("%s: %v\n%.500s", name, err, out)
		}
		return time.Since(start)
	}
	var ws, ps []time.Duration
	b.ResetTimer()
	for b.Loop() {
		ws = append(ws, timed(bin, "inspect", path))
		ps = append(ps, timed(python, py, path))
	}
	median := func(d []time.Duration) time.Duration {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[len(d)/2]
	}
	w, p := median(ws), median(ps)
	b.ReportMetric(w.Seconds(), "wfsched-s")
	b.ReportMetric(p.Seconds(), "python-s")
	b.ReportMetric(p.Seconds()/w.Seconds(), "times-faster")
}
