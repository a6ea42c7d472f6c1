package replay

import (
	"context"
	"flag"
	"fmt"
	"math"
	"sort"
	"testing"

	"github.com/wfsched/wfsched/dag"
	"github.com/wfsched/wfsched/report"
	"github.com/wfsched/wfsched/scheduler"
)

var agree = flag.Bool("agree", false, "run TestAgreement: the virtual clock against the wall clock at time scale 1 (minutes; run it on an idle machine)")

// TestAgreement replays the same workloads on the virtual clock and, three
// times, over HTTP on the wall clock at time scale 1, and checks that the
// wall runs' medians agree with the exact figures: makespan and workflow
// completion p50 within 2%, prefix-cache hit rate within half a point.
// The wall clock is a noisy measurement (timers, loopback, two cores
// shared by client, router and engines), so this is a check to run by
// hand on an idle machine, not part of make test:
//
//	WFSCHED_SHARED_TRACES=../shared/traces go test ./replay -run TestAgreement -agree -v
func TestAgreement(t *testing.T) {
	if !*agree {
		t.Skip("run with -agree (minutes of wall-clock replay; needs an idle machine)")
	}
	type tc struct {
		name      string
		path      string
		workflows int
		conc      int
		instances int
		routing   string
	}
	cases := []tc{
		{"research-team", "../traces/research-team.json", 1, 1, 1, ""},
		{"fanout-12", "../traces/fanout-12.json", 1, 1, 1, ""},
		{"agents-40 x8", "../traces/agents-40.json", 8, 8, 1, ""},
	}
	// The AppWorld step lists the project ships (traces/mast).
	cases = append(cases, tc{"appworld x16, 4 engines", "../traces/mast/appworld-steps.json.gz", 16, 16, 4, "workflow-aware"})
	type figs struct{ makespan, completion, hit float64 }
	get := func(r report.RunReport) figs {
		s := r.Summary
		return figs{float64(s.Makespan.Mean), float64(s.Completion.P50), float64(s.CacheHitRate)}
	}
	median := func(v []float64) float64 {
		sort.Float64s(v)
		return v[len(v)/2]
	}
	for _, c := range cases {
		gs, err := dag.ReadFile(c.path, dag.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if c.workflows < len(gs) {
			gs = gs[:c.workflows]
		}
		infos, err := TraceInfos(c.path, gs)
		if err != nil {
			t.Fatal(err)
		}
		one := func(clock string) figs {
			rep, _, err := Once(context.Background(), Spec{Clock: clock, TimeScale: 1, Instances: c.instances, Routing: c.routing, Seed: 1},
				Job{Dir: t.TempDir(), Graphs: gs, Traces: infos, Seed: 1,
					Config: scheduler.Config{Policy: scheduler.Parallel{}, Workflows: c.workflows, Concurrency: c.conc}})
			if err != nil || rep.Outcome != scheduler.OutcomeCompleted {
				t.Fatalf("%s on the %s clock: %v %s", c.name, clock, err, rep.Reason)
			}
			if clock == ClockWall && rep.Timing != nil && rep.Timing.Verdict != report.TimingReliable {
				t.Logf("%s: wall run's timing %s (overstated %+.2f%%)", c.name, rep.Timing.Verdict, 100*rep.Timing.Overstated)
			}
			return get(rep)
		}
		v := one(ClockVirtual)
		var ms, cs, hs []float64
		for k := 0; k < 3; k++ {
			w := one(ClockWall)
			ms, cs, hs = append(ms, w.makespan), append(cs, w.completion), append(hs, w.hit)
		}
		w := figs{median(ms), median(cs), median(hs)}
		dm, dc, dh := w.makespan/v.makespan-1, w.completion/v.completion-1, 100*(w.hit-v.hit)
		line := fmt.Sprintf("%-24s makespan %.3f s virtual, %.3f s wall (%+.2f%%); completion p50 %.3f s, %.3f s (%+.2f%%); hit rate %.2f%%, %.2f%% (%+.2f points)",
			c.name, v.makespan, w.makespan, 100*dm, v.completion, w.completion, 100*dc, 100*v.hit, 100*w.hit, dh)
		t.Log(line)
		if math.Abs(dm) > 0.02 || math.Abs(dc) > 0.02 || math.Abs(dh) > 0.5 {
			t.Errorf("disagreement beyond 2%% / 0.5 points: %s", line)
		}
	}
}
