package dag

import (
	"sort"

	"github.com/wfsched/wfsched/tokenizer"
)

// AgentStats summarizes one agent's nodes.
type AgentStats struct {
	Agent        string `json:"agent"`
	LLMCalls     int    `json:"llm_calls"`
	ToolCalls    int    `json:"tool_calls"`
	PromptTokens int    `json:"prompt_tokens"`
	OutputTokens int    `json:"output_tokens"`
}

// Stats describes a graph: its size, shape, estimated work and span, and the
// most a prefix cache could save on it.
type Stats struct {
	ID          string           `json:"id"`
	Format      string           `json:"source_format,omitempty"`
	Nodes       int              `json:"nodes"`
	ByKind      map[Kind]int     `json:"by_kind"`
	Edges       int              `json:"edges"`
	ByEdgeType  map[EdgeType]int `json:"by_edge_type"`
	Agents      []AgentStats     `json:"agents"`
	Depth       int              `json:"depth"`        // number of levels
	WidestLevel int              `json:"widest_level"` // nodes in the largest level
	LevelSizes  []int            `json:"level_sizes"`

	// Work is the sum of all nodes' estimated costs, Span the critical
	// path's, both in seconds under the CostModel used; Parallelism is
	// Work/Span, the most any schedule could overlap on unlimited capacity.
	Work         float64  `json:"work_s"`
	Span         float64  `json:"span_s"`
	Parallelism  float64  `json:"parallelism"`
	CriticalPath []string `json:"critical_path"`

	PromptTokens int  `json:"prompt_tokens"`
	OutputTokens int  `json:"output_tokens"`
	TokensExact  bool `json:"tokens_exact"` // every LLM node's counts came from the trace

	// PrefixShareBound is the fraction of all LLM prompt tokens that repeat
	// a prefix of an earlier prompt by the same agent: the largest hit rate
	// any prefix cache could reach replaying this graph alone.
	PrefixShareBound float64 `json:"prefix_share_bound"`
	// PrefixShareAnyBound counts sharing with any earlier prompt, whatever
	// its agent (see PrefixShareAny); at least PrefixShareBound.
	PrefixShareAnyBound float64 `json:"prefix_share_any_bound"`
}

// SingleChain reports whether no two nodes can ever run at once, so no
// schedule can be faster than running them one by one.
func (s *Stats) SingleChain() bool { return s.WidestLevel <= 1 }

// Summarize computes g's statistics; t is Analyze(g).
func Summarize(g *Graph, t *Topology, m CostModel) Stats {
	enc, err := tokenizer.Default()
	if err != nil {
		panic(err) // the embedded vocabulary is part of the build
	}
	s := Stats{
		ID: g.ID, Format: g.Format, Nodes: len(g.Nodes), ByKind: map[Kind]int{},
		ByEdgeType: map[EdgeType]int{}, Depth: len(t.Levels), TokensExact: true,
	}
	for _, e := range g.Edges {
		s.ByEdgeType[e.Type]++
	}
	s.Edges = len(t.parents)
	agents := map[string]*AgentStats{}
	var order []string
	// The two bounds only read the graph: the costlier runs beside the rest.
	var anyShare []int
	anyDone := make(chan struct{})
	go func() {
		defer close(anyDone)
		anyShare = PrefixShareAny(g, enc)
	}()
	share := PrefixShare(g)
	<-anyDone
	shared, sharedAny := 0, 0
	for i, n := range g.Nodes {
		s.ByKind[n.Kind]++
		a := agents[n.Agent]
		if a == nil {
			a = &AgentStats{Agent: n.Agent}
			agents[n.Agent] = a
			order = append(order, n.Agent)
		}
		switch n.Kind {
		case KindLLM:
			a.LLMCalls++
			a.PromptTokens += n.InputTokens.N
			a.OutputTokens += n.OutputTokens.N
			s.PromptTokens += n.InputTokens.N
			s.OutputTokens += n.OutputTokens.N
			shared += share[i]
			sharedAny += anyShare[i]
			s.TokensExact = s.TokensExact && n.InputTokens.Exact && n.OutputTokens.Exact
		case KindTool:
			a.ToolCalls++
		}
	}
	for _, name := range order {
		if a := agents[name]; a.LLMCalls+a.ToolCalls > 0 {
			s.Agents = append(s.Agents, *a)
		}
	}
	sort.SliceStable(s.Agents, func(i, j int) bool { return s.Agents[i].LLMCalls > s.Agents[j].LLMCalls })
	if s.ByKind[KindLLM] == 0 {
		s.TokensExact = false
	}
	if s.PromptTokens > 0 {
		s.PrefixShareBound = float64(shared) / float64(s.PromptTokens)
		s.PrefixShareAnyBound = float64(sharedAny) / float64(s.PromptTokens)
	}
	for _, l := range t.Levels {
		s.LevelSizes = append(s.LevelSizes, len(l))
		s.WidestLevel = max(s.WidestLevel, len(l))
	}
	costs := m.Costs(g)
	for _, c := range costs {
		s.Work += c
	}
	path, _ := CriticalPath(t, costs)
	s.Span = path.Length
	if s.Span > 0 {
		s.Parallelism = s.Work / s.Span
	}
	for _, v := range path.Nodes {
		s.CriticalPath = append(s.CriticalPath, g.Nodes[v].ID)
	}
	return s
}
