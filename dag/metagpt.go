package dag

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"
)

type metaGPTFormat struct{}

func (metaGPTFormat) Name() string { return "metagpt-run" }

func (metaGPTFormat) Detect(data []byte) bool {
	h := head(data, 4096)
	return firstByte(data) == '{' && bytes.Contains(h, []byte(`"run_id"`)) && bytes.Contains(data, []byte("metagpt"))
}

var mgAct = regexp.MustCompile(`^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) \| INFO\s+\| \S+ - (\w+)\((\w+)\): to do (\w+)`)

// Parse reads one raw MetaGPT run, {"run_id", "prompt", "content", ...},
// whose content is the log: each "Name(Role): to do Action" line starts an
// LLM call whose output follows. Roles see each other's messages (a group
// chat). The time between two calls' log lines is recorded in the earlier
// call's meta as recorded_s.
func (metaGPTFormat) Parse(data []byte, _ Options) ([]*Graph, error) {
	var run struct {
		RunID   json.RawMessage `json:"run_id"`
		Prompt  string          `json:"prompt"`
		Content string          `json:"content"`
	}
	if err := unmarshal(data, &run); err != nil {
		return nil, err
	}
	if run.Content == "" {
		return nil, fmt.Errorf("%w: field content is empty", ErrEmpty)
	}
	b := newBuilder("metagpt-run-"+strings.Trim(string(run.RunID), `"`), "metagpt-run")
	c := &groupChat{b: b}
	if run.Prompt != "" {
		c.step("task", "Human", "message", "", run.Prompt, 0, nil)
	}
	type act struct {
		id, role string
		at       time.Time
		line     int
		body     []string
	}
	var acts []act
	for i, line := range strings.Split(run.Content, "\n") {
		if m := mgAct.FindStringSubmatch(line); m != nil {
			at, _ := time.Parse("2006-01-02 15:04:05.000", m[1])
			acts = append(acts, act{id: fmt.Sprintf("c%d", len(acts)), role: m[3], at: at, line: i + 1})
			continue
		}
		if len(acts) > 0 {
			acts[len(acts)-1].body = append(acts[len(acts)-1].body, line)
		}
	}
	if len(acts) == 0 {
		return nil, fmt.Errorf("no \"Name(Role): to do Action\" line in content: not a MetaGPT log")
	}
	for k, a := range acts {
		c.step(a.id, a.role, "message", "", strings.Trim(strings.Join(a.body, "\n"), "\n"), a.line, nil)
		if k+1 < len(acts) && !a.at.IsZero() && !acts[k+1].at.IsZero() {
			c.b.lastCall[a.role].Meta = map[string]string{"recorded_s": fmt.Sprintf("%.3f", acts[k+1].at.Sub(a.at).Seconds())}
		}
	}
	b.g.Meta["task"] = run.Prompt
	return []*Graph{b.g}, nil
}
