package scheduler

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
)

// WorkflowPolicy orders the calls of different workflows where they wait
// for the same resource: each call gets a priority from its workflow's
// progress (lower first), sent with the call as vLLM's priority field
// (which an engine honours under --scheduling-policy priority) and used by
// the virtual client's connection queue. The within-workflow Policy still
// decides which of a workflow's ready nodes start.
type WorkflowPolicy interface {
	// Name is the name the command line uses.
	Name() string
	// Priority is the priority of node v's call in workflow w.
	Priority(w *WorkflowState, v int) int
}

// WorkflowState is what a workflow policy sees of one workflow: the trace
// and, in tokens (prompt plus output of the LLM calls finished), the
// service it has received, in all and along the heaviest chain of
// finished calls reaching each node.
type WorkflowState struct {
	*State
	// Attained is the tokens of the workflow's finished calls.
	Attained int
	// PathAttained[v] is the most tokens of finished calls on any chain of
	// dependencies ending at v's parents.
	PathAttained []int
	// Calls is the workflow's LLM calls finished (with service).
	Calls int
	// CallsAhead[v] is the most LLM calls on any chain of dependencies
	// from v (v included) to the workflow's end: its remaining critical
	// path in calls, from the graph's shape alone.
	CallsAhead []int
	// Remaining is the reference work (prompt and output tokens, from the
	// trace) of the LLM calls not yet finished.
	Remaining int
}

// ServiceQuantum is the first level's worth of tokens: a workflow's level
// is floor(log2(1 + service / ServiceQuantum)), at most MaxLevel, as
// multi-level feedback queues grow their quanta.
const (
	ServiceQuantum = 4096
	MaxLevel       = 15
)

// Level is the discrete priority level of an amount of service (tokens).
func Level(tokens int) int {
	return min(MaxLevel, int(math.Log2(1+float64(tokens)/ServiceQuantum)))
}

// FCFS leaves every call at priority 0: first come, first served wherever
// calls wait (today's behaviour).
type FCFS struct{}

// LAS is least attained service per program (Autellix's PLAS): a
// workflow's calls go before those of workflows that have received more
// service, in levels, so that short workflows are not stuck behind long
// ones and equal workflows share in turn.
type LAS struct{}

// ATLAS is LAS with the service counted along the critical path: a call's
// level is the service of the heaviest chain of finished calls reaching
// it (Autellix's ATLAS for multi-threaded programs), so parallel branches
// of one workflow do not push each other down.
type ATLAS struct{}

// CriticalPath is shortest remaining critical path first, estimated: a
// call's level is that of the LLM calls on the longest chain from it to
// its workflow's end (from the graph's shape, CallsAhead) times the mean
// tokens of the workflow's finished calls (a quantum before its first).
// It needs the workflow's graph ahead of time, not its token counts: what
// a workflow defined as a DAG gives; for an agent that decides its next
// step as it goes, the number of steps left is knowledge of the future.
type CriticalPath struct{}

// SRPTOracle orders workflows by the work they have left, known from the
// trace: shortest remaining first. Not a policy a server could run (it
// needs the future), a yardstick for what ordering could gain.
type SRPTOracle struct{}

func (FCFS) Name() string                          { return "fcfs" }
func (FCFS) Priority(*WorkflowState, int) int      { return 0 }
func (LAS) Name() string                           { return "las" }
func (LAS) Priority(w *WorkflowState, _ int) int   { return Level(w.Attained) }
func (ATLAS) Name() string                         { return "atlas" }
func (ATLAS) Priority(w *WorkflowState, v int) int { return Level(w.PathAttained[v]) }
func (CriticalPath) Name() string                  { return "critical-path" }
func (CriticalPath) Priority(w *WorkflowState, v int) int {
	per := ServiceQuantum // before a first call: one quantum a call
	if w.Calls > 0 {
		per = w.Attained / w.Calls
	}
	return Level(per * w.CallsAhead[v])
}
func (SRPTOracle) Name() string                         { return "srpt-oracle" }
func (SRPTOracle) Priority(w *WorkflowState, _ int) int { return Level(w.Remaining) }

var workflowPolicies = map[string]WorkflowPolicy{"fcfs": FCFS{}, "las": LAS{}, "atlas": ATLAS{}, "critical-path": CriticalPath{}, "srpt-oracle": SRPTOracle{}}

// WorkflowPolicies lists the workflow policy names.
func WorkflowPolicies() []string { return slices.Sorted(maps.Keys(workflowPolicies)) }

// WorkflowPolicyByName returns a workflow policy.
func WorkflowPolicyByName(name string) (WorkflowPolicy, error) {
	if p, ok := workflowPolicies[strings.ToLower(strings.ReplaceAll(name, "_", "-"))]; ok {
		return p, nil
	}
	return nil, fmt.Errorf("unknown workflow policy %q (want %s)", name, strings.Join(WorkflowPolicies(), ", "))
}
