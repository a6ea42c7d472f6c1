package dag

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/wfsched/wfsched/capture"
	"github.com/wfsched/wfsched/tokenizer"
)

// OpenTelemetry traces (OTLP JSON: the OTLP/HTTP JSON encoding, or the
// Collector's file exporter, one export request per line) of LLM agents,
// with the GenAI semantic conventions or the OpenInference ones. A trace is
// a workflow (named by gen_ai.conversation.id when a span of it carries
// one); its LLM spans become capture records (messages, output, tokens,
// times, the agent named by gen_ai.agent.name or agent.name on the span or
// an ancestor), and FromCapture rebuilds the workflow as it does a
// capture's, its tool spans giving the tools' nodes their durations.

type otelFormat struct{}

func (otelFormat) Name() string { return "otel" }

func (otelFormat) Detect(data []byte) bool {
	h := head(data, 4096)
	return firstByte(data) == '{' && bytes.Contains(h, []byte(`"resourceSpans"`))
}

func (otelFormat) Parse(data []byte, opt Options) ([]*Graph, error) {
	enc, err := encoder(opt)
	if err != nil {
		return nil, err
	}
	recs, err := OTelRecords(data, enc)
	if err != nil {
		return nil, err
	}
	// Span times are the client's wall times: a server that ran on a
	// scaled clock (wfsched sim --time-scale) is not named in them, so the
	// scale comes from the user.
	note := "wall times as recorded (give --time-scale if the server ran on a scaled clock)"
	if opt.TimeScale > 0 {
		note = "divided by --time-scale " + strconv.FormatFloat(opt.TimeScale, 'g', -1, 64)
		for i := range recs {
			recs[i].TimeScale = opt.TimeScale
		}
	}
	gs, err := FromCapture(recs)
	for _, g := range gs {
		g.Meta[MetaTimeScale] = note
	}
	return gs, err
}

type otlpValue struct {
	StringValue *string         `json:"stringValue"`
	IntValue    json.RawMessage `json:"intValue"` // a string or a number
	DoubleValue *float64        `json:"doubleValue"`
	BoolValue   *bool           `json:"boolValue"`
	ArrayValue  *struct {
		Values []otlpValue `json:"values"`
	} `json:"arrayValue"`
}

func (v otlpValue) String() string {
	switch {
	case v.StringValue != nil:
		return *v.StringValue
	case len(v.IntValue) > 0:
		return strings.Trim(string(v.IntValue), `"`)
	case v.DoubleValue != nil:
		return strconv.FormatFloat(*v.DoubleValue, 'g', -1, 64)
	case v.BoolValue != nil:
		return strconv.FormatBool(*v.BoolValue)
	case v.ArrayValue != nil:
		parts := make([]string, len(v.ArrayValue.Values))
		for i, x := range v.ArrayValue.Values {
			parts[i] = x.String()
		}
		b, _ := json.Marshal(parts)
		return string(b)
	}
	return ""
}

type otlpSpan struct {
	TraceID      string `json:"traceId"`
	SpanID       string `json:"spanId"`
	ParentSpanID string `json:"parentSpanId"`
	Name         string `json:"name"`
	Start        string `json:"startTimeUnixNano"`
	End          string `json:"endTimeUnixNano"`
	Attributes   []struct {
		Key   string    `json:"key"`
		Value otlpValue `json:"value"`
	} `json:"attributes"`
	Status struct {
		Code json.RawMessage `json:"code"`
	} `json:"status"`

	attrs map[string]string
}

type otlpRequest struct {
	ResourceSpans []struct {
		ScopeSpans []struct {
			Spans []otlpSpan `json:"spans"`
		} `json:"scopeSpans"`
	} `json:"resourceSpans"`
}

func nanos(s string) (time.Time, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}, fmt.Errorf("time %q: want nanoseconds since 1970", s)
	}
	return time.Unix(0, n).UTC(), nil
}

// OTelRecords reads OTLP JSON (one export request, or one per line) into
// capture records: one per LLM span (kind "llm"), one per tool span (kind
// "tool").
func OTelRecords(data []byte, enc *tokenizer.Encoder) ([]capture.Record, error) {
	var spans []*otlpSpan
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), capture.MaxLine)
	line := 0
	whole := json.Valid(data) // one document; else one request per line
	add := func(b []byte, where string) error {
		var req otlpRequest
		if err := unmarshal(b, &req); err != nil {
			return fmt.Errorf("%s: not an OTLP JSON export request: %w", where, err)
		}
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for i := range ss.Spans {
					s := &ss.Spans[i]
					s.attrs = make(map[string]string, len(s.Attributes))
					for _, a := range s.Attributes {
						s.attrs[a.Key] = a.Value.String()
					}
					spans = append(spans, s)
				}
			}
		}
		return nil
	}
	if whole {
		if err := add(data, "document"); err != nil {
			return nil, err
		}
	} else {
		for sc.Scan() {
			line++
			if t := bytes.TrimSpace(sc.Bytes()); len(t) > 0 {
				if err := add(t, fmt.Sprintf("line %d", line)); err != nil {
					return nil, err
				}
			}
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("line %d: %w", line+1, err)
		}
	}
	byID := map[string]*otlpSpan{}
	for _, s := range spans {
		byID[s.TraceID+"/"+s.SpanID] = s
	}
	// inherited finds an attribute on the span or its nearest ancestor.
	inherited := func(s *otlpSpan, keys ...string) string {
		for depth := 0; s != nil && depth < 1000; depth++ {
			for _, k := range keys {
				if v := s.attrs[k]; v != "" {
					return v
				}
			}
			s = byID[s.TraceID+"/"+s.ParentSpanID]
		}
		return ""
	}
	var recs []capture.Record
	for _, s := range spans {
		kind := strings.ToUpper(s.attrs["openinference.span.kind"])
		op := s.attrs["gen_ai.operation.name"]
		isLLM := kind == "LLM" || op == "chat" || op == "text_completion" || op == "generate_content"
		isTool := kind == "TOOL" || op == "execute_tool"
		if !isLLM && !isTool {
			continue
		}
		where := fmt.Sprintf("span %s (%s)", s.SpanID, s.Name)
		if s.TraceID == "" || s.SpanID == "" {
			return nil, fmt.Errorf("%s: traceId and spanId are required", where)
		}
		start, err := nanos(s.Start)
		if err != nil {
			return nil, fmt.Errorf("%s: startTimeUnixNano: %v", where, err)
		}
		end, err := nanos(s.End)
		if err != nil {
			return nil, fmt.Errorf("%s: endTimeUnixNano: %v", where, err)
		}
		if end.Before(start) {
			return nil, fmt.Errorf("%s: ends before it starts", where)
		}
		wf := inherited(s, "gen_ai.conversation.id", "session.id")
		if wf == "" {
			wf = s.TraceID
		}
		r := capture.Record{V: capture.Version, Workflow: wf, Agent: inherited(s, "gen_ai.agent.name", "agent.name"), RequestID: s.SpanID,
			Arrival: start, End: end, Status: 200, CachedTokens: -1, Content: capture.Full, Kind: "llm"}
		if code := strings.Trim(string(s.Status.Code), `"`); code == "2" || code == "STATUS_CODE_ERROR" {
			r.Status = 500
		}
		if isTool {
			r.Kind, r.Tool = "tool", s.attrs["tool.name"]
			if r.Tool == "" {
				r.Tool = s.attrs["gen_ai.tool.name"]
			}
			recs = append(recs, r)
			continue
		}
		num := func(keys ...string) int {
			for _, k := range keys {
				if n, err := strconv.Atoi(s.attrs[k]); err == nil {
					return n
				}
			}
			return 0
		}
		r.PromptTokens = num("llm.token_count.prompt", "gen_ai.usage.input_tokens")
		r.CompletionTokens = num("llm.token_count.completion", "gen_ai.usage.output_tokens")
		if _, ok := s.attrs["llm.token_count.prompt_details.cache_read"]; ok {
			r.CachedTokens = num("llm.token_count.prompt_details.cache_read")
		}
		// The response's own id, as a capture of the same call names it.
		if s.attrs["output.mime_type"] == "application/json" {
			var resp struct {
				ID string `json:"id"`
			}
			if json.Unmarshal([]byte(s.attrs["output.value"]), &resp) == nil && resp.ID != "" {
				r.RequestID = resp.ID
			}
		}
		for i := 0; ; i++ {
			schema, ok := s.attrs["llm.tools."+strconv.Itoa(i)+".tool.json_schema"]
			if !ok {
				break
			}
			var t struct {
				Name     string `json:"name"`
				Function struct {
					Name string `json:"name"`
				} `json:"function"`
			}
			json.Unmarshal([]byte(schema), &t)
			if n := cmp.Or(t.Function.Name, t.Name); n != "" {
				r.Tools = append(r.Tools, n)
			}
		}
		slices.Sort(r.Tools)
		msgs, out := openInferenceMessages(s.attrs, enc)
		if len(msgs) == 0 && out == nil {
			msgs, out = genAIMessages(s.attrs, enc)
		}
		r.Messages = msgs
		if out != nil {
			r.Output = *out
		}
		if r.CompletionTokens == 0 {
			r.CompletionTokens = r.Output.Tokens
		}
		recs = append(recs, r)
	}
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].Arrival.Before(recs[j].Arrival) })
	return recs, nil
}

// openInferenceMessages reads llm.input_messages.N.message.* and the first
// of llm.output_messages.
func openInferenceMessages(attrs map[string]string, enc *tokenizer.Encoder) ([]capture.Message, *capture.Message) {
	read := func(prefix string) []capture.Message {
		var out []capture.Message
		for i := 0; ; i++ {
			p := prefix + strconv.Itoa(i) + ".message."
			role, ok := attrs[p+"role"]
			if !ok {
				return out
			}
			text := attrs[p+"content"]
			for j := 0; ; j++ {
				t, ok := attrs[p+"contents."+strconv.Itoa(j)+".message_content.text"]
				if !ok {
					break
				}
				text += t
			}
			var calls []capture.ToolCall
			for j := 0; ; j++ {
				q := p + "tool_calls." + strconv.Itoa(j) + ".tool_call."
				name, ok := attrs[q+"function.name"]
				if !ok {
					break
				}
				calls = append(calls, capture.ToolCall{ID: attrs[q+"id"], Name: name, Arguments: attrs[q+"function.arguments"]})
			}
			out = append(out, capture.NewMessage(role, text, calls, attrs[p+"tool_call_id"], capture.Full, enc))
		}
	}
	msgs := read("llm.input_messages.")
	outs := read("llm.output_messages.")
	if len(outs) == 0 {
		return msgs, nil
	}
	return msgs, &outs[0]
}

// genAIMessages reads the GenAI conventions' gen_ai.system_instructions,
// gen_ai.input.messages and gen_ai.output.messages (JSON texts of
// {role, parts: [{type: text, content} | {type: tool_call, id, name,
// arguments} | {type: tool_call_response, id, response}]}).
func genAIMessages(attrs map[string]string, enc *tokenizer.Encoder) ([]capture.Message, *capture.Message) {
	type part struct {
		Type      string          `json:"type"`
		Content   string          `json:"content"`
		ID        string          `json:"id"`
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
		Response  json.RawMessage `json:"response"`
	}
	type message struct {
		Role  string `json:"role"`
		Parts []part `json:"parts"`
	}
	conv := func(m message) capture.Message {
		var text strings.Builder
		var calls []capture.ToolCall
		callID := ""
		for _, p := range m.Parts {
			switch p.Type {
			case "text":
				text.WriteString(p.Content)
			case "tool_call":
				args := string(p.Arguments)
				var s string
				if json.Unmarshal(p.Arguments, &s) == nil {
					args = s
				}
				calls = append(calls, capture.ToolCall{ID: p.ID, Name: p.Name, Arguments: args})
			case "tool_call_response":
				callID = p.ID
				var s string
				if json.Unmarshal(p.Response, &s) == nil {
					text.WriteString(s)
				} else {
					text.Write(p.Response)
				}
			}
		}
		role := m.Role
		if callID != "" {
			role = "tool"
		}
		return capture.NewMessage(role, text.String(), calls, callID, capture.Full, enc)
	}
	var msgs []capture.Message
	if sys := attrs["gen_ai.system_instructions"]; sys != "" {
		var parts []part
		if json.Unmarshal([]byte(sys), &parts) == nil {
			msgs = append(msgs, conv(message{Role: "system", Parts: parts}))
		}
	}
	var in, out []message
	json.Unmarshal([]byte(attrs["gen_ai.input.messages"]), &in)
	json.Unmarshal([]byte(attrs["gen_ai.output.messages"]), &out)
	for _, m := range in {
		msgs = append(msgs, conv(m))
	}
	if len(out) == 0 {
		return msgs, nil
	}
	o := conv(out[0])
	return msgs, &o
}
