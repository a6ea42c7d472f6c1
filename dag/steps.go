package dag

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

type stepRecord struct {
	Steps    []stepEntry                `json:"steps"`
	Metadata map[string]json.RawMessage `json:"metadata"`
}

type stepEntry struct {
	Agent    string                     `json:"agent"`
	Content  string                     `json:"content"`
	Kind     string                     `json:"kind"`
	Metadata map[string]json.RawMessage `json:"metadata"`
}

type stepsFormat struct{}

func (stepsFormat) Name() string { return "steps" }

// Detect accepts a JSON array whose first element is an object or a list
// (a log line starting with "[2025-01-17 ..." is not one).
func (stepsFormat) Detect(data []byte) bool {
	t := bytes.TrimLeft(data, " \t\r\n\ufeff")
	if len(t) == 0 || t[0] != '[' {
		return false
	}
	switch firstByte(t[1:]) {
	case '{', '[', ']':
		return true
	}
	return false
}

var (
	awStepEnter = regexp.MustCompile(`^Entering (.+) Agent message loop`)
	awStepExit  = regexp.MustCompile(`^Exiting (.+) Agent message loop`)
	hyperID     = regexp.MustCompile(`HyperAgent_(\S+) -`)
)

// Parse reads a step-list file: a JSON array of records {steps, metadata}
// (AppWorld, AG2, MetaGPT, OpenManus parses of the MAST data) or of lists of
// {agent, content} (HyperAgent). Each record becomes one graph.
func (stepsFormat) Parse(data []byte, _ Options) ([]*Graph, error) {
	var raw []json.RawMessage
	if err := unmarshal(data, &raw); err != nil {
		return nil, err
	}
	if len(raw) == 0 {
		return nil, fmt.Errorf("%w: the array holds no record", ErrEmpty)
	}
	gs := make([]*Graph, 0, len(raw))
	for i, r := range raw {
		var g *Graph
		var err error
		switch firstByte(r) {
		case '[':
			g, err = parseHyperSteps(r, i)
		case '{':
			g, err = parseStepRecord(r, i)
		default:
			err = fmt.Errorf("want an object or a list, found %.20s", r)
		}
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", i, err)
		}
		gs = append(gs, g)
	}
	return gs, nil
}

func parseStepRecord(r json.RawMessage, index int) (*Graph, error) {
	var rec stepRecord
	if err := json.Unmarshal(r, &rec); err != nil {
		return nil, err
	}
	if len(rec.Steps) == 0 {
		return nil, fmt.Errorf("%w: no steps", ErrEmpty)
	}
	meta := metaString(rec.Metadata)
	id := meta["trace_id"]
	if id == "" {
		id = fmt.Sprintf("record-%d", index)
	}
	appworldRun := false
	for k, s := range rec.Steps {
		if s.Agent == "" && s.Kind != "system" {
			return nil, fmt.Errorf("trace %s: step %d: missing agent", id, k)
		}
		if s.Kind == "system" && awStepEnter.MatchString(s.Content) {
			appworldRun = true
		}
	}
	var b *builder
	if appworldRun {
		a := newAppworld(id, "steps")
		for k, s := range rec.Steps {
			awStep(a, rec.Steps, k, stepID(s, k))
		}
		b = a.b
	} else {
		b = newBuilder(id, "steps")
		c := &groupChat{b: b}
		for k, s := range rec.Steps {
			stepN := ""
			if v, ok := s.Metadata["step_n"]; ok {
				stepN = string(v)
			}
			c.step(stepID(s, k), s.Agent, s.Kind, stepN, s.Content, 0, stepToolCall(s))
		}
	}
	for k, v := range meta {
		b.g.Meta[k] = v
	}
	b.g.Meta["record"] = fmt.Sprint(index)
	if len(b.g.Nodes) == 0 {
		return nil, fmt.Errorf("trace %s: %w: no LLM call among %d steps", id, ErrEmpty, len(rec.Steps))
	}
	return b.g, nil
}

// stepToolCall reads the tool call a tool_call step names in its metadata
// (OpenManus: tool_name, and tool_args, a JSON text given as a string), or
// nil: other step lists write their tool calls as text.
func stepToolCall(s stepEntry) *toolInfo {
	if s.Kind != "tool_call" {
		return nil
	}
	var name, args string
	if json.Unmarshal(s.Metadata["tool_name"], &name) != nil || name == "" {
		return nil
	}
	if raw := s.Metadata["tool_args"]; len(raw) > 0 && json.Unmarshal(raw, &args) != nil {
		return nil
	}
	if args != "" && !json.Valid([]byte(args)) {
		return nil // arguments that are not JSON stay text
	}
	return &toolInfo{name: name, args: args}
}

func stepID(s stepEntry, k int) string {
	if v, ok := s.Metadata["step_index"]; ok {
		return "s" + strings.Trim(string(v), `"`)
	}
	return fmt.Sprintf("s%d", k)
}

// awStep maps one AppWorld step record onto the AppWorld semantics: the
// step lists attribute a loop's first message to the Supervisor and echo the
// sub-agent's reply as its own step before the loop's exit.
func awStep(a *appworld, steps []stepEntry, k int, id string) {
	s := steps[k]
	prevEnter := k > 0 && steps[k-1].Kind == "system" && awStepEnter.MatchString(steps[k-1].Content)
	nextExit := k+1 < len(steps) && steps[k+1].Kind == "system" && awStepExit.MatchString(steps[k+1].Content)
	switch agent := s.Agent; {
	case s.Kind == "system" && awStepEnter.MatchString(s.Content):
		a.enter(awStepEnter.FindStringSubmatch(s.Content)[1])
	case s.Kind == "system" && awStepExit.MatchString(s.Content):
		a.exit()
	case s.Kind == "system" && k == len(steps)-1 && strings.HasPrefix(strings.TrimSpace(s.Content), "{") &&
		strings.Contains(s.Content, `"success"`):
		// The run's evaluation, as the raw log's Evaluation block.
	case strings.EqualFold(agent, "user"):
		a.task(s.Content)
	case strings.EqualFold(agent, "system"):
		if s.Kind == "message" && a.loop == "" {
			a.apiResult(s.Content)
		} else {
			a.codeOutput(id, s.Content, 0)
		}
	case prevEnter && a.loop != "":
		a.messageTo(id, a.loop, s.Content, 0)
	case nextExit && a.loop != "":
		a.reply(agent, s.Content)
	default:
		a.response(id, agent, s.Content, 0)
	}
}

func parseHyperSteps(r json.RawMessage, index int) (*Graph, error) {
	var steps []stepEntry
	if err := json.Unmarshal(r, &steps); err != nil {
		return nil, err
	}
	if len(steps) == 0 {
		return nil, fmt.Errorf("%w: no steps", ErrEmpty)
	}
	id := fmt.Sprintf("hyperagent-%d", index)
	for _, s := range steps {
		if m := hyperID.FindStringSubmatch(s.Content); m != nil {
			id = m[1]
			break
		}
	}
	b := newBuilder(id, "steps")
	h := &hyperAgent{b: b}
	for k, s := range steps {
		sid := fmt.Sprintf("s%d", k)
		switch {
		case s.Agent == "Planner":
			h.planner(sid, s.Content, 0)
		case hyperInner.MatchString(s.Agent):
			h.inner(sid, s.Agent, s.Content, 0)
		case strings.HasSuffix(s.Agent, "->Planner"):
			h.report(strings.TrimSuffix(s.Agent, "->Planner"), s.Content)
		case s.Agent == "":
			return nil, fmt.Errorf("trace %s: step %d: missing agent", id, k)
		default:
			b.input("", s.Agent, s.Content)
		}
	}
	b.g.Meta["record"] = fmt.Sprint(index)
	b.g.Meta["mas_name"] = "HyperAgent"
	if len(b.g.Nodes) == 0 {
		return nil, fmt.Errorf("trace %s: %w: no LLM call among %d steps", id, ErrEmpty, len(steps))
	}
	return b.g, nil
}
