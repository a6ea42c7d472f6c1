package dag

import "time"

// Default cost model parameters: Llama-3.1-8B on one H100, the embedded
// engine's default profile (docs/engine-model.md): a decode step of about
// 7.6 ms at batch 1 (6.5 ms weight read plus 1.1 ms fixed overhead) and
// prefill at about 40k tokens/s (25 us per token).
const (
	DefaultDecodeStep      = 7600 * time.Microsecond
	DefaultPrefillPerToken = 25 * time.Microsecond
)

// CostModel estimates how long a node takes alone on an idle server. It is
// used to weight the critical path and to rank ready nodes; measured times
// replace it after a run. The zero value means the defaults.
type CostModel struct {
	// DecodeStep is the time per output token; 0 means DefaultDecodeStep.
	DecodeStep time.Duration
	// PrefillPerToken is the time per uncached prompt token; 0 means
	// DefaultPrefillPerToken.
	PrefillPerToken time.Duration
	// ToolLatency is the cost of a tool node with no recorded duration
	// (default 0: unknown).
	ToolLatency time.Duration
	// NoPrefixCache charges every prompt token. By default the tokens an
	// LLM node shares with its agent's previous prompt are free, as a
	// server with prefix caching serves them.
	NoPrefixCache bool
}

func (m CostModel) withDefaults() CostModel {
	if m.DecodeStep == 0 {
		m.DecodeStep = DefaultDecodeStep
	}
	if m.PrefillPerToken == 0 {
		m.PrefillPerToken = DefaultPrefillPerToken
	}
	return m
}

// Costs returns each node's estimated cost in seconds, by position:
//
//	llm:   PrefillPerToken * uncached prompt tokens + DecodeStep * max(output tokens, 1)
//	tool:  the recorded Duration, else ToolLatency
//	other: 0
//
// Uncached prompt tokens are the prompt minus the prefix it shares with the
// agent's previous prompt (see PrefixShare), unless NoPrefixCache is set.
func (m CostModel) Costs(g *Graph) []float64 {
	m = m.withDefaults()
	var shared []int
	if !m.NoPrefixCache {
		shared = PrefixShare(g)
	}
	costs := make([]float64, len(g.Nodes))
	for i, n := range g.Nodes {
		switch n.Kind {
		case KindLLM:
			prompt := n.InputTokens.N
			if shared != nil {
				prompt -= shared[i]
			}
			costs[i] = n.Think.D().Seconds() + m.PrefillPerToken.Seconds()*float64(max(prompt, 0)) +
				m.DecodeStep.Seconds()*float64(max(n.OutputTokens.N, 1))
		case KindTool:
			if n.Duration > 0 {
				costs[i] = n.Duration.D().Seconds()
			} else {
				costs[i] = m.ToolLatency.Seconds()
			}
		}
	}
	return costs
}

// Path is a heaviest dependency chain.
type Path struct {
	Nodes  []int   // positions, first to last
	Length float64 // sum of the nodes' weights
}

// CriticalPath returns the chain of maximum total weight (weights by
// position, e.g. from CostModel.Costs or measured service times) and, for
// every node, the weight of the heaviest chain from it to a sink (its
// critical-path rank, used to order ready nodes). Among chains of equal
// weight the one with more nodes wins, then the one earliest in the file.
func CriticalPath(t *Topology, weights []float64) (Path, []float64) {
	n := len(t.Order)
	dist := make([]float64, n) // heaviest chain ending at i, inclusive
	hops := make([]int32, n)   // its length in nodes, to break ties
	prev := make([]int32, n)
	longer := func(a, b int32) bool { // is the chain ending at a heavier than b's?
		return dist[a] > dist[b] || dist[a] == dist[b] && hops[a] > hops[b]
	}
	best := int32(-1)
	for _, vi := range t.Order {
		v := int32(vi)
		prev[v] = -1
		for _, p := range t.Parents(vi) {
			if prev[v] < 0 || longer(p, prev[v]) {
				prev[v] = p
			}
		}
		if p := prev[v]; p >= 0 {
			dist[v], hops[v] = dist[p], hops[p]
		}
		dist[v] += weights[v]
		hops[v]++
		if best < 0 || longer(v, best) {
			best = v
		}
	}
	var path Path
	path.Length = dist[best]
	for v := best; v >= 0; v = prev[v] {
		path.Nodes = append(path.Nodes, int(v))
	}
	for l, r := 0, len(path.Nodes)-1; l < r; l, r = l+1, r-1 {
		path.Nodes[l], path.Nodes[r] = path.Nodes[r], path.Nodes[l]
	}

	rank := make([]float64, n) // heaviest chain starting at i, inclusive
	for k := n - 1; k >= 0; k-- {
		v := t.Order[k]
		r := 0.0
		for _, c := range t.Children(v) {
			r = max(r, rank[c])
		}
		rank[v] = r + weights[v]
	}
	return path, rank
}
