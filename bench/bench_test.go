package bench

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wfsched/wfsched/metrics"
)

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "t.json"), []byte("{}"), 0o644)
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown key names its line", "name: s\ncases:\n  - name: a\n    traces: [t.json]\n    polices: [parallel]\n", "s.yaml: line 5: polices: unknown key"},
		{"missing trace", "name: s\ncases:\n  - name: a\n    traces: [nope.json]\n", "cases[0].traces: nope.json"},
		{"bad policy", "name: s\ncases:\n  - name: a\n    traces: [t.json]\n    policies: [fastest]\n", `unknown policy "fastest"`},
		{"bad figure", "name: s\ntrack: [speed]\ncases:\n  - name: a\n    traces: [t.json]\n", `track: unknown figure "speed"`},
		{"logics need instances", "name: s\ncases:\n  - name: a\n    traces: [t.json]\n    routing_logics: [roundrobin]\n", "routing logics need instances > 1"},
		{"bad value type", "name: s\niterations: many\ncases: []\n", "line 2"},
		{"negative scale", "name: s\ntime_scale: -1\ncases:\n  - name: a\n    traces: [t.json]\n", "time_scale: -1"},
		{"duplicate case", "name: s\ncases:\n  - name: a\n    traces: [t.json]\n  - name: a\n    traces: [t.json]\n", "unique name"},
		{"negative rate", "name: s\ncases:\n  - name: a\n    traces: [t.json]\n    rate: -2\n", "must not be negative"},
		{"burstiness without rate", "name: s\ncases:\n  - name: a\n    traces: [t.json]\n    burstiness: 0.5\n", "set rate"},
		{"empty", "", "empty suite"},
		{"no name", "cases: []\n", "name: missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, "s.yaml")
			os.WriteFile(p, []byte(tt.yaml), 0o644)
			_, err := Load(p)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
	p := filepath.Join(dir, "ok.yaml")
	os.WriteFile(p, []byte("name: ok\ncases:\n  - name: a\n    traces: [t.json]\n    policies: [sequential, parallel]\n    routing_logics: [roundrobin, workflow_aware]\n    instances: 2\n"), 0o644)
	s, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if s.Iterations != 3 || s.TimeScale != 0.25 || len(s.Track) != 3 || len(s.Cases[0].Arms()) != 4 || s.Cases[0].Arms()[1].Label != "sequential+workflow_aware" {
		t.Errorf("defaults and arms: %+v %+v", s, s.Cases[0].Arms())
	}
}

func est(vals ...float64) metrics.Estimate { return metrics.Estimate95(vals) }

func result(makespan metrics.Estimate, hit metrics.Estimate) *Result {
	return &Result{Suite: "s", Track: []string{"makespan_s", "cache_hit_rate"}, Cases: []CaseResult{{Name: "c", Arms: []ArmResult{{
		Label: "parallel", Figures: map[string]metrics.Estimate{"makespan_s": makespan, "cache_hit_rate": hit}}}}}}
}

func TestGate(t *testing.T) {
	base := result(est(10, 10.1, 9.9, 10), est(0.9, 0.91, 0.9))
	tests := []struct {
		name     string
		cur      *Result
		makespan string
		hit      string
	}{
		{"20% slower, significant", result(est(12, 12.1, 11.9, 12), est(0.9, 0.91, 0.9)), Regression, Unchanged},
		{"5% slower is under the threshold", result(est(10.5, 10.6, 10.4, 10.5), est(0.9, 0.9, 0.91)), Unchanged, Unchanged},
		{"noisy 20% is not significant", result(est(6, 18, 9, 15), est(0.9, 0.91, 0.9)), NotSig, Unchanged},
		{"hit rate falling is worse", result(est(10.05, 10.1, 9.9, 10), est(0.5, 0.51, 0.5)), NotSig, Regression},
		{"faster is an improvement", result(est(5, 5.1, 4.9, 5), est(0.9, 0.91, 0.92)), Improvement, NotSig},
		{"identical is ok", result(est(10, 10.1, 9.9, 10), est(0.9, 0.91, 0.9)), Unchanged, Unchanged},
		{"one value is untested", result(est(20), est(0.9)), Untested, Untested},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checks := Gate(base, tt.cur, 0.10, DefaultTolerance) // two figures: p < 0.025
			if len(checks) != 2 || checks[0].Verdict != tt.makespan || checks[1].Verdict != tt.hit {
				t.Errorf("verdicts %q %q, want %q %q (%+v)", checks[0].Verdict, checks[1].Verdict, tt.makespan, tt.hit, checks)
			}
			if Failed(checks) != (tt.makespan == Regression || tt.hit == Regression) {
				t.Error("Failed disagrees with the verdicts")
			}
		})
	}
	// A case missing from the baseline is untested, not a failure.
	cur := result(est(12, 12, 12), est(0.9, 0.9, 0.9))
	cur.Cases[0].Name = "new"
	if c := Gate(base, cur, 0.1, DefaultTolerance); c[0].Verdict != Untested || Failed(c) {
		t.Errorf("new case: %+v", c)
	}
	// Many figures: the same 20% difference at p = 0.03 is no longer
	// significant once 40 figures are tested.
	many := &Result{Suite: "s", Track: []string{"makespan_s"}}
	manyBase := &Result{Suite: "s", Track: []string{"makespan_s"}}
	for k := 0; k < 40; k++ {
		name := fmt.Sprintf("c%d", k)
		manyBase.Cases = append(manyBase.Cases, CaseResult{Name: name, Arms: []ArmResult{{Label: "a", Figures: map[string]metrics.Estimate{"makespan_s": est(10, 10.1, 9.9)}}}})
		v := est(10, 10.1, 9.9)
		if k == 0 {
			v = est(12, 12.6, 11.4) // +20%, p about 0.03 alone
		}
		many.Cases = append(many.Cases, CaseResult{Name: name, Arms: []ArmResult{{Label: "a", Figures: map[string]metrics.Estimate{"makespan_s": v}}}})
	}
	if c := Gate(manyBase, many, 0.1, DefaultTolerance); Failed(c) || c[0].Verdict != NotSig || c[0].P > 0.05 {
		t.Errorf("40 figures: %+v", c[0])
	}
	// Welch's test agrees with a textbook value: t = -2.4495, df = 4.
	if p := welch([]float64{1, 2, 3}, []float64{3, 4, 5}); math.Abs(p-0.0705) > 0.001 {
		t.Errorf("welch p = %v, want about 0.0705", p)
	}
}

// TestGateExact: figures of virtual-clock cases are compared directly,
// with no test of significance: any change past the tolerance is
// reported, a regression when worse; a wall-clock baseline for the same
// case falls back to the statistical gate.
func TestGateExact(t *testing.T) {
	virtual := func(makespan, hit float64) *Result {
		r := result(est(makespan), est(hit))
		r.Cases[0].Clock = ClockVirtual
		return r
	}
	base := virtual(10, 0.9)
	for _, tt := range []struct {
		name          string
		cur           *Result
		makespan, hit string
	}{
		{"identical", virtual(10, 0.9), Unchanged, Unchanged},
		{"0.4% slower is within the tolerance", virtual(10.04, 0.9), Unchanged, Unchanged},
		{"1% slower fails", virtual(10.1, 0.9), Regression, Unchanged},
		{"a lower hit rate fails", virtual(10, 0.85), Unchanged, Regression},
		{"faster is reported", virtual(9, 0.9), Improvement, Unchanged},
	} {
		checks := Gate(base, tt.cur, 0.10, DefaultTolerance)
		if len(checks) != 2 || checks[0].Verdict != tt.makespan || checks[1].Verdict != tt.hit || !checks[0].Exact {
			t.Errorf("%s: verdicts %+v, want %s %s", tt.name, checks, tt.makespan, tt.hit)
		}
		if Failed(checks) != (tt.makespan == Regression || tt.hit == Regression) {
			t.Errorf("%s: Failed disagrees", tt.name)
		}
	}
	// One value on each side of a wall-clock baseline: untested, as before.
	wallBase := result(est(10), est(0.9))
	if c := Gate(wallBase, virtual(20, 0.9), 0.1, DefaultTolerance); c[0].Verdict != Untested || c[0].Exact {
		t.Errorf("virtual against a wall baseline: %+v", c)
	}
}
