package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/wfsched/wfsched/report"
	"github.com/wfsched/wfsched/router"
	"github.com/wfsched/wfsched/scheduler"
)

// copyDir copies a fixture folder, so tests never write into testdata.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestReportComparisonGolden re-renders a saved comparison and checks the
// text, JSON, CSV and Markdown outputs against golden files, and that the
// HTML report is self-contained.
func TestReportComparisonGolden(t *testing.T) {
	dir := copyDir(t, filepath.Join("testdata", "comparison"))
	code, out, errOut := run(t, "report", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	golden(t, "report-comparison-table", out)
	for _, f := range []string{"comparison.json", "comparison.csv", "comparison.md"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		golden(t, "report-"+f, string(b))
	}
	// comparison.txt is the table as printed, where the prototype's users
	// look for it.
	if b, err := os.ReadFile(filepath.Join(dir, "comparison.txt")); err != nil || string(b) != out {
		t.Errorf("comparison.txt differs from the printed table (%v):\n%s", err, b)
	}
	checkHTML(t, filepath.Join(dir, "report.html"), 5, "Makespan per workflow", "Time to first token (CDF)", "Timeline: parallel", "critical path")
	t.Run("in a browser", func(t *testing.T) { checkPage(t, filepath.Join(dir, "report.html")) })
}

// checkHTML checks a report is one self-contained page with its figures.
func checkHTML(t *testing.T, path string, figures int, want ...string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h := string(b)
	if !strings.HasPrefix(h, "<!DOCTYPE html>") || !strings.HasSuffix(strings.TrimSpace(h), "</html>") {
		t.Errorf("%s is not a whole HTML page", path)
	}
	if n, m := strings.Count(h, "<svg"), strings.Count(h, "</svg>"); n != figures || m != n {
		t.Errorf("%s: %d <svg> and %d </svg>, want %d figures", path, n, m, figures)
	}
	// Nothing is fetched: no src= or href= to anything, no @import.
	if regexp.MustCompile(`(?i)(src|href)\s*=|@import|<script`).MatchString(h) {
		t.Errorf("%s loads an outside resource", path)
	}
	for _, w := range want {
		if !strings.Contains(h, w) {
			t.Errorf("%s lacks %q", path, w)
		}
	}
}

func TestReportRunAndPNG(t *testing.T) {
	dir := copyDir(t, filepath.Join("testdata", "comparison", "runs", "parallel-1"))
	code, out, errOut := run(t, "report", dir, "--png")
	if code != 0 || !strings.Contains(out, "policy parallel") || !strings.Contains(out, "report.html") {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	checkHTML(t, filepath.Join(dir, "report.html"), 3, "End-to-end latency (CDF)", "Timeline: parallel")
	pngs, _ := filepath.Glob(filepath.Join(dir, "png", "*.png"))
	if len(pngs) != 3 {
		t.Errorf("PNGs %v", pngs)
	}
	for _, p := range pngs {
		b, _ := os.ReadFile(p)
		if len(b) < 1000 || string(b[1:4]) != "PNG" {
			t.Errorf("%s is not a PNG", p)
		}
	}
	if code, _, errOut := run(t, "report", t.TempDir()); code != 2 || !strings.Contains(errOut, "not a run folder") {
		t.Errorf("empty folder: exit %d %s", code, errOut)
	}
}

func TestCompareSavedRuns(t *testing.T) {
	fix := copyDir(t, filepath.Join("testdata", "comparison"))
	out := t.TempDir()
	code, stdout, errOut := run(t, "compare", filepath.Join(fix, "runs", "sequential-1"), filepath.Join(fix, "runs", "parallel-1"), "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(stdout, "speedup vs sequential-1") || !strings.Contains(stdout, "unknown (one run)") {
		t.Errorf("stdout:\n%s", stdout)
	}
	// A saved comparison's policies become arms.
	code, stdout, errOut = run(t, "compare", fix, filepath.Join(fix, "runs", "parallel-2"), "--out", out)
	if code != 0 || !strings.Contains(stdout, "comparison:sequential") || !strings.Contains(stdout, "parallel-2") {
		t.Errorf("exit %d: %s %s", code, stdout, errOut)
	}
	if code, _, errOut := run(t, "compare", filepath.Join(fix, "runs", "parallel-1"), "--out", out); code != 2 || !strings.Contains(errOut, "at least two") {
		t.Errorf("one run: exit %d %s", code, errOut)
	}
	// A run of another trace is refused, not turned into a speedup.
	other := t.TempDir()
	if code, _, errOut := run(t, "run", "--dag", example, "--time-scale", "0.05", "--out", other); code != 0 {
		t.Fatal(errOut)
	}
	code, stdout, errOut = run(t, "compare", filepath.Join(fix, "runs", "sequential-1"), runDir(t, other), "--out", out)
	if code != 2 || !strings.Contains(errOut, "different workloads") || strings.Contains(stdout, "speedup") {
		t.Errorf("runs of different traces: exit %d\n%s%s", code, stdout, errOut)
	}
}

// compareFanout runs a small sequential-vs-parallel comparison (seed 1)
// and returns each arm's mean makespan and the comparison folder. Three
// iterations: over two, the 95% interval of the speedup (Student's t with
// one degree of freedom, 12.7) called a 2.2x speedup not significant when
// a loaded CI machine running the race detector moved the two by a tenth.
func compareFanout(t testing.TB) (map[string]float64, report.ComparisonDoc, string) {
	t.Helper()
	out := t.TempDir()
	code, stdout, errOut := run(t, "compare", "--dag", "../../traces/fanout-12.json", "--policies", "sequential,parallel",
		"--iterations", "3", "--time-scale", "0.1", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, stdout, errOut)
	}
	dir := runDir(t, out)
	b, err := os.ReadFile(filepath.Join(dir, "comparison.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d report.ComparisonDoc
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	makespans := map[string]float64{}
	for _, a := range d.Comparison.Arms {
		makespans[a.Label] = float64(a.Figures["makespan_s"].Mean)
	}
	return makespans, d, dir
}

// TestCompareLiveRepeatable runs the same small comparison twice with the
// same seed: parallel is significantly faster than sequential both times,
// and the makespans agree within 25%, which only a run that ignored its
// configuration would miss. How closely they agree is a timing figure,
// measured by BenchmarkCompareRepeatable (the target there is 5%): on a
// shared machine under the race detector a timed bound that tight fails
// now and then (seen once at 8.1%).
func TestCompareLiveRepeatable(t *testing.T) {
	var makespans [2]map[string]float64
	for k := range makespans {
		var d report.ComparisonDoc
		var dir string
		makespans[k], d, dir = compareFanout(t)
		for _, a := range d.Comparison.Arms {
			if a.Label == "parallel" && (!a.Significant || a.Speedup.Mean < 2) {
				t.Errorf("parallel speedup %+v significant %v", a.Speedup, a.Significant)
			}
		}
		for _, f := range []string{"comparison.csv", "comparison.md", "report.html", "runs/parallel-2/nodes.jsonl"} {
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				t.Error(err)
			}
		}
	}
	for arm, m := range makespans[0] {
		if d := math.Abs(m-makespans[1][arm]) / m; d > 0.25 {
			t.Errorf("%s makespan %.3f vs %.3f: %.1f%% apart", arm, m, makespans[1][arm], 100*d)
		} else {
			t.Logf("%s makespan %.3f vs %.3f s: %.2f%% apart", arm, m, makespans[1][arm], 100*d)
		}
	}
}

// BenchmarkCompareRepeatable runs the comparison twice per iteration and
// reports the largest relative difference between the two mean makespans
// of an arm (target: under 5%).
//
//	go test ./cmd/wfsched -run '^$' -bench CompareRepeatable -benchtime 3x
func BenchmarkCompareRepeatable(b *testing.B) {
	worst := 0.0
	for b.Loop() {
		first, _, _ := compareFanout(b)
		second, _, _ := compareFanout(b)
		for arm, m := range first {
			worst = max(worst, math.Abs(m-second[arm])/m)
		}
	}
	b.ReportMetric(100*worst, "%apart-max")
}

func TestCompareSingleChainSaysSo(t *testing.T) {
	out := t.TempDir()
	code, stdout, errOut := run(t, "compare", "--dag", "../../traces/chain-16.json", "--policies", "sequential,parallel",
		"--iterations", "1", "--time-scale", "0.05", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(stdout, "single chain") || !strings.Contains(stdout, "no (single chain)") {
		t.Errorf("stdout:\n%s", stdout)
	}
}

// TestCompareEveryPolicyOrLogic: the design card's "compare policies", and
// "compare routing-logics", compare every one on --dag.
func TestCompareEveryPolicyOrLogic(t *testing.T) {
	out := t.TempDir()
	code, stdout, errOut := run(t, "compare", "policies", "--dag", "../../traces/fanout-12.json", "--iterations", "1", "--time-scale", "0.05", "--out", out)
	if code != 0 {
		t.Fatalf("compare policies: exit %d: %s", code, errOut)
	}
	for _, p := range scheduler.Policies() {
		if !strings.Contains(stdout, p) {
			t.Errorf("compare policies: %s missing from\n%s", p, stdout)
		}
	}
	code, stdout, errOut = run(t, "compare", "routing-logics", "--dag", "../../traces/agents-40.json", "--instances", "2", "--workflows", "2",
		"--concurrency", "2", "--iterations", "1", "--time-scale", "0.05", "--out", out)
	if code != 0 {
		t.Fatalf("compare routing-logics: exit %d: %s", code, errOut)
	}
	for _, l := range router.Logics() {
		if !strings.Contains(stdout, l) {
			t.Errorf("compare routing-logics: %s missing from\n%s", l, stdout)
		}
	}
	if code, _, errOut := run(t, "compare", "policies"); code != 2 || !strings.Contains(errOut, "needs --dag") {
		t.Errorf("compare policies without --dag: exit %d %s", code, errOut)
	}
}
