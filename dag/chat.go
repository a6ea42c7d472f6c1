package dag

import (
	"regexp"
	"strings"
)

// groupChat drives a builder with the semantics of group-chat systems (AG2,
// MetaGPT, OpenManus): every message is seen by every other agent at its
// next call; tool results are seen by all, the caller included; user
// proxies (mathproxyagent) and system speakers make no LLM calls, and a
// proxy's reply after the first is the result of running the last caller's
// code.
type groupChat struct {
	b          *builder
	lastLLM    string
	toolCaller string
	lastStep   string // step_n of the last call, to merge records of one call
}

func isProxy(agent string) bool {
	return strings.EqualFold(agent, "mathproxyagent")
}

func isSpeakerOnly(agent string) bool {
	switch strings.ToLower(agent) {
	case "system", "user", "human", "chat_manager", "":
		return true
	}
	return isProxy(agent)
}

// toolInfo is a tool call as a step records it (OpenManus: the tool's name
// and its JSON arguments).
type toolInfo struct{ name, args string }

// step handles one record; kind is message, tool_call, tool_result, system
// (or "" when the format has none); stepN identifies an LLM call across
// several records ("" when unknown); call, for a tool_call step that names
// its tool, is the call (replayed as a tool call, not as text).
func (c *groupChat) step(id, agent, kind, stepN, text string, line int, call *toolInfo) {
	switch {
	case kind == "tool_result":
		owner := c.toolCaller
		if owner == "" {
			owner = c.lastLLM
		}
		if owner == "" {
			c.b.input("", agent, text)
			return
		}
		c.b.tool(id, owner, text, line, true)
	case isSpeakerOnly(agent) || kind == "system":
		if isProxy(agent) && c.lastLLM != "" {
			c.b.tool(id, c.lastLLM, text, line, true)
			return
		}
		c.b.input("", agent, text)
	case call != nil && stepN != "" && agent == c.lastLLM && stepN == c.lastStep && c.b.toolCall(agent, call.name, call.args):
		// A call of the step's LLM call: recorded as a tool call.
	default:
		if stepN != "" && agent == c.lastLLM && stepN == c.lastStep && c.b.appendOutput(agent, text) {
			break
		}
		if call != nil {
			c.b.call(id, agent, "", line)
			c.b.toolCall(agent, call.name, call.args)
		} else {
			c.b.call(id, agent, text, line)
		}
		c.b.send(agent, "", text)
		c.lastLLM, c.lastStep = agent, stepN
	}
	if kind == "tool_call" && !isSpeakerOnly(agent) {
		c.toolCaller = agent
	}
}

// hyperAgent drives a builder with HyperAgent's semantics: a Planner
// delegates subgoals to inner assistants (Navigator, Editor, Executor), each
// of which answers back with an "X->Planner" report; the Planner never sees
// the inner assistants' own steps.
type hyperAgent struct {
	b         *builder
	undeliv   string // the Planner's last output, not yet delivered
	lastInner string
}

var hyperInner = regexp.MustCompile(`^Inner-(\w+)-Assistant$`)

// hyperName maps "Inner-Navigator-Assistant", "Codebase Navigator" and
// "Navigator" alike to "Navigator".
func hyperName(s string) string {
	if m := hyperInner.FindStringSubmatch(s); m != nil {
		return m[1]
	}
	for _, n := range []string{"Navigator", "Editor", "Executor", "Planner"} {
		if strings.Contains(s, n) {
			return n
		}
	}
	return s
}

func (h *hyperAgent) planner(id, text string, line int) {
	h.b.call(id, "Planner", text, line)
	h.undeliv = text
}

func (h *hyperAgent) inner(id, agent, text string, line int) {
	agent = hyperName(agent)
	if h.undeliv != "" {
		h.b.send("Planner", agent, h.undeliv)
		h.undeliv = ""
	}
	h.b.call(id, agent, text, line)
	h.lastInner = agent
}

// delegate is an explicit subgoal for an inner assistant.
func (h *hyperAgent) delegate(agent, text string) {
	h.b.send("Planner", hyperName(agent), text)
	h.undeliv = ""
}

func (h *hyperAgent) report(from, text string) {
	h.b.send(hyperName(from), "Planner", text)
}

func (h *hyperAgent) appendOutput(text string) {
	if h.lastInner == "" || !h.b.appendOutput(h.lastInner, text) {
		h.b.appendOutput("Planner", text)
	}
}
