package replay

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wfsched/wfsched/dag"
	"github.com/wfsched/wfsched/report"
	"github.com/wfsched/wfsched/scheduler"
	"github.com/wfsched/wfsched/sim"
)

func readTrace(t *testing.T, name string) []*dag.Graph {
	t.Helper()
	gs, err := dag.ReadFile(filepath.Join("..", "traces", name), dag.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return gs
}

// virtualRun replays cfg on n virtual engines into a fresh folder.
func virtualRun(t *testing.T, gs []*dag.Graph, cfg scheduler.Config, n int, routing string) (string, report.RunReport) {
	t.Helper()
	dir := t.TempDir()
	infos, err := TraceInfos("trace", gs)
	if err != nil {
		t.Fatal(err)
	}
	rep, _, err := Once(context.Background(), Spec{Instances: n, Routing: routing, Seed: 7},
		Job{Dir: dir, Config: cfg, Graphs: gs, Traces: infos, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Outcome != scheduler.OutcomeCompleted {
		t.Fatalf("outcome %s: %s", rep.Outcome, rep.Reason)
	}
	return dir, rep
}

// TestVirtualDeterministic replays an open loop of the agents trace on
// three engines behind the workflow-aware router twice: the results must
// be the same bytes, and the summaries the same figures.
func TestVirtualDeterministic(t *testing.T) {
	gs := readTrace(t, "agents-40.json")
	cfg := scheduler.Config{Policy: scheduler.Parallel{}, Workflows: 12, Arrival: scheduler.Arrival{Kind: scheduler.ArrivalPoisson, Rate: 2, Seed: 3}}
	d1, r1 := virtualRun(t, gs, cfg, 3, "workflow-aware")
	d2, r2 := virtualRun(t, gs, cfg, 3, "workflow-aware")
	for _, f := range []string{"nodes.jsonl", "workflows.jsonl"} {
		a, err := os.ReadFile(filepath.Join(d1, f))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(filepath.Join(d2, f))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("%s differs between two runs of the same inputs (%d and %d bytes)", f, len(a), len(b))
		}
	}
	s1, s2 := r1.Summary, r2.Summary
	if len(s1.Utilisation) != 3 || len(s1.Utilisation[0].Timeline) == 0 {
		t.Errorf("utilisation %+v", s1.Utilisation)
	}
	var j1, j2 bytes.Buffer
	report.WriteJSON(&j1, s1)
	report.WriteJSON(&j2, s2)
	if !bytes.Equal(j1.Bytes(), j2.Bytes()) {
		t.Errorf("summaries differ:\n%s\n%s", j1.String(), j2.String())
	}
	if r1.Timing == nil || r1.Timing.Verdict != report.TimingExact || r1.Backend.Clock != ClockVirtual {
		t.Errorf("timing %+v, clock %q", r1.Timing, r1.Backend.Clock)
	}
	if st := r1.Backend.RouterStats; st == nil || st.AffinityHits == 0 {
		t.Errorf("router stats %+v", st)
	}
}

// TestVirtualIsTheEngine checks the virtual driver's figures against the
// engine's own record of every request: with no network in between, a
// call's TTFT and E2E are its engine's first-token and finish times less
// its arrival, exactly, and its tokens are the engine's.
func TestVirtualIsTheEngine(t *testing.T) {
	gs := readTrace(t, "fanout-12.json")
	var recs []sim.Finished
	v, err := NewVirtual(VirtualConfig{Engine: sim.Config{Seed: 1, OnFinish: func(f sim.Finished) { recs = append(recs, f) }}})
	if err != nil {
		t.Fatal(err)
	}
	var got []scheduler.NodeResult
	sink := &collect{nodes: &got}
	res, err := scheduler.RunVirtual(context.Background(), scheduler.Config{Policy: scheduler.Parallel{}, Workflows: 2, Concurrency: 2}, gs, v, sink)
	if err != nil || res.Outcome != scheduler.OutcomeCompleted {
		t.Fatalf("%v %+v", err, res)
	}
	type key struct{ start, end float64 }
	byTime := map[key]sim.Finished{}
	for _, f := range recs {
		byTime[key{f.Arrival.Seconds(), f.End.Seconds()}] = f
	}
	llm := 0
	for _, r := range got {
		if r.Kind != "llm" {
			continue
		}
		llm++
		f, ok := byTime[key{r.StartS, r.EndS}]
		if !ok {
			t.Fatalf("node %s/%s [%v, %v]: no engine request with that arrival and end", r.Workflow, r.Node, r.StartS, r.EndS)
		}
		if ttft := (f.FirstToken - f.Arrival).Seconds(); r.TTFTS != ttft || r.E2ES != (f.End-f.Arrival).Seconds() {
			t.Errorf("node %s: TTFT %v E2E %v, engine %v %v", r.Node, r.TTFTS, r.E2ES, ttft, (f.End - f.Arrival).Seconds())
		}
		if r.CompletionTokens != f.OutputTokens || r.PromptTokens != f.PromptTokens || len(r.ITLS) != f.OutputTokens-1 {
			t.Errorf("node %s: %d/%d tokens (%d gaps), engine %d/%d", r.Node, r.PromptTokens, r.CompletionTokens, len(r.ITLS), f.PromptTokens, f.OutputTokens)
		}
	}
	if llm == 0 || llm != len(recs) {
		t.Errorf("%d LLM nodes, %d engine requests", llm, len(recs))
	}
}

// TestVirtualConnectionLimit: with one connection the calls queue first
// come first served in the client, never two on the engine at once, and
// the wait counts in their TTFT.
func TestVirtualConnectionLimit(t *testing.T) {
	gs := readTrace(t, "fanout-12.json")
	var recs []sim.Finished
	v, err := NewVirtual(VirtualConfig{MaxConns: 1, Engine: sim.Config{OnFinish: func(f sim.Finished) { recs = append(recs, f) }}})
	if err != nil {
		t.Fatal(err)
	}
	var got []scheduler.NodeResult
	if _, err := scheduler.RunVirtual(context.Background(), scheduler.Config{Policy: scheduler.Parallel{}}, gs, v, &collect{nodes: &got}); err != nil {
		t.Fatal(err)
	}
	for k := 1; k < len(recs); k++ {
		if recs[k].Arrival < recs[k-1].End {
			t.Errorf("request %d arrived at %v, before request %d ended at %v", k, recs[k].Arrival, k-1, recs[k-1].End)
		}
	}
	waited := false
	for _, r := range got {
		if r.Kind == "llm" && r.TTFTS > 0.5 {
			waited = true
		}
	}
	if !waited {
		t.Error("no call's TTFT shows the wait for the connection")
	}
}

// TestVirtualInterrupt: a canceled context stops new dispatches; the
// results so far are kept and the run says it was interrupted.
func TestVirtualInterrupt(t *testing.T) {
	gs := readTrace(t, "chain-16.json")
	v, err := NewVirtual(VirtualConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var got []scheduler.NodeResult
	sink := &collect{nodes: &got, after: 3, cancel: cancel}
	res, err := scheduler.RunVirtual(ctx, scheduler.Config{Policy: scheduler.Sequential{}}, gs, v, sink)
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != scheduler.OutcomeInterrupted || len(got) < 3 || len(got) >= len(gs[0].Nodes) {
		t.Errorf("outcome %s with %d of %d nodes", res.Outcome, len(got), len(gs[0].Nodes))
	}
}

type collect struct {
	nodes  *[]scheduler.NodeResult
	after  int
	cancel func()
}

func (c *collect) Node(r scheduler.NodeResult) error {
	*c.nodes = append(*c.nodes, r)
	if c.cancel != nil && len(*c.nodes) == c.after {
		c.cancel()
	}
	return nil
}
func (c *collect) Workflow(scheduler.WorkflowResult) error { return nil }

// TestSpecClock: the embedded engines default to the virtual clock, an
// endpoint to the wall, and a virtual endpoint is refused.
func TestSpecClock(t *testing.T) {
	for _, tt := range []struct {
		s    Spec
		want string
		bad  bool
	}{
		{Spec{}, ClockVirtual, false},
		{Spec{Clock: ClockWall}, ClockWall, false},
		{Spec{Endpoints: []string{"http://127.0.0.1:1"}}, ClockWall, false},
		{Spec{Endpoints: []string{"http://127.0.0.1:1"}, Clock: ClockVirtual}, "", true},
		{Spec{Clock: "sundial"}, "", true},
		{Spec{Clock: ClockWall, API: "responses"}, ClockWall, false},
		{Spec{Clock: ClockVirtual, API: "responses"}, "", true},
		{Spec{Clock: ClockWall, API: "grpc"}, "", true},
	} {
		got, err := tt.s.ResolveClock()
		if got != tt.want || (err != nil) != tt.bad {
			t.Errorf("%+v: %q, %v", tt.s, got, err)
		}
	}
}

// TestVirtualOpenLoopCap: open-loop arrivals over --max-concurrency wait
// in order, so that no more than the cap are ever in flight, and the wait
// shows as queueing delay.
func TestVirtualOpenLoopCap(t *testing.T) {
	gs := readTrace(t, "research-team.json")
	var wfs []scheduler.WorkflowResult
	v, err := NewVirtual(VirtualConfig{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := scheduler.Config{Policy: scheduler.Parallel{}, Workflows: 10,
		Arrival: scheduler.Arrival{Kind: scheduler.ArrivalPoisson, Rate: 5, MaxConcurrency: 2, Seed: 1}}
	res, err := scheduler.RunVirtual(context.Background(), cfg, gs, v, WorkflowHook(func(w scheduler.WorkflowResult) { wfs = append(wfs, w) }))
	if err != nil || res.Outcome != scheduler.OutcomeCompleted || len(wfs) != 10 {
		t.Fatalf("%v %+v, %d workflows", err, res, len(wfs))
	}
	delayed := 0
	for _, a := range wfs {
		inFlight := 0
		for _, b := range wfs {
			if b.StartS <= a.StartS && a.StartS < b.EndS {
				inFlight++
			}
		}
		if inFlight > 2 {
			t.Errorf("%s started at %.3f s with %d in flight (cap 2)", a.Workflow, a.StartS, inFlight)
		}
		if a.QueueDelayS > 0 {
			delayed++
		}
	}
	if delayed == 0 {
		t.Error("no workflow waited for the cap")
	}
}

// TestVirtualErrorModes: a call the engine refuses (a context over the
// model's length) fails at once; its dependents are skipped, and under
// fail-fast nothing more is dispatched.
func TestVirtualErrorModes(t *testing.T) {
	gs := readTrace(t, "chain-16.json")
	for _, mode := range []scheduler.ErrorMode{scheduler.SkipDependents, scheduler.FailFast} {
		v, err := NewVirtual(VirtualConfig{})
		if err != nil {
			t.Fatal(err)
		}
		var got []scheduler.NodeResult
		cfg := scheduler.Config{Policy: scheduler.Sequential{}, OnError: mode, OutputTokens: 1 << 20}
		res, err := scheduler.RunVirtual(context.Background(), cfg, gs, v, &collect{nodes: &got})
		if err != nil {
			t.Fatal(err)
		}
		if res.Outcome != scheduler.OutcomeFailed || len(got) == 0 || got[0].Status != scheduler.StatusFailed || got[0].HTTPStatus != 400 {
			t.Fatalf("%s: outcome %s, first node %+v", mode, res.Outcome, got)
		}
		switch mode {
		case scheduler.SkipDependents:
			if len(got) != len(gs[0].Nodes) || got[len(got)-1].Status != scheduler.StatusSkipped {
				t.Errorf("skip-dependents: %d of %d nodes reported, last %s", len(got), len(gs[0].Nodes), got[len(got)-1].Status)
			}
		case scheduler.FailFast:
			if len(got) != 1 {
				t.Errorf("fail-fast: %d nodes ran after the failure", len(got)-1)
			}
		}
	}
}

// TestOrdersDoNotStarve: under least attained service and under
// critical-path, with an admission limit that keeps a queue of calls
// waiting, every workflow of a sustained overload still completes, and the
// slowest takes no more than twice the slowest under fcfs: levels, not a
// strict order of service, keep long workflows moving.
func TestOrdersDoNotStarve(t *testing.T) {
	gs := append(readTrace(t, "agents-40.json"), readTrace(t, "research-team.json")...)
	worst := map[string]float64{}
	for _, wp := range []scheduler.WorkflowPolicy{scheduler.FCFS{}, scheduler.LAS{}, scheduler.CriticalPath{}} {
		v, err := NewVirtual(VirtualConfig{Instances: 2, Routing: "workflow-aware", MaxConns: 16,
			Engine: sim.Config{SchedulingPolicy: sim.SchedulingPriority}})
		if err != nil {
			t.Fatal(err)
		}
		var wfs []scheduler.WorkflowResult
		cfg := scheduler.Config{Policy: scheduler.Parallel{}, WorkflowPolicy: wp, Workflows: 60,
			Arrival: scheduler.Arrival{Kind: scheduler.ArrivalPoisson, Rate: 1.5, Seed: 2}}
		res, err := scheduler.RunVirtual(context.Background(), cfg, gs, v, WorkflowHook(func(w scheduler.WorkflowResult) { wfs = append(wfs, w) }))
		if err != nil || res.Outcome != scheduler.OutcomeCompleted || res.Completed != 60 {
			t.Fatalf("%s: %v, %d of 60 completed (%s)", wp.Name(), err, res.Completed, res.Reason)
		}
		for _, w := range wfs {
			worst[wp.Name()] = max(worst[wp.Name()], w.CompletionS)
		}
	}
	for _, p := range []string{"las", "critical-path"} {
		if worst[p] > 2*worst["fcfs"] {
			t.Errorf("the slowest workflow took %.1f s under %s, %.1f s under fcfs", worst[p], p, worst["fcfs"])
		}
	}
	t.Logf("slowest workflow: fcfs %.1f s, las %.1f s, critical-path %.1f s", worst["fcfs"], worst["las"], worst["critical-path"])
}

// TestPriorityProbe: calls with priorities need a server that schedules
// by priority; Start finds out with one call and says so.
func TestPriorityProbe(t *testing.T) {
	for _, policy := range []string{sim.SchedulingFCFS, sim.SchedulingPriority} {
		c, err := sim.Start(context.Background(), sim.ClusterConfig{Engine: sim.Config{TimeScale: 0.01, SchedulingPolicy: policy}})
		if err != nil {
			t.Fatal(err)
		}
		be, err := Start(context.Background(), Spec{Endpoints: c.URLs(), Priorities: true, Attempts: 1, Timeout: 30 * time.Second})
		var re *Error
		switch {
		case policy == sim.SchedulingFCFS && (!errors.As(err, &re) || !strings.Contains(re.Hint, "--scheduling-policy priority")):
			t.Errorf("fcfs server: %v", err)
		case policy == sim.SchedulingPriority && err != nil:
			t.Errorf("priority server: %v", err)
		}
		if be != nil {
			be.Close()
		}
		c.Close()
	}
}

// TestVirtualAdmission: with the router's admission limit, no engine
// ever runs more admitted requests than it; the rest wait at the router.
func TestVirtualAdmission(t *testing.T) {
	gs := readTrace(t, "agents-40.json")
	most := 0
	v, err := NewVirtual(VirtualConfig{Instances: 2, Routing: "workflow-aware", Admission: 2,
		Engine: sim.Config{OnStep: func(s sim.StepInfo) { most = max(most, s.Running+s.Waiting) }}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := scheduler.RunVirtual(context.Background(), scheduler.Config{Policy: scheduler.Parallel{}, Workflows: 6, Concurrency: 6}, gs, v, &collect{nodes: new([]scheduler.NodeResult)})
	if err != nil || res.Outcome != scheduler.OutcomeCompleted {
		t.Fatalf("%v %+v", err, res)
	}
	if most != 2 {
		t.Errorf("an engine held %d requests at once (admission 2)", most)
	}
	if v.Balancer().Held() != 0 {
		t.Errorf("%d still waiting", v.Balancer().Held())
	}
}

// TestThinkTime: an LLM node's recorded think time delays its call by
// exactly as much on the virtual clock (the same decision serves the wall
// clock, which sleeps it scaled).
func TestThinkTime(t *testing.T) {
	run := func(think time.Duration) scheduler.WorkflowResult {
		gs := readTrace(t, "research-team.json")
		for _, n := range gs[0].Nodes {
			if n.ID == "review" {
				n.Think = dag.Seconds(think)
			}
		}
		v, err := NewVirtual(VirtualConfig{})
		if err != nil {
			t.Fatal(err)
		}
		var wf scheduler.WorkflowResult
		res, err := scheduler.RunVirtual(context.Background(), scheduler.Config{Policy: scheduler.Parallel{}, Workflows: 1}, gs, v,
			WorkflowHook(func(w scheduler.WorkflowResult) { wf = w }))
		if err != nil || res.Outcome != scheduler.OutcomeCompleted {
			t.Fatalf("%v %+v", err, res)
		}
		return wf
	}
	base, thought := run(0), run(2*time.Second)
	// review is on the critical path: the workflow takes 2 s longer.
	if d := thought.CompletionS - base.CompletionS; d < 1.999 || d > 2.001 {
		t.Errorf("a 2 s think time added %.4f s", d)
	}
}
