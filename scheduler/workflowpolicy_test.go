package scheduler_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/wfsched/wfsched/dag"
	"github.com/wfsched/wfsched/scheduler"
)

// TestLevels: levels grow with the logarithm of the service and stop at
// MaxLevel.
func TestLevels(t *testing.T) {
	for _, tt := range []struct{ tokens, want int }{
		{0, 0}, {scheduler.ServiceQuantum - 1, 0}, {scheduler.ServiceQuantum, 1}, {3 * scheduler.ServiceQuantum, 2},
		{7 * scheduler.ServiceQuantum, 3}, {1 << 40, scheduler.MaxLevel},
	} {
		if got := scheduler.Level(tt.tokens); got != tt.want {
			t.Errorf("Level(%d) = %d, want %d", tt.tokens, got, tt.want)
		}
	}
}

// prioRecorder completes calls at once, each with 5000 tokens of service,
// and records the priority each call carried, by agent.
type prioRecorder struct {
	mu   sync.Mutex
	prio map[string][]int
	all  []int // in call order
}

func (p *prioRecorder) Complete(_ context.Context, c scheduler.Call) scheduler.CallResult {
	p.mu.Lock()
	p.prio[c.Agent] = append(p.prio[c.Agent], c.Priority)
	p.all = append(p.all, c.Priority)
	p.mu.Unlock()
	return scheduler.CallResult{PromptTokens: 4000, CompletionTokens: 1000, Text: "x"}
}

// TestWorkflowPolicyPriorities: under las a chain's calls, in order,
// carry its attained service, level by level, never falling; under fcfs every priority is
// 0; under srpt-oracle they fall as the remaining work shrinks.
func TestWorkflowPolicyPriorities(t *testing.T) {
	g := gen(t, "chain", 16)
	seq := func(wp scheduler.WorkflowPolicy) []int {
		rec := &prioRecorder{prio: map[string][]int{}}
		if _, err := scheduler.Run(context.Background(), scheduler.Config{Policy: scheduler.Sequential{}, WorkflowPolicy: wp}, []*dag.Graph{g}, rec, &memSink{}); err != nil {
			t.Fatal(err)
		}
		return rec.all
	}
	for _, p := range seq(scheduler.FCFS{}) {
		if p != 0 {
			t.Fatalf("fcfs sent priority %d", p)
		}
	}
	las := seq(scheduler.LAS{})
	if len(las) < 10 || las[0] != 0 {
		t.Fatalf("las priorities %v", las)
	}
	for k := 1; k < len(las); k++ {
		if las[k] < las[k-1] {
			t.Errorf("las priorities fell: %v", las)
			break
		}
	}
	if las[len(las)-1] == 0 {
		t.Errorf("las priorities never rose with service: %v", las)
	}
	srpt := seq(scheduler.SRPTOracle{})
	if srpt[0] == 0 {
		t.Errorf("srpt-oracle's first call has no remaining work: %v", srpt)
	}
}

// TestCriticalPathPriorities: under critical-path a call's level is that
// of the LLM calls left on the longest chain from it (tool nodes do not
// count) times the workflow's mean call so far (a quantum before the
// first); of two branches, the longer goes later.
func TestCriticalPathPriorities(t *testing.T) {
	const diamond = `{"format": "wfsched-dag", "version": 1, "id": "diamond",
 "nodes": [{"id": "a", "kind": "llm", "agent": "a"}, {"id": "b", "kind": "llm", "agent": "b"}, {"id": "c", "kind": "llm", "agent": "c"},
  {"id": "t", "kind": "tool", "agent": "t", "duration_s": 0.01}, {"id": "d", "kind": "llm", "agent": "d"}, {"id": "e", "kind": "llm", "agent": "e"}],
 "edges": [{"from": "a", "to": "b", "type": "explicit"}, {"from": "b", "to": "c", "type": "explicit"}, {"from": "c", "to": "t", "type": "explicit"}, {"from": "t", "to": "d", "type": "explicit"},
  {"from": "a", "to": "e", "type": "explicit"}, {"from": "e", "to": "d", "type": "explicit"}]}`
	gs, err := dag.Parse([]byte(diamond), dag.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rec := &prioRecorder{prio: map[string][]int{}}
	if _, err := scheduler.Run(context.Background(), scheduler.Config{Policy: scheduler.Sequential{}, WorkflowPolicy: scheduler.CriticalPath{}}, gs, rec, &memSink{}); err != nil {
		t.Fatal(err)
	}
	// The recorder serves 5,000 tokens a call. Calls ahead: a 4 (a b c d),
	// b 3, e 2, c 2, d 1.
	want := map[string]int{"a": scheduler.Level(4 * scheduler.ServiceQuantum), "b": scheduler.Level(3 * 5000),
		"e": scheduler.Level(2 * 5000), "c": scheduler.Level(2 * 5000), "d": scheduler.Level(5000)}
	for agent, w := range want {
		if got := rec.prio[agent]; len(got) != 1 || got[0] != w {
			t.Errorf("%s: priorities %v, want [%d]", agent, got, w)
		}
	}
	if rec.prio["b"][0] <= rec.prio["e"][0] {
		t.Errorf("the longer branch (b, %d) does not go after the shorter (e, %d)", rec.prio["b"][0], rec.prio["e"][0])
	}
}

// TestAging: with aging, a call's priority is its send time in
// milliseconds plus its level times the aging, so a chain's calls, whose
// levels rise, carry priorities a multiple of the aging apart.
func TestAging(t *testing.T) {
	g := gen(t, "chain", 16)
	rec := &prioRecorder{prio: map[string][]int{}}
	cfg := scheduler.Config{Policy: scheduler.Sequential{}, WorkflowPolicy: scheduler.LAS{}, Aging: time.Hour}
	if _, err := scheduler.Run(context.Background(), cfg, []*dag.Graph{g}, rec, &memSink{}); err != nil {
		t.Fatal(err)
	}
	levels := 0
	for _, ps := range rec.prio {
		for _, p := range ps {
			level, sent := p/3_600_000, p%3_600_000
			if sent > 60_000 { // the run takes well under a minute
				t.Fatalf("priority %d: send time %d ms", p, sent)
			}
			levels = max(levels, level)
		}
	}
	if levels == 0 {
		t.Errorf("no call above level 0: %v", rec.prio)
	}
	if err := (scheduler.Config{Policy: scheduler.Sequential{}, Aging: -time.Second}).Validate(); err == nil {
		t.Error("negative aging accepted")
	}
}
