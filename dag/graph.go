package dag

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/wfsched/wfsched/tokenizer"
)

// Kind classifies a node.
type Kind string

// Node kinds.
const (
	KindLLM   Kind = "llm"   // a call to a language model
	KindTool  Kind = "tool"  // a tool or code execution whose result an agent observes
	KindOther Kind = "other" // anything else (costs nothing when replayed)
)

// EdgeType says why one node depends on another.
type EdgeType string

// Edge types.
const (
	// EdgeHistory links an agent's call to its previous call: the later
	// prompt contains the earlier one's conversation.
	EdgeHistory EdgeType = "history"
	// EdgeObservation links a call to the tool execution it requested, and
	// the tool's result to the agent's next call.
	EdgeObservation EdgeType = "observation"
	// EdgeMessage carries a message from one agent to another.
	EdgeMessage EdgeType = "message"
	// EdgeExplicit is an edge given by the input file as it was.
	EdgeExplicit EdgeType = "explicit"
)

// TokenCount is a number of tokens and whether a trace recorded it (Exact)
// or wfsched estimated it from text.
type TokenCount struct {
	N     int  `json:"n"`
	Exact bool `json:"exact,omitempty"`
}

// Input is a text an LLM node received since its agent's previous call: a
// message from another agent, a tool's observation, or the task.
type Input struct {
	From   string `json:"from,omitempty"`   // the sending agent or node, if known
	Text   string `json:"text,omitempty"`   // may be empty when only Tokens is known
	Tokens int    `json:"tokens,omitempty"` // token count of Text (or of the lost text)
	// ToolCallID, when set, says the input is a tool's result answering
	// that call of the agent's previous call (a "tool" message).
	ToolCallID string `json:"tool_call_id,omitempty"`
}

// ToolCall is a function call an LLM node's reference output made, as a
// trace records it: an id (unique in the graph), the function's name and
// its arguments (a JSON text).
type ToolCall struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Arguments string `json:"arguments,omitempty"`
}

// Node is one event of a workflow.
type Node struct {
	ID    string `json:"id"`
	Kind  Kind   `json:"kind"`
	Agent string `json:"agent,omitempty"`
	Label string `json:"label,omitempty"`

	// System is the agent's system text, when the trace has it. Only the
	// agent's first call's System is used when prompts are rebuilt.
	System string `json:"system,omitempty"`
	// SystemTokens is System's token count (or the lost text's).
	SystemTokens int `json:"system_tokens,omitempty"`
	// Inputs are the texts this call received since the agent's previous
	// call, in order.
	Inputs []Input `json:"inputs,omitempty"`
	// Output is the reference output: what the model answered or the tool
	// returned in the original run.
	Output string `json:"output,omitempty"`
	// ToolCalls are the tool calls an LLM node's reference output made,
	// when the trace records them as such; OutputTokens counts them with
	// Output, as the chat template renders them (tokenizer.Message.Text).
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`

	// InputTokens is, for an LLM node, the whole prompt as rebuilt (see
	// Prompts); OutputTokens the reference output's length.
	InputTokens  TokenCount `json:"input_tokens"`
	OutputTokens TokenCount `json:"output_tokens"`

	// Duration is a tool node's recorded execution time, zero if unknown.
	Duration Seconds `json:"duration_s,omitempty"`
	// Think is an LLM node's recorded think time: how long its agent
	// worked on its own after the call's dependencies ended and before it
	// sent the call (a captured run's gap that no call or tool explains).
	// Replays wait it before sending.
	Think Seconds `json:"think_s,omitempty"`

	// Line is where the node starts in its source file (1-based), 0 if none.
	Line int               `json:"line,omitempty"`
	Meta map[string]string `json:"meta,omitempty"`
}

// Seconds is a duration written in JSON as a number of seconds.
type Seconds time.Duration

// D returns s as a time.Duration.
func (s Seconds) D() time.Duration { return time.Duration(s) }

// MarshalJSON writes s as seconds.
func (s Seconds) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(s).Seconds())
}

// UnmarshalJSON reads a number of seconds; values beyond about 290 years
// saturate. Readers check the sign (see Analyze).
func (s *Seconds) UnmarshalJSON(b []byte) error {
	var v float64
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("duration_s: want a number of seconds, found %.40s", b)
	}
	*s = secondsOf(v)
	return nil
}

// secondsOf converts a number of seconds, saturating beyond about 290 years.
func secondsOf(v float64) Seconds {
	return Seconds(time.Duration(max(min(v, 9e9), -9e9) * float64(time.Second)))
}

// Edge says that To cannot start before From has finished.
type Edge struct {
	From string   `json:"from"`
	To   string   `json:"to"`
	Type EdgeType `json:"type"`
}

// Graph is one workflow's dependency graph. Nodes keep their file order,
// which breaks ties in every ordering the package computes.
type Graph struct {
	ID     string            `json:"id"`
	Format string            `json:"source_format,omitempty"` // the format it was read from
	Meta   map[string]string `json:"meta,omitempty"`
	// Start is when the workflow started in the recorded run (its first
	// call's arrival), zero when the trace does not say; --arrival replay
	// starts workflows at these times, relative to the first.
	Start time.Time `json:"start,omitzero"`
	Nodes []*Node   `json:"nodes"`
	Edges []Edge    `json:"edges"`
}

// Index returns a map from node id to position in Nodes. It does not check
// for duplicates; Validate does.
func (g *Graph) Index() map[string]int {
	idx := make(map[string]int, len(g.Nodes))
	for i, n := range g.Nodes {
		idx[n.ID] = i
	}
	return idx
}

// Node returns the node with the given id, or nil.
func (g *Graph) Node(id string) *Node {
	for _, n := range g.Nodes {
		if n.ID == id {
			return n
		}
	}
	return nil
}

// ChatToolCalls converts a node's tool calls for the tokenizer.
func ChatToolCalls(calls []ToolCall) []tokenizer.ToolCall {
	if len(calls) == 0 {
		return nil
	}
	out := make([]tokenizer.ToolCall, len(calls))
	for i, c := range calls {
		out[i] = tokenizer.ToolCall{Name: c.Name, Arguments: c.Arguments}
	}
	return out
}

// OutputText is the reference output as the chat template renders it: the
// output, then its tool calls.
func (n *Node) OutputText() string {
	return tokenizer.Message{Role: "assistant", Content: n.Output, ToolCalls: ChatToolCalls(n.ToolCalls)}.Text()
}

// Role is the chat role an input is sent with: "tool" for a tool's result
// answering a recorded call, else "user".
func (in Input) Role() string {
	if in.ToolCallID != "" {
		return "tool"
	}
	return "user"
}
