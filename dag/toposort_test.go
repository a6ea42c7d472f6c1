package dag

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// mk builds a graph of LLM nodes named by ids with edges "a>b".
func mk(ids []string, edges ...string) *Graph {
	g := &Graph{ID: "t"}
	for _, id := range ids {
		g.Nodes = append(g.Nodes, &Node{ID: id, Kind: KindLLM, Agent: id})
	}
	for _, e := range edges {
		var from, to string
		for i := range e {
			if e[i] == '>' {
				from, to = e[:i], e[i+1:]
			}
		}
		g.Edges = append(g.Edges, Edge{From: from, To: to, Type: EdgeExplicit})
	}
	return g
}

func names(g *Graph, pos []int) []string {
	out := make([]string, len(pos))
	for i, p := range pos {
		out[i] = g.Nodes[p].ID
	}
	return out
}

func TestAnalyzeOrderAndLevels(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		g      *Graph
		order  []string
		levels [][]string
	}{
		{
			name:   "diamond",
			g:      mk([]string{"a", "b", "c", "d"}, "a>b", "a>c", "b>d", "c>d"),
			order:  []string{"a", "b", "c", "d"},
			levels: [][]string{{"a"}, {"b", "c"}, {"d"}},
		},
		{
			name: "ties in file order, not edge order",
			g:    mk([]string{"x", "r", "q", "p"}, "x>p", "x>q", "x>r"),
			// p, q, r become ready together: file order is r, q, p.
			order:  []string{"x", "r", "q", "p"},
			levels: [][]string{{"x"}, {"r", "q", "p"}},
		},
		{
			name:   "independent nodes and a late root",
			g:      mk([]string{"b", "a", "c"}, "c>b"),
			order:  []string{"a", "c", "b"},
			levels: [][]string{{"a", "c"}, {"b"}},
		},
		{
			name:   "level is the longest path, not the shortest",
			g:      mk([]string{"a", "b", "c", "d"}, "a>b", "b>c", "a>d", "c>d"),
			order:  []string{"a", "b", "c", "d"},
			levels: [][]string{{"a"}, {"b"}, {"c"}, {"d"}},
		},
		{
			name:   "duplicate edges count once",
			g:      mk([]string{"a", "b"}, "a>b", "a>b"),
			order:  []string{"a", "b"},
			levels: [][]string{{"a"}, {"b"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			topo, err := Analyze(tt.g)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.order, names(tt.g, topo.Order)); diff != "" {
				t.Errorf("order (-want +got):\n%s", diff)
			}
			var levels [][]string
			for _, l := range topo.Levels {
				levels = append(levels, names(tt.g, l))
			}
			if diff := cmp.Diff(tt.levels, levels); diff != "" {
				t.Errorf("levels (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAnalyzeParentsChildren(t *testing.T) {
	g := mk([]string{"a", "b", "c", "d"}, "c>d", "a>d", "b>d", "a>b")
	topo, err := Analyze(g)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int32{0, 1, 2}, topo.Parents(3)); diff != "" {
		t.Errorf("parents of d in file order (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int32{1, 3}, topo.Children(0)); diff != "" {
		t.Errorf("children of a (-want +got):\n%s", diff)
	}
}

func TestAnalyzeErrors(t *testing.T) {
	t.Parallel()
	withKind := mk([]string{"a"})
	withKind.Nodes[0].Kind = "gpu"
	negative := mk([]string{"a", "b"})
	negative.Nodes[1].Duration = -1
	badType := mk([]string{"a", "b"}, "a>b")
	badType.Edges[0].Type = "sequential"
	tests := []struct {
		name  string
		g     *Graph
		check func(t *testing.T, err error)
	}{
		{"empty", &Graph{}, func(t *testing.T, err error) {
			if !errors.Is(err, ErrEmpty) {
				t.Errorf("err = %v, want ErrEmpty", err)
			}
		}},
		{"cycle names its nodes in order", mk([]string{"s", "a", "b", "c"}, "s>a", "a>b", "b>c", "c>a"), func(t *testing.T, err error) {
			var ce *CycleError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want *CycleError", err)
			}
			// Any rotation of a -> b -> c is right; normalize to start at a.
			got := ce.Nodes
			for len(got) > 0 && got[0] != "a" {
				got = append(got[1:], got[0])
			}
			if diff := cmp.Diff([]string{"a", "b", "c"}, got); diff != "" {
				t.Errorf("cycle (-want +got):\n%s", diff)
			}
		}},
		{"self loop", mk([]string{"a"}, "a>a"), func(t *testing.T, err error) {
			var ce *CycleError
			if !errors.As(err, &ce) || len(ce.Nodes) != 1 || ce.Nodes[0] != "a" {
				t.Errorf("err = %v, want a one-node cycle", err)
			}
		}},
		{"unknown target", mk([]string{"a"}, "a>zz"), func(t *testing.T, err error) {
			var ee *EdgeError
			if !errors.As(err, &ee) || ee.Index != 0 || ee.Edge.To != "zz" {
				t.Errorf("err = %v, want *EdgeError on edge 0 naming zz", err)
			}
		}},
		{"duplicate id", mk([]string{"a", "b", "a"}), func(t *testing.T, err error) {
			var ne *NodeError
			if !errors.As(err, &ne) || ne.Index != 2 || ne.ID != "a" {
				t.Errorf("err = %v, want *NodeError at node 2 (a)", err)
			}
		}},
		{"empty id", mk([]string{"a", ""}), func(t *testing.T, err error) {
			var ne *NodeError
			if !errors.As(err, &ne) || ne.Index != 1 {
				t.Errorf("err = %v, want *NodeError at node 1", err)
			}
		}},
		{"unknown kind", withKind, func(t *testing.T, err error) {
			var ne *NodeError
			if !errors.As(err, &ne) {
				t.Errorf("err = %v, want *NodeError", err)
			}
		}},
		{"negative duration", negative, func(t *testing.T, err error) {
			var ne *NodeError
			if !errors.As(err, &ne) || ne.ID != "b" {
				t.Errorf("err = %v, want *NodeError naming b", err)
			}
		}},
		{"unknown edge type", badType, func(t *testing.T, err error) {
			var ee *EdgeError
			if !errors.As(err, &ee) {
				t.Errorf("err = %v, want *EdgeError", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Analyze(tt.g)
			if err == nil {
				t.Fatal("Analyze succeeded, want an error")
			}
			tt.check(t, err)
		})
	}
}

func TestCriticalPath(t *testing.T) {
	t.Parallel()
	// a(1) -> b(5) -> d(1); a -> c(2) -> d; e(10) alone.
	g := mk([]string{"a", "b", "c", "d", "e"}, "a>b", "a>c", "b>d", "c>d")
	topo, err := Analyze(g)
	if err != nil {
		t.Fatal(err)
	}
	path, rank := CriticalPath(topo, []float64{1, 5, 2, 1, 6})
	if diff := cmp.Diff([]string{"a", "b", "d"}, names(g, path.Nodes)); diff != "" {
		t.Errorf("path (-want +got):\n%s", diff)
	}
	if path.Length != 7 {
		t.Errorf("length = %v, want 7", path.Length)
	}
	if diff := cmp.Diff([]float64{7, 6, 3, 1, 6}, rank); diff != "" {
		t.Errorf("ranks (-want +got):\n%s", diff)
	}

	// Zero-weight nodes: a pure chain's path covers every node.
	chain := mk([]string{"a", "b", "c"}, "a>b", "b>c")
	topo, _ = Analyze(chain)
	path, _ = CriticalPath(topo, []float64{1, 0, 0})
	if len(path.Nodes) != 3 {
		t.Errorf("chain path = %v, want all 3 nodes", names(chain, path.Nodes))
	}
}

func TestCosts(t *testing.T) {
	g := &Graph{Nodes: []*Node{
		{ID: "a", Kind: KindLLM, Agent: "x", InputTokens: TokenCount{N: 1000}, OutputTokens: TokenCount{N: 10}},
		{ID: "b", Kind: KindLLM, Agent: "x", InputTokens: TokenCount{N: 1600}, OutputTokens: TokenCount{N: 0}},
		{ID: "t", Kind: KindTool, Agent: "x", Duration: 250e6},
		{ID: "u", Kind: KindTool, Agent: "x"},
		{ID: "o", Kind: KindOther},
	}}
	m := CostModel{DecodeStep: 10e6, PrefillPerToken: 1e3, ToolLatency: 50e6} // 10 ms, 1 us, 50 ms
	got := m.Costs(g)
	// b shares a's 1000-token prompt: only 600 tokens to prefill; output
	// counts at least one step.
	want := []float64{1000*1e-6 + 10*0.01, 600*1e-6 + 0.01, 0.25, 0.05, 0}
	if diff := cmp.Diff(want, got, cmpApprox); diff != "" {
		t.Errorf("costs (-want +got):\n%s", diff)
	}
	m.NoPrefixCache = true
	if got := m.Costs(g)[1]; !approx(got, 1600*1e-6+0.01) {
		t.Errorf("cost without prefix cache = %v", got)
	}
}

var cmpApprox = cmp.Comparer(approx)

func approx(a, b float64) bool {
	d := a - b
	return d < 1e-12 && d > -1e-12
}
