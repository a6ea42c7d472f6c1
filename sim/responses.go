package sim

import (
	"encoding/json"
	"fmt"
	"github.com/wfsched/wfsched/internal/wire"
	"net/http"
	"strings"
	"sync"
	"time"
)

// The Responses API (/v1/responses), as vLLM serves it: a request is
// translated into a chat request (instructions, then the stored
// conversation it continues, then its input items) and planned and run
// like one, so every decision (validation, guided output, tool calls,
// stop strings) is the chat endpoint's; the answer is written as a
// response object or as the Responses API's typed events. Stored
// responses live in this engine's memory only, as in vLLM: a follow-up
// naming a previous_response_id another engine produced gets a 404.

// responsesRequest holds the fields of /v1/responses the engine reads.
type responsesRequest struct {
	Model              string          `json:"model"`
	Input              json.RawMessage `json:"input"`
	Instructions       *string         `json:"instructions"`
	MaxOutputTokens    *int            `json:"max_output_tokens"`
	PreviousResponseID *string         `json:"previous_response_id"`
	Store              *bool           `json:"store"`
	Stream             bool            `json:"stream"`
	Background         bool            `json:"background"`
	Temperature        *float64        `json:"temperature"`
	TopP               *float64        `json:"top_p"`
	Tools              []struct {
		Type        string          `json:"type"`
		Name        string          `json:"name"`
		Description string          `json:"description"`
		Parameters  json.RawMessage `json:"parameters"`
	} `json:"tools"`
	ToolChoice json.RawMessage `json:"tool_choice"`
	Text       *struct {
		Format *struct {
			Type   string          `json:"type"`
			Name   string          `json:"name"`
			Schema json.RawMessage `json:"schema"`
		} `json:"format"`
	} `json:"text"`
	Prompt   json.RawMessage `json:"prompt"`
	Priority int             `json:"priority"`
	// Not in the Responses API (vLLM ignores them there): the engine takes
	// them as on chat, so a replay asks for the trace's output lengths
	// whichever API it uses.
	Seed              *int64          `json:"seed"`
	IgnoreEOS         bool            `json:"ignore_eos"`
	MinTokens         int             `json:"min_tokens"`
	RequestID         string          `json:"request_id"`
	CacheSalt         *string         `json:"cache_salt"`
	Metadata          json.RawMessage `json:"metadata"`
	ParallelToolCalls *bool           `json:"parallel_tool_calls"`
}

// convMsg is a chat message of a conversation kept for previous_response_id.
type convMsg struct {
	Role       string     `json:"role"`
	Content    *string    `json:"content"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
	ToolCalls  []convCall `json:"tool_calls,omitempty"`
}

type convCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

func strp(s string) *string { return &s }

// Stored responses: each keeps the messages it added to its conversation
// (its input and its output) and the id it continued, so a chain is
// rebuilt by walking back. Bounded by count and bytes, oldest first out;
// a chain with an evicted link is not found.
const (
	MaxStoredResponses     = 10_000
	MaxStoredResponseBytes = 64 << 20
)

type storedResponse struct {
	prev  string
	added []convMsg
	obj   []byte // the response object, for GET /v1/responses/{id}
	bytes int
}

type responseStore struct {
	mu    sync.Mutex
	byID  map[string]*storedResponse
	order []string
	bytes int
}

func (s *responseStore) put(id string, r *storedResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byID == nil {
		s.byID = map[string]*storedResponse{}
	}
	s.byID[id] = r
	s.order = append(s.order, id)
	s.bytes += r.bytes
	for len(s.order) > MaxStoredResponses || s.bytes > MaxStoredResponseBytes {
		old := s.order[0]
		s.order = s.order[1:]
		if o, ok := s.byID[old]; ok {
			s.bytes -= o.bytes
			delete(s.byID, old)
		}
	}
}

// conversation returns the messages of the chain ending at id.
func (s *responseStore) conversation(id string) ([]convMsg, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var chain []*storedResponse
	for cur := id; cur != ""; {
		r, ok := s.byID[cur]
		if !ok || len(chain) > MaxStoredResponses {
			return nil, false
		}
		chain = append(chain, r)
		cur = r.prev
	}
	var msgs []convMsg
	for i := len(chain) - 1; i >= 0; i-- {
		msgs = append(msgs, chain[i].added...)
	}
	return msgs, true
}

func (s *responseStore) get(id string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.byID[id]
	if !ok {
		return nil, false
	}
	return r.obj, true
}

// getResponse serves GET /v1/responses/{id}: a stored response.
func (s *Server) getResponse(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	b, ok := s.responses.get(id)
	if !ok {
		s.writeError(w, &apiError{status: http.StatusNotFound, typ: "NotFoundError", msg: fmt.Sprintf("Response with id '%s' not found.", id)})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
	w.Write([]byte("\n"))
}

// inputMessages translates a Responses input into chat messages.
func inputMessages(raw json.RawMessage) ([]convMsg, *apiError) {
	items, err := wire.ResponsesInput(raw)
	if err != nil {
		return nil, badRequest("input", "input: %v", err)
	}
	var msgs []convMsg
	for i, it := range items {
		switch {
		case it.Type == "function_call":
			if it.Name == "" || it.CallID == "" {
				return nil, badRequest("input", "input[%d]: a function_call needs call_id and name", i)
			}
			c := convCall{ID: it.CallID, Type: "function"}
			c.Function.Name, c.Function.Arguments = it.Name, it.Arguments
			if n := len(msgs); n > 0 && msgs[n-1].Role == "assistant" && len(msgs[n-1].ToolCalls) > 0 && msgs[n-1].Content == nil {
				msgs[n-1].ToolCalls = append(msgs[n-1].ToolCalls, c) // parallel calls: one message
			} else {
				msgs = append(msgs, convMsg{Role: "assistant", ToolCalls: []convCall{c}})
			}
		case it.Type == "function_call_output":
			out, err := wire.ContentText(it.Output)
			if err != nil {
				return nil, badRequest("input", "input[%d].output: %v", i, err)
			}
			msgs = append(msgs, convMsg{Role: "tool", ToolCallID: it.CallID, Content: &out})
		case it.Type == "reasoning":
			// Reasoning items carry no text the engine's model would read.
		case it.Type == "message" || it.Type == "" && it.Role != "":
			switch it.Role {
			case "user", "system", "developer", "assistant":
			default:
				return nil, badRequest("input", "input[%d].role: unknown role %q", i, it.Role)
			}
			t, err := wire.ContentText(it.Content)
			if err != nil {
				return nil, badRequest("input", "input[%d].content: %v", i, err)
			}
			msgs = append(msgs, convMsg{Role: it.Role, Content: &t})
		default:
			return nil, badRequest("input", "input[%d]: item type %q is not supported (message, function_call, function_call_output, reasoning)", i, it.Type)
		}
	}
	if len(msgs) == 0 {
		return nil, badRequest("input", "input: no message in it")
	}
	return msgs, nil
}

// responsePlan is a planned Responses request.
type responsePlan struct {
	*plan
	rr      *responsesRequest
	added   []convMsg // this request's input, for the store
	store   bool
	created int64
	itemIDs []string // the output items' ids: the message, or one per tool call
	callIDs []string
}

// planResponse translates a Responses request into a chat plan.
func (s *Server) planResponse(body []byte, requestID string) (*responsePlan, *apiError) {
	var rr responsesRequest
	if err := json.Unmarshal(body, &rr); err != nil {
		return nil, badRequest("", "malformed JSON body: %v", err)
	}
	switch {
	case len(rr.Prompt) > 0 && string(rr.Prompt) != "null":
		return nil, badRequest("prompt", "prompt template is not supported")
	case rr.Background && rr.Store != nil && !*rr.Store:
		return nil, badRequest("background", "background can only be used when `store` is true")
	case rr.Background:
		return nil, badRequest("background", "background: background responses are not modeled by the embedded engine")
	}
	input, apiErr := inputMessages(rr.Input)
	if apiErr != nil {
		return nil, apiErr
	}
	var msgs []convMsg
	if rr.Instructions != nil && *rr.Instructions != "" {
		msgs = append(msgs, convMsg{Role: "system", Content: rr.Instructions})
	}
	if rr.PreviousResponseID != nil && *rr.PreviousResponseID != "" {
		prev, ok := s.responses.conversation(*rr.PreviousResponseID)
		if !ok {
			return nil, &apiError{status: http.StatusNotFound, typ: "NotFoundError", param: "previous_response_id",
				msg: fmt.Sprintf("Response with id '%s' not found.", *rr.PreviousResponseID)}
		}
		msgs = append(msgs, prev...)
	}
	msgs = append(msgs, input...)
	rawMsgs, _ := json.Marshal(msgs)
	req := completionRequest{Model: rr.Model, Messages: rawMsgs, MaxTokens: rr.MaxOutputTokens, Temperature: rr.Temperature,
		TopP: rr.TopP, Priority: rr.Priority, Seed: rr.Seed, IgnoreEOS: rr.IgnoreEOS, MinTokens: rr.MinTokens, RequestID: rr.RequestID, CacheSalt: rr.CacheSalt, Stream: rr.Stream,
		ParallelToolCalls: rr.ParallelToolCalls}
	for _, t := range rr.Tools {
		if t.Type != "function" {
			return nil, badRequest("tools", "tools: type %q is not supported by the embedded engine (function tools only)", t.Type)
		}
		var tp toolParam
		tp.Type, tp.Function.Name, tp.Function.Parameters = "function", t.Name, t.Parameters
		req.Tools = append(req.Tools, tp)
	}
	if raw := rr.ToolChoice; len(raw) > 0 && raw[0] == '{' {
		var named struct {
			Type string `json:"type"`
			Name string `json:"name"`
		}
		if json.Unmarshal(raw, &named) != nil || named.Type != "function" || named.Name == "" {
			return nil, badRequest("tool_choice", `tool_choice: want "auto", "none", "required" or {"type": "function", "name": ...}`)
		}
		req.ToolChoice, _ = json.Marshal(map[string]any{"type": "function", "function": map[string]string{"name": named.Name}})
	} else {
		req.ToolChoice = raw
	}
	if rr.Text != nil && rr.Text.Format != nil {
		switch f := rr.Text.Format; f.Type {
		case "", "text":
		case "json_schema":
			req.ResponseFormat = &struct {
				Type       string `json:"type"`
				JSONSchema *struct {
					Name   string          `json:"name"`
					Schema json.RawMessage `json:"schema"`
				} `json:"json_schema"`
			}{Type: "json_schema", JSONSchema: &struct {
				Name   string          `json:"name"`
				Schema json.RawMessage `json:"schema"`
			}{Name: f.Name, Schema: f.Schema}}
		case "json_object":
			return nil, badRequest("text", "text.format: json_object is not supported") // as vLLM
		default:
			return nil, badRequest("text", "text.format.type %q: want text or json_schema", f.Type)
		}
	}
	p, apiErr := s.plan(&req, true, requestID)
	if apiErr != nil {
		if apiErr.param == "max_tokens" {
			apiErr.param = "max_output_tokens"
		}
		return nil, apiErr
	}
	rp := &responsePlan{plan: p, rr: &rr, added: input, store: rr.Store == nil || *rr.Store, created: time.Now().Unix()}
	base := strings.TrimPrefix(p.id, "chatcmpl-")
	p.id = "resp_" + base
	for _, t := range p.calls {
		rp.itemIDs = append(rp.itemIDs, newID("fc_"))
		rp.callIDs = append(rp.callIDs, "call_"+strings.TrimPrefix(t.id, "chatcmpl-tool-"))
	}
	if len(p.calls) == 0 {
		rp.itemIDs = []string{newID("msg_")}
	}
	return rp, nil
}

// responses serves POST /v1/responses.
func (s *Server) responsesHandler(w http.ResponseWriter, r *http.Request) {
	var rp *responsePlan
	_, st, f, ok := s.accept(w, r, func(body []byte, requestID string) (*plan, *apiError) {
		var apiErr *apiError
		if rp, apiErr = s.planResponse(body, requestID); apiErr != nil {
			return nil, apiErr
		}
		return rp.plan, nil
	})
	if !ok {
		return
	}
	if rp.rr.Stream {
		a := &answer{s: s, p: rp.plan}
		s.stream(w, r, st, a, f, &responseEmitter{a: a, rp: rp, st: st})
		return
	}
	a, _, _, finish, _, end, ok := s.collect(r, st, rp.plan)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	writeJSON(w, s.responseObject(rp, st, a, end, finish, true))
}

// outputItem is the response's output item i: the message, or its tool
// call i, with its text so far.
func (rp *responsePlan) outputItem(i int, text string, done bool) map[string]any {
	status := "in_progress"
	if done {
		status = "completed"
	}
	if len(rp.calls) > 0 {
		return map[string]any{"type": "function_call", "id": rp.itemIDs[i], "call_id": rp.callIDs[i], "name": rp.calls[i].name, "arguments": text, "status": status}
	}
	content := []any{}
	if done {
		content = []any{map[string]any{"type": "output_text", "text": text, "annotations": []any{}, "logprobs": []any{}}}
	}
	return map[string]any{"type": "message", "id": rp.itemIDs[0], "status": status, "role": "assistant", "content": content}
}

// responseObject is the response as the API returns it; once done, a
// stored response is kept for follow-ups. end is how many bytes of the
// answer's output it holds.
func (s *Server) responseObject(rp *responsePlan, st *Stream, a *answer, end int, finish string, done bool) map[string]any {
	rr := rp.rr
	obj := map[string]any{
		"id": rp.id, "object": "response", "created_at": rp.created, "model": s.e.Model(), "status": "in_progress",
		"output": []any{}, "incomplete_details": nil, "error": nil, "instructions": rr.Instructions,
		"max_output_tokens": rr.MaxOutputTokens, "previous_response_id": rr.PreviousResponseID, "store": rp.store,
		"temperature": rr.Temperature, "top_p": rr.TopP, "tool_choice": "auto", "tools": rr.Tools, "parallel_tool_calls": true,
		"text": map[string]any{"format": map[string]any{"type": "text"}}, "truncation": "disabled", "metadata": rr.Metadata,
		"background": false, "service_tier": "auto", "reasoning": nil, "user": nil, "usage": nil,
	}
	if rr.Tools == nil {
		obj["tools"] = []any{}
	}
	if rr.Text != nil && rr.Text.Format != nil {
		obj["text"] = rr.Text
	}
	if len(rr.ToolChoice) > 0 {
		obj["tool_choice"] = rr.ToolChoice
	}
	if !done {
		return obj
	}
	obj["status"] = "completed"
	if finish == FinishLength {
		obj["status"], obj["incomplete_details"] = "incomplete", map[string]any{"reason": "max_output_tokens"}
	}
	text := a.text(0, end)
	output := []any{rp.outputItem(0, text, true)}
	var calls []convCall // what the store keeps of the calls
	if len(rp.calls) > 0 {
		output = nil
		for i, t := range rp.calls {
			if a.reached(i, end) {
				args := a.callText(i, 0, end)
				output = append(output, rp.outputItem(i, args, true))
				c := convCall{ID: rp.callIDs[i], Type: "function"}
				c.Function.Name, c.Function.Arguments = t.name, args
				calls = append(calls, c)
			}
		}
	}
	obj["output"] = output
	p, cached, c := st.Usage()
	obj["usage"] = map[string]any{"input_tokens": p, "input_tokens_details": map[string]any{"cached_tokens": cached},
		"output_tokens": c, "output_tokens_details": map[string]any{"reasoning_tokens": 0}, "total_tokens": p + c}
	if rp.store {
		added := append([]convMsg(nil), rp.added...)
		out := convMsg{Role: "assistant", Content: strp(text)}
		if calls != nil {
			out = convMsg{Role: "assistant", ToolCalls: calls}
		}
		added = append(added, out)
		size := 0
		for _, m := range added {
			size += 64 + len(m.Role)
			if m.Content != nil {
				size += len(*m.Content)
			}
			for _, c := range m.ToolCalls {
				size += len(c.ID) + len(c.Function.Name) + len(c.Function.Arguments)
			}
		}
		prev := ""
		if rr.PreviousResponseID != nil {
			prev = *rr.PreviousResponseID
		}
		b, _ := json.Marshal(obj)
		s.responses.put(rp.id, &storedResponse{prev: prev, added: added, obj: b, bytes: size + len(b)})
	}
	return obj
}

// responseEmitter writes the Responses API's events: response.created and
// response.in_progress, the output item and its content part, a delta
// event per token (output text or function-call arguments), the done
// events, and response.completed (or response.incomplete) with usage.
type responseEmitter struct {
	a    *answer
	rp   *responsePlan
	st   *Stream
	seq  int
	text strings.Builder // the message's text so far
	item int             // the output item open
}

func (e *responseEmitter) event(typ string, fields map[string]any) {
	fields["type"], fields["sequence_number"] = typ, e.seq
	e.seq++
	b, _ := json.Marshal(fields)
	out := e.a.out
	out.WriteString("event: ")
	out.WriteString(typ)
	out.WriteString("\ndata: ")
	out.Write(b)
	out.WriteString("\n\n")
}

func (e *responseEmitter) begin() {
	obj := e.a.s.responseObject(e.rp, e.st, e.a, 0, "", false)
	e.event("response.created", map[string]any{"response": obj})
	e.event("response.in_progress", map[string]any{"response": obj})
	e.event("response.output_item.added", map[string]any{"output_index": 0, "item": e.rp.outputItem(0, "", false)})
	if len(e.rp.calls) == 0 {
		e.event("response.content_part.added", map[string]any{"item_id": e.rp.itemIDs[0], "output_index": 0, "content_index": 0,
			"part": map[string]any{"type": "output_text", "text": "", "annotations": []any{}}})
	}
}

func (e *responseEmitter) delta(text string, _ []int, _ int) {
	a := e.a
	if len(e.rp.calls) > 0 {
		// Each call's part of this step, a call's item opened once the
		// answer gets to it and the one before closed.
		for i := range e.rp.calls {
			part := a.callText(i, a.step[0], a.step[1])
			if i > e.item && a.reached(i, a.step[1]) {
				e.closeCall()
				e.item = i
				e.event("response.output_item.added", map[string]any{"output_index": i, "item": e.rp.outputItem(i, "", false)})
			}
			if part != "" {
				e.event("response.function_call_arguments.delta", map[string]any{"item_id": e.rp.itemIDs[i], "output_index": i, "delta": part})
			}
		}
		return
	}
	if text == "" {
		return
	}
	e.text.WriteString(text)
	e.event("response.output_text.delta", map[string]any{"item_id": e.rp.itemIDs[0], "output_index": 0, "content_index": 0, "delta": text, "logprobs": []any{}})
}

// closeCall ends the open tool call's item.
func (e *responseEmitter) closeCall() {
	args := e.a.callText(e.item, 0, e.a.sent)
	e.event("response.function_call_arguments.done", map[string]any{"item_id": e.rp.itemIDs[e.item], "output_index": e.item, "arguments": args})
	e.event("response.output_item.done", map[string]any{"output_index": e.item, "item": e.rp.outputItem(e.item, args, true)})
}

func (e *responseEmitter) end(text string, toks []int, first int, reason string, _ any) {
	e.delta(text, toks, first)
	if len(e.rp.calls) > 0 {
		e.closeCall()
	} else {
		full := e.text.String()
		e.event("response.output_text.done", map[string]any{"item_id": e.rp.itemIDs[0], "output_index": 0, "content_index": 0, "text": full, "logprobs": []any{}})
		e.event("response.content_part.done", map[string]any{"item_id": e.rp.itemIDs[0], "output_index": 0, "content_index": 0,
			"part": map[string]any{"type": "output_text", "text": full, "annotations": []any{}}})
		e.event("response.output_item.done", map[string]any{"output_index": 0, "item": e.rp.outputItem(0, full, true)})
	}
	obj := e.a.s.responseObject(e.rp, e.st, e.a, e.a.sent, reason, true)
	typ := "response.completed"
	if obj["status"] == "incomplete" {
		typ = "response.incomplete"
	}
	e.event(typ, map[string]any{"response": obj})
}

func (e *responseEmitter) close() {}
