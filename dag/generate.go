package dag

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/wfsched/wfsched/tokenizer"
)

// Shapes lists the synthetic workflow shapes Generate builds.
var Shapes = []string{"chain", "fanout", "mapreduce", "layered", "agents"}

// GenConfig configures Generate. The zero value of every field but Shape and
// Nodes means its default.
type GenConfig struct {
	Shape string // one of Shapes
	Nodes int    // approximate node count (exact for chain, fanout, layered)
	Seed  uint64
	// Width is the layered shape's nodes per level (default the square root
	// of Nodes) and the agents shape's number of worker agents (default 4).
	Width int
}

// Validate checks the configuration.
func (c GenConfig) Validate() error {
	ok := false
	for _, s := range Shapes {
		ok = ok || s == c.Shape
	}
	if !ok {
		return fmt.Errorf("unknown shape %q (want %s)", c.Shape, strings.Join(Shapes, ", "))
	}
	if c.Nodes < 3 || c.Nodes > MaxGenNodes {
		return fmt.Errorf("nodes %d: want 3 to %d (a larger graph would not fit in the %d MiB a trace file may have)", c.Nodes, MaxGenNodes, DefaultMaxBytes>>20)
	}
	if c.Width < 0 || c.Width > c.Nodes {
		return fmt.Errorf("width %d: want 0 (the default) to the number of nodes, %d", c.Width, c.Nodes)
	}
	return nil
}

// MaxGenNodes bounds Generate's graphs to what the tool can load: at this
// size every shape's JSON stays well under DefaultMaxBytes (the largest,
// fanout, is about 117 MiB; every shape loads with inspect).
const MaxGenNodes = 250_000

// Token sizes and tool times of generated nodes are drawn from log-normal
// distributions with these medians and spreads (sigma of the log), clamped,
// chosen to resemble the shared MAST traces: short answers, longer tool
// observations, system prompts of several hundred tokens.
type logNormal struct {
	median, sigma, lo, hi float64
}

var (
	genSystem  = logNormal{600, 0.5, 100, 3000}
	genOutput  = logNormal{180, 0.7, 16, 2048}
	genTask    = logNormal{150, 0.6, 20, 2000}
	genObserve = logNormal{400, 1.0, 8, 8192}
	genToolSec = logNormal{0.15, 1.0, 0.01, 5}
)

func (d logNormal) draw(r *rand.Rand) float64 {
	v := d.median * math.Exp(d.sigma*r.NormFloat64())
	return math.Max(d.lo, math.Min(d.hi, v))
}

// gen builds a synthetic graph node by node.
type gen struct {
	g        *Graph
	r        *rand.Rand
	lastCall map[string]*Node
}

func (b *gen) tokens(d logNormal) int { return int(d.draw(b.r)) }

// llm adds a call by agent that depends on its agent's previous call and on
// parents, whose outputs it receives as inputs (task, if > 0, comes first).
func (b *gen) llm(agent string, task int, parents ...*Node) *Node {
	n := &Node{ID: fmt.Sprintf("n%d", len(b.g.Nodes)), Kind: KindLLM, Agent: agent, Label: agent + " call",
		OutputTokens: TokenCount{N: b.tokens(genOutput)}}
	prev := b.lastCall[agent]
	if prev == nil {
		n.SystemTokens = b.tokens(genSystem)
	} else {
		b.g.Edges = append(b.g.Edges, Edge{From: prev.ID, To: n.ID, Type: EdgeHistory})
	}
	if task > 0 {
		n.Inputs = append(n.Inputs, Input{From: "user", Tokens: task})
	}
	for _, p := range parents {
		typ := EdgeMessage
		if p.Kind == KindTool {
			typ = EdgeObservation
		}
		if p != prev {
			b.g.Edges = append(b.g.Edges, Edge{From: p.ID, To: n.ID, Type: typ})
		}
		n.Inputs = append(n.Inputs, Input{From: p.Agent, Tokens: p.OutputTokens.N})
	}
	b.lastCall[agent] = n
	b.g.Nodes = append(b.g.Nodes, n)
	return n
}

// tool adds a tool execution requested by call.
func (b *gen) tool(call *Node) *Node {
	n := &Node{ID: fmt.Sprintf("n%d", len(b.g.Nodes)), Kind: KindTool, Agent: call.Agent, Label: call.Agent + " tool",
		OutputTokens: TokenCount{N: b.tokens(genObserve)},
		Duration:     Seconds(time.Duration(genToolSec.draw(b.r) * float64(time.Second)).Round(time.Millisecond))}
	b.g.Edges = append(b.g.Edges, Edge{From: call.ID, To: n.ID, Type: EdgeObservation})
	b.g.Nodes = append(b.g.Nodes, n)
	return n
}

// Generate builds a synthetic workflow with real parallel structure and
// token counts (no text), estimated prompt lengths included:
//
//   - chain: calls in a single dependency chain, cycling over three agents;
//   - fanout: a planner, Nodes-2 independent workers, an aggregating call;
//   - mapreduce: a splitter, mappers (call, tool, call), reducers over four
//     mappers each, a final call;
//   - layered: levels of Width nodes, each depending on the node of its
//     column in the previous level (same agent) and one other there;
//   - agents: a coordinator and Width agents with growing histories; each
//     round sends tasks to some agents, who may call a tool or hand off to
//     another, and report back.
//
// The same configuration always gives the same graph.
func Generate(cfg GenConfig, enc *tokenizer.Encoder) (*Graph, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	b := &gen{
		g: &Graph{ID: fmt.Sprintf("%s-%d-s%d", cfg.Shape, cfg.Nodes, cfg.Seed), Format: "generated",
			Meta: map[string]string{"generator": "wfsched gen", "shape": cfg.Shape, "seed": fmt.Sprint(cfg.Seed)}},
		r:        rand.New(rand.NewPCG(cfg.Seed, 0x77667363686564)), // "wfsched"
		lastCall: map[string]*Node{},
	}
	n := cfg.Nodes
	switch cfg.Shape {
	case "chain":
		agents := []string{"planner", "coder", "reviewer"}
		prev := b.llm(agents[0], b.tokens(genTask))
		for i := 1; i < n; i++ {
			prev = b.llm(agents[i%3], 0, prev)
		}
	case "fanout":
		root := b.llm("planner", b.tokens(genTask))
		workers := make([]*Node, 0, n-2)
		for i := 0; i < n-2; i++ {
			workers = append(workers, b.llm(fmt.Sprintf("worker-%d", i+1), 0, root))
		}
		b.llm("planner", 0, workers...)
	case "mapreduce":
		m := max(1, (n-2)*4/13) // 1 + 3m + ceil(m/4) + 1 ≈ n
		split := b.llm("splitter", b.tokens(genTask))
		var mapped []*Node
		for i := 0; i < m; i++ {
			agent := fmt.Sprintf("mapper-%d", i+1)
			c := b.llm(agent, 0, split)
			mapped = append(mapped, b.llm(agent, 0, b.tool(c)))
		}
		var reduced []*Node
		for i := 0; i < len(mapped); i += 4 {
			reduced = append(reduced, b.llm(fmt.Sprintf("reducer-%d", i/4+1), 0, mapped[i:min(i+4, len(mapped))]...))
		}
		b.llm("splitter", 0, reduced...)
	case "layered":
		w := cfg.Width
		if w == 0 {
			w = max(2, int(math.Sqrt(float64(n))))
		}
		var prevLevel []*Node
		for i := 0; i < n; i++ {
			col := i % w
			if col == 0 && i > 0 {
				prevLevel = b.g.Nodes[i-w : i]
			}
			agent := fmt.Sprintf("agent-%d", col+1)
			if prevLevel == nil {
				b.llm(agent, b.tokens(genTask))
				continue
			}
			parents := []*Node{prevLevel[col]}
			if p := prevLevel[b.r.IntN(len(prevLevel))]; p != prevLevel[col] {
				parents = append(parents, p)
			}
			b.llm(agent, 0, parents...)
		}
	case "agents":
		w := cfg.Width
		if w == 0 {
			w = 4
		}
		coord := b.llm("coordinator", b.tokens(genTask))
		for len(b.g.Nodes) < n {
			k := 1 + b.r.IntN(w)
			chosen := b.r.Perm(w)[:k]
			var reports []*Node
			var handoff *Node
			for _, a := range chosen {
				agent := fmt.Sprintf("agent-%d", a+1)
				parents := []*Node{coord}
				if handoff != nil {
					parents = append(parents, handoff)
					handoff = nil
				}
				c := b.llm(agent, 0, parents...)
				if b.r.Float64() < 0.5 {
					c = b.llm(agent, 0, b.tool(c))
				}
				if b.r.Float64() < 0.3 {
					handoff = c // the next chosen agent starts from this one's result
					continue
				}
				reports = append(reports, c)
			}
			if handoff != nil {
				reports = append(reports, handoff)
			}
			coord = b.llm("coordinator", 0, reports...)
		}
	}
	EstimateTokens(b.g, enc)
	return b.g, nil
}
