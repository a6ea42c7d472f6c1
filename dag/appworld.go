package dag

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
)

// appworld drives a builder with the semantics of AppWorld's multi-agent
// runs, which three formats record (raw logs, the prototype's DAG JSON and
// step lists): a Supervisor writes code; its execution output comes back to
// it; send_message opens a sub-agent's message loop, whose first message
// comes from the Supervisor's code and whose later messages are the
// sub-agent's own code results; the loop's reply goes back to the Supervisor.
// Sub-agents keep their memory across loops, so their history chains span
// loops.
type appworld struct {
	b        *builder
	loop     string // the sub-agent whose loop is open, "" outside loops
	firstMsg bool   // the next message in the loop is the Supervisor's
}

const supervisor = "Supervisor"

func newAppworld(id, format string) *appworld {
	return &appworld{b: newBuilder(id, format)}
}

func (a *appworld) current() string {
	if a.loop != "" {
		return a.loop
	}
	return supervisor
}

func (a *appworld) task(text string) {
	if text != "" {
		a.b.input(supervisor, "user", text)
	}
}

func (a *appworld) response(id, agent, text string, line int) {
	a.b.call(id, appworldAgent(agent), text, line)
}

// codeOutput is the execution result of the current agent's last call.
func (a *appworld) codeOutput(id, text string, line int) {
	a.b.tool(id, a.current(), text, line, false)
}

func (a *appworld) enter(agent string) {
	a.loop = appworldAgent(agent)
	a.firstMsg = true
}

func (a *appworld) exit() { a.loop = "" }

// messageTo handles "Message to X Agent": for the Supervisor it is the text
// it reads next; in a loop the first one is the Supervisor's message and the
// later ones the sub-agent's code results.
func (a *appworld) messageTo(id, agent, text string, line int) {
	agent = appworldAgent(agent)
	switch {
	case agent == supervisor || a.loop == "":
		a.b.replaceTexts(supervisor, "message", text)
	case a.firstMsg:
		a.firstMsg = false
		a.b.send(supervisor, agent, text)
	default:
		a.b.tool(id, agent, text, line, false)
	}
}

func (a *appworld) reply(from, text string) {
	a.b.send(appworldAgent(from), supervisor, text)
}

// apiResult is the return value of send_message as the Supervisor reads it.
func (a *appworld) apiResult(text string) {
	a.b.replaceTexts(supervisor, "send_message", text)
}

var (
	awBanner    = regexp.MustCompile(`^\*+ Task \d+/\d+ \((.+?)\)\s*\*+\s*$`)
	awResponse  = regexp.MustCompile(`^Response from (.+) Agent$`)
	awMessage   = regexp.MustCompile(`^Message to (.+) Agent$`)
	awEnter     = regexp.MustCompile(`^Entering (.+) Agent message loop$`)
	awExit      = regexp.MustCompile(`^Exiting (.+) Agent message loop$`)
	awReply     = regexp.MustCompile(`^Reply from (.+) Agent to Supervisor$`)
	awCodeOut   = "Code Execution Output"
	awAPIResult = "Response from send_message API"
)

type appworldFormat struct{}

func (appworldFormat) Name() string { return "appworld-log" }

func (appworldFormat) Detect(data []byte) bool {
	h := head(data, 1<<16)
	return firstByte(data) != '{' && firstByte(data) != '[' &&
		bytes.Contains(h, []byte("Response from ")) && bytes.Contains(h, []byte(" Agent"))
}

// Parse reads a raw AppWorld log: header lines at depth 0 (no indent,
// content indented 4) and, inside a sub-agent's loop, at depth 4 (content
// indented 8). The banner names the task; an "Evaluation" line ends the run.
func (appworldFormat) Parse(data []byte, _ Options) ([]*Graph, error) {
	lines := strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n")
	id := "appworld"
	a := newAppworld(id, "appworld-log")

	type block struct {
		kind   string // header kind
		agent  string
		line   int // 1-based line of the header
		indent int
		body   []string
	}
	var cur *block
	var taskLines []string
	inTask := false
	calls := 0
	flush := func() {
		if cur == nil {
			return
		}
		text := dedent(cur.body, cur.indent)
		nid := fmt.Sprintf("L%d", cur.line)
		switch cur.kind {
		case "response":
			a.response(nid, cur.agent, text, cur.line)
			calls++
		case "code":
			a.codeOutput(nid, text, cur.line)
		case "message":
			a.messageTo(nid, cur.agent, text, cur.line)
		case "reply":
			a.reply(cur.agent, text)
		case "api":
			a.apiResult(text)
		}
		cur = nil
	}
	// begin ends the block before a header; the task text ends at the first.
	begin := func() {
		flush()
		if task := strings.TrimSpace(strings.Join(taskLines, "\n")); task != "" {
			a.task(task)
		}
		taskLines, inTask = nil, false
	}
	for i, raw := range lines {
		ln := i + 1
		line := strings.TrimRight(raw, " \t")
		depth0 := line != "" && line[0] != ' ' && line[0] != '\t'
		depth4 := a.loop != "" && strings.HasPrefix(line, "    ") && len(line) > 4 && line[4] != ' '
		switch {
		case depth0 && awBanner.MatchString(line):
			begin()
			a.b.g.ID = awBanner.FindStringSubmatch(line)[1]
			inTask = true
		case depth0 && line == "Evaluation":
			begin()
			cur = &block{kind: "end"}
		case cur != nil && cur.kind == "end":
			// The evaluation JSON: not part of the run.
		case depth0 && line == awCodeOut:
			begin()
			cur = &block{kind: "code", line: ln, indent: 4}
		case depth0 && line == awAPIResult:
			begin()
			cur = &block{kind: "api", line: ln, indent: 4}
		case depth0 && awResponse.MatchString(line):
			begin()
			cur = &block{kind: "response", agent: awResponse.FindStringSubmatch(line)[1], line: ln, indent: 4}
		case depth0 && awMessage.MatchString(line):
			begin()
			cur = &block{kind: "message", agent: awMessage.FindStringSubmatch(line)[1], line: ln, indent: 4}
		case depth0 && awEnter.MatchString(line):
			begin()
			a.enter(awEnter.FindStringSubmatch(line)[1])
		case depth0 && awExit.MatchString(line):
			begin()
			a.exit()
		case depth4 && awMessage.MatchString(line[4:]):
			begin()
			cur = &block{kind: "message", agent: awMessage.FindStringSubmatch(line[4:])[1], line: ln, indent: 8}
		case depth4 && awResponse.MatchString(line[4:]):
			begin()
			cur = &block{kind: "response", agent: awResponse.FindStringSubmatch(line[4:])[1], line: ln, indent: 8}
		case depth4 && awReply.MatchString(line[4:]):
			begin()
			cur = &block{kind: "reply", agent: awReply.FindStringSubmatch(line[4:])[1], line: ln, indent: 8}
		case inTask:
			taskLines = append(taskLines, raw)
		case cur != nil:
			cur.body = append(cur.body, raw)
		}
	}
	flush()
	if calls == 0 {
		return nil, fmt.Errorf("no \"Response from ... Agent\" header at the start of a line: not an AppWorld log? (try --format)")
	}
	g, err := a.b.finish()
	if err != nil {
		return nil, err
	}
	a.b.g.Meta["task_id"] = a.b.g.ID
	return []*Graph{g}, nil
}

// dedent removes up to n leading spaces from each line and trims blank lines
// at both ends and trailing spaces.
func dedent(lines []string, n int) string {
	out := make([]string, len(lines))
	for i, l := range lines {
		k := 0
		for k < n && k < len(l) && l[k] == ' ' {
			k++
		}
		out[i] = strings.TrimRight(l[k:], " \t")
	}
	return strings.Trim(strings.Join(out, "\n"), "\n")
}
