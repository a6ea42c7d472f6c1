package scheduler

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/wfsched/wfsched/dag"
)

// DefaultMaxParallel is the default limit on a workflow's nodes in flight.
const DefaultMaxParallel = 64

// State is what a policy sees of one workflow's replay. The coordinator
// owns it; policies only read it.
type State struct {
	Graph *dag.Graph
	Topo  *dag.Topology
	// Rank is each node's critical-path rank: the estimated cost of the
	// heaviest chain from it to a sink (dag.CriticalPath under the default
	// cost model).
	Rank []float64
	// Pos is each node's position in Topo.Order.
	Pos []int
	// Level is the lowest level that still has unfinished nodes.
	Level int
}

// Policy decides which ready nodes start, and in which order. A ready node
// is one whose parents have all finished.
//
// The coordinator keeps ready nodes in a heap by Less and starts them from
// the top while Admit allows, stopping at the first it refuses; so Admit
// must be monotone in Less's order: if a node is refused, every node after
// it is too.
type Policy interface {
	// Name is the name the command line uses.
	Name() string
	// Limit is the most nodes in flight given the run's limit.
	Limit(maxParallel int) int
	// Admit reports whether ready node v may start now.
	Admit(s *State, v int) bool
	// Less orders ready nodes; the coordinator starts them in this order.
	Less(s *State, a, b int) bool
}

// Sequential runs one node at a time in topological order: the baseline.
type Sequential struct{}

// DependencyAware runs the graph level by level, as the prototype's batches:
// a level's nodes run concurrently (up to the limit) and the next level
// waits for all of them (a barrier).
type DependencyAware struct{}

// Parallel is dataflow: each node starts as soon as its parents finish, up
// to the limit, the ready node with the longest remaining critical path
// first.
type Parallel struct{}

var (
	_ Policy = Sequential{}
	_ Policy = DependencyAware{}
	_ Policy = Parallel{}
)

func (Sequential) Name() string                    { return "sequential" }
func (Sequential) Limit(int) int                   { return 1 }
func (Sequential) Admit(*State, int) bool          { return true }
func (Sequential) Less(s *State, a, b int) bool    { return s.Pos[a] < s.Pos[b] }
func (DependencyAware) Name() string               { return "dependency-aware" }
func (DependencyAware) Limit(max int) int          { return max }
func (DependencyAware) Admit(s *State, v int) bool { return s.Topo.Level[v] == s.Level }

// Less puts lower levels first (Admit's monotonicity), then file order.
func (DependencyAware) Less(s *State, a, b int) bool {
	if la, lb := s.Topo.Level[a], s.Topo.Level[b]; la != lb {
		return la < lb
	}
	return a < b
}
func (Parallel) Name() string           { return "parallel" }
func (Parallel) Limit(max int) int      { return max }
func (Parallel) Admit(*State, int) bool { return true }

// Less puts the longer remaining critical path first, then topological
// order.
func (Parallel) Less(s *State, a, b int) bool {
	if s.Rank[a] != s.Rank[b] {
		return s.Rank[a] > s.Rank[b]
	}
	return s.Pos[a] < s.Pos[b]
}

var registry = map[string]Policy{
	"sequential":       Sequential{},
	"dependency-aware": DependencyAware{},
	"parallel":         Parallel{},
}

// Policies lists the policy names.
func Policies() []string { return slices.Sorted(maps.Keys(registry)) }

// PolicyByName returns a policy; the prototype's spelling with an
// underscore (dependency_aware) is accepted too.
func PolicyByName(name string) (Policy, error) {
	if p, ok := registry[strings.ReplaceAll(name, "_", "-")]; ok {
		return p, nil
	}
	return nil, fmt.Errorf("unknown policy %q (want %s)", name, strings.Join(Policies(), ", "))
}
