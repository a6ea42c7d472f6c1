package dag

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/wfsched/wfsched/tokenizer"
)

func TestGenerateShapes(t *testing.T) {
	enc := tokenizer.MustDefault()
	tests := []struct {
		shape         string
		nodes         int
		wantNodes     int // 0: only approximately
		widest, depth int // 0: not checked
	}{
		{"chain", 30, 30, 1, 30},
		{"fanout", 30, 30, 28, 3},
		{"layered", 100, 100, 10, 10},
		{"mapreduce", 60, 0, 0, 6},
		{"agents", 60, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.shape, func(t *testing.T) {
			g, err := Generate(GenConfig{Shape: tt.shape, Nodes: tt.nodes, Seed: 7}, enc)
			if err != nil {
				t.Fatal(err)
			}
			topo, err := Analyze(g)
			if err != nil {
				t.Fatal(err)
			}
			s := Summarize(g, topo, CostModel{})
			if tt.wantNodes > 0 && s.Nodes != tt.wantNodes {
				t.Errorf("nodes = %d, want %d", s.Nodes, tt.wantNodes)
			}
			if s.Nodes < tt.nodes*3/4 || s.Nodes > tt.nodes*5/4 {
				t.Errorf("nodes = %d, want about %d", s.Nodes, tt.nodes)
			}
			if tt.widest > 0 && s.WidestLevel != tt.widest {
				t.Errorf("widest level = %d, want %d", s.WidestLevel, tt.widest)
			}
			if tt.depth > 0 && s.Depth != tt.depth {
				t.Errorf("depth = %d, want %d", s.Depth, tt.depth)
			}
			if tt.shape != "chain" && s.Parallelism < 1.3 {
				t.Errorf("parallelism %.2f: no real parallel structure", s.Parallelism)
			}
			for _, n := range g.Nodes {
				if n.Kind == KindLLM && (n.OutputTokens.N < 16 || n.InputTokens.N <= n.SystemTokens) {
					t.Fatalf("node %s has unrealistic tokens: %+v", n.ID, n)
				}
			}
		})
	}
}

func TestGenerateDeterministic(t *testing.T) {
	enc := tokenizer.MustDefault()
	for _, shape := range Shapes {
		a, _ := Generate(GenConfig{Shape: shape, Nodes: 40, Seed: 11}, enc)
		b, _ := Generate(GenConfig{Shape: shape, Nodes: 40, Seed: 11}, enc)
		if diff := cmp.Diff(a, b); diff != "" {
			t.Errorf("%s: same seed, different graphs:\n%s", shape, diff)
		}
		c, _ := Generate(GenConfig{Shape: shape, Nodes: 40, Seed: 12}, enc)
		if cmp.Equal(a, c) {
			t.Errorf("%s: seeds 11 and 12 gave the same graph", shape)
		}
	}
}

func TestGenerateLayeredEdges(t *testing.T) {
	g, err := Generate(GenConfig{Shape: "layered", Nodes: 10_000, Seed: 1}, tokenizer.MustDefault())
	if err != nil {
		t.Fatal(err)
	}
	// Every node below the first level has its column's node and, unless the
	// draw repeats it (1 in 100), one other parent: about 2 edges per node.
	if r := float64(len(g.Edges)) / float64(len(g.Nodes)); r < 1.9 || r > 2 {
		t.Errorf("edges per node = %.3f, want about 2", r)
	}
}

func TestGenConfigValidate(t *testing.T) {
	for _, c := range []GenConfig{{Shape: "star", Nodes: 10}, {Shape: "chain", Nodes: 2}, {Shape: "layered", Nodes: 10, Width: -1}} {
		if c.Validate() == nil {
			t.Errorf("%+v: no error", c)
		}
	}
}
