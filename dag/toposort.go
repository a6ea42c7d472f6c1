package dag

import (
	"fmt"
	"slices"

	"github.com/wfsched/wfsched/internal/heap"
)

// Topology is a validated graph's structure, by node position in
// Graph.Nodes. It is read-only once built and safe for concurrent use.
type Topology struct {
	// Order is a topological order: Kahn's algorithm taking, among the ready
	// nodes, the one earliest in the file.
	Order []int
	// Level is each node's depth: 0 without parents, else 1 + the largest
	// level of its parents.
	Level []int
	// Levels lists the nodes of each level in file order (the prototype's
	// "batches").
	Levels [][]int

	parentStart, childStart []int32
	parents, children       []int32
}

// Parents returns the positions of node i's parents (deduplicated).
func (t *Topology) Parents(i int) []int32 { return t.parents[t.parentStart[i]:t.parentStart[i+1]] }

// Children returns the positions of node i's children (deduplicated).
func (t *Topology) Children(i int) []int32 { return t.children[t.childStart[i]:t.childStart[i+1]] }

// Analyze validates g and computes its topology. It returns ErrEmpty, a
// *NodeError (empty, duplicate or badly kinded node), an *EdgeError (unknown
// endpoint, bad type) or a *CycleError.
func Analyze(g *Graph) (*Topology, error) {
	n := len(g.Nodes)
	if n == 0 {
		return nil, ErrEmpty
	}
	idx := make(map[string]int32, n)
	for i, nd := range g.Nodes {
		if nd == nil {
			return nil, &NodeError{Index: i, Reason: "null node"}
		}
		if nd.ID == "" {
			return nil, &NodeError{Index: i, Reason: "empty id"}
		}
		if j, dup := idx[nd.ID]; dup {
			return nil, &NodeError{Index: i, ID: nd.ID, Reason: fmt.Sprintf("duplicate id (also node %d)", j)}
		}
		switch nd.Kind {
		case KindLLM, KindTool, KindOther:
		default:
			return nil, &NodeError{Index: i, ID: nd.ID, Reason: fmt.Sprintf("unknown kind %q (want llm, tool or other)", nd.Kind)}
		}
		if nd.Duration < 0 {
			return nil, &NodeError{Index: i, ID: nd.ID, Reason: fmt.Sprintf("duration_s %v is negative", nd.Duration.D().Seconds())}
		}
		idx[nd.ID] = int32(i)
	}

	// Resolve edges to positions, drop duplicates, count degrees.
	type pair struct{ from, to int32 }
	edges := make([]pair, 0, len(g.Edges))
	indeg := make([]int32, n+1)
	outdeg := make([]int32, n+1)
	seen := make(map[pair]struct{}, len(g.Edges))
	for k, e := range g.Edges {
		from, ok := idx[e.From]
		if !ok {
			return nil, &EdgeError{Index: k, Edge: e, Reason: fmt.Sprintf("unknown source node %q", e.From)}
		}
		to, ok := idx[e.To]
		if !ok {
			return nil, &EdgeError{Index: k, Edge: e, Reason: fmt.Sprintf("unknown target node %q", e.To)}
		}
		switch e.Type {
		case EdgeHistory, EdgeObservation, EdgeMessage, EdgeExplicit:
		default:
			return nil, &EdgeError{Index: k, Edge: e, Reason: fmt.Sprintf("unknown type %q (want history, observation, message or explicit)", e.Type)}
		}
		if from == to {
			return nil, &CycleError{Nodes: []string{e.From}}
		}
		p := pair{from, to}
		if _, dup := seen[p]; dup {
			continue
		}
		seen[p] = struct{}{}
		edges = append(edges, p)
		indeg[to+1]++
		outdeg[from+1]++
	}

	// Compressed adjacency: prefix sums of degrees, filled in edge order and
	// sorted so that neighbours come in file order.
	t := &Topology{parentStart: make([]int32, n+1), childStart: make([]int32, n+1)}
	for i := 0; i < n; i++ {
		t.parentStart[i+1] = t.parentStart[i] + indeg[i+1]
		t.childStart[i+1] = t.childStart[i] + outdeg[i+1]
	}
	t.parents = make([]int32, len(edges))
	t.children = make([]int32, len(edges))
	pfill := slices.Clone(t.parentStart[:n])
	cfill := slices.Clone(t.childStart[:n])
	for _, e := range edges {
		t.parents[pfill[e.to]] = e.from
		pfill[e.to]++
		t.children[cfill[e.from]] = e.to
		cfill[e.from]++
	}
	for i := 0; i < n; i++ {
		slices.Sort(t.Parents(i))
		slices.Sort(t.Children(i))
	}

	// Kahn's algorithm with a min-heap of positions: deterministic, ties in
	// file order.
	remaining := make([]int32, n)
	ready := heap.New(func(a, b int32) bool { return a < b }, n)
	for i := 0; i < n; i++ {
		remaining[i] = indeg[i+1]
		if remaining[i] == 0 {
			ready.Push(int32(i))
		}
	}
	t.Order = make([]int, 0, n)
	t.Level = make([]int, n)
	for ready.Len() > 0 {
		v := ready.Pop()
		t.Order = append(t.Order, int(v))
		for _, c := range t.Children(int(v)) {
			if l := t.Level[v] + 1; l > t.Level[c] {
				t.Level[c] = l
			}
			remaining[c]--
			if remaining[c] == 0 {
				ready.Push(c)
			}
		}
	}
	if len(t.Order) < n {
		return nil, findCycle(g, t, remaining)
	}
	depth := 0
	for _, l := range t.Level {
		depth = max(depth, l+1)
	}
	t.Levels = make([][]int, depth)
	for i, l := range t.Level {
		t.Levels[l] = append(t.Levels[l], i)
	}
	return t, nil
}

// findCycle walks parents among the nodes Kahn's algorithm could not order
// (each has a parent that is also left) until a node repeats.
func findCycle(g *Graph, t *Topology, remaining []int32) *CycleError {
	start := -1
	for i, r := range remaining {
		if r > 0 {
			start = i
			break
		}
	}
	pos := map[int]int{}
	var path []int
	for v := start; ; {
		if at, ok := pos[v]; ok {
			cyc := path[at:]
			slices.Reverse(cyc) // parents were walked backwards
			// Start at the node earliest in the file.
			first := slices.Index(cyc, slices.Min(cyc))
			cyc = append(cyc[first:], cyc[:first]...)
			names := make([]string, len(cyc))
			for k, c := range cyc {
				names[k] = g.Nodes[c].ID
			}
			return &CycleError{Nodes: names}
		}
		pos[v] = len(path)
		path = append(path, v)
		next := -1
		for _, p := range t.Parents(v) {
			if remaining[p] > 0 {
				next = int(p)
				break
			}
		}
		v = next
	}
}
