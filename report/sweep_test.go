package report

import (
	"strings"
	"testing"

	"github.com/wfsched/wfsched/metrics"
)

// point is a sweep point whose arrivals lasted window seconds and which
// completed done of the offered rate inside it.
func point(arm string, rate, slowdown, window, done float64) SweepPoint {
	return SweepPoint{Arm: arm, Rate: rate, Outcome: "completed", Summary: metrics.Summary{
		Slowdown:       &metrics.Dist{N: 5, P50: metrics.Float(slowdown)},
		ArrivalWindowS: metrics.Float(window), WindowPerMin: metrics.Float(60 * rate * done)}}
}

func TestSaturate(t *testing.T) {
	// Idle completion 10 s: a run is judged when arrivals last 50 s.
	idle := map[string]map[string]float64{}
	for _, arm := range []string{"a", "b", "c", "d", "e", "f"} {
		idle[arm] = map[string]float64{"t1": 10, "t2": 4}
	}
	d := SweepDoc{Arms: []string{"a", "b", "c", "d", "e", "f"}, SaturationSlowdown: 2, Idle: idle, Points: []SweepPoint{
		point("a", 4, 3.5, 100, 1), point("a", 1, 1.1, 100, 1), point("a", 2, 1.9, 100, 0.95), // out of order: sorted by rate
		point("b", 1, 2.5, 100, 1), point("b", 2, 4, 100, 1),
		point("c", 1, 1, 100, 1), point("c", 2, 1.2, 100, 0.99),
		// The case: slowdown stays low, but 4/s offered and 9.9/min
		// done is 4% of the load.
		point("d", 1, 1.2, 100, 0.97), point("d", 4, 1.5, 100, 9.9/240),
		// 16 workflows at 1/s and 4/s: arrivals last 16 s and 4 s, under
		// 3x the idle 10 s: too short to say anything.
		point("e", 1, 1.3, 16, 0.2), point("e", 4, 1.8, 4, 0),
		// Judged at 1 and 4, too short at 2 between them: the answer says
		// the interval is open there.
		point("f", 1, 1.1, 100, 1), point("f", 2, 1.3, 16, 0.5), point("f", 4, 3, 400, 1),
	}}
	d.Saturate()
	want := map[string]Saturation{
		"a": {Reached: true, Rate: 4, Below: 2, Why: "slowdown"},
		"b": {Reached: true, Rate: 1, Why: "slowdown"},
		"c": {Below: 2},
		"d": {Reached: true, Rate: 4, Below: 1, Why: "throughput"},
		"e": {},
		"f": {Reached: true, Rate: 4, Below: 1, Why: "slowdown"},
	}
	for arm, w := range want {
		if got := d.Saturation[arm]; got.Reached != w.Reached || got.Rate != w.Rate || got.Below != w.Below || got.Why != w.Why {
			t.Errorf("%s: %+v, want %+v", arm, d.Saturation[arm], w)
		}
	}
	if s := d.Saturation["e"]; len(s.TooShort) != 2 {
		t.Errorf("e: too short at %v, want both rates", s.TooShort)
	}
	lines := strings.Join(d.saturationLines(), "\n")
	for _, s := range []string{"a: saturates between 2 and 4", "b: saturated already at the lowest rate judged, 1",
		"c: not saturated up to 2", "d: saturates between 1 and 4 workflows/s (at 4 it completed 4% of the offered workflows while they arrived",
		"e: cannot tell; runs too short to judge at 1, 4 workflows/s"} {
		if !strings.Contains(lines, s) {
			t.Errorf("missing %q in\n%s", s, lines)
		}
	}
	wantAnswer := "a saturates between 2 and 4 workflows/s; b is saturated already at the lowest rate, 1 workflows/s; c does not saturate up to 2 workflows/s; d saturates between 1 and 4 workflows/s; e: cannot tell (runs too short; sweep with --duration); f saturates between 1 and 4 workflows/s (2 between them too short to judge: sweep with --duration to narrow it)."
	if d.Answer != wantAnswer {
		t.Errorf("answer %q, want %q", d.Answer, wantAnswer)
	}
	if strings.Contains(lines, "e: not saturated") || strings.Contains(lines, "d: not saturated") {
		t.Errorf("a verdict of not saturated where it is, or cannot be told:\n%s", lines)
	}
}
