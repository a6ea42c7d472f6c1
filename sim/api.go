package sim

import (
	"encoding/json"
	"fmt"

	"github.com/wfsched/wfsched/internal/wire"
	"github.com/wfsched/wfsched/tokenizer"
)

type chatMessage struct {
	Role       string          `json:"role"`
	Content    json.RawMessage `json:"content"`
	ToolCallID string          `json:"tool_call_id"`
	ToolCalls  []struct {
		ID       string `json:"id"`
		Type     string `json:"type"`
		Function struct {
			Name      string `json:"name"`
			Arguments string `json:"arguments"`
		} `json:"function"`
	} `json:"tool_calls"`
}

// apiError is an error answered with an HTTP status and vLLM's error JSON.
type apiError struct {
	status int
	typ    string
	param  string
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func badRequest(param, format string, args ...any) *apiError {
	return &apiError{status: 400, typ: "BadRequestError", param: param, msg: fmt.Sprintf(format, args...)}
}

// errorBody is vLLM's (and OpenAI's) error response.
type errorBody struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    int     `json:"code"`
	} `json:"error"`
}

func (e *apiError) body() errorBody {
	var b errorBody
	b.Error.Message, b.Error.Type, b.Error.Code = e.msg, e.typ, e.status
	if e.param != "" {
		p := e.param
		b.Error.Param = &p
	}
	return b
}

// chatMessages reads chat messages into the template's form.
func chatMessages(raw json.RawMessage) ([]tokenizer.Message, *apiError) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, badRequest("messages", "messages: field required")
	}
	var msgs []chatMessage
	if err := json.Unmarshal(raw, &msgs); err != nil {
		return nil, badRequest("messages", "messages: must be a list of {role, content}: %v", err)
	}
	if len(msgs) == 0 {
		return nil, badRequest("messages", "messages: must not be empty")
	}
	out := make([]tokenizer.Message, len(msgs))
	for i, m := range msgs {
		switch m.Role {
		case "system", "user", "assistant", "tool", "developer":
		default:
			return nil, badRequest("messages", "messages[%d].role: unknown role %q", i, m.Role)
		}
		t, err := wire.ContentText(m.Content)
		if err != nil {
			return nil, badRequest("messages", "messages[%d].content: %v", i, err)
		}
		out[i] = tokenizer.Message{Role: m.Role, Content: t}
		if len(m.ToolCalls) > 0 && m.Role != "assistant" {
			return nil, badRequest("messages", "messages[%d]: only assistant messages carry tool_calls", i)
		}
		for k, tc := range m.ToolCalls {
			if tc.Type != "" && tc.Type != "function" || tc.Function.Name == "" {
				return nil, badRequest("messages", "messages[%d].tool_calls[%d]: want {type: function, function: {name, arguments}}", i, k)
			}
			out[i].ToolCalls = append(out[i].ToolCalls, tokenizer.ToolCall{Name: tc.Function.Name, Arguments: tc.Function.Arguments})
		}
	}
	return out, nil
}

// completionPrompt reads a completions prompt: a string or a list of token
// ids (a batch of several prompts is refused, as n > 1 is).
func completionPrompt(enc *tokenizer.Encoder, raw json.RawMessage) ([]int, *apiError) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, badRequest("prompt", "prompt: field required")
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return enc.Encode([]int{tokenizer.BeginOfText}, s), nil
	}
	var ids []int
	if err := json.Unmarshal(raw, &ids); err == nil {
		if len(ids) == 0 {
			return nil, badRequest("prompt", "prompt: must not be empty")
		}
		for _, id := range ids {
			if id < 0 {
				return nil, badRequest("prompt", "prompt: token id %d is negative", id)
			}
		}
		return ids, nil
	}
	var batch []string
	if err := json.Unmarshal(raw, &batch); err == nil {
		if len(batch) != 1 {
			return nil, badRequest("prompt", "prompt: a batch of %d prompts is not supported; send one prompt per request", len(batch))
		}
		return enc.Encode([]int{tokenizer.BeginOfText}, batch[0]), nil
	}
	return nil, badRequest("prompt", "prompt: must be a string or a list of token ids")
}

func stopStrings(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return []string{s}, nil
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, badRequest("stop", "stop: must be a string or a list of strings")
	}
	return list, nil
}

// usage is the OpenAI usage object with vLLM's prompt_tokens_details.
type usage struct {
	PromptTokens        int            `json:"prompt_tokens"`
	TotalTokens         int            `json:"total_tokens"`
	CompletionTokens    int            `json:"completion_tokens"`
	PromptTokensDetails *promptDetails `json:"prompt_tokens_details"`
}

type promptDetails struct {
	CachedTokens int `json:"cached_tokens"`
}
