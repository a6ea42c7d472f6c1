package router

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/wfsched/wfsched/internal/jsonscan"
)

// Metadata is a request's workflow_metadata (the fields the design names).
type Metadata struct {
	WorkflowID             string  `json:"workflow_id"`
	AgentID                string  `json:"agent_id"`
	ParentRequestID        string  `json:"parent_request_id,omitempty"`
	WorkflowPriority       float64 `json:"workflow_priority,omitempty"`
	ContextSharingStrategy string  `json:"context_sharing_strategy,omitempty"`
}

// maxMetadataBytes bounds a workflow_metadata object: its ids are at most
// MaxIDLength bytes each, so a larger one is refused before it is decoded.
const maxMetadataBytes = 8 << 10

// errDuplicate is a member named twice in one JSON object.
var errDuplicate = errors.New("given twice")

// stripField removes the top-level member key from a JSON object body,
// leaving every other byte as it was, and returns the member's value (a
// copy). It reuses body's memory for out: the caller must not use body
// afterwards. ok is false (and body returned unchanged) when body is not an
// object or has no such member; err is errDuplicate when the member appears
// more than once, as a request that routes on one copy and forwards the
// other would otherwise do. A key spelled with escapes
// ("workflow\u005fmetadata") is the same key, as every JSON parser behind
// the router will read it.
//
// It scans the body in place (jsonscan) and copies nothing but the value
// it returns: a large body costs no more memory than itself.
func stripField(body []byte, key string) (out, value []byte, ok bool, err error) {
	var buf [16]jsonscan.Member
	members, _, ok := jsonscan.ObjectInto(buf[:0], body, 0)
	if !ok {
		return body, nil, false, nil
	}
	found := -1
	for k, m := range members {
		if jsonscan.KeyIs(body[m.KeyStart:m.KeyEnd], key) {
			if found >= 0 {
				return body, nil, false, fmt.Errorf("%s: %w", key, errDuplicate)
			}
			found = k
		}
	}
	if found < 0 {
		return body, nil, false, nil
	}
	m := members[found]
	value = bytes.Clone(body[m.ValueStart:m.ValueEnd])
	// Remove one separating comma: the one after, else the one before.
	start, end := m.KeyStart, m.ValueEnd
	if j := jsonscan.Space(body, end); j < len(body) && body[j] == ',' {
		end = jsonscan.Space(body, j+1)
	} else if k := jsonscan.SpaceBack(body, start); k >= 0 && body[k] == ',' {
		start = k
	}
	return append(body[:start], body[end:]...), value, true, nil
}

// intField reads a top-level integer member of a JSON object; 0 when it is
// absent or not an integer (the backend judges its own fields).
func intField(body []byte, key string) int {
	var buf [16]jsonscan.Member
	members, _, ok := jsonscan.ObjectInto(buf[:0], body, 0)
	if !ok {
		return 0
	}
	for _, m := range members {
		if jsonscan.KeyIs(body[m.KeyStart:m.KeyEnd], key) {
			v, err := strconv.Atoi(string(bytes.TrimSpace(body[m.ValueStart:m.ValueEnd])))
			if err != nil {
				return 0
			}
			return v
		}
	}
	return 0
}

// parseMetadata reads a workflow_metadata object, refusing what the router
// could not route on faithfully or keep within its bounds: members given
// twice, ids over MaxIDLength bytes, a workflow id validID refuses, a
// priority that is not a positive number, an unknown sharing strategy.
func parseMetadata(raw []byte) (*Metadata, error) {
	if len(raw) > maxMetadataBytes {
		return nil, fmt.Errorf("%d bytes: want at most %d (ids are at most %d bytes each)", len(raw), maxMetadataBytes, MaxIDLength)
	}
	var buf [8]jsonscan.Member
	members, end, ok := jsonscan.ObjectInto(buf[:0], raw, 0)
	if !ok {
		return nil, errors.New("want a JSON object")
	}
	if name, dup := duplicateKey(raw, members); dup {
		return nil, fmt.Errorf("%s: %w", clip(name), errDuplicate)
	}
	md := &Metadata{}
	if jsonscan.Space(raw, end) != len(raw) || !md.plainStrings(raw, members) {
		// Anything but plain string ids (a priority, escapes, an unknown
		// member, a wrong type): the decoder reads it and says what is
		// wrong.
		*md = Metadata{}
		if err := json.Unmarshal(raw, md); err != nil {
			return nil, err
		}
	}
	return md, md.validate()
}

// duplicateKey finds a member named twice.
func duplicateKey(raw []byte, members []jsonscan.Member) (string, bool) {
	if len(members) > 16 {
		seen := make(map[string]bool, len(members))
		for _, m := range members {
			name := m.Key(raw)
			if seen[name] {
				return name, true
			}
			seen[name] = true
		}
		return "", false
	}
	for i, a := range members {
		ka, plainA := a.Raw(raw)
		for _, b := range members[:i] {
			kb, plainB := b.Raw(raw)
			if plainA && plainB && bytes.Equal(ka, kb) || !(plainA && plainB) && a.Key(raw) == b.Key(raw) {
				return a.Key(raw), true
			}
		}
	}
	return "", false
}

// plainStrings reads the metadata's string members when every member is
// one of them and a plain string (no escapes, no control bytes, valid
// UTF-8), the common case, without a decoder; false for anything else.
func (md *Metadata) plainStrings(raw []byte, members []jsonscan.Member) bool {
	for _, m := range members {
		v := raw[m.ValueStart:m.ValueEnd]
		if len(v) < 2 || v[0] != '"' || !utf8.Valid(v) {
			return false
		}
		v = v[1 : len(v)-1]
		for _, c := range v {
			if c < 0x20 || c == '\\' {
				return false
			}
		}
		key, plain := m.Raw(raw)
		if !plain {
			return false
		}
		switch string(key) {
		case "workflow_id":
			md.WorkflowID = string(v)
		case "agent_id":
			md.AgentID = string(v)
		case "parent_request_id":
			md.ParentRequestID = string(v)
		case "context_sharing_strategy":
			md.ContextSharingStrategy = string(v)
		default:
			return false
		}
	}
	return true
}

func (md *Metadata) validate() error {
	switch {
	case md.WorkflowID != "" && !validID(md.WorkflowID):
		return fmt.Errorf("workflow_id %s: want 1 to %d letters, digits or ._:@/+-", clip(md.WorkflowID), MaxIDLength)
	case len(md.AgentID) > MaxIDLength:
		return fmt.Errorf("agent_id %s: want at most %d bytes", clip(md.AgentID), MaxIDLength)
	case len(md.ParentRequestID) > MaxIDLength:
		return fmt.Errorf("parent_request_id %s: want at most %d bytes", clip(md.ParentRequestID), MaxIDLength)
	case md.WorkflowPriority < 0 || math.IsInf(md.WorkflowPriority, 0):
		return fmt.Errorf("workflow_priority %v: want a positive number (1 is normal)", md.WorkflowPriority)
	}
	switch md.ContextSharingStrategy {
	case "", "auto", "broadcast", "selective", "none":
	default:
		return fmt.Errorf("context_sharing_strategy %s: want auto, broadcast, selective or none", clip(md.ContextSharingStrategy))
	}
	return nil
}

// PromptMessage is a chat message as routing by prefix reads it.
type PromptMessage struct{ Role, Content string }

// PromptText is the text routing by prefix looks at: each chat message as
// ROLE:CONTENT and a newline, then a completions prompt. The proxy reads it
// from request bodies, the virtual-time replay from the calls it builds.
func PromptText(msgs []PromptMessage, prompt string) string {
	var b strings.Builder
	for _, m := range msgs {
		b.WriteString(m.Role)
		b.WriteByte(':')
		b.WriteString(m.Content)
		b.WriteByte('\n')
	}
	b.WriteString(prompt)
	return b.String()
}

// promptText extracts PromptText from a request body; a content or prompt
// that is not a string counts as its JSON text.
func promptText(body []byte) string {
	var req struct {
		Messages []struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
		Prompt json.RawMessage `json:"prompt"`
		// The Responses API's: instructions, then input items.
		Instructions string          `json:"instructions"`
		Input        json.RawMessage `json:"input"`
	}
	if json.Unmarshal(body, &req) != nil {
		return ""
	}
	if len(req.Input) > 0 && len(req.Messages) == 0 {
		var text string
		if json.Unmarshal(req.Input, &text) == nil {
			req.Input = json.RawMessage(`[{"role": "user", "content": ` + string(req.Input) + `}]`)
		}
		json.Unmarshal(req.Input, &req.Messages)
		if req.Instructions != "" {
			sys, _ := json.Marshal(req.Instructions)
			req.Messages = append([]struct {
				Role    string          `json:"role"`
				Content json.RawMessage `json:"content"`
			}{{Role: "system", Content: sys}}, req.Messages...)
		}
	}
	str := func(raw json.RawMessage) string {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
		return string(raw)
	}
	msgs := make([]PromptMessage, len(req.Messages))
	for k, m := range req.Messages {
		msgs[k] = PromptMessage{m.Role, str(m.Content)}
	}
	prompt := ""
	if len(req.Prompt) > 0 {
		prompt = str(req.Prompt)
	}
	return PromptText(msgs, prompt)
}
