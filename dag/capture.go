package dag

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wfsched/wfsched/capture"
	"github.com/wfsched/wfsched/internal/gzfile"
)

// Captures (package capture): the calls a client made through wfsched's
// router, or an OpenTelemetry trace's LLM spans, rebuilt into workflows.

type captureFormat struct{}

func (captureFormat) Name() string { return "capture" }

func (captureFormat) Detect(data []byte) bool { return capture.Detect(data) }

func (captureFormat) Parse(data []byte, _ Options) ([]*Graph, error) {
	recs, err := capture.Read(bytes.NewReader(data), "capture")
	if err != nil {
		return nil, err
	}
	return FromCapture(recs)
}

// IsCaptureDir reports whether path is a folder holding capture files.
func IsCaptureDir(path string) bool {
	names, _ := capture.Files(path)
	for _, n := range names {
		f, err := gzfile.Open(n)
		if err != nil {
			continue
		}
		head := make([]byte, 4096)
		k, _ := io.ReadFull(f, head)
		f.Close()
		if capture.Detect(head[:k]) {
			return true
		}
	}
	return false
}

// MinThink is the least gap kept as an agent's own (think) time.
const MinThink = time.Millisecond

// FromCapture rebuilds one graph per workflow from capture records, in the
// order of the workflows' first calls. Per workflow, calls are taken in
// arrival order; only answered calls (status 200) count, so a retried
// call is its successful attempt.
//
// An agent's call continues its previous call when its messages begin with
// the previous call's messages and answer: the rest are its inputs, and a
// history edge links the two. A call that does not continue its agent's
// conversation (a fresh prompt) starts a new context, named agent~2, ~3...,
// so that rebuilt prompts stay what was sent. A Responses API call that
// names its previous response continues it whatever it sends.
//
// Each input gets an edge from the earlier call whose output it contains
// (message), or from the call the client named as parent. An input that
// no call produced and that arrives after the agent's previous call is a
// tool's (or the environment's) observation: a tool node between the two
// whose duration is the gap between them. A gap before a call that no
// dependency explains is the agent's own time, kept as the node's
// think_s.
func FromCapture(recs []capture.Record) ([]*Graph, error) {
	byWF := map[string][]*capture.Record{}
	var order []string
	for i := range recs {
		r := &recs[i]
		if r.Status != 0 && r.Status != 200 {
			continue
		}
		if _, ok := byWF[r.Workflow]; !ok {
			order = append(order, r.Workflow)
		}
		byWF[r.Workflow] = append(byWF[r.Workflow], r)
	}
	var gs []*Graph
	var t0 time.Time
	for _, wf := range order {
		for _, r := range byWF[wf] {
			if t0.IsZero() || r.Arrival.Before(t0) {
				t0 = r.Arrival
			}
		}
	}
	var toolsOnly []string // workflows of tool spans and no LLM span
	for _, wf := range order {
		if !slices.ContainsFunc(byWF[wf], func(r *capture.Record) bool { return r.Kind != "tool" }) {
			toolsOnly = append(toolsOnly, wf)
			continue
		}
		g, err := fromCalls(wf, byWF[wf])
		if err != nil {
			return nil, fmt.Errorf("workflow %s: %w", wf, err)
		}
		// Starts in modeled time from the capture's first call, so that
		// workflows replay at the offsets the server's clock saw.
		first := byWF[wf][0]
		g.Start = t0.Add(secondsOf(modeled(first.Arrival.Sub(t0), first)).D())
		gs = append(gs, g)
	}
	if len(gs) == 0 {
		return nil, fmt.Errorf("%w: no answered call in the capture", ErrEmpty)
	}
	if len(toolsOnly) > 0 {
		gs[0].Meta[MetaToolsOnly] = strings.Join(toolsOnly, ",")
	}
	return gs, nil
}

// context is one agent conversation being rebuilt.
type captureContext struct {
	name string
	conv []capture.Message // the last call's messages and its answer
	last *Node
	rec  *capture.Record
	n    int
}

// sameMessage reports whether b repeats message a as sent or answered
// before, up to serialization: the role, the tool calls (ids, names and
// canonical arguments, as far as the content mode kept them) and the text
// (or its hash) agree. Without text or calls to compare, the token counts
// must: a framework that re-serializes a call's arguments changes their
// token count, so a message with tool calls is compared by the calls.
func sameMessage(a, b capture.Message) bool {
	if a.Role != b.Role || a.ToolCallID != b.ToolCallID || len(a.ToolCalls) != len(b.ToolCalls) {
		return false
	}
	for i, x := range a.ToolCalls {
		y := b.ToolCalls[i]
		if x.Name != y.Name || x.ID != y.ID || !capture.SameArgs(x, y) {
			return false
		}
	}
	switch {
	case a.Text != "" || b.Text != "":
		return strings.TrimSpace(a.Text) == strings.TrimSpace(b.Text)
	case a.Hash != "" || b.Hash != "":
		return a.Hash == b.Hash
	case len(a.ToolCalls) > 0:
		return true
	}
	return a.Tokens == b.Tokens
}

// contextKey indexes a conversation by its agent, its length and its last
// message (what sameMessage compares first), for finding the conversation
// a call continues.
type contextKey struct {
	agent      string
	n          int
	role, text string
	calls      string // the tool calls' ids and names
}

func newContextKey(agent string, n int, last capture.Message) contextKey {
	k := contextKey{agent: agent, n: n, role: last.Role}
	switch {
	case len(last.ToolCalls) > 0:
		var b strings.Builder
		for _, c := range last.ToolCalls {
			b.WriteString(c.ID + "\x00" + c.Name + "\x00")
		}
		k.calls = b.String()
	case last.Text != "":
		k.text = capture.HashText(strings.TrimSpace(last.Text))
	case last.Hash != "":
		k.text = last.Hash
	default:
		k.text = strconv.Itoa(last.Tokens)
	}
	return k
}

// modeled converts a recorded duration to modeled seconds (wall divided by
// the server's time scale).
func modeled(d time.Duration, r *capture.Record) float64 {
	if r.TimeScale > 0 {
		return d.Seconds() / r.TimeScale
	}
	return d.Seconds()
}

func fromCalls(wf string, recs []*capture.Record) (*Graph, error) {
	slices.SortStableFunc(recs, func(a, b *capture.Record) int { return a.Arrival.Compare(b.Arrival) })
	g := &Graph{ID: wf, Format: "capture", Meta: map[string]string{}, Start: recs[0].Arrival}
	ctxs := map[contextKey][]*captureContext{} // contexts by agent, conversation length and last message
	contexts := map[string]int{}               // contexts started per agent
	inferred := map[string]string{}            // agents inferred: name by system prompt and tools
	nodeOf := map[*capture.Record]*Node{}      // each call's node
	byID := map[string]*capture.Record{}       // calls by request id
	ctxOf := map[*Node]*captureContext{}       // each call node's context
	toolIDs := map[string]bool{}               // tool call ids in use
	quoted := newQuoteIndex()
	edges := map[[2]string]bool{}
	edge := func(from, to *Node, typ EdgeType) {
		if from == nil || from == to || edges[[2]string{from.ID, to.ID}] {
			return
		}
		edges[[2]string{from.ID, to.ID}] = true
		g.Edges = append(g.Edges, Edge{From: from.ID, To: to.ID, Type: typ})
	}
	var toolRecs []*capture.Record // tool spans of imported traces
	for _, r := range recs {
		if r.Kind == "tool" {
			toolRecs = append(toolRecs, r)
		}
	}
	// toolSpan finds the recorded run of tool name (any tool if the
	// name is not known) between an agent's calls.
	toolSpan := func(agent, name string, from, to time.Time) *capture.Record {
		for _, named := range []bool{true, false} {
			for k, t := range toolRecs {
				if t != nil && (t.Agent == "" || t.Agent == agent) && (!named || t.Tool == name) &&
					!t.Arrival.Before(from.Add(-time.Millisecond)) && !t.End.After(to.Add(time.Millisecond)) {
					toolRecs[k] = nil
					return t
				}
			}
		}
		return nil
	}
	for _, r := range recs {
		if r.Kind == "tool" {
			continue
		}
		agent := r.Agent
		if agent == "" {
			agent = inferAgent(r, inferred)
		}
		var c *captureContext
		var fresh []capture.Message
		continuing := false
		if p, ok := byID[r.Parent]; ok && r.API == "responses" && nodeOf[p] != nil {
			c, continuing, fresh = ctxOf[nodeOf[p]], true, r.Messages
		} else {
			// The longest conversation of the agent that these messages
			// repeat and go on from.
			for l := len(r.Messages) - 1; l > 0 && !continuing; l-- {
				for _, k := range ctxs[newContextKey(agent, l, r.Messages[l-1])] {
					if len(k.conv) == l && repeats(r.Messages, k.conv) {
						c, continuing, fresh = k, true, r.Messages[l:]
						break
					}
				}
			}
		}
		if !continuing {
			contexts[agent]++
			name := agent
			if k := contexts[agent]; k > 1 {
				name = agent + "~" + strconv.Itoa(k)
			}
			c = &captureContext{name: name}
			fresh = r.Messages
		}
		c.n++
		n := &Node{ID: fmt.Sprintf("%s/%d", c.name, c.n), Kind: KindLLM, Agent: c.name, Label: c.name + " call",
			Output: r.Output.Text, InputTokens: TokenCount{N: r.PromptTokens, Exact: r.PromptTokens > 0},
			OutputTokens: TokenCount{N: r.CompletionTokens, Exact: true},
			Meta:         map[string]string{"request_id": r.RequestID, "arrival_s": strconv.FormatFloat(modeled(r.Arrival.Sub(g.Start), r), 'f', 6, 64)}}
		if r.Backend != "" {
			n.Meta["backend"] = r.Backend
		}
		for _, tc := range r.Output.ToolCalls {
			id := tc.ID
			for id == "" || toolIDs[id] {
				id = fmt.Sprintf("%s/call%d", n.ID, len(n.ToolCalls))
			}
			toolIDs[id] = true
			n.ToolCalls = append(n.ToolCalls, ToolCall{ID: id, Name: tc.Name, Arguments: tc.Arguments})
		}
		if !continuing {
			// The leading system message is the agent's system text.
			if len(fresh) > 0 && fresh[0].Role == "system" {
				n.System, n.SystemTokens = fresh[0].Text, fresh[0].Tokens
				fresh = fresh[1:]
			}
		}
		g.Nodes = append(g.Nodes, n)
		ready := time.Time{} // when the call's last dependency ended
		if continuing {
			edge(c.last, n, EdgeHistory)
			ready = c.rec.End
		}
		var tools []*Node
		for _, m := range fresh {
			in := Input{Text: m.Text, Tokens: m.Tokens}
			var src *capture.Record    // the latest call the message quotes
			var passer *capture.Record // the latest call that passed it as an argument
			for _, q := range quoted.candidates(m) {
				// A call that started before this one and whose output
				// this message quotes: the quote is the evidence (its
				// recorded end may trail the next call's arrival by the
				// time the router took to note it). A tool's result
				// quoting another conversation's answer is that agent's
				// answer (an agent called as a tool); one quoting the
				// agent's own call is a tool's work on it.
				if q == r || nodeOf[q] == nil || !q.Arrival.Before(r.Arrival) || m.Role == "tool" && ctxOf[nodeOf[q]] == c {
					continue
				}
				if !capture.Contains(m, q.Output) {
					if capture.PassesArgs(m, q.Output) && (passer == nil || q.Arrival.After(passer.Arrival)) {
						passer = q
					}
					continue
				}
				edge(nodeOf[q], n, EdgeMessage) // one message may quote several calls
				ready = later(ready, q.End)
				if src == nil || q.End.After(src.End) {
					src = q
				}
			}
			// A task handed on in a tool call's arguments came from one
			// call: the latest that passed it (the same short value may
			// recur in earlier calls' arguments by chance).
			if src == nil && passer != nil {
				edge(nodeOf[passer], n, EdgeMessage)
				ready = later(ready, passer.End)
				src = passer
			}
			switch {
			case src != nil:
				in.From = nodeOf[src].Agent
			case continuing && (m.Role == "tool" || m.Role == "user"):
				// An observation no call produced: a tool ran between the
				// agent's previous call and this one.
				t := &Node{ID: fmt.Sprintf("%s/tool%d", c.name, c.n-1), Kind: KindTool, Agent: c.name, Label: c.name + " tool",
					Output: m.Text, OutputTokens: TokenCount{N: m.Tokens, Exact: true}, Duration: secondsOf(max(0, modeled(r.Arrival.Sub(c.rec.End), r)))}
				for k := 2; slices.ContainsFunc(tools, func(x *Node) bool { return x.ID == t.ID }); k++ {
					t.ID = fmt.Sprintf("%s/tool%d.%d", c.name, c.n-1, k)
				}
				name := "" // the call's tool, by the result's call id
				for _, tc := range c.rec.Output.ToolCalls {
					if m.ToolCallID != "" && tc.ID == m.ToolCallID {
						name, t.Label = tc.Name, tc.Name
					}
				}
				if ts := toolSpan(agent, name, c.rec.End, r.Arrival); ts != nil {
					// The tool's own span: its duration, not the gap.
					t.Duration = secondsOf(modeled(ts.End.Sub(ts.Arrival), r))
					if ts.Tool != "" {
						t.Label = ts.Tool
					}
				}
				tools = append(tools, t)
				edge(c.last, t, EdgeObservation)
				in.From = "tool"
				if m.Role == "tool" {
					in.ToolCallID = m.ToolCallID
				}
				ready = r.Arrival
			}
			if m.Role == "tool" && in.ToolCallID == "" {
				in.ToolCallID = m.ToolCallID
			}
			n.Inputs = append(n.Inputs, in)
		}
		if p, ok := byID[r.Parent]; ok && nodeOf[p] != nil && nodeOf[p] != c.last {
			edge(nodeOf[p], n, EdgeMessage)
			ready = later(ready, p.End)
		}
		if len(tools) > 0 {
			// Tools come before the call that reads them, in node order.
			g.Nodes = g.Nodes[:len(g.Nodes)-1]
			g.Nodes = append(g.Nodes, tools...)
			g.Nodes = append(g.Nodes, n)
			for _, t := range tools {
				edge(t, n, EdgeObservation)
			}
		}
		if !ready.IsZero() {
			if think := modeled(r.Arrival.Sub(ready), r); think >= MinThink.Seconds() {
				n.Think = secondsOf(think)
			}
		}
		quoted.add(r)
		c.conv = append(append([]capture.Message(nil), r.Messages...), r.Output)
		c.last, c.rec = n, r
		key := newContextKey(agent, len(c.conv), r.Output)
		ctxs[key] = append(ctxs[key], c)
		nodeOf[r], byID[r.RequestID], ctxOf[n] = n, r, c
	}
	if len(inferred) > 0 {
		g.Meta[MetaAgentsInferred] = strconv.Itoa(len(inferred))
	}
	targets := map[string]bool{}
	for _, e := range g.Edges {
		targets[e.To] = true
	}
	unlinked := 0
	for i, n := range g.Nodes {
		if i > 0 && n.Kind == KindLLM && !targets[n.ID] {
			unlinked++
		}
	}
	if unlinked > 0 {
		g.Meta[MetaUnlinked] = strconv.Itoa(unlinked)
	}
	return g, nil
}

// Notes a capture's graphs carry in Meta, which CaptureNotes reports.
const (
	MetaAgentsInferred = "agents_inferred" // agents told apart without agent ids
	MetaUnlinked       = "unlinked_calls"  // calls after the first linked to nothing
	MetaTimeScale      = "time_scale"      // how span times became modeled times
	MetaToolsOnly      = "tools_only"      // workflows left out: tool spans and no LLM span
)

// CaptureNotes says, for graphs rebuilt from a capture or spans, what the
// rebuild could not be sure of: calls it linked to nothing (independent
// calls, or inputs it could not match: content mode none, a replay with
// --context reference), agents it inferred, and the time scale applied to
// span times. One line each, empty when there is nothing to say.
func CaptureNotes(gs []*Graph) []string {
	var calls, unlinked, wfUnlinked, agents, wfAgents int
	scales := map[string]bool{}
	var toolsOnly []string
	for _, g := range gs {
		if g.Format != "capture" && g.Format != "otel" {
			continue
		}
		for _, n := range g.Nodes {
			if n.Kind == KindLLM {
				calls++
			}
		}
		if k, _ := strconv.Atoi(g.Meta[MetaUnlinked]); k > 0 {
			unlinked += k
			wfUnlinked++
		}
		if k, _ := strconv.Atoi(g.Meta[MetaAgentsInferred]); k > 0 {
			agents += k
			wfAgents++
		}
		if s := g.Meta[MetaTimeScale]; s != "" {
			scales[s] = true
		}
		if s := g.Meta[MetaToolsOnly]; s != "" {
			toolsOnly = append(toolsOnly, strings.Split(s, ",")...)
		}
	}
	var out []string
	if unlinked > 0 {
		out = append(out, fmt.Sprintf("%d of %d calls (in %d workflows) follow no earlier call: independent calls, or inputs the capture could not match "+
			"(content mode none keeps no texts; a replay captured with --context reference sends prompts that quote nothing, capture --context live)", unlinked, calls, wfUnlinked))
	}
	if agents > 0 {
		out = append(out, fmt.Sprintf("agents inferred from system prompts and tool sets (the calls sent no X-Agent-Id): %d agents in %d workflows", agents, wfAgents))
	}
	for _, s := range slices.Sorted(maps.Keys(scales)) {
		out = append(out, "span times: "+s)
	}
	if len(toolsOnly) > 0 {
		out = append(out, fmt.Sprintf("%d workflows left out: tool spans and no LLM span (their client is not instrumented): %s",
			len(toolsOnly), strings.Join(toolsOnly, ", ")))
	}
	return out
}

// repeats reports whether msgs begin with conv.
func repeats(msgs, conv []capture.Message) bool {
	for i := range conv {
		if !sameMessage(conv[i], msgs[i]) {
			return false
		}
	}
	return true
}

// inferAgent names the agent of a call that came without an agent id: the
// agent with its system prompt and tool set, agent-1, agent-2... in order
// of first appearance (a capture in content mode none keeps neither: one
// agent).
func inferAgent(r *capture.Record, inferred map[string]string) string {
	key := "\x00" + strings.Join(r.Tools, ",")
	if len(r.Messages) > 0 && r.Messages[0].Role == "system" {
		m := r.Messages[0]
		key = cmp.Or(m.Hash, capture.HashText(strings.TrimSpace(m.Text)), strconv.Itoa(m.Tokens)) + key
	}
	name, ok := inferred[key]
	if !ok {
		name = "agent-" + strconv.Itoa(len(inferred)+1)
		inferred[key] = name
	}
	return name
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// quoteIndex finds the earlier calls a message may quote without trying
// every call: by the output's hash, its interior chunks and its tool call
// ids; outputs too short for interior chunks are tried one by one.
// capture.Contains decides.
type quoteIndex struct {
	byHash, byChunk, byCall map[string][]*capture.Record
	short                   []*capture.Record
}

func newQuoteIndex() *quoteIndex {
	return &quoteIndex{byHash: map[string][]*capture.Record{}, byChunk: map[string][]*capture.Record{}, byCall: map[string][]*capture.Record{}}
}

func textHashAndChunks(m capture.Message) (string, []string) {
	if m.Text != "" {
		return capture.HashText(m.Text), capture.Chunks(m.Text)
	}
	return m.Hash, m.Chunks
}

func (x *quoteIndex) add(r *capture.Record) {
	h, chunks := textHashAndChunks(r.Output)
	if h != "" {
		x.byHash[h] = append(x.byHash[h], r)
	}
	short := false // tried one by one
	if len(chunks) > 0 {
		// Its first chunk finds it quoted as whole lines, an interior one
		// quoted anywhere.
		x.byChunk[chunks[0]] = append(x.byChunk[chunks[0]], r)
	}
	if len(chunks) >= 4 {
		x.byChunk[chunks[1]] = append(x.byChunk[chunks[1]], r)
	} else {
		short = r.Output.Text != ""
	}
	for _, tc := range r.Output.ToolCalls {
		if tc.ID != "" {
			x.byCall[tc.ID] = append(x.byCall[tc.ID], r)
		}
		// The string values of its arguments: a sub-agent's prompt.
		for _, v := range tc.Values {
			x.byHash[v] = append(x.byHash[v], r)
		}
		for _, v := range capture.ArgStrings(tc.Arguments) {
			x.byHash[capture.HashText(v)] = append(x.byHash[capture.HashText(v)], r)
			if chunks := capture.Chunks(v); len(chunks) >= 4 {
				x.byChunk[chunks[1]] = append(x.byChunk[chunks[1]], r)
			} else if len(v) >= capture.MinQuote {
				short = true
			}
		}
	}
	if short {
		x.short = append(x.short, r)
	}
}

func (x *quoteIndex) candidates(m capture.Message) []*capture.Record {
	seen := map[*capture.Record]bool{}
	var out []*capture.Record
	add := func(rs []*capture.Record) {
		for _, r := range rs {
			if !seen[r] {
				seen[r] = true
				out = append(out, r)
			}
		}
	}
	h, chunks := textHashAndChunks(m)
	add(x.byHash[h])
	for _, c := range chunks {
		add(x.byChunk[c])
	}
	for _, tc := range m.ToolCalls {
		add(x.byCall[tc.ID])
	}
	if m.Text != "" {
		add(x.short)
	}
	return out
}
