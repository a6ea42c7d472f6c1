package dag

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

type chatDevFormat struct{}

func (chatDevFormat) Name() string { return "chatdev-log" }

func (chatDevFormat) Detect(data []byte) bool {
	h := head(data, 1<<16)
	return bytes.Contains(h, []byte("**ChatDev Starts**")) || bytes.Contains(h, []byte("**[OpenAI_Usage_Info Receive]**"))
}

var (
	cdLine   = regexp.MustCompile(`^\[([^\]]+) INFO\] (.*)$`)
	cdTurn   = regexp.MustCompile(`^(.+?): \*\*(.+?)<->(.+?) on : (\w+), turn (\d+)\*\*$`)
	cdStart  = regexp.MustCompile(`^(.+?): \*\*\[Start Chat\]\*\*$`)
	cdUsage  = regexp.MustCompile(`^(prompt_tokens|completion_tokens): (\d+)$`)
	cdTask   = regexp.MustCompile(`^\*\*task_prompt\*\*: (.*)$`)
	cdName   = regexp.MustCompile(`^\*\*project_name\*\*: (\S+)`)
	cdSystem = regexp.MustCompile(`(?s)^\[(.*?)\]\n\n`)
)

// Parse reads a raw ChatDev log: "[time INFO] Role: **A<->B on : Phase, turn
// k**" blocks are LLM calls (the message after the bracketed system text),
// "**[Start Chat]**" blocks a phase's opening prompt, and each call's
// "**[OpenAI_Usage_Info Receive]**" block, logged before the call's message,
// gives its exact prompt_tokens and completion_tokens. ChatDev starts every
// phase as a new conversation, so an agent is a role within a phase. A log
// cut short (such as a file's head) reads up to its last whole call.
func (chatDevFormat) Parse(data []byte, _ Options) ([]*Graph, error) {
	b := newBuilder("chatdev", "chatdev-log")
	type usage struct{ prompt, completion int }
	var usages []usage
	var cur struct {
		kind, agent, phase string
		line               int
		body               []string
	}
	calls := 0
	start, starter := "", "" // a phase's opening prompt, for its first speaker
	flush := func() {
		text := strings.Trim(strings.Join(cur.body, "\n"), "\n")
		system := ""
		if m := cdSystem.FindStringSubmatch(text + "\n\n"); m != nil {
			system = m[1]
			text = strings.Trim(text[min(len(m[0]), len(text)):], "\n")
		}
		switch cur.kind {
		case "start":
			start, starter = text, cur.agent
		case "turn":
			agent := cur.agent + "/" + cur.phase
			if start != "" {
				b.input(agent, starter, start)
				start = ""
			}
			n := b.call(fmt.Sprintf("L%d", cur.line), agent, text, cur.line)
			b.send(agent, "", text) // the other role of the phase reads it
			n.System = system
			if calls < len(usages) {
				u := usages[calls]
				n.InputTokens = TokenCount{N: u.prompt, Exact: true}
				n.OutputTokens = TokenCount{N: u.completion, Exact: true}
			}
			calls++
		}
		cur.kind, cur.body = "", nil
	}
	lines := strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n")
	for i, line := range lines {
		m := cdLine.FindStringSubmatch(line)
		if m == nil {
			if u := cdUsage.FindStringSubmatch(line); u != nil {
				v, _ := strconv.Atoi(u[2])
				if u[1] == "prompt_tokens" {
					usages = append(usages, usage{prompt: v})
				} else if len(usages) > 0 {
					usages[len(usages)-1].completion = v
				}
				continue
			}
			if t := cdTask.FindStringSubmatch(line); t != nil && len(b.g.Nodes) == 0 {
				b.g.Meta["task"] = t[1]
			}
			if t := cdName.FindStringSubmatch(line); t != nil && len(b.g.Nodes) == 0 {
				b.g.ID = t[1]
			}
			if cur.kind != "" {
				cur.body = append(cur.body, line)
			}
			continue
		}
		flush()
		if t := cdTurn.FindStringSubmatch(m[2]); t != nil {
			cur.kind, cur.agent, cur.phase, cur.line = "turn", t[1], t[4], i+1
		} else if s := cdStart.FindStringSubmatch(m[2]); s != nil {
			cur.kind, cur.agent, cur.line = "start", s[1], i+1
		}
	}
	flush()
	if calls == 0 {
		return nil, fmt.Errorf("no \"Role: **A<->B on : Phase, turn N**\" message: not a ChatDev log, or cut before its first call")
	}
	return []*Graph{b.g}, nil
}
