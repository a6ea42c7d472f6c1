package dag

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

type djFile struct {
	Metadata map[string]json.RawMessage `json:"metadata"`
	Nodes    []djNode                   `json:"nodes"`
	Edges    []djEdge                   `json:"edges"`
}

type djNode struct {
	ID         string `json:"id"`
	Label      string `json:"label"`
	Type       string `json:"type"`
	Agent      string `json:"agent"`
	Content    string `json:"content"`
	LineNumber int    `json:"line_number"`
	FromAgent  string `json:"from_agent"`
	ToAgent    string `json:"to_agent"`
	Role       string `json:"role"`
	AgentName  string `json:"agent_name"`
	InternName string `json:"intern_name"`
	Subgoal    string `json:"subgoal"`
}

type djEdge struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	EdgeType string `json:"edge_type"`
}

type dagJSONFormat struct{}

func (dagJSONFormat) Name() string { return "dag-json" }

func (dagJSONFormat) Detect(data []byte) bool {
	return firstByte(data) == '{' && bytes.Contains(data, []byte(`"nodes"`))
}

// Parse reads the DAG JSON of the user's prototype: AppWorld, AG2 and
// HyperAgent variants. Their edges only chain consecutive nodes, so by
// default the real dependencies are rebuilt; EdgesFile keeps the file's.
func (dagJSONFormat) Parse(data []byte, opt Options) ([]*Graph, error) {
	var f djFile
	if err := unmarshal(data, &f); err != nil {
		return nil, err
	}
	if len(f.Nodes) == 0 {
		return nil, fmt.Errorf("%w: no nodes", ErrEmpty)
	}
	ids := make(map[string]int, len(f.Nodes))
	for i, n := range f.Nodes {
		if n.ID == "" {
			return nil, &NodeError{Index: i, Reason: "missing id"}
		}
		if j, dup := ids[n.ID]; dup {
			return nil, &NodeError{Index: i, ID: n.ID, Reason: fmt.Sprintf("duplicate id (also node %d)", j)}
		}
		ids[n.ID] = i
	}
	for k, e := range f.Edges {
		for _, end := range []string{e.Source, e.Target} {
			if _, ok := ids[end]; !ok {
				return nil, &EdgeError{Index: k, Edge: Edge{From: e.Source, To: e.Target}, Reason: fmt.Sprintf("unknown node %q", end)}
			}
		}
	}
	meta := metaString(f.Metadata)
	id := meta["task_id"]
	if id == "" {
		id = meta["instance_id"]
	}
	if id == "" {
		id = "dag-json"
	}

	var b *builder
	variant, types := djVariant(f.Nodes)
	switch variant {
	case "appworld":
		a := newAppworld(id, "dag-json")
		a.task(meta["task_description"])
		for _, n := range f.Nodes {
			djAppworld(a, n)
		}
		b = a.b
	case "ag2":
		b = newBuilder(id, "dag-json")
		c := &groupChat{b: b}
		for _, n := range f.Nodes {
			c.step(n.ID, n.AgentName, "", "", n.Content, n.LineNumber, nil)
		}
	case "hyperagent":
		b = newBuilder(id, "dag-json")
		h := &hyperAgent{b: b}
		if p := meta["problem_statement"]; p != "" {
			b.input("Planner", "user", p)
		}
		for _, n := range f.Nodes {
			djHyperAgent(h, n)
		}
	default:
		return nil, fmt.Errorf("unrecognized node types (%s): not an AppWorld, AG2 or HyperAgent DAG", types)
	}
	g := b.g
	for k, v := range meta {
		g.Meta[k] = v
	}
	if opt.Edges == EdgesFile {
		g = djFileEdges(g, f)
	}
	if len(g.Nodes) == 0 {
		return nil, fmt.Errorf("%w: no LLM call or tool node among %d nodes", ErrEmpty, len(f.Nodes))
	}
	return []*Graph{g}, nil
}

var hyperTypes = map[string]bool{"planner_response": true, "navigator_response": true, "intern_assignment": true, "subgoal": true, "info_log": true}

// djVariant tells the converter's variants apart; when none matches it
// returns "" and the node types it saw.
func djVariant(nodes []djNode) (variant, types string) {
	seen := map[string]bool{}
	var list []string
	for _, n := range nodes {
		switch {
		case n.AgentName != "":
			return "ag2", ""
		case hyperTypes[n.Type]:
			return "hyperagent", ""
		case n.Type == "agent_response":
			return "appworld", ""
		}
		if t := fmt.Sprintf("%q", n.Type); !seen[t] && len(list) < 8 {
			seen[t] = true
			list = append(list, t)
		}
	}
	return "", strings.Join(list, ", ")
}

// body drops a node's header line ("Response from X Agent") and indentation,
// and the run's Evaluation block, which the prototype's converter left at
// the end of the last node.
func body(content string) string {
	if k := strings.Index(content, "\nEvaluation\n"); k >= 0 {
		content = content[:k]
	}
	_, rest, ok := strings.Cut(content, "\n")
	if !ok {
		return ""
	}
	lines := strings.Split(rest, "\n")
	indent := -1
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		k := len(l) - len(strings.TrimLeft(l, " "))
		if indent < 0 || k < indent {
			indent = k
		}
	}
	return dedent(lines, max(indent, 0))
}

func djAppworld(a *appworld, n djNode) {
	switch n.Type {
	case "agent_response":
		a.response(n.ID, n.Agent, body(n.Content), n.LineNumber)
	case "code_execution":
		a.codeOutput(n.ID, body(n.Content), n.LineNumber)
	case "agent_entry":
		a.enter(n.Agent)
	case "agent_exit":
		a.exit()
	case "agent_message":
		a.messageTo(n.ID, n.Agent, body(n.Content), n.LineNumber)
	case "agent_reply":
		a.reply(n.FromAgent, body(n.Content))
	case "api_response":
		a.apiResult(body(n.Content))
	}
}

var (
	hyperLogPrefix = regexp.MustCompile(`^HyperAgent_\S+ - INFO - `)
	hyperResponse  = regexp.MustCompile(`^(Inner-\w+-Assistant)'s Response:\s*`)
	hyperReport    = regexp.MustCompile(`^(\w+)->Planner:\s*`)
	plannerPrefix  = regexp.MustCompile(`^Planner's Response:\s*`)
)

func djHyperAgent(h *hyperAgent, n djNode) {
	text := hyperLogPrefix.ReplaceAllString(n.Content, "")
	switch n.Type {
	case "planner_response":
		h.planner(n.ID, plannerPrefix.ReplaceAllString(text, ""), n.LineNumber)
	case "navigator_response":
		h.inner(n.ID, "Navigator", hyperResponse.ReplaceAllString(text, ""), n.LineNumber)
	case "subgoal":
		h.delegate(n.InternName, n.Subgoal)
	case "intern_assignment":
		h.lastInner = hyperName(n.InternName)
	case "thought", "action":
		h.appendOutput(text)
	case "info_log":
		if m := hyperResponse.FindStringSubmatch(text); m != nil {
			h.inner(n.ID, m[1], text[len(m[0]):], n.LineNumber)
		} else if m := hyperReport.FindStringSubmatch(text); m != nil {
			h.report(m[1], text[len(m[0]):])
		}
	}
}

// djFileEdges keeps every node of the file, with the rebuilt nodes' kinds
// and material where they exist, and the file's own edges.
func djFileEdges(rebuilt *Graph, f djFile) *Graph {
	byID := make(map[string]*Node, len(rebuilt.Nodes))
	for _, n := range rebuilt.Nodes {
		byID[n.ID] = n
	}
	g := &Graph{ID: rebuilt.ID, Meta: rebuilt.Meta}
	for _, fn := range f.Nodes {
		if n, ok := byID[fn.ID]; ok {
			g.Nodes = append(g.Nodes, n)
			continue
		}
		agent := fn.Agent
		if agent == "" {
			agent = fn.AgentName
		}
		g.Nodes = append(g.Nodes, &Node{ID: fn.ID, Kind: KindOther, Agent: agent, Label: fn.Label, Output: fn.Content, Line: fn.LineNumber})
	}
	for _, e := range f.Edges {
		g.Edges = append(g.Edges, Edge{From: e.Source, To: e.Target, Type: EdgeExplicit})
	}
	return g
}
