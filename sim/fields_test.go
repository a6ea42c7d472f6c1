package sim

import (
	"bufio"
	"bytes"
	"encoding/json"
	"math"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// reply is an answer read back, whole or assembled from a stream.
type reply struct {
	Text, Args, ToolName, ToolID string
	Finish                       string
	StopReason                   any
	Tokens                       []string // logprobs' tokens
	Logprobs                     []float64
	Tops                         [][]float64
	Completion, Prompt, Cached   int
}

// ask sends body (a JSON object, which must set a seed) to path, whole and
// streamed, checks both answer alike, and returns the answer.
func ask(t *testing.T, url, path, body string) reply {
	t.Helper()
	chat := strings.Contains(path, "chat")
	status, _, whole := post(t, url, path, body)
	if status != 200 {
		t.Fatalf("%s: status %d: %s", body, status, whole)
	}
	w := readWhole(t, whole, chat)
	streamBody := strings.TrimSuffix(strings.TrimSpace(body), "}") + `, "stream": true, "stream_options": {"include_usage": true}}`
	status, _, streamed := post(t, url, path, streamBody)
	if status != 200 {
		t.Fatalf("%s: status %d: %s", streamBody, status, streamed)
	}
	s := readStream(t, streamed, chat)
	// Tool call ids are random, as vLLM's; the prefix cache holds the first
	// request's prompt when the second comes.
	ws, ss := w, s
	ws.ToolID, ss.ToolID, ws.Cached, ss.Cached = "", "", 0, 0
	wj, _ := json.Marshal(ws)
	sj, _ := json.Marshal(ss)
	if !bytes.Equal(wj, sj) {
		t.Errorf("%s:\nwhole    %s\nstreamed %s", body, wj, sj)
	}
	return w
}

type wireLogprobs struct {
	Content []struct {
		Token       string  `json:"token"`
		Logprob     float64 `json:"logprob"`
		Bytes       []int   `json:"bytes"`
		TopLogprobs []struct {
			Token   string  `json:"token"`
			Logprob float64 `json:"logprob"`
		} `json:"top_logprobs"`
	} `json:"content"`
	Tokens        []string             `json:"tokens"`
	TokenLogprobs []float64            `json:"token_logprobs"`
	TopLogprobs   []map[string]float64 `json:"top_logprobs"`
	TextOffset    []int                `json:"text_offset"`
}

type wireChoice struct {
	Text    string `json:"text"`
	Message *struct {
		Content   *string    `json:"content"`
		ToolCalls []wireCall `json:"tool_calls"`
	} `json:"message"`
	Delta *struct {
		Content   *string    `json:"content"`
		ToolCalls []wireCall `json:"tool_calls"`
	} `json:"delta"`
	FinishReason *string       `json:"finish_reason"`
	StopReason   any           `json:"stop_reason"`
	Logprobs     *wireLogprobs `json:"logprobs"`
}

type wireCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type wireBody struct {
	Choices []wireChoice `json:"choices"`
	Usage   *usage       `json:"usage"`
}

func (r *reply) addLogprobs(lp *wireLogprobs) {
	if lp == nil {
		return
	}
	for _, c := range lp.Content {
		r.Tokens = append(r.Tokens, c.Token)
		r.Logprobs = append(r.Logprobs, c.Logprob)
		var top []float64
		for _, x := range c.TopLogprobs {
			top = append(top, x.Logprob)
		}
		r.Tops = append(r.Tops, top)
	}
	for i, tok := range lp.Tokens {
		r.Tokens = append(r.Tokens, tok)
		r.Logprobs = append(r.Logprobs, lp.TokenLogprobs[i])
		var top []float64
		for _, v := range lp.TopLogprobs[i] {
			top = append(top, v)
		}
		slices.Sort(top)
		slices.Reverse(top)
		r.Tops = append(r.Tops, top)
	}
}

func (r *reply) addUsage(u *usage) {
	if u != nil {
		r.Completion, r.Prompt = u.CompletionTokens, u.PromptTokens
		if u.PromptTokensDetails != nil {
			r.Cached = u.PromptTokensDetails.CachedTokens
		}
	}
}

func readWhole(t *testing.T, body string, chat bool) reply {
	t.Helper()
	var b wireBody
	if err := json.Unmarshal([]byte(body), &b); err != nil || len(b.Choices) != 1 {
		t.Fatalf("answer %s: %v", body, err)
	}
	c := b.Choices[0]
	var r reply
	if chat {
		if c.Message.Content != nil {
			r.Text = *c.Message.Content
		}
		for _, tc := range c.Message.ToolCalls {
			r.ToolID, r.ToolName, r.Args = tc.ID, tc.Function.Name, tc.Function.Arguments
			if tc.Type != "function" {
				t.Errorf("tool call type %q", tc.Type)
			}
		}
	} else {
		r.Text = c.Text
	}
	r.Finish, r.StopReason = *c.FinishReason, c.StopReason
	r.addLogprobs(c.Logprobs)
	r.addUsage(b.Usage)
	return r
}

func readStream(t *testing.T, body string, chat bool) reply {
	t.Helper()
	var r reply
	sc := bufio.NewScanner(strings.NewReader(body))
	done := false
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if line == "[DONE]" {
			done = true
			continue
		}
		var b wireBody
		if err := json.Unmarshal([]byte(line), &b); err != nil {
			t.Fatalf("chunk %s: %v", line, err)
		}
		r.addUsage(b.Usage)
		for _, c := range b.Choices {
			if chat {
				if c.Delta.Content != nil {
					r.Text += *c.Delta.Content
				}
				for _, tc := range c.Delta.ToolCalls {
					if tc.ID != "" {
						r.ToolID, r.ToolName = tc.ID, tc.Function.Name
					}
					r.Args += tc.Function.Arguments
				}
			} else {
				r.Text += c.Text
			}
			if c.FinishReason != nil {
				r.Finish, r.StopReason = *c.FinishReason, c.StopReason
			}
			r.addLogprobs(c.Logprobs)
		}
	}
	if !done {
		t.Errorf("stream without [DONE]: %s", body)
	}
	return r
}

// validate checks doc against a JSON schema with an independent validator.
func validate(t *testing.T, schema, doc string) {
	t.Helper()
	c := jsonschema.NewCompiler()
	sch, err := jsonschema.UnmarshalJSON(strings.NewReader(schema))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddResource("schema.json", sch); err != nil {
		t.Fatal(err)
	}
	compiled, err := c.Compile("schema.json")
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(strings.NewReader(doc))
	if err != nil {
		t.Fatalf("answer %q is not JSON: %v", doc, err)
	}
	if err := compiled.Validate(inst); err != nil {
		t.Errorf("answer %s does not satisfy the schema: %v", doc, err)
	}
}

const chatURL = "/v1/chat/completions"

const userHi = `"messages": [{"role": "user", "content": "Plan the trip."}]`

// schemas that structured output must satisfy: nesting, arrays, enums,
// refs, bounds, formats, patterns, unions.
var schemas = []string{
	`{"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 18, "maximum": 99}}, "required": ["name", "age"], "additionalProperties": false}`,
	`{"type": "object", "properties": {"steps": {"type": "array", "items": {"$ref": "#/$defs/step"}, "minItems": 2, "maxItems": 4}, "done": {"type": "boolean"}}, "required": ["steps"],
	  "$defs": {"step": {"type": "object", "properties": {"tool": {"enum": ["search", "code", "browse"]}, "cost": {"type": "number", "exclusiveMinimum": 0, "maximum": 1}, "note": {"type": ["string", "null"], "maxLength": 12}}, "required": ["tool", "cost"]}}}`,
	`{"type": "object", "properties": {"id": {"type": "string", "format": "uuid"}, "when": {"type": "string", "format": "date-time"}, "code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2,4}$"}, "tags": {"type": "array", "items": {"type": "string", "minLength": 3}, "uniqueItems": true}}, "required": ["id", "when", "code", "tags"]}`,
	`{"anyOf": [{"type": "object", "properties": {"answer": {"const": 42}}, "required": ["answer"]}, {"type": "array", "items": {"type": "integer", "multipleOf": 5, "minimum": 10, "maximum": 40}, "minItems": 1}]}`,
	`{"allOf": [{"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}, {"properties": {"b": {"type": "integer"}}, "required": ["b"]}]}`,
}

func TestStructuredOutput(t *testing.T) {
	c := startCluster(t, nil)
	url := c.URLs()[0]
	for i, sch := range schemas {
		for seed := 1; seed <= 4; seed++ {
			body := `{` + userHi + `, "seed": ` + string(rune('0'+seed)) + `, "response_format": {"type": "json_schema", "json_schema": {"name": "out", "schema": ` + sch + `}}}`
			r := ask(t, url, chatURL, body)
			if r.Finish != "stop" {
				t.Errorf("schema %d seed %d: finish %q", i, seed, r.Finish)
			}
			validate(t, sch, r.Text)
			if n := c.Servers()[0].Engine().Encoder().Count(r.Text); r.Completion != n {
				t.Errorf("schema %d: %d completion tokens for a %d-token document", i, r.Completion, n)
			}
		}
		// guided_json takes the schema alone, also as a string, on completions too.
		quoted, _ := json.Marshal(sch)
		r := ask(t, url, "/v1/completions", `{"prompt": "Fill in:", "max_tokens": 500, "seed": 9, "guided_json": `+string(quoted)+`}`)
		validate(t, sch, r.Text)
	}
	// The same seed gives the same document; another seed another one.
	a := ask(t, url, chatURL, `{`+userHi+`, "seed": 5, "guided_json": `+schemas[1]+`}`)
	b := ask(t, url, chatURL, `{`+userHi+`, "seed": 5, "guided_json": `+schemas[1]+`}`)
	d := ask(t, url, chatURL, `{`+userHi+`, "seed": 6, "guided_json": `+schemas[1]+`}`)
	if a.Text != b.Text || a.Text == d.Text {
		t.Errorf("seed 5 twice: %q and %q; seed 6: %q", a.Text, b.Text, d.Text)
	}
	// max_tokens cuts the document, as it would a model's.
	if r := ask(t, url, chatURL, `{`+userHi+`, "seed": 5, "max_tokens": 4, "guided_json": `+schemas[1]+`}`); r.Finish != "length" || r.Completion != 4 || json.Valid([]byte(r.Text)) {
		t.Errorf("cut document: %+v", r)
	}
	// json_object: an object, of about the modeled output length.
	total := 0
	for seed := range 20 {
		r := ask(t, url, chatURL, `{`+userHi+`, "seed": `+itoa(seed)+`, "response_format": {"type": "json_object"}}`)
		var obj map[string]any
		if err := json.Unmarshal([]byte(r.Text), &obj); err != nil || r.Finish != "stop" {
			t.Fatalf("json_object answer %q (%s): %v", r.Text, r.Finish, err)
		}
		total += r.Completion
	}
	if mean := total / 20; mean < DefaultMedianOutput/3 || mean > 3*DefaultMedianOutput {
		t.Errorf("json_object answers average %d tokens; the output-length model's median is %d", mean, DefaultMedianOutput)
	}
	// guided_regex and guided_choice.
	for _, re := range []string{`[a-z]+@[a-z]+\.(com|org)`, `(yes|no), because [a-z ]{5,20}\.`, `\d{3}-\d{4}`} {
		r := ask(t, url, chatURL, `{`+userHi+`, "seed": 3, "guided_regex": `+quote(re)+`}`)
		if !regexp.MustCompile(`^(?:` + re + `)$`).MatchString(r.Text) {
			t.Errorf("guided_regex %s: answer %q", re, r.Text)
		}
	}
	r := ask(t, url, "/v1/completions", `{"prompt": "Sentiment:", "seed": 3, "guided_choice": ["positive", "negative", "neutral"]}`)
	if r.Text != "positive" && r.Text != "negative" && r.Text != "neutral" {
		t.Errorf("guided_choice answer %q", r.Text)
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func quote(s string) string { b, _ := json.Marshal(s); return string(b) }

func TestToolCalls(t *testing.T) {
	c := startCluster(t, func(cc *ClusterConfig) { cc.Server.AutoToolChoice = true })
	url := c.URLs()[0]
	tools := `"tools": [{"type": "function", "function": {"name": "get_weather", "parameters": ` + schemas[0] + `}},
		{"type": "function", "function": {"name": "book", "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "nights": {"type": "integer", "minimum": 1, "maximum": 9}}, "required": ["city", "nights"]}}}]`
	params := map[string]string{"get_weather": schemas[0], "book": `{"type": "object", "properties": {"city": {"type": "string"}, "nights": {"type": "integer", "minimum": 1, "maximum": 9}}, "required": ["city", "nights"]}`}
	for seed := range 4 {
		r := ask(t, url, chatURL, `{`+userHi+`, "seed": `+itoa(seed)+`, `+tools+`, "tool_choice": "required"}`)
		if r.Finish != "tool_calls" || r.Text != "" || !strings.HasPrefix(r.ToolID, "chatcmpl-tool-") || params[r.ToolName] == "" {
			t.Fatalf("required: %+v", r)
		}
		validate(t, params[r.ToolName], r.Args)
	}
	r := ask(t, url, chatURL, `{`+userHi+`, "seed": 1, `+tools+`, "tool_choice": {"type": "function", "function": {"name": "book"}}}`)
	if r.Finish != "stop" || r.ToolName != "book" {
		t.Errorf("named: %+v", r)
	}
	validate(t, params["book"], r.Args)

	// auto: a call to a tool not yet called this turn, then an answer.
	first := ask(t, url, chatURL, `{`+userHi+`, "seed": 2, `+tools+`}`)
	if first.Finish != "tool_calls" || first.ToolName == "" {
		t.Fatalf("auto, first turn: %+v", first)
	}
	history := `"messages": [{"role": "user", "content": "Plan the trip."},
		{"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
		{"role": "tool", "tool_call_id": "c1", "content": "sunny"},
		{"role": "assistant", "content": null, "tool_calls": [{"id": "c2", "type": "function", "function": {"name": "book", "arguments": "{}"}}]},
		{"role": "tool", "tool_call_id": "c2", "content": "booked"}]`
	if last := ask(t, url, chatURL, `{`+history+`, "seed": 2, `+tools+`}`); last.ToolName != "" || last.Text == "" || last.Finish != "stop" {
		t.Errorf("auto, every tool called: %+v", last)
	}
	// Without --enable-auto-tool-choice, vLLM's refusal.
	plain := startCluster(t, nil)
	if status, _, body := post(t, plain.URLs()[0], chatURL, `{`+userHi+`, `+tools+`}`); status != 400 || !strings.Contains(body, "--enable-auto-tool-choice") {
		t.Errorf("auto without the flag: %d %s", status, body)
	}
}

func TestLogprobs(t *testing.T) {
	c := startCluster(t, nil)
	url := c.URLs()[0]
	check := func(r reply, top int) {
		t.Helper()
		if len(r.Tokens) != r.Completion || strings.Join(r.Tokens, "") != r.Text {
			t.Errorf("%d logprob tokens joining to %q for %d tokens of %q", len(r.Tokens), strings.Join(r.Tokens, ""), r.Completion, r.Text)
		}
		for i, lp := range r.Logprobs {
			if len(r.Tops[i]) != top {
				t.Fatalf("token %d: %d alternatives, want %d", i, len(r.Tops[i]), top)
			}
			sum := 0.0
			for _, x := range r.Tops[i] {
				sum += math.Exp(x)
				if x > lp+1e-12 {
					t.Errorf("token %d: an alternative (%g) more likely than the chosen token (%g)", i, x, lp)
				}
			}
			if lp > 0 || sum > 1+1e-9 {
				t.Errorf("token %d: logprob %g, alternatives' mass %g", i, lp, sum)
			}
		}
	}
	check(ask(t, url, chatURL, `{`+userHi+`, "seed": 4, "max_tokens": 30, "logprobs": true, "top_logprobs": 3}`), 3)
	check(ask(t, url, chatURL, `{`+userHi+`, "seed": 4, "max_tokens": 30, "logprobs": true}`), 0)
	check(ask(t, url, "/v1/completions", `{"prompt": "Once", "seed": 4, "max_tokens": 12, "logprobs": 2}`), 2)
	check(ask(t, url, chatURL, `{`+userHi+`, "seed": 4, "guided_json": `+schemas[0]+`, "logprobs": true, "top_logprobs": 20}`), 20)
	status, _, body := post(t, url, "/v1/completions", `{"prompt": "Once", "logprobs": 2, "echo": true, "max_tokens": 3, "seed": 1}`)
	var b struct {
		Choices []struct {
			Text     string       `json:"text"`
			Logprobs wireLogprobs `json:"logprobs"`
		} `json:"choices"`
	}
	if json.Unmarshal([]byte(body), &b); status != 200 || !strings.HasPrefix(b.Choices[0].Text, "<|begin_of_text|>Once") || b.Choices[0].Logprobs.TextOffset[0] != len("<|begin_of_text|>Once") {
		t.Errorf("echo: %d %s", status, body)
	}
	status, _, body = post(t, url, chatURL, `{`+userHi+`, "max_tokens": 2, "logprobs": true, "return_tokens_as_token_ids": true, "prompt_logprobs": 1}`)
	if status != 200 || !strings.Contains(body, `"token":"token_id:`) || !strings.Contains(body, `"prompt_logprobs":[null,{`) {
		t.Errorf("token ids and prompt logprobs: %d %s", status, body)
	}
}

func TestStopAndSeed(t *testing.T) {
	c := startCluster(t, nil)
	url := c.URLs()[0]
	base := ask(t, url, chatURL, `{`+userHi+`, "seed": 8, "max_tokens": 200, "ignore_eos": true}`)
	if again := ask(t, url, chatURL, `{`+userHi+`, "seed": 8, "max_tokens": 200, "ignore_eos": true}`); again.Text != base.Text {
		t.Fatalf("seed 8 twice gave different texts")
	}
	words := strings.Fields(base.Text)
	stop := " " + words[len(words)/2] // a word the seeded text holds
	at := strings.Index(base.Text, stop)
	r := ask(t, url, chatURL, `{`+userHi+`, "seed": 8, "max_tokens": 200, "ignore_eos": true, "stop": [`+quote(stop)+`, "never matched"]}`)
	if r.Finish != "stop" || r.StopReason != stop || r.Text != base.Text[:at] {
		t.Errorf("stop %q: %+v\nwant text %q", stop, r, base.Text[:at])
	}
	r = ask(t, url, chatURL, `{`+userHi+`, "seed": 8, "max_tokens": 200, "ignore_eos": true, "stop": `+quote(stop)+`, "include_stop_str_in_output": true}`)
	if r.Text != base.Text[:at+len(stop)] {
		t.Errorf("include_stop_str_in_output: %q, want %q", r.Text, base.Text[:at+len(stop)])
	}
	// min_tokens: no stop before it.
	enc := c.Servers()[0].Engine().Encoder()
	n := len(enc.Encode(nil, base.Text[:at+len(stop)]))
	r = ask(t, url, chatURL, `{`+userHi+`, "seed": 8, "max_tokens": 200, "ignore_eos": true, "stop": `+quote(stop)+`, "min_tokens": `+itoa(n)+`}`)
	if r.Completion <= n || !strings.HasPrefix(base.Text, r.Text) || len(r.Text) <= at {
		t.Errorf("min_tokens %d: stopped after %d tokens at %q", n, r.Completion, r.Text)
	}
	// stop_token_ids.
	id := enc.Encode(nil, stop)[0]
	r = ask(t, url, chatURL, `{`+userHi+`, "seed": 8, "max_tokens": 200, "ignore_eos": true, "stop_token_ids": [`+itoa(id)+`]}`)
	if r.Finish != "stop" || r.StopReason != float64(id) || !strings.HasSuffix(r.Text, stop) {
		t.Errorf("stop_token_ids [%d]: %+v", id, r)
	}
	// The model's own end: stop with no stop_reason.
	if r := ask(t, url, chatURL, `{`+userHi+`, "seed": 8}`); r.Finish != "stop" || r.StopReason != nil {
		t.Errorf("end of sequence: %+v", r)
	}
}

func TestPromptFields(t *testing.T) {
	c := startCluster(t, nil)
	url := c.URLs()[0]
	long := `"messages": [{"role": "user", "content": ` + quote(strings.Repeat("a long shared context ", 40)) + `}]`
	ask(t, url, chatURL, `{`+long+`, "seed": 1, "max_tokens": 2, "cache_salt": "tenant-a"}`)
	if r := ask(t, url, chatURL, `{`+long+`, "seed": 1, "max_tokens": 2, "cache_salt": "tenant-b"}`); r.Cached != 0 {
		t.Errorf("another salt: %d cached tokens", r.Cached)
	}
	if r := ask(t, url, chatURL, `{`+long+`, "seed": 1, "max_tokens": 2, "cache_salt": "tenant-a"}`); r.Cached == 0 {
		t.Errorf("the same salt: no cached tokens")
	}
	if r := ask(t, url, chatURL, `{`+long+`, "seed": 1, "max_tokens": 2, "truncate_prompt_tokens": 50}`); r.Prompt != 50 {
		t.Errorf("truncate_prompt_tokens 50: %d prompt tokens", r.Prompt)
	}
	open := ask(t, url, chatURL, `{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Well,"}], "continue_final_message": true, "add_generation_prompt": false, "echo": true, "seed": 1, "max_tokens": 3}`)
	closed := ask(t, url, chatURL, `{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Well,"}], "seed": 1, "max_tokens": 3}`)
	if !strings.HasPrefix(open.Text, "Well,") || open.Prompt >= closed.Prompt {
		t.Errorf("continue_final_message with echo: %+v; closed prompt %d tokens", open, closed.Prompt)
	}
	status, _, body := post(t, url, chatURL, `{`+userHi+`, "max_tokens": 1, "request_id": "abc"}`)
	if status != 200 || !strings.Contains(body, `"id":"chatcmpl-abc"`) {
		t.Errorf("request_id: %s", body)
	}
}

func TestRefusedFields(t *testing.T) {
	c := startCluster(t, nil)
	url := c.URLs()[0]
	for _, tt := range []struct{ field, extra string }{
		{"n", `"n": 2`},
		{"best_of", `"best_of": 3`},
		{"use_beam_search", `"use_beam_search": true`},
		{"logits_processors", `"logits_processors": ["x.Y"]`},
		{"chat_template", `"chat_template": "{{ messages }}"`},
		{"guided_grammar", `"guided_grammar": "root ::= \"a\""`},
		{"structural_tag", `"structural_tag": "{}"`},
		{"response_format", `"response_format": {"type": "structural_tag", "structures": [], "triggers": []}`},
		{"response_format", `"response_format": {"type": "json_schema"}`},
		{"guided_json", `"guided_json": {"type": "object", "properties": {"a": {"not": {"type": "string"}}}}`},
		{"guided_json", `"guided_json": {"type": "object", "properties": {"a": {"$ref": "https://example.com/s.json"}}}`},
		{"guided_regex", `"guided_regex": "(a)\\1"`},
		{"guided_choice", `"guided_choice": ["a"], "guided_regex": "a"`},
		{"stream_options", `"stream_options": {"include_usage": true}`},
		{"top_logprobs", `"top_logprobs": 2`},
		{"logprobs", `"logprobs": true, "top_logprobs": 21`},
		{"prompt_logprobs", `"prompt_logprobs": 1, "stream": true`},
		{"temperature", `"temperature": -0.5`},
		{"top_p", `"top_p": 0`},
		{"top_k", `"top_k": -2`},
		{"min_p", `"min_p": 1.5`},
		{"presence_penalty", `"presence_penalty": 3`},
		{"frequency_penalty", `"frequency_penalty": -2.5`},
		{"repetition_penalty", `"repetition_penalty": 0`},
		{"logit_bias", `"logit_bias": {"999999": 5}`},
		{"allowed_token_ids", `"allowed_token_ids": []`},
		{"stop", `"stop": ["ok", ""]`},
		{"min_tokens", `"min_tokens": 50, "max_tokens": 10`},
		{"continue_final_message", `"continue_final_message": true, "add_generation_prompt": true`},
		{"cache_salt", `"cache_salt": ""`},
		{"truncate_prompt_tokens", `"truncate_prompt_tokens": 0`},
		{"tool_choice", `"tool_choice": "required"`},
		{"tool_choice", `"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "function", "function": {"name": "g"}}`},
		{"priority", `"priority": 5`},
	} {
		status, _, body := post(t, url, chatURL, `{`+userHi+`, `+tt.extra+`}`)
		var eb errorBody
		if err := json.Unmarshal([]byte(body), &eb); err != nil || status != 400 || eb.Error.Code != 400 || eb.Error.Type != "BadRequestError" || eb.Error.Param == nil || *eb.Error.Param != tt.field {
			t.Errorf("%s: status %d %s; want a 400 naming %s", tt.extra, status, body, tt.field)
		}
	}
	for _, extra := range []string{`"suffix": "x"`, `"prompt_embeds": "AAAA"`} {
		if status, _, body := post(t, url, "/v1/completions", `{"prompt": "a", `+extra+`}`); status != 400 {
			t.Errorf("completions %s: %d %s", extra, status, body)
		}
	}
	// Accepted fields that change nothing measured.
	if status, _, body := post(t, url, chatURL, `{`+userHi+`, "max_tokens": 2, "temperature": 2.5, "top_p": 0.9, "top_k": 40, "min_p": 0.1, "presence_penalty": 1, "frequency_penalty": -1, "repetition_penalty": 1.1, "logit_bias": {"100": -100}, "user": "u", "metadata": {"a": "b"}, "parallel_tool_calls": false, "skip_special_tokens": false, "chat_template_kwargs": {"enable_thinking": false}}`); status != 200 {
		t.Errorf("accepted fields: %d %s", status, body)
	}
}

// docs/engine.md's table of request fields is the one Fields prints.
func TestREADMEFieldsTable(t *testing.T) {
	readme, err := os.ReadFile("../docs/engine.md")
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	WriteFieldsTable(&b)
	if !bytes.Contains(readme, b.Bytes()) {
		t.Errorf("docs/engine.md's request-field table differs from sim.Fields: paste the output of `wfsched sim --fields`")
	}
}

// TestParallelToolCalls: with ServerConfig.ParallelToolCalls an auto answer
// calls several tools, the same ones streamed or not, over chat and the
// Responses API; parallel_tool_calls false keeps it to one, and a turn that
// returns every result gets a text answer.
func TestParallelToolCalls(t *testing.T) {
	c := startCluster(t, func(cc *ClusterConfig) { cc.Server.AutoToolChoice, cc.Server.ParallelToolCalls = true, 3 })
	url := c.URLs()[0]
	params := map[string]string{"get_weather": schemas[0], "book": `{"type": "object", "properties": {"city": {"type": "string"}, "nights": {"type": "integer", "minimum": 1, "maximum": 9}}, "required": ["city", "nights"]}`}
	tools := `"tools": [{"type": "function", "function": {"name": "get_weather", "parameters": ` + params["get_weather"] + `}},
		{"type": "function", "function": {"name": "book", "parameters": ` + params["book"] + `}}]`
	type call struct{ ID, Name, Args string }
	// chat answers the calls of a chat body, streamed or not.
	chat := func(body string, stream bool) (calls []call, finish string) {
		t.Helper()
		if stream {
			body = strings.TrimSuffix(body, "}") + `, "stream": true}`
		}
		status, _, out := post(t, url, chatURL, body)
		if status != 200 {
			t.Fatalf("%d %s", status, out)
		}
		type wireCall struct {
			Index    int    `json:"index"`
			ID       string `json:"id"`
			Function struct {
				Name, Arguments string
			} `json:"function"`
		}
		type chunk struct {
			Choices []struct {
				Message, Delta struct {
					ToolCalls []wireCall `json:"tool_calls"`
				}
				Finish string `json:"finish_reason"`
			} `json:"choices"`
		}
		var chunks []chunk
		for _, line := range strings.Split(out, "\n") {
			d, ok := strings.CutPrefix(line, "data: ")
			if !stream {
				d, ok = out, true
			}
			if ok && d != "[DONE]" {
				var ch chunk
				json.Unmarshal([]byte(d), &ch)
				chunks = append(chunks, ch)
			}
			if !stream {
				break
			}
		}
		for _, ch := range chunks {
			for _, cc := range ch.Choices {
				for i, w := range append(cc.Message.ToolCalls, cc.Delta.ToolCalls...) {
					k := w.Index
					if len(cc.Message.ToolCalls) > 0 {
						k = i
					}
					for len(calls) <= k {
						calls = append(calls, call{})
					}
					calls[k].ID += w.ID
					calls[k].Name += w.Function.Name
					calls[k].Args += w.Function.Arguments
				}
				if cc.Finish != "" {
					finish = cc.Finish
				}
			}
		}
		return calls, finish
	}
	whole, finish := chat(`{`+userHi+`, "seed": 3, `+tools+`}`, false)
	if len(whole) != 2 || whole[0].Name == whole[1].Name || finish != "tool_calls" {
		t.Fatalf("auto with 3 parallel calls allowed, 2 tools: %+v, %s", whole, finish)
	}
	for _, c := range whole {
		validate(t, params[c.Name], c.Args)
	}
	streamed, finish := chat(`{`+userHi+`, "seed": 3, `+tools+`}`, true)
	if len(streamed) != 2 || finish != "tool_calls" {
		t.Fatalf("streamed: %+v, %s", streamed, finish)
	}
	for i := range whole {
		if streamed[i].Name != whole[i].Name || streamed[i].Args != whole[i].Args || !strings.HasPrefix(streamed[i].ID, "chatcmpl-tool-") {
			t.Errorf("call %d streamed %+v, whole %+v", i, streamed[i], whole[i])
		}
	}
	if one, _ := chat(`{`+userHi+`, "seed": 3, "parallel_tool_calls": false, `+tools+`}`, false); len(one) != 1 {
		t.Errorf("parallel_tool_calls false: %d calls", len(one))
	}

	// The Responses API: two function_call items, the same streamed; the
	// results of both in a follow-up get a text answer.
	rtools := `"tools": [{"type": "function", "name": "get_weather", "parameters": ` + params["get_weather"] + `},
		{"type": "function", "name": "book", "parameters": ` + params["book"] + `}]`
	status, _, out := post(t, url, "/v1/responses", `{"input": "Plan the trip.", "seed": 3, `+rtools+`}`)
	var resp struct {
		ID     string `json:"id"`
		Output []struct {
			Type, CallID, Name, Arguments string
		} `json:"output"`
	}
	if json.Unmarshal([]byte(out), &resp); status != 200 || len(resp.Output) != 2 || resp.Output[0].Type != "function_call" || resp.Output[0].Name == resp.Output[1].Name {
		t.Fatalf("responses: %d %s", status, out)
	}
	_, _, out = post(t, url, "/v1/responses", `{"input": "Plan the trip.", "seed": 3, "stream": true, `+rtools+`}`)
	args := map[int]string{}
	for _, line := range strings.Split(out, "\n") {
		d, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		var ev struct {
			Type        string `json:"type"`
			OutputIndex int    `json:"output_index"`
			Delta       string `json:"delta"`
		}
		if json.Unmarshal([]byte(d), &ev); ev.Type == "response.function_call_arguments.delta" {
			args[ev.OutputIndex] += ev.Delta
		}
	}
	for i, o := range resp.Output {
		if args[i] != o.Arguments {
			t.Errorf("responses streamed call %d: %q, whole %q", i, args[i], o.Arguments)
		}
	}
	results := ""
	for _, o := range resp.Output {
		results += `, {"type": "function_call_output", "call_id": "` + o.CallID + `", "output": "done"}`
	}
	status, _, out = post(t, url, "/v1/responses", `{"previous_response_id": "`+resp.ID+`", "input": [`+results[2:]+`], "seed": 3, `+rtools+`}`)
	if status != 200 || !strings.Contains(out, `"type":"message"`) || strings.Contains(out, `"type":"function_call"`) {
		t.Errorf("both results returned: %d %s", status, out)
	}
}
