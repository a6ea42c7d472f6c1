package router

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/wfsched/wfsched/capture"
	"github.com/wfsched/wfsched/internal/wire"
	"github.com/wfsched/wfsched/tokenizer"
)

// Capture (Config.Capture): each proxied chat, completions or responses
// call becomes a capture.Record, written when it completes.

// maxCaptured bounds the bytes of one response the router keeps to read
// its output for the capture; a longer answer is captured with its usage
// and the text it had by then.
const maxCaptured = 8 << 20

var captureSeq atomic.Uint64

// capturedRequest is what the capture reads of a request body.
type capturedRequest struct {
	Messages []struct {
		Role       string          `json:"role"`
		Content    json.RawMessage `json:"content"`
		ToolCallID string          `json:"tool_call_id"`
		ToolCalls  []wireToolCall  `json:"tool_calls"`
	} `json:"messages"`
	Prompt             json.RawMessage `json:"prompt"`
	Instructions       string          `json:"instructions"`
	Input              json.RawMessage `json:"input"`
	PreviousResponseID string          `json:"previous_response_id"`
	// Tools: chat's {function: {name}}, the Responses API's {name}.
	Tools []struct {
		Name     string `json:"name"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	} `json:"tools"`
}

type wireToolCall struct {
	ID       string `json:"id"`
	CallID   string `json:"call_id"`
	Name     string `json:"name"`
	Index    int    `json:"index"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
	Arguments string `json:"arguments"`
}

// contentText reads a message content's text, leniently: what is not text
// (an image part) is left out.
func contentText(raw json.RawMessage) string {
	t, _ := wire.ContentText(raw)
	return t
}

// captureMessages reads the messages a request sent.
func captureMessages(api string, body []byte, mode string, enc *tokenizer.Encoder) (msgs []capture.Message, prevResponse string, tools []string) {
	var req capturedRequest
	json.Unmarshal(body, &req)
	if mode != capture.None {
		for _, t := range req.Tools {
			if n := cmp.Or(t.Function.Name, t.Name); n != "" {
				tools = append(tools, n)
			}
		}
		slices.Sort(tools)
	}
	add := func(role, text string, calls []capture.ToolCall, toolCallID string) {
		msgs = append(msgs, capture.NewMessage(role, text, calls, toolCallID, mode, enc))
	}
	switch api {
	case "completions":
		add("prompt", contentText(req.Prompt), nil, "")
	case "responses":
		if req.Instructions != "" {
			add("system", req.Instructions, nil, "")
		}
		items, _ := wire.ResponsesInput(req.Input)
		for _, it := range items {
			switch it.Type {
			case "function_call":
				add("assistant", "", []capture.ToolCall{{ID: it.CallID, Name: it.Name, Arguments: it.Arguments}}, "")
			case "function_call_output":
				add("tool", contentText(it.Output), nil, it.CallID)
			case "reasoning":
			default:
				add(it.Role, contentText(it.Content), nil, "")
			}
		}
		prevResponse = req.PreviousResponseID
	default:
		for _, m := range req.Messages {
			var calls []capture.ToolCall
			for _, tc := range m.ToolCalls {
				calls = append(calls, capture.ToolCall{ID: tc.ID, Name: tc.Function.Name, Arguments: tc.Function.Arguments})
			}
			add(m.Role, contentText(m.Content), calls, m.ToolCallID)
		}
	}
	return msgs, prevResponse, tools
}

// answer is what a response said: its id, text and tool calls.
type answer struct {
	id    string
	text  strings.Builder
	calls []capture.ToolCall
}

func (a *answer) call(index int, id, name, args string) {
	for len(a.calls) <= index {
		a.calls = append(a.calls, capture.ToolCall{})
	}
	c := &a.calls[index]
	if id != "" {
		c.ID = id
	}
	if name != "" {
		c.Name = name
	}
	c.Arguments += args
}

// readAnswer reads a response body (whole JSON or server-sent events) of
// the given API.
func readAnswer(api string, body []byte) *answer {
	a := &answer{}
	type choice struct {
		Text    string `json:"text"`
		Message struct {
			Content   string         `json:"content"`
			ToolCalls []wireToolCall `json:"tool_calls"`
		} `json:"message"`
		Delta struct {
			Content   string         `json:"content"`
			ToolCalls []wireToolCall `json:"tool_calls"`
		} `json:"delta"`
	}
	type response struct {
		ID     string `json:"id"`
		Output []struct {
			Type      string `json:"type"`
			CallID    string `json:"call_id"`
			Name      string `json:"name"`
			Arguments string `json:"arguments"`
			Content   []struct {
				Text string `json:"text"`
			} `json:"content"`
		} `json:"output"`
	}
	readResponse := func(r response) {
		a.id = r.ID
		for _, o := range r.Output {
			if o.Type == "function_call" {
				a.calls = append(a.calls, capture.ToolCall{ID: o.CallID, Name: o.Name, Arguments: o.Arguments})
			}
			for _, c := range o.Content {
				a.text.WriteString(c.Text)
			}
		}
	}
	one := func(data []byte) {
		var ev struct {
			ID       string    `json:"id"`
			Type     string    `json:"type"`
			Choices  []choice  `json:"choices"`
			Response *response `json:"response"`
			response
		}
		if json.Unmarshal(data, &ev) != nil {
			return
		}
		if api == "responses" {
			switch {
			case ev.Type == "response.completed" || ev.Type == "response.incomplete":
				a.text.Reset()
				a.calls = nil
				readResponse(*ev.Response)
			case ev.Type == "":
				readResponse(ev.response)
				a.id = ev.ID // the object's own id (ev.response's is shadowed)
			}
			return
		}
		if ev.ID != "" {
			a.id = ev.ID
		}
		for _, c := range ev.Choices {
			a.text.WriteString(c.Text + c.Message.Content + c.Delta.Content)
			for i, tc := range append(c.Message.ToolCalls, c.Delta.ToolCalls...) {
				idx := tc.Index
				if len(c.Message.ToolCalls) > 0 {
					idx = i
				}
				a.call(idx, tc.ID, tc.Function.Name, tc.Function.Arguments)
			}
		}
	}
	if t := bytes.TrimSpace(body); len(t) > 0 && t[0] == '{' {
		one(t)
		return a
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), maxCaptured)
	for sc.Scan() {
		if data, ok := bytes.CutPrefix(sc.Bytes(), []byte("data:")); ok {
			one(bytes.TrimSpace(data))
		}
	}
	return a
}

var usageCompletion = regexp.MustCompile(`"(?:completion|output)_tokens"\s*:\s*(\d+)`)

// record writes the capture record of a proxied call.
func (rt *Router) record(r *http.Request, req *Request, body []byte, info *relayInfo, arrival time.Time, prompt, cached int, known bool) {
	api := strings.TrimPrefix(r.URL.Path, "/v1/")
	if api == "chat/completions" {
		api = "chat"
	}
	mode := rt.cfg.CaptureContent
	enc := tokenizer.MustDefault()
	end := info.lastByte
	if end.IsZero() {
		end = time.Now()
	}
	rec := &capture.Record{API: api, Backend: info.backend, Status: info.status, Arrival: arrival, FirstByte: info.firstByte,
		End: end, TimeScale: info.timeScale, PromptTokens: prompt, CachedTokens: -1, Content: mode, Kind: "llm"}
	if known {
		rec.CachedTokens = cached
	}
	switch {
	case req.Meta != nil:
		rec.Workflow, rec.Agent, rec.Parent = req.Meta.WorkflowID, req.Meta.AgentID, req.Meta.ParentRequestID
	case req.Session != "":
		rec.Workflow = "session:" + req.Session
	default:
		rec.Workflow = "conn:" + r.RemoteAddr
	}
	var prev string
	rec.Messages, prev, rec.Tools = captureMessages(api, body, mode, enc)
	if rec.Parent == "" {
		rec.Parent = prev
	}
	a := readAnswer(api, info.body)
	rec.RequestID = a.id
	if rec.RequestID == "" {
		rec.RequestID = fmt.Sprintf("req-%d", captureSeq.Add(1))
	}
	rec.Output = capture.NewMessage("assistant", a.text.String(), a.calls, "", mode, enc)
	rec.CompletionTokens, rec.Truncated = info.completion, info.truncated
	if rec.CompletionTokens < 0 {
		rec.CompletionTokens = rec.Output.Tokens
	}
	if err := rt.cfg.Capture.Write(rec); err != nil {
		if rt.m.captureErrors.Inc(); rt.captureErrs.Add(1) == 1 {
			log.Printf("wfsched router: capture: %v (further errors are counted in wfsched_router_capture_errors_total)", err)
		}
		return
	}
	rt.m.captured.Inc()
}
