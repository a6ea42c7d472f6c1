package dag

import (
	"fmt"
	"strings"
)

// builder turns the events of a trace, in the order they happened, into a
// graph with real dependencies. Every importer but the native one drives it:
//
//   - call: an LLM call by an agent. It depends on the agent's previous call
//     (history) and on the source of every input it received since
//     (observation or message), and those inputs become its Inputs.
//   - tool: a tool or code execution requested by the agent's last call
//     (observation edge from that call); its result is delivered to the
//     agent, or posted to every agent in a group chat.
//   - send: a message from one agent (its last node) to another, or posted
//     to all agents when the recipient is "".
//   - input: text from outside (the task) delivered with no source node.
//
// Posts reach every agent but their sender, at that agent's next call.
type builder struct {
	g        *Graph
	ids      map[string]int
	lastCall map[string]*Node
	lastNode map[string]*Node
	pending  map[string][]delivery
	posts    []post
	cursor   map[string]int
	seq      int // orders directed deliveries against posts
	// calls are each agent's tool calls awaiting their results, oldest
	// first.
	calls map[string][]string
}

type delivery struct {
	seq  int
	src  *Node // nil: no dependency
	typ  EdgeType
	from string
	text string
	// callID is the tool call a tool's result answers, for its owner (the
	// agent that made the call).
	callID, owner string
}

type post struct {
	sender string // "" reaches every agent, the sender's own tools' results included
	delivery
}

func newBuilder(id, format string) *builder {
	return &builder{
		g:        &Graph{ID: id, Format: format, Meta: map[string]string{}},
		ids:      map[string]int{},
		lastCall: map[string]*Node{},
		lastNode: map[string]*Node{},
		pending:  map[string][]delivery{},
		cursor:   map[string]int{},
		calls:    map[string][]string{},
	}
}

// node adds a node with a unique id derived from id: a repeated id gets
// the first free suffix "#2", "#3"...
func (b *builder) node(id string, kind Kind, agent, text string, line int) *Node {
	if b.ids[id] > 0 {
		base := id
		for k := b.ids[base] + 1; ; k++ {
			if id = fmt.Sprintf("%s#%d", base, k); b.ids[id] == 0 {
				b.ids[base] = k
				break
			}
		}
	}
	b.ids[id]++
	nd := &Node{ID: id, Kind: kind, Agent: agent, Output: text, Line: line}
	b.g.Nodes = append(b.g.Nodes, nd)
	return nd
}

func (b *builder) edge(from, to *Node, typ EdgeType) {
	b.g.Edges = append(b.g.Edges, Edge{From: from.ID, To: to.ID, Type: typ})
}

// call adds an LLM call by agent whose reference output is text.
func (b *builder) call(id, agent, text string, line int) *Node {
	n := b.node(id, KindLLM, agent, text, line)
	n.Label = agent + " call"
	deps := map[*Node]bool{}
	if prev := b.lastCall[agent]; prev != nil {
		b.edge(prev, n, EdgeHistory)
		deps[prev] = true
	}
	take := func(d delivery) {
		if d.src != nil && !deps[d.src] {
			b.edge(d.src, n, d.typ)
			deps[d.src] = true
		}
		if d.text != "" {
			in := Input{From: d.from, Text: d.text}
			if d.owner == agent {
				in.ToolCallID = d.callID
			}
			n.Inputs = append(n.Inputs, in)
		}
	}
	// Directed deliveries and posts, merged in the order they happened.
	ds := b.pending[agent]
	delete(b.pending, agent)
	ps := b.posts[b.cursor[agent]:]
	b.cursor[agent] = len(b.posts)
	for len(ds) > 0 || len(ps) > 0 {
		if len(ps) == 0 || (len(ds) > 0 && ds[0].seq < ps[0].seq) {
			take(ds[0])
			ds = ds[1:]
			continue
		}
		if ps[0].sender == "" || ps[0].sender != agent {
			take(ps[0].delivery)
		}
		ps = ps[1:]
	}
	b.lastCall[agent] = n
	b.lastNode[agent] = n
	delete(b.calls, agent) // calls never answered stay unanswered
	return n
}

// toolCall records a tool call made by agent's last call; the next tool
// result for agent answers it.
func (b *builder) toolCall(agent, name, args string) bool {
	c := b.lastCall[agent]
	if c == nil {
		return false
	}
	tc := ToolCall{ID: fmt.Sprintf("%s/call%d", c.ID, len(c.ToolCalls)), Name: name, Arguments: args}
	c.ToolCalls = append(c.ToolCalls, tc)
	b.calls[agent] = append(b.calls[agent], tc.ID)
	return true
}

// tool adds a tool execution requested by agent's last call; its result is
// delivered to agent, or posted to all when broadcast.
func (b *builder) tool(id, agent, text string, line int, broadcast bool) *Node {
	n := b.node(id, KindTool, agent, text, line)
	n.Label = agent + " tool"
	if c := b.lastCall[agent]; c != nil {
		b.edge(c, n, EdgeObservation)
	}
	b.lastNode[agent] = n
	d := delivery{src: n, typ: EdgeObservation, from: "tool", text: text, owner: agent}
	if q := b.calls[agent]; len(q) > 0 {
		d.callID, b.calls[agent] = q[0], q[1:]
	}
	if broadcast {
		b.posts = append(b.posts, post{delivery: b.stamp(d)})
	} else {
		b.pending[agent] = append(b.pending[agent], b.stamp(d))
	}
	return n
}

// send delivers text from agent `from` to agent `to`, or posts it to every
// other agent when to is "".
func (b *builder) send(from, to, text string) {
	d := b.stamp(delivery{src: b.lastNode[from], typ: EdgeMessage, from: from, text: text})
	if to == "" {
		b.posts = append(b.posts, post{sender: from, delivery: d})
		return
	}
	b.pending[to] = append(b.pending[to], d)
}

// input delivers text from outside the workflow to agent, or to all agents
// when agent is "".
func (b *builder) input(agent, from, text string) {
	d := b.stamp(delivery{from: from, text: text})
	if agent == "" {
		b.posts = append(b.posts, post{delivery: d})
		return
	}
	b.pending[agent] = append(b.pending[agent], d)
}

// replaceTexts says that what agent will actually read at its next call is
// text alone, whatever was delivered since: the dependencies stay.
func (b *builder) replaceTexts(agent, from, text string) {
	ds := b.pending[agent]
	for k := range ds {
		ds[k].text = ""
	}
	b.pending[agent] = append(ds, b.stamp(delivery{from: from, text: text}))
}

// appendOutput extends the output of agent's last call (a trace that splits
// one answer over several records).
func (b *builder) appendOutput(agent, text string) bool {
	c := b.lastCall[agent]
	if c == nil {
		return false
	}
	if c.Output != "" && text != "" {
		c.Output += "\n"
	}
	c.Output += text
	return true
}

// stamp gives d the next sequence number.
func (b *builder) stamp(d delivery) delivery {
	b.seq++
	d.seq = b.seq
	return d
}

// finish returns the graph, failing if it has no node.
func (b *builder) finish() (*Graph, error) {
	if len(b.g.Nodes) == 0 {
		return nil, ErrEmpty
	}
	return b.g, nil
}

// appworldAgent normalizes agent names that vary in case and suffix across
// formats ("spotify Agent", "Spotify", "simple_note Agent", "SimpleNote"):
// lower case, "agent" suffix and underscores removed. "Supervisor" stays as
// the AppWorld logs spell it.
func appworldAgent(s string) string {
	s = strings.TrimSpace(s)
	s = strings.TrimSuffix(strings.TrimSuffix(s, " Agent"), " agent")
	if strings.EqualFold(s, "supervisor") {
		return "Supervisor"
	}
	return strings.ToLower(strings.ReplaceAll(s, "_", ""))
}
