package scheduler_test

import (
	"context"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wfsched/wfsched/client"
	"github.com/wfsched/wfsched/dag"
	"github.com/wfsched/wfsched/scheduler"
	"github.com/wfsched/wfsched/sim"
	"github.com/wfsched/wfsched/tokenizer"
)

// memSink keeps results in memory.
type memSink struct {
	mu        sync.Mutex
	nodes     []scheduler.NodeResult
	workflows []scheduler.WorkflowResult
}

func (s *memSink) Node(r scheduler.NodeResult) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nodes = append(s.nodes, r)
	return nil
}

func (s *memSink) Workflow(r scheduler.WorkflowResult) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.workflows = append(s.workflows, r)
	return nil
}

func gen(t testing.TB, shape string, nodes int) *dag.Graph {
	t.Helper()
	g, err := dag.Generate(dag.GenConfig{Shape: shape, Nodes: nodes, Seed: 3}, tokenizer.MustDefault())
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func engine(t testing.TB, mod func(*sim.ClusterConfig), clientMods ...func(*client.Config)) *client.Client {
	t.Helper()
	cfg := sim.ClusterConfig{Engine: sim.Config{TimeScale: 0.01, Seed: 1}}
	if mod != nil {
		mod(&cfg)
	}
	c, err := sim.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ccfg := client.Config{BaseURL: c.URLs()[0], Backoff: time.Millisecond, Seed: 1}
	for _, m := range clientMods {
		m(&ccfg)
	}
	cl, err := client.New(ccfg)
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

func policy(t testing.TB, name string) scheduler.Policy {
	p, err := scheduler.PolicyByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// byNode indexes a workflow's results by node id.
func byNode(rs []scheduler.NodeResult, wf string) map[string]scheduler.NodeResult {
	m := map[string]scheduler.NodeResult{}
	for _, r := range rs {
		if r.Workflow == wf {
			m[r.Node] = r
		}
	}
	return m
}

// maxOverlap is the most intervals open at once.
func maxOverlap(rs []scheduler.NodeResult) int {
	type ev struct {
		t float64
		d int
	}
	var evs []ev
	for _, r := range rs {
		if r.Status != scheduler.StatusSkipped {
			evs = append(evs, ev{r.StartS, 1}, ev{r.EndS, -1})
		}
	}
	sort.Slice(evs, func(a, b int) bool { return evs[a].t < evs[b].t || evs[a].t == evs[b].t && evs[a].d < evs[b].d })
	cur, best := 0, 0
	for _, e := range evs {
		cur += e.d
		best = max(best, cur)
	}
	return best
}

func TestPoliciesAgainstEngine(t *testing.T) {
	cl := engine(t, nil)
	for _, shape := range []string{"fanout", "mapreduce", "layered", "agents"} {
		g := gen(t, shape, 24)
		topo, _ := dag.Analyze(g)
		for _, name := range scheduler.Policies() {
			t.Run(shape+"/"+name, func(t *testing.T) {
				sink := &memSink{}
				res, err := scheduler.Run(context.Background(), scheduler.Config{Policy: policy(t, name), MaxParallel: 4, TimeScale: 0.01},
					[]*dag.Graph{g}, cl, sink)
				if err != nil || res.Outcome != scheduler.OutcomeCompleted {
					t.Fatalf("outcome %s (%s), err %v", res.Outcome, res.Reason, err)
				}
				if len(sink.nodes) != len(g.Nodes) || len(sink.workflows) != 1 {
					t.Fatalf("%d node results for %d nodes", len(sink.nodes), len(g.Nodes))
				}
				m := byNode(sink.nodes, "wf-00000")
				// No node starts before all its parents have finished.
				for _, e := range g.Edges {
					if m[e.To].StartS < m[e.From].EndS {
						t.Errorf("%s started at %.6f before parent %s ended at %.6f", e.To, m[e.To].StartS, e.From, m[e.From].EndS)
					}
				}
				// In flight never exceeds the limit.
				limit := map[string]int{"sequential": 1, "dependency-aware": 4, "parallel": 4}[name]
				if o := maxOverlap(sink.nodes); o > limit {
					t.Errorf("%d nodes in flight, limit %d", o, limit)
				}
				// Dependency-aware: a level starts after the previous ends.
				if name == "dependency-aware" {
					for l := 1; l < len(topo.Levels); l++ {
						prevEnd := 0.0
						for _, v := range topo.Levels[l-1] {
							prevEnd = max(prevEnd, m[g.Nodes[v].ID].EndS)
						}
						for _, v := range topo.Levels[l] {
							if s := m[g.Nodes[v].ID].StartS; s < prevEnd {
								t.Errorf("level %d node started at %.6f before level %d ended at %.6f", l, s, l-1, prevEnd)
							}
						}
					}
				}
				w := sink.workflows[0]
				if w.OK != len(g.Nodes) || w.MakespanS <= 0 || w.CriticalPathS <= 0 || w.CriticalPathS > w.MakespanS*1.0001 {
					t.Errorf("workflow %+v", w)
				}
				for _, r := range sink.nodes {
					if r.Kind == "llm" && (r.CompletionTokens == 0 || r.CachedTokens == nil || r.TTFTS <= 0) {
						t.Errorf("node %s: %+v", r.Node, r)
					}
				}
			})
		}
	}
}

// fake is a Completer that takes d per call and fails the nodes whose
// agent is in fail; it records every call.
type fake struct {
	mu    sync.Mutex
	d     time.Duration
	fail  map[string]bool
	calls []scheduler.Call
}

func (f *fake) Complete(ctx context.Context, c scheduler.Call) scheduler.CallResult {
	f.mu.Lock()
	f.calls = append(f.calls, c)
	f.mu.Unlock()
	start := time.Now()
	select {
	case <-time.After(f.d):
	case <-ctx.Done():
		return scheduler.CallResult{Start: start, Err: ctx.Err()}
	}
	r := scheduler.CallResult{Start: start, E2E: time.Since(start), TTFT: time.Since(start), CompletionTokens: c.MaxTokens, Text: "generated"}
	if f.fail[c.Agent] {
		r.Err = fmt.Errorf("injected failure")
	}
	return r
}

func TestOnError(t *testing.T) {
	g := gen(t, "mapreduce", 30) // splitter -> mappers -> reducers -> splitter
	for _, tt := range []struct {
		mode            scheduler.ErrorMode
		outcome         string
		wantSkipped     bool
		wantAllAttempts bool
	}{
		{scheduler.SkipDependents, scheduler.OutcomeFailed, true, false},
		{scheduler.FailFast, scheduler.OutcomeFailed, false, false},
		{scheduler.Continue, scheduler.OutcomeFailed, false, true},
	} {
		t.Run(string(tt.mode), func(t *testing.T) {
			f := &fake{d: 5 * time.Millisecond, fail: map[string]bool{"mapper-1": true}}
			sink := &memSink{}
			res, err := scheduler.Run(context.Background(), scheduler.Config{Policy: scheduler.Parallel{}, OnError: tt.mode, MaxParallel: 2},
				[]*dag.Graph{g}, f, sink)
			if err != nil || res.Outcome != tt.outcome {
				t.Fatalf("outcome %s, err %v", res.Outcome, err)
			}
			status := map[string]int{}
			for _, r := range sink.nodes {
				status[r.Status]++
			}
			if (status[scheduler.StatusSkipped] > 0) != tt.wantSkipped {
				t.Errorf("statuses %v", status)
			}
			if tt.wantAllAttempts && status[scheduler.StatusOK]+status[scheduler.StatusFailed] != len(g.Nodes) {
				t.Errorf("continue: statuses %v for %d nodes", status, len(g.Nodes))
			}
			if tt.mode == scheduler.SkipDependents {
				// mapper-1's two calls: the first fails, so its tool and
				// second call are skipped, then its reducer and the final
				// call; other mappers finish.
				m := byNode(sink.nodes, "wf-00000")
				okMappers := 0
				for _, r := range m {
					if strings.HasPrefix(r.Agent, "mapper-") && r.Agent != "mapper-1" && r.Status == scheduler.StatusOK {
						okMappers++
					}
				}
				if okMappers == 0 || status[scheduler.StatusSkipped] < 4 {
					t.Errorf("statuses %v, ok mapper nodes %d", status, okMappers)
				}
			}
			if tt.mode == scheduler.FailFast && len(sink.nodes) >= len(g.Nodes) {
				t.Errorf("fail-fast ran all %d nodes", len(sink.nodes))
			}
		})
	}
}

func TestRetriesThroughEngineFaults(t *testing.T) {
	// At a 30% error rate a call fails all of 4 tries with probability
	// 0.3^4, about once in 6 runs of 20 calls; 12 tries make that 1 in 10^5.
	cl := engine(t, func(c *sim.ClusterConfig) { c.Server.Faults = sim.Faults{ErrorRate: 0.3, ErrorStatus: 503} },
		func(c *client.Config) { c.MaxAttempts = 12 })
	g := gen(t, "fanout", 20)
	sink := &memSink{}
	res, err := scheduler.Run(context.Background(), scheduler.Config{Policy: scheduler.Parallel{}, TimeScale: 0.01}, []*dag.Graph{g}, cl, sink)
	if err != nil || res.Outcome != scheduler.OutcomeCompleted {
		t.Fatalf("outcome %s %s err %v", res.Outcome, res.Reason, err)
	}
	retried := 0
	for _, r := range sink.nodes {
		if len(r.Attempts) > 1 {
			retried++
			if r.Attempts[0].Status != 503 {
				t.Errorf("first attempt %+v", r.Attempts[0])
			}
		}
	}
	if retried == 0 {
		t.Error("no call needed a retry at a 30% error rate")
	}
}

func TestCancelLeavesNoGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	f := &fake{d: time.Hour}
	g := gen(t, "layered", 40)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	sink := &memSink{}
	start := time.Now()
	res, err := scheduler.Run(ctx, scheduler.Config{Policy: scheduler.Parallel{}, Workflows: 3, Concurrency: 3}, []*dag.Graph{g}, f, sink)
	if err != nil || res.Outcome != scheduler.OutcomeInterrupted {
		t.Fatalf("outcome %s err %v", res.Outcome, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("run took %v after cancel", d)
	}
	for _, r := range sink.nodes {
		if r.Status != scheduler.StatusCanceled {
			t.Errorf("node %s: %s", r.Node, r.Status)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines left, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCallsCarryWorkflowMetadata(t *testing.T) {
	f := &fake{}
	zero := 0.0
	g := gen(t, "chain", 4)
	_, err := scheduler.Run(context.Background(), scheduler.Config{Policy: scheduler.Sequential{}, Temperature: &zero, Workflows: 2}, []*dag.Graph{g}, f, &memSink{})
	if err != nil {
		t.Fatal(err)
	}
	if len(f.calls) != 8 {
		t.Fatalf("%d calls", len(f.calls))
	}
	seen := map[string]bool{}
	for k, c := range f.calls {
		if c.Workflow == "" || c.Agent == "" {
			t.Errorf("call %d: workflow %q agent %q", k, c.Workflow, c.Agent)
		}
		seen[c.Workflow] = true
		if c.Temperature == nil || *c.Temperature != 0 || !c.IgnoreEOS {
			t.Errorf("call %d: temperature %v ignore_eos %v", k, c.Temperature, c.IgnoreEOS)
		}
	}
	if len(seen) != 2 {
		t.Errorf("workflow ids %v", seen)
	}
	// max_tokens is each node's reference output length.
	if f.calls[0].MaxTokens != g.Nodes[0].OutputTokens.N {
		t.Errorf("max_tokens %d, reference %d", f.calls[0].MaxTokens, g.Nodes[0].OutputTokens.N)
	}
}

func TestReferencePromptsShareAgentPrefixes(t *testing.T) {
	cl := engine(t, nil)
	g := gen(t, "chain", 12) // three agents take turns: each prompt extends the agent's previous one
	sink := &memSink{}
	if _, err := scheduler.Run(context.Background(), scheduler.Config{Policy: scheduler.Sequential{}, TimeScale: 0.01}, []*dag.Graph{g}, cl, sink); err != nil {
		t.Fatal(err)
	}
	cached, prompt := 0, 0
	for k, r := range sink.nodes {
		if r.PromptTokens != g.Nodes[k].InputTokens.N {
			t.Errorf("node %s: engine counted %d prompt tokens, the trace %d", r.Node, r.PromptTokens, g.Nodes[k].InputTokens.N)
		}
		prompt += r.PromptTokens
		cached += *r.CachedTokens
	}
	topo, _ := dag.Analyze(g)
	bound := dag.Summarize(g, topo, dag.CostModel{}).PrefixShareBound
	if rate := float64(cached) / float64(prompt); rate < 0.9*bound || rate > bound {
		t.Errorf("hit rate %.3f, bound %.3f", rate, bound)
	}
}

func TestLiveContextUsesGeneratedOutputs(t *testing.T) {
	f := &fake{}
	g := gen(t, "chain", 4)
	if _, err := scheduler.Run(context.Background(), scheduler.Config{Policy: scheduler.Sequential{}, Context: scheduler.ContextLive}, []*dag.Graph{g}, f, &memSink{}); err != nil {
		t.Fatal(err)
	}
	// Call 3 is the first agent's second turn: its earlier answer and the
	// message it received are this run's outputs.
	last := f.calls[3]
	n := 0
	for _, m := range last.Messages {
		if m.Content == "generated" {
			n++
		}
	}
	if n < 2 {
		t.Errorf("live prompt reuses %d generated outputs: %+v", n, last.Messages)
	}
}

func TestOpenLoopArrivals(t *testing.T) {
	g := gen(t, "chain", 3)
	// Rate 20 per modeled second at time scale 0.01 (one modeled second is
	// 10 ms): 30 workflows, at most 2 in flight, each taking ~15 ms.
	sink := &memSink{}
	f := &fake{d: 5 * time.Millisecond}
	res, err := scheduler.Run(context.Background(), scheduler.Config{Policy: scheduler.Parallel{}, TimeScale: 0.01, Workflows: 30,
		Arrival: scheduler.Arrival{Kind: scheduler.ArrivalPoisson, Rate: 20, MaxConcurrency: 2, Seed: 3}}, []*dag.Graph{g}, f, sink)
	if err != nil || res.Outcome != scheduler.OutcomeCompleted || len(sink.workflows) != 30 {
		t.Fatalf("%+v %v, %d workflows", res, err, len(sink.workflows))
	}
	sort.Slice(sink.workflows, func(a, b int) bool { return sink.workflows[a].ArrivalS < sink.workflows[b].ArrivalS })
	waited := 0
	for _, w := range sink.workflows {
		if w.CompletionS < w.MakespanS || w.QueueDelayS < 0 || w.StartS < w.ArrivalS {
			t.Errorf("workflow %s: arrival %.3f start %.3f completion %.3f makespan %.3f", w.Workflow, w.ArrivalS, w.StartS, w.CompletionS, w.MakespanS)
		}
		if w.QueueDelayS > 0.5 { // over the cap: waited for a slot
			waited++
		}
	}
	if waited == 0 {
		t.Error("no workflow waited though arrivals outpaced the cap of 2")
	}
	if last := sink.workflows[29].ArrivalS; last < 0.5 || last > 3 {
		t.Errorf("30 arrivals at 20/s ended at %.2f s (expected about 1.5 s)", last)
	}
	// A duration instead of a count.
	sink = &memSink{}
	res, err = scheduler.Run(context.Background(), scheduler.Config{Policy: scheduler.Parallel{}, TimeScale: 0.01,
		Arrival: scheduler.Arrival{Kind: scheduler.ArrivalGamma, Rate: 20, Burstiness: 0.5, Duration: 5 * time.Second, Seed: 4}}, []*dag.Graph{g}, &fake{}, sink)
	if err != nil || len(sink.workflows) < 60 || len(sink.workflows) > 140 || res.Outcome != scheduler.OutcomeCompleted {
		t.Errorf("5 s at 20/s: %d workflows (%+v, %v)", len(sink.workflows), res, err)
	}
	if _, err := scheduler.Run(context.Background(), scheduler.Config{Policy: scheduler.Parallel{}, Arrival: scheduler.Arrival{Kind: scheduler.ArrivalPoisson, Rate: 1}},
		[]*dag.Graph{g}, &fake{}, &memSink{}); err == nil {
		t.Error("an endless open loop was accepted")
	}
}

// TestMaxTokensCapsAndOutputTokensForces: --max-tokens caps each node's
// reference length (as the prototype's does); --output-tokens sets it.
func TestMaxTokensCapsAndOutputTokensForces(t *testing.T) {
	g := gen(t, "fanout", 12)
	ref := map[int]int{} // reference lengths, counted
	for _, n := range g.Nodes {
		ref[max(1, n.OutputTokens.N)]++
	}
	const limit = 150 // between the smallest and the largest reference length
	for _, tc := range []struct {
		name string
		cfg  scheduler.Config
		want func(ref int) int
	}{
		{"reference", scheduler.Config{}, func(r int) int { return r }},
		{"max-tokens caps", scheduler.Config{MaxTokens: limit}, func(r int) int { return min(r, limit) }},
		{"output-tokens forces", scheduler.Config{OutputTokens: 7}, func(int) int { return 7 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fake{}
			tc.cfg.Policy = scheduler.Parallel{}
			if _, err := scheduler.Run(context.Background(), tc.cfg, []*dag.Graph{g}, f, &memSink{}); err != nil {
				t.Fatal(err)
			}
			got := map[int]int{}
			for _, c := range f.calls {
				got[c.MaxTokens]++
			}
			want := map[int]int{}
			for r, n := range ref {
				want[tc.want(r)] += n
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("max_tokens sent %v, want %v", got, want)
			}
		})
	}
	lo, hi := 1<<30, 0
	for r := range ref {
		lo, hi = min(lo, r), max(hi, r)
	}
	if !(lo < limit && limit < hi) {
		t.Fatalf("reference lengths %d..%d do not straddle %d: the cap is not tested", lo, hi, limit)
	}
}

// toolTrace is an agent that thinks and calls a tool, reads its result,
// then calls a tool without a word, reads that, and answers.
const toolTrace = `{"format": "wfsched-dag", "version": 1, "id": "tools",
 "nodes": [
  {"id": "c1", "kind": "llm", "agent": "a", "system": "You use tools.", "inputs": [{"from": "user", "text": "List the files."}],
   "output": "Let me look.", "tool_calls": [{"id": "c1/call0", "name": "str_replace_editor", "arguments": "{\"command\": \"view\", \"path\": \"/w\"}"}]},
  {"id": "t1", "kind": "tool", "agent": "a", "output": "a.txt b.txt", "duration_s": 0.01},
  {"id": "c2", "kind": "llm", "agent": "a", "inputs": [{"from": "tool", "text": "a.txt b.txt", "tool_call_id": "c1/call0"}],
   "tool_calls": [{"id": "c2/call0", "name": "bash", "arguments": "{\"cmd\": \"wc -l a.txt\"}"}]},
  {"id": "t2", "kind": "tool", "agent": "a", "output": "3 a.txt", "duration_s": 0.01},
  {"id": "c3", "kind": "llm", "agent": "a", "inputs": [{"from": "tool", "text": "3 a.txt", "tool_call_id": "c2/call0"}], "output": "a.txt has 3 lines."}],
 "edges": [{"from": "c1", "to": "t1", "type": "observation"}, {"from": "t1", "to": "c2", "type": "observation"},
  {"from": "c1", "to": "c2", "type": "history"}, {"from": "c2", "to": "t2", "type": "observation"},
  {"from": "t2", "to": "c3", "type": "observation"}, {"from": "c2", "to": "c3", "type": "history"}]}`

// TestToolCallsReplayed: recorded tool calls travel as tool_calls, their
// results as tool messages, and the engine counts the prompts exactly as
// the trace loader estimated them.
func TestToolCallsReplayed(t *testing.T) {
	gs, err := dag.Parse([]byte(toolTrace), dag.Options{})
	if err != nil {
		t.Fatal(err)
	}
	g := gs[0]
	dag.EstimateTokens(g, tokenizer.MustDefault())

	f := &fake{}
	if _, err := scheduler.Run(context.Background(), scheduler.Config{Policy: scheduler.Sequential{}}, []*dag.Graph{g}, f, &memSink{}); err != nil {
		t.Fatal(err)
	}
	last := f.calls[2].Messages // c3: system, user, assistant+call, tool, assistant (call only), tool
	var roles []string
	for _, m := range last {
		roles = append(roles, m.Role)
	}
	if got := strings.Join(roles, " "); got != "system user assistant tool assistant tool" {
		t.Fatalf("roles %q", got)
	}
	if c := last[2].ToolCalls; len(c) != 1 || c[0].Name != "str_replace_editor" || last[3].ToolCallID != c[0].ID || last[2].Content != "Let me look." {
		t.Errorf("first turn %+v, its result %+v", last[2], last[3])
	}
	if c := last[4].ToolCalls; len(c) != 1 || c[0].Name != "bash" || last[5].ToolCallID != "c2/call0" || last[4].Content != "" {
		t.Errorf("second turn %+v, its result %+v", last[4], last[5])
	}

	cl := engine(t, nil)
	sink := &memSink{}
	if _, err := scheduler.Run(context.Background(), scheduler.Config{Policy: scheduler.Sequential{}, TimeScale: 0.01}, []*dag.Graph{g}, cl, sink); err != nil {
		t.Fatal(err)
	}
	llm := 0
	for _, r := range sink.nodes {
		if r.Kind != "llm" {
			continue
		}
		llm++
		n := g.Node(r.Node)
		if r.Status != scheduler.StatusOK || r.PromptTokens != n.InputTokens.N {
			t.Errorf("node %s: %s, engine counted %d prompt tokens, the trace %d", r.Node, r.Status, r.PromptTokens, n.InputTokens.N)
		}
	}
	if llm != 3 {
		t.Errorf("%d LLM results, want 3", llm)
	}
}
