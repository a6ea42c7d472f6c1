package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// The shapes of OpenAI-compatible request bodies that both the engine (which
// serves them) and the router (which captures them) read.

// ContentText reads a message content: a string, or a list of text parts
// (type text, or the Responses API's input_text, output_text and refusal)
// joined. Another part type (an image...) is an error naming it.
func ContentText(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", errors.New("content must be a string or a list of parts")
	}
	var b strings.Builder
	for _, p := range parts {
		switch p.Type {
		case "text", "input_text", "output_text", "refusal":
			b.WriteString(p.Text)
		default:
			return "", fmt.Errorf("content part of type %q is not supported (text only)", p.Type)
		}
	}
	return b.String(), nil
}

// InputItem is one item of a Responses API input: a message (Role,
// Content), a function_call (CallID, Name, Arguments), a
// function_call_output (CallID, Output), or another type.
type InputItem struct {
	Type      string          `json:"type"`
	Role      string          `json:"role"`
	Content   json.RawMessage `json:"content"`
	CallID    string          `json:"call_id"`
	Name      string          `json:"name"`
	Arguments string          `json:"arguments"`
	Output    json.RawMessage `json:"output"`
}

// ResponsesInput reads a Responses API input: a string (one user message)
// or a list of items.
func ResponsesInput(raw json.RawMessage) ([]InputItem, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, errors.New("field required")
	}
	var text string
	if json.Unmarshal(raw, &text) == nil {
		quoted, _ := json.Marshal(text)
		return []InputItem{{Type: "message", Role: "user", Content: quoted}}, nil
	}
	var items []InputItem
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("must be a string or a list of items: %v", err)
	}
	return items, nil
}
