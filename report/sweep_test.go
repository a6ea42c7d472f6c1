package report

import (
	"strings"
	"testing"

	"github.com/wfsched/wfsched/metrics"
)

func point(arm string, rate, slowdown float64) SweepPoint {
	return SweepPoint{Arm: arm, Rate: rate, Outcome: "completed", Summary: metrics.Summary{Slowdown: &metrics.Dist{N: 5, P50: metrics.Float(slowdown)}}}
}

func TestSaturate(t *testing.T) {
	d := SweepDoc{Arms: []string{"a", "b", "c"}, SaturationSlowdown: 2, Points: []SweepPoint{
		point("a", 4, 3.5), point("a", 1, 1.1), point("a", 2, 1.9), // out of order: sorted by rate
		point("b", 1, 2.5), point("b", 2, 4),
		point("c", 1, 1), point("c", 2, 1.2),
	}}
	d.Saturate()
	want := map[string]Saturation{"a": {Reached: true, Rate: 4, Below: 2}, "b": {Reached: true, Rate: 1}, "c": {Below: 2}}
	for arm, w := range want {
		if got := d.Saturation[arm]; got.Reached != w.Reached || got.Rate != w.Rate || got.Below != w.Below {
			t.Errorf("%s: %+v, want %+v", arm, d.Saturation[arm], w)
		}
	}
	lines := strings.Join(d.saturationLines(), "\n")
	for _, s := range []string{"a: saturates between 2 and 4", "b: saturated already at the lowest rate, 1", "c: not saturated up to 2"} {
		if !strings.Contains(lines, s) {
			t.Errorf("missing %q in\n%s", s, lines)
		}
	}
}
