package router

import (
	"bytes"
	"encoding/json"
)

// Metadata is a request's workflow_metadata (the fields the design names).
type Metadata struct {
	WorkflowID             string  `json:"workflow_id"`
	AgentID                string  `json:"agent_id"`
	ParentRequestID        string  `json:"parent_request_id,omitempty"`
	WorkflowPriority       float64 `json:"workflow_priority,omitempty"`
	ContextSharingStrategy string  `json:"context_sharing_strategy,omitempty"`
}

// stripField removes the top-level member key from a JSON object body,
// leaving every other byte as it was, and returns the member's value. ok is
// false (and body returned unchanged) when body is not an object or has no
// such member.
func stripField(body []byte, key string) (out, value []byte, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return body, nil, false
	}
	for dec.More() {
		before := dec.InputOffset() // just after '{' or the previous value
		t, err := dec.Token()
		if err != nil {
			return body, nil, false
		}
		name, _ := t.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return body, nil, false
		}
		if name != key {
			continue
		}
		end := int(dec.InputOffset())
		// The member starts at its key's opening quote.
		start := int(before)
		for start < len(body) && body[start] != '"' {
			start++
		}
		// Remove one separating comma: the one after, else the one before.
		if j := skipSpace(body, end); j < len(body) && body[j] == ',' {
			end = skipSpace(body, j+1)
		} else if i := skipSpaceBack(body, start); i >= 0 && body[i] == ',' {
			start = i
		}
		out = make([]byte, 0, len(body)-(end-start))
		out = append(append(out, body[:start]...), body[end:]...)
		return out, raw, true
	}
	return body, nil, false
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

func skipSpaceBack(b []byte, i int) int {
	i--
	for i >= 0 && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i--
	}
	return i
}

// promptText extracts the text routing by prefix looks at: the chat
// messages (role and content, in order) or the completion prompt.
func promptText(body []byte) string {
	var req struct {
		Messages []struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
		Prompt json.RawMessage `json:"prompt"`
	}
	if json.Unmarshal(body, &req) != nil {
		return ""
	}
	var b bytes.Buffer
	for _, m := range req.Messages {
		b.WriteString(m.Role)
		b.WriteByte(':')
		var s string
		if json.Unmarshal(m.Content, &s) == nil {
			b.WriteString(s)
		} else {
			b.Write(m.Content)
		}
		b.WriteByte('\n')
	}
	if len(req.Prompt) > 0 {
		var s string
		if json.Unmarshal(req.Prompt, &s) == nil {
			b.WriteString(s)
		} else {
			b.Write(req.Prompt)
		}
	}
	return b.String()
}
