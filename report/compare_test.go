package report

import (
	"math"
	"strings"
	"testing"

	"github.com/wfsched/wfsched/metrics"
)

func arm(label string, mean, lo, hi float64, n int, significant bool, ttft, hit float64) metrics.ArmResult {
	return metrics.ArmResult{Label: label, Speedup: metrics.Estimate{N: n, Mean: metrics.Float(mean), Lo: metrics.Float(lo), Hi: metrics.Float(hi)},
		Significant: significant, Figures: map[string]metrics.Estimate{
			"ttft_p50_s": {N: n, Mean: metrics.Float(ttft)}, "cache_hit_rate": {N: n, Mean: metrics.Float(hit)}}}
}

// TestComparisonAnswer: the sentence every comparison opens with says what
// its figures support, and no more.
func TestComparisonAnswer(t *testing.T) {
	nan := math.NaN()
	base := arm("sequential", 1, 1, 1, 3, false, 0.029, 0.3)
	for _, tc := range []struct {
		name   string
		doc    ComparisonDoc
		want   []string
		refuse []string
	}{
		{"significant speedup", ComparisonDoc{ArmsAre: "policies", Comparison: metrics.Comparison{Baseline: "sequential", Arms: []metrics.ArmResult{
			base, arm("dependency-aware", 3.1, 3.0, 3.2, 3, true, 0.2, 0.3), arm("parallel", 6.9, 6.85, 6.93, 3, true, 0.353, 0.3)}}},
			[]string{"parallel finishes workflows 6.90x faster than sequential (95% CI 6.85-6.93)", "TTFT p50 rises from 29.0 ms to 353.0 ms"}, nil},
		{"not significant", ComparisonDoc{ArmsAre: "policies", Comparison: metrics.Comparison{Baseline: "sequential", Arms: []metrics.ArmResult{
			base, arm("parallel", 1.02, 0.97, 1.08, 3, false, 0.03, 0.3)}}},
			[]string{"No arm differs significantly from sequential", "1.02x, 95% CI 0.97-1.08"}, []string{"faster"}},
		{"one iteration", ComparisonDoc{ArmsAre: "policies", Comparison: metrics.Comparison{Baseline: "sequential", Arms: []metrics.ArmResult{
			base, arm("parallel", 2, nan, nan, 1, false, 0.03, 0.3)}}},
			[]string{"in one iteration (no interval"}, []string{"faster than"}},
		{"slower", ComparisonDoc{ArmsAre: "policies", Comparison: metrics.Comparison{Baseline: "sequential", Arms: []metrics.ArmResult{
			base, arm("parallel", 0.8, 0.75, 0.85, 3, true, 0.02, 0.3)}}},
			[]string{"No arm beats sequential", "TTFT p50 falls"}, nil},
		{"single chain", ComparisonDoc{ArmsAre: "policies", SingleChain: true, Comparison: metrics.Comparison{Baseline: "sequential", Arms: []metrics.ArmResult{
			base, arm("parallel", 1.5, 1.4, 1.6, 3, true, 0.03, 0.3)}}},
			[]string{"No policy can shorten these workflows"}, []string{"1.50x"}},
		{"routing logics", ComparisonDoc{ArmsAre: "routing-logics", Comparison: metrics.Comparison{Baseline: "roundrobin", Arms: []metrics.ArmResult{
			arm("roundrobin", 1, 1, 1, 3, false, 0.03, 0.736), arm("workflow-aware", 1.13, 1.1, 1.16, 3, true, 0.03, 0.906)}}},
			[]string{"workflow-aware finishes workflows 1.13x faster than roundrobin", "prefix-cache hit rate (responses) rises from 73.6% to 90.6%"}, []string{"TTFT"}},
	} {
		tc.doc.FillAnswer()
		for _, w := range tc.want {
			if !strings.Contains(tc.doc.Answer, w) {
				t.Errorf("%s: %q lacks %q", tc.name, tc.doc.Answer, w)
			}
		}
		for _, r := range tc.refuse {
			if strings.Contains(tc.doc.Answer, r) {
				t.Errorf("%s: %q claims %q", tc.name, tc.doc.Answer, r)
			}
		}
	}
}

// TestComparisonSaysOneThing: what the table, the answer and the note say
// of one exact virtual run, one wall-clock run and saved runs agree (a
// virtual compare said "exactly" beside "run --iterations 3 before
// trusting a difference", a "95% CI" row with no interval, and that TTFT
// "rises from 7.6 ms to 7.6 ms").
func TestComparisonSaysOneThing(t *testing.T) {
	nan := math.NaN()
	one := func(clock, armsAre string) ComparisonDoc {
		d := ComparisonDoc{ArmsAre: armsAre, Iterations: 1, Seed: 7, Backend: Backend{Clock: clock}, Traces: []TraceInfo{{ID: "t"}},
			Comparison: metrics.Comparison{Baseline: "sequential", Arms: []metrics.ArmResult{
				arm("sequential", 1, nan, nan, 1, false, 0.0076, 0.3), arm("parallel", 1.79, nan, nan, 1, false, 0.00761, 0.3)}}}
		d.FillNote()
		d.FillAnswer()
		return d
	}
	for _, tc := range []struct {
		name      string
		doc       ComparisonDoc
		note, sig string
		refuse    []string
	}{
		{"one virtual run", one("virtual", "policies"), "", "exact for seed 7", []string{"95% CI", "before trusting", "rises from 7.6 ms to 7.6 ms"}},
		{"one wall-clock run", one("wall", "policies"), "run --iterations 3", "unknown (one run)", []string{"95% CI", "exactly"}},
		{"saved runs", one("virtual", "runs"), "one saved run", "unknown (one run)", []string{"95% CI", "run --iterations 3 or more", "exactly"}},
	} {
		_, rows := comparisonRows(tc.doc)
		var table strings.Builder
		for _, r := range rows {
			table.WriteString(strings.Join(r, " | ") + "\n")
		}
		all := tc.doc.Answer + "\n" + tc.doc.Note + "\n" + table.String()
		if !strings.Contains(tc.doc.Note, tc.note) || (tc.note == "" && tc.doc.Note != "") {
			t.Errorf("%s: note %q, want one with %q", tc.name, tc.doc.Note, tc.note)
		}
		if !strings.Contains(table.String(), tc.sig) {
			t.Errorf("%s: significance row lacks %q:\n%s", tc.name, tc.sig, table.String())
		}
		for _, r := range tc.refuse {
			if strings.Contains(all, r) {
				t.Errorf("%s: says %q:\n%s", tc.name, r, all)
			}
		}
		if !strings.Contains(tc.doc.Answer, "TTFT p50 stays at 7.6 ms") {
			t.Errorf("%s: answer %q", tc.name, tc.doc.Answer)
		}
	}
}

func TestHuman(t *testing.T) {
	for v, want := range map[float64]string{5110: "5.11k", 0.00000763: "0.00000763", 999.6: "1000", 1.5e6: "1.5M", 12.345: "12.3", 0: "0", -2500: "-2.5k", 0.25: "0.25"} {
		if got := human(v); got != want {
			t.Errorf("human(%v) = %q, want %q", v, got, want)
		}
	}
}
