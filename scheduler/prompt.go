package scheduler

import (
	"hash/fnv"
	"sync"

	"github.com/wfsched/wfsched/dag"
	"github.com/wfsched/wfsched/tokenizer"
)

// ContextMode chooses how prompts are rebuilt.
type ContextMode string

const (
	// ContextReference rebuilds each prompt as the agent saw it in the
	// original run, from the trace: reproducible whatever the model says.
	ContextReference ContextMode = "reference"
	// ContextLive puts the outputs generated in this run in place of the
	// recorded ones: the agent's earlier answers, and messages from calls
	// it depends on.
	ContextLive ContextMode = "live"
)

// prompter builds the messages of one workflow's LLM nodes.
type prompter struct {
	g    *dag.Graph
	prev []int
	enc  *tokenizer.Encoder
	mode ContextMode
	// from maps (node, input index) to the LLM node whose output the input
	// is, for the live context: the message parent of the same agent name.
	from map[[2]int]int

	// fill memoizes stand-in texts by source: an agent's history recurs in
	// each of its later prompts. Shared by the trace's workflows.
	mu   sync.RWMutex
	fill map[[2]int]string // by (node, input index or dag.InputOutput/InputSystem)
	// ref memoizes each node's messages in the reference context, which
	// are the same for every workflow but for the tag.
	ref map[int][]Message
}

func newPrompter(g *dag.Graph, t *dag.Topology, enc *tokenizer.Encoder, mode ContextMode) *prompter {
	p := &prompter{g: g, prev: dag.PreviousCalls(g), enc: enc, mode: mode, fill: map[[2]int]string{}, ref: map[int][]Message{}}
	if mode == ContextLive {
		p.from = map[[2]int]int{}
		for v, n := range g.Nodes {
			for q, in := range n.Inputs {
				for _, u := range t.Parents(v) {
					if pu := g.Nodes[u]; pu.Kind == dag.KindLLM && pu.Agent == in.From && pu.Agent != n.Agent {
						p.from[[2]int{v, q}] = int(u)
					}
				}
			}
		}
	}
	return p
}

// messages rebuilds node v's prompt. generated holds this run's outputs by
// node (used by the live context). Text a trace lost (only its token count
// is known) is replaced by filler text of that many tokens, the same for
// the same source wherever it recurs, so shared prefixes stay shared.
//
// A non-empty tag starts every prompt (a first line of the system message,
// or a system message of its own), so that replays of one trace in a run
// share no cached prefix with each other.
func (p *prompter) messages(v int, generated func(int) (string, bool), tag string) []Message {
	if p.mode != ContextLive {
		p.mu.RLock()
		base, ok := p.ref[v]
		p.mu.RUnlock()
		if !ok {
			base = p.build(v, nil)
			p.mu.Lock()
			p.ref[v] = base
			p.mu.Unlock()
		}
		return withTag(append(make([]Message, 0, len(base)+1), base...), tag)
	}
	return withTag(p.build(v, generated), tag)
}

// build rebuilds node v's prompt, with this run's outputs in the live
// context.
func (p *prompter) build(v int, generated func(int) (string, bool)) []Message {
	msgs := dag.Messages(p.g, p.prev, v)
	out := make([]Message, len(msgs), len(msgs)+1)
	for i, m := range msgs {
		text := m.Content
		if p.mode == ContextLive && generated != nil {
			switch {
			case m.Input == dag.InputOutput:
				if t, ok := generated(m.Node); ok {
					text = t
				}
			case m.Input >= 0:
				if u, ok := p.from[[2]int{m.Node, m.Input}]; ok {
					if t, ok := generated(u); ok {
						text = t
					}
				}
			}
		}
		if text == "" && m.Tokens > 0 {
			// Stand-in text for what the trace lost, less what the tool
			// calls (kept as recorded) take.
			calls := 0
			if len(m.ToolCalls) > 0 {
				calls = p.enc.Count(tokenizer.Message{ToolCalls: dag.ChatToolCalls(m.ToolCalls)}.Text())
			}
			if m.Tokens > calls {
				text = p.filler(m, m.Tokens-calls)
			}
		}
		// Recorded tool calls stay with the turn in the live context too:
		// the tool messages after it answer them.
		out[i] = Message{Role: m.Role, Content: text, ToolCalls: m.ToolCalls, ToolCallID: m.ToolCallID}
	}
	return out
}

// withTag starts a prompt with the tag, if any.
func withTag(out []Message, tag string) []Message {
	if tag != "" {
		if len(out) > 0 && out[0].Role == "system" {
			out[0].Content = tag + "\n" + out[0].Content
		} else {
			out = append([]Message{{Role: "system", Content: tag}}, out...)
		}
	}
	return out
}

// filler returns the stand-in text of a message's source, made once.
func (p *prompter) filler(m dag.Message, tokens int) string {
	key := [2]int{m.Node, m.Input}
	p.mu.RLock()
	text, ok := p.fill[key]
	p.mu.RUnlock()
	if ok {
		return text
	}
	text = p.enc.Filler(tokens, sourceSeed(p.g.ID, m.Source))
	p.mu.Lock()
	p.fill[key] = text
	p.mu.Unlock()
	return text
}

func sourceSeed(trace, source string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(trace))
	h.Write([]byte{0})
	h.Write([]byte(source))
	return h.Sum64()
}
