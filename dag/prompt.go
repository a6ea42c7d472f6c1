package dag

import (
	"strconv"

	"github.com/wfsched/wfsched/tokenizer"
)

// Message is one chat message of a rebuilt prompt. Content may be empty when
// the trace kept only a token count; Tokens is then the length to stand in
// for it (tokenizer.Encoder.Filler makes such text).
type Message struct {
	Role    string // "system", "user", "assistant" or "tool"
	Content string
	Tokens  int
	// ToolCalls are an assistant message's recorded tool calls (Tokens
	// counts them); ToolCallID the call a tool message answers.
	ToolCalls  []ToolCall
	ToolCallID string
	// Source identifies the text ("NODE/system", "NODE/in/K", "NODE/out"):
	// the same text recurs under the same Source in later prompts, so text
	// made up for it can be made the same each time.
	Source string
	// Node is the position of the node the text belongs to.
	Node int
	// Input is the index of the input within that node, or InputOutput or
	// InputSystem.
	Input int
}

// PreviousCalls returns, by position, the position of the same agent's
// previous LLM node in file order, or -1 (also for nodes that are not LLM
// calls).
func PreviousCalls(g *Graph) []int {
	prev := make([]int, len(g.Nodes))
	last := map[string]int{}
	for i, n := range g.Nodes {
		prev[i] = -1
		if n.Kind != KindLLM {
			continue
		}
		if p, ok := last[n.Agent]; ok {
			prev[i] = p
		}
		last[n.Agent] = i
	}
	return prev
}

// Messages rebuilds the chat messages LLM node i sent, as its agent saw them
// in the original run ("reference" context): the agent's system text, then
// for each of its earlier calls the inputs that call received (one user
// message each) and its reference output (assistant), then node i's own
// inputs. Successive calls of one agent therefore share a growing prefix.
// prev is PreviousCalls(g).
func Messages(g *Graph, prev []int, i int) []Message {
	var chain []int
	size := 1
	for j := i; j >= 0; j = prev[j] {
		chain = append(chain, j)
		size += len(g.Nodes[j].Inputs) + 1
	}
	first := g.Nodes[chain[len(chain)-1]]
	msgs := make([]Message, 0, size)
	if first.System != "" || first.SystemTokens > 0 {
		msgs = append(msgs, Message{Role: "system", Content: first.System, Tokens: first.SystemTokens,
			Source: first.ID + "/system", Node: chain[len(chain)-1], Input: InputSystem})
	}
	for k := len(chain) - 1; k >= 0; k-- {
		j := chain[k]
		n := g.Nodes[j]
		for q, in := range n.Inputs {
			msgs = append(msgs, Message{Role: in.Role(), Content: in.Text, Tokens: in.Tokens, ToolCallID: in.ToolCallID,
				Source: n.ID + "/in/" + strconv.Itoa(q), Node: j, Input: q})
		}
		if k > 0 {
			msgs = append(msgs, Message{Role: "assistant", Content: n.Output, Tokens: n.OutputTokens.N, ToolCalls: n.ToolCalls,
				Source: n.ID + "/out", Node: j, Input: InputOutput})
		}
	}
	return msgs
}

// Message.Input values for texts that are not inputs.
const (
	InputOutput = -1 // the node's reference output
	InputSystem = -2 // the agent's system text
)

// EstimateTokens fills every count that is still zero: the system text's,
// output tokens from Output, input tokens from each Input's text, and each
// LLM node's prompt length as Messages rebuilds it, rendered by tokenizer's
// chat template with the generation prompt. Counts already set (recorded by
// a trace, or written by an earlier estimate) are kept, so estimating twice
// changes nothing.
func EstimateTokens(g *Graph, enc *tokenizer.Encoder) {
	prev := PreviousCalls(g)
	gen := enc.GenerationPromptTokens()
	asstOH := enc.MessageOverhead("assistant")
	for i, n := range g.Nodes {
		if n.System != "" && n.SystemTokens == 0 {
			n.SystemTokens = enc.Count(n.System)
		}
		if (n.Output != "" || len(n.ToolCalls) > 0) && n.OutputTokens.N == 0 {
			n.OutputTokens = TokenCount{N: enc.Count(n.OutputText())}
		}
		inputs := 0
		for k := range n.Inputs {
			if n.Inputs[k].Text != "" && n.Inputs[k].Tokens == 0 {
				n.Inputs[k].Tokens = enc.Count(n.Inputs[k].Text)
			}
			inputs += enc.MessageOverhead(n.Inputs[k].Role()) + n.Inputs[k].Tokens
		}
		if n.Kind != KindLLM || n.InputTokens.N > 0 {
			continue
		}
		var p int
		if j := prev[i]; j < 0 {
			p = 1 + inputs + gen // <|begin_of_text|> ... assistant header
			if n.System != "" || n.SystemTokens > 0 {
				p += enc.MessageOverhead("system") + n.SystemTokens
			}
		} else {
			pj := g.Nodes[j]
			p = pj.InputTokens.N - gen + asstOH + pj.OutputTokens.N + inputs + gen
		}
		n.InputTokens = TokenCount{N: p}
	}
}

// PrefixShare returns, by position, how many of LLM node i's prompt tokens
// repeat a prefix of an earlier prompt by the same agent: with prompts
// rebuilt as Messages does, the agent's previous prompt is a prefix of the
// next, so this is the previous prompt's length (capped by this one's).
func PrefixShare(g *Graph) []int {
	prev := PreviousCalls(g)
	share := make([]int, len(g.Nodes))
	for i, n := range g.Nodes {
		if j := prev[i]; j >= 0 {
			share[i] = min(g.Nodes[j].InputTokens.N, n.InputTokens.N)
		}
	}
	return share
}

// PrefixShareAny returns, by position, how many of LLM node i's prompt
// tokens repeat a prefix of any earlier prompt in file order, whatever its
// agent (agents with the same system text share it, for instance): the
// tokens a prefix cache that kept everything could serve. Matching is by
// whole messages (identical role and text, or the same Source when only a
// count is known); it is at least PrefixShare.
func PrefixShareAny(g *Graph, enc *tokenizer.Encoder) []int {
	prev := PreviousCalls(g)
	same := PrefixShare(g)
	share := make([]int, len(g.Nodes))
	end := make([]uint64, len(g.Nodes)) // the hash of each LLM node's whole message list
	ends := make([]int, len(g.Nodes))   // and its token count
	parts := 0
	for _, n := range g.Nodes {
		parts += 1 + len(n.Inputs)
	}
	seen := make(map[uint64]struct{}, parts) // hashes of message prefixes of earlier prompts
	userOH, toolOH, asstOH, sysOH := enc.MessageOverhead("user"), enc.MessageOverhead("tool"), enc.MessageOverhead("assistant"), enc.MessageOverhead("system")
	var num []byte
	for i, n := range g.Nodes {
		if n.Kind != KindLLM {
			continue
		}
		h, tokens := uint64(14695981039346656037), 1 // <|begin_of_text|>
		// Continuing an agent's own prompt, all of it is seen already.
		shared, matching := 0, true
		// add hashes the next message (as chain(h, msgID(...)) would, with
		// no string built) and notes whether that prefix was seen before.
		add := func(hm uint64, t int) {
			h = hm
			tokens += t
			if _, ok := seen[h]; matching && ok {
				shared = tokens
			} else {
				matching = false
			}
			seen[h] = struct{}{}
		}
		// The messages this prompt adds to its agent's previous prompt, or
		// all of them for the agent's first call.
		if j := prev[i]; j >= 0 {
			h, tokens = end[j], ends[j]
			shared = tokens
			pj := g.Nodes[j]
			text := pj.Output
			if len(pj.ToolCalls) > 0 {
				text = pj.OutputText()
			}
			add(msgHash(h, "assistant", text, pj.ID, "/out", nil), asstOH+pj.OutputTokens.N)
		} else if n.System != "" || n.SystemTokens > 0 {
			add(msgHash(h, "system", n.System, n.ID, "/system", nil), sysOH+n.SystemTokens)
		}
		for q, in := range n.Inputs {
			num = strconv.AppendInt(num[:0], int64(q), 10)
			if in.ToolCallID != "" {
				add(msgHash(h, "tool", in.Text, n.ID, "/in/", num), toolOH+in.Tokens)
			} else {
				add(msgHash(h, "user", in.Text, n.ID, "/in/", num), userOH+in.Tokens)
			}
		}
		end[i], ends[i] = h, tokens
		share[i] = max(same[i], min(shared, n.InputTokens.N))
	}
	return share
}

// msgHash identifies a message after the prefix hashed h: its role and
// text, or, when only a count is known, its source (id+suffix+num), whose
// stand-in text is derived from it. It hashes the pieces in place, as one
// FNV-1a stream over role, "\x00" and the text (or "\x00@" and the source)
// after mixing h, so no string is built.
func msgHash(h uint64, role, text, id, suffix string, num []byte) uint64 {
	h = mix(h)
	h = fnv(h, role)
	if text != "" {
		return fnv(fnv(h, "\x00"), text)
	}
	h = fnv(fnv(fnv(h, "\x00@"), id), suffix)
	for _, c := range num {
		h ^= uint64(c)
		h *= fnvPrime
	}
	return h
}

const fnvPrime = 1099511628211

// mix spreads the bits of a chained hash before more bytes go in.
func mix(h uint64) uint64 {
	for k := 0; k < 8; k++ {
		h ^= (h >> 29) & 0xff
		h *= fnvPrime
	}
	return h
}

// fnv adds s's bytes to h (FNV-1a steps).
func fnv(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}
