package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/wfsched/wfsched/scheduler"
)

// The APIs a client can replay through (Config.API).
const (
	APIChat        = "chat"        // /v1/chat/completions (the default)
	APICompletions = "completions" // /v1/completions: the messages as a transcript
	APIResponses   = "responses"   // /v1/responses, an agent's calls chained by previous_response_id
)

// CheckAPI validates an API name.
func CheckAPI(api string) error {
	switch api {
	case "", APIChat, APICompletions, APIResponses:
		return nil
	}
	return fmt.Errorf("api %q: want %s, %s or %s", api, APIChat, APICompletions, APIResponses)
}

// transcript renders messages as one completions prompt: each message as
// "role: content" (tool calls as the chat template renders them), a blank
// line between, ending with "assistant:" for the answer.
func transcript(msgs []scheduler.Message) string {
	var b strings.Builder
	for _, m := range msgs {
		b.WriteString(m.Role)
		b.WriteString(": ")
		b.WriteString(m.Content)
		for _, tc := range m.ToolCalls {
			args := tc.Arguments
			if args == "" {
				args = "{}"
			}
			fmt.Fprintf(&b, "\n{\"name\": %q, \"parameters\": %s}", tc.Name, args)
		}
		b.WriteString("\n\n")
	}
	b.WriteString("assistant:")
	return b.String()
}

// chains remembers, per workflow and agent, the last response and the
// messages it answered, so the agent's next call can continue it with
// previous_response_id and send only what is new. Bounded: past
// maxChains agents it starts afresh.
type chains struct {
	mu sync.Mutex
	m  map[string]chain
}

type chain struct {
	id   string
	msgs []scheduler.Message
}

const maxChains = 100_000

func (c *chains) get(key string) (chain, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch, ok := c.m[key]
	return ch, ok
}

func (c *chains) put(key string, ch chain) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxChains {
		c.m = map[string]chain{}
	}
	c.m[key] = ch
}

func sameMessage(a, b scheduler.Message) bool {
	if a.Role != b.Role || a.Content != b.Content || a.ToolCallID != b.ToolCallID || len(a.ToolCalls) != len(b.ToolCalls) {
		return false
	}
	for i := range a.ToolCalls {
		if a.ToolCalls[i] != b.ToolCalls[i] {
			return false
		}
	}
	return true
}

// responsesInput returns a call's input items and the response it
// continues: when the agent's previous call's messages are a prefix of
// this one's, only the messages after them are sent (the assistant's
// answer to them, which the server stored as its own output, left out).
func (c *Client) responsesInput(call scheduler.Call) (items []map[string]any, prev string) {
	msgs := call.Messages
	if call.Workflow != "" && call.Agent != "" {
		if ch, ok := c.chains.get(call.Workflow + "\x00" + call.Agent); ok && len(ch.msgs) < len(msgs) {
			prefix := true
			for i := range ch.msgs {
				if !sameMessage(ch.msgs[i], msgs[i]) {
					prefix = false
					break
				}
			}
			if prefix {
				rest := msgs[len(ch.msgs):]
				for len(rest) > 0 && rest[0].Role == "assistant" {
					rest = rest[1:]
				}
				if len(rest) > 0 {
					msgs, prev = rest, ch.id
				}
			}
		}
	}
	for _, m := range msgs {
		for _, tc := range m.ToolCalls {
			args := tc.Arguments
			if args == "" {
				args = "{}"
			}
			items = append(items, map[string]any{"type": "function_call", "call_id": tc.ID, "name": tc.Name, "arguments": args})
		}
		switch {
		case m.Role == "tool":
			items = append(items, map[string]any{"type": "function_call_output", "call_id": m.ToolCallID, "output": m.Content})
		case len(m.ToolCalls) > 0 && m.Content == "":
		default:
			items = append(items, map[string]any{"role": m.Role, "content": m.Content})
		}
	}
	return items, prev
}

// viaHTTP sends a call to /v1/completions or /v1/responses and measures it
// as the chat path does: TTFT at the first chunk carrying output, ITL
// between output chunks, usage from the server, a cut stream a failed
// attempt.
func (c *Client) viaHTTP(ctx context.Context, call scheduler.Call) scheduler.CallResult {
	body := map[string]any{"model": c.cfg.Model, "stream": !c.cfg.NoStream}
	path := "/v1/completions"
	if c.cfg.API == APIResponses {
		path = "/v1/responses"
		items, prev := c.responsesInput(call)
		body["input"], body["max_output_tokens"] = items, call.MaxTokens
		if prev != "" {
			body["previous_response_id"] = prev
		}
	} else {
		body["prompt"], body["max_tokens"] = transcript(call.Messages), call.MaxTokens
		if !c.cfg.NoStream {
			body["stream_options"] = map[string]any{"include_usage": true}
		}
	}
	if call.Seed != nil {
		body["seed"] = *call.Seed
	}
	res := scheduler.CallResult{Start: time.Now()}
	b, err := json.Marshal(body)
	if err != nil {
		res.Err = err
		return res
	}
	req, err := http.NewRequestWithContext(ctx, "POST", c.base+path, bytes.NewReader(b))
	if err != nil {
		res.Err = err
		return res
	}
	req.Header.Set("Content-Type", "application/json")
	if c.cfg.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.APIKey)
	}
	resp, err := doer{hc: c.hc}.Do(req)
	if err != nil {
		res.E2E = time.Since(res.Start)
		res.Err = err
		return res
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		res.E2E = time.Since(res.Start)
		res.Err = fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
		return res
	}
	ex, _ := ctx.Value(extrasKey{}).(*extras)
	var id string
	if c.cfg.NoStream {
		id = c.readWhole(resp.Body, &res)
	} else {
		id = c.readStream(resp.Body, &res, ex)
	}
	if res.Err == nil && c.cfg.API == APIResponses && id != "" && call.Workflow != "" && call.Agent != "" {
		c.chains.put(call.Workflow+"\x00"+call.Agent, chain{id: id, msgs: call.Messages})
	}
	return res
}

// wireAnswer is what the client reads of a completions or responses answer,
// whole or one event of a stream.
type wireAnswer struct {
	Type     string `json:"type"`
	ID       string `json:"id"`
	Status   string `json:"status"`
	Delta    string `json:"delta"`
	Response *struct {
		ID                string `json:"id"`
		Status            string `json:"status"`
		IncompleteDetails *struct {
			Reason string `json:"reason"`
		} `json:"incomplete_details"`
		Usage *responsesUsage `json:"usage"`
	} `json:"response"`
	IncompleteDetails *struct {
		Reason string `json:"reason"`
	} `json:"incomplete_details"`
	Output []struct {
		Type      string `json:"type"`
		Arguments string `json:"arguments"`
		Content   []struct {
			Text string `json:"text"`
		} `json:"content"`
	} `json:"output"`
	Choices []struct {
		Text         string `json:"text"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens        int `json:"prompt_tokens"`
		CompletionTokens    int `json:"completion_tokens"`
		InputTokens         int `json:"input_tokens"`
		OutputTokens        int `json:"output_tokens"`
		PromptTokensDetails *struct {
			CachedTokens int `json:"cached_tokens"`
		} `json:"prompt_tokens_details"`
		InputTokensDetails *struct {
			CachedTokens int `json:"cached_tokens"`
		} `json:"input_tokens_details"`
	} `json:"usage"`
}

type responsesUsage struct {
	InputTokens        int `json:"input_tokens"`
	OutputTokens       int `json:"output_tokens"`
	InputTokensDetails *struct {
		CachedTokens int `json:"cached_tokens"`
	} `json:"input_tokens_details"`
}

func (a *wireAnswer) usage(res *scheduler.CallResult) {
	if a.Response != nil && a.Response.Usage != nil {
		u := a.Response.Usage
		res.UsageReported, res.PromptTokens, res.CompletionTokens = true, u.InputTokens, u.OutputTokens
		if u.InputTokensDetails != nil {
			n := u.InputTokensDetails.CachedTokens
			res.CachedTokens = &n
		}
	}
	if u := a.Usage; u != nil {
		res.UsageReported = true
		res.PromptTokens, res.CompletionTokens = u.PromptTokens+u.InputTokens, u.CompletionTokens+u.OutputTokens
		for _, d := range []*struct {
			CachedTokens int `json:"cached_tokens"`
		}{u.PromptTokensDetails, u.InputTokensDetails} {
			if d != nil {
				n := d.CachedTokens
				res.CachedTokens = &n
			}
		}
	}
}

// responsesFinish maps a response's status to a finish reason.
func responsesFinish(status string, incomplete *struct {
	Reason string `json:"reason"`
}) string {
	switch {
	case status == "completed":
		return "stop"
	case status == "incomplete" && incomplete != nil && incomplete.Reason == "max_output_tokens":
		return "length"
	}
	return ""
}

func (c *Client) readWhole(r io.Reader, res *scheduler.CallResult) string {
	var a wireAnswer
	err := json.NewDecoder(r).Decode(&a)
	res.E2E = time.Since(res.Start)
	res.TTFT = res.E2E
	if err != nil {
		res.Err = &CutError{Reason: "the response body broke off or did not parse", Err: err}
		return ""
	}
	a.usage(res)
	if c.cfg.API == APIResponses {
		for _, o := range a.Output {
			res.Text += o.Arguments
			for _, p := range o.Content {
				res.Text += p.Text
			}
		}
		res.FinishReason = responsesFinish(a.Status, a.IncompleteDetails)
	} else if len(a.Choices) > 0 {
		res.Text, res.FinishReason = a.Choices[0].Text, a.Choices[0].FinishReason
	}
	if res.FinishReason == "" {
		res.Err = &CutError{Reason: "the response has no finish reason (or status " + a.Status + ")"}
	}
	return a.ID
}

// readStream reads server-sent events: completions chunks ending with
// data: [DONE], or Responses API events ending with response.completed
// (or response.incomplete).
func (c *Client) readStream(r io.Reader, res *scheduler.CallResult, ex *extras) string {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	o := outputs{res: res}
	id, ended := "", false
	output := func(delta string) { o.output(time.Now(), delta) }
	for sc.Scan() {
		data, ok := bytes.CutPrefix(sc.Bytes(), []byte("data:"))
		if !ok {
			continue
		}
		data = bytes.TrimSpace(data)
		if string(data) == "[DONE]" {
			ended = c.cfg.API == APICompletions
			continue
		}
		var a wireAnswer
		if json.Unmarshal(data, &a) != nil {
			continue
		}
		a.usage(res)
		switch a.Type {
		case "":
			for _, ch := range a.Choices {
				output(ch.Text)
				if ch.FinishReason != "" {
					res.FinishReason = ch.FinishReason
				}
			}
		case "response.created":
			if a.Response != nil {
				id = a.Response.ID
			}
		case "response.output_text.delta", "response.function_call_arguments.delta":
			output(a.Delta)
		case "response.completed", "response.incomplete", "response.failed":
			if a.Response != nil {
				res.FinishReason = responsesFinish(a.Response.Status, a.Response.IncompleteDetails)
			}
			ended = a.Type != "response.failed"
		}
	}
	res.E2E = time.Since(res.Start)
	res.Text = o.text.String()
	if o.chunks == 0 {
		res.TTFT = res.E2E
	}
	switch {
	case sc.Err() != nil:
		res.Err = &CutError{Chunks: o.chunks, Reason: "the stream broke off", Err: sc.Err()}
	case !ended:
		res.Err = &CutError{Chunks: o.chunks, Reason: "the stream ended without its last event"}
	case res.FinishReason == "":
		res.Err = &CutError{Chunks: o.chunks, Reason: "the stream ended without a finish reason"}
	case res.FinishReason == "abort":
		res.Err = &CutError{Chunks: o.chunks, Reason: "the server aborted the request (finish_reason abort)"}
	case ex != nil && ex.engine && res.UsageReported && res.CompletionTokens != o.chunks:
		res.Err = &CutError{Chunks: o.chunks, Reason: fmt.Sprintf("usage counts %d output tokens but %d arrived", res.CompletionTokens, o.chunks)}
	}
	return id
}
