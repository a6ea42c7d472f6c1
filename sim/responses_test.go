package sim

import (
	"bufio"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
)

type wireResponse struct {
	ID                string `json:"id"`
	Object            string `json:"object"`
	Status            string `json:"status"`
	IncompleteDetails *struct {
		Reason string `json:"reason"`
	} `json:"incomplete_details"`
	Output []struct {
		Type      string `json:"type"`
		ID        string `json:"id"`
		CallID    string `json:"call_id"`
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
		Content   []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"content"`
	} `json:"output"`
	Usage struct {
		InputTokens        int `json:"input_tokens"`
		OutputTokens       int `json:"output_tokens"`
		InputTokensDetails struct {
			CachedTokens int `json:"cached_tokens"`
		} `json:"input_tokens_details"`
	} `json:"usage"`
}

func (r wireResponse) text() string {
	var b strings.Builder
	for _, o := range r.Output {
		for _, c := range o.Content {
			b.WriteString(c.Text)
		}
	}
	return b.String()
}

// respond posts to /v1/responses whole and streamed (the same seed) and
// checks the stream's events rebuild the whole answer.
func respond(t *testing.T, url, body string) wireResponse {
	t.Helper()
	status, _, whole := post(t, url, "/v1/responses", body)
	if status != 200 {
		t.Fatalf("%s: %d %s", body, status, whole)
	}
	var w wireResponse
	if err := json.Unmarshal([]byte(whole), &w); err != nil || w.Object != "response" || !strings.HasPrefix(w.ID, "resp_") {
		t.Fatalf("response %s: %v", whole, err)
	}
	streamBody := strings.TrimSuffix(strings.TrimSpace(body), "}") + `, "stream": true, "store": false}`
	status, _, streamed := post(t, url, "/v1/responses", streamBody)
	if status != 200 {
		t.Fatalf("%s: %d %s", streamBody, status, streamed)
	}
	var deltas, args strings.Builder
	var final wireResponse
	seq := 0
	sc := bufio.NewScanner(strings.NewReader(streamed))
	sc.Buffer(nil, 1<<20)
	var event string
	for sc.Scan() {
		line := sc.Text()
		if e, ok := strings.CutPrefix(line, "event: "); ok {
			event = e
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		var ev struct {
			Type     string       `json:"type"`
			Seq      int          `json:"sequence_number"`
			Delta    string       `json:"delta"`
			Response wireResponse `json:"response"`
		}
		if err := json.Unmarshal([]byte(data), &ev); err != nil || ev.Type != event || ev.Seq != seq {
			t.Fatalf("event %q %s (want sequence %d): %v", event, data, seq, err)
		}
		seq++
		switch ev.Type {
		case "response.output_text.delta":
			deltas.WriteString(ev.Delta)
		case "response.function_call_arguments.delta":
			args.WriteString(ev.Delta)
		case "response.completed", "response.incomplete":
			final = ev.Response
		}
	}
	if final.Status != w.Status || final.text() != w.text() || deltas.String() != w.text() || final.Usage.OutputTokens != w.Usage.OutputTokens {
		t.Errorf("streamed %+v (deltas %q), whole %+v", final, deltas.String(), w)
	}
	if len(w.Output) == 1 && w.Output[0].Type == "function_call" && (args.String() != w.Output[0].Arguments || final.Output[0].Arguments != w.Output[0].Arguments) {
		t.Errorf("function call arguments streamed %q, whole %q", args.String(), w.Output[0].Arguments)
	}
	return w
}

func TestResponsesAPI(t *testing.T) {
	c := startCluster(t, func(cc *ClusterConfig) { cc.Instances = 2; cc.Server.AutoToolChoice = true })
	a, b := c.URLs()[0], c.URLs()[1]
	r1 := respond(t, a, `{"input": "Plan the trip in a few steps, and say why each one matters to the traveller.", "seed": 1, "max_output_tokens": 5}`)
	if r1.Status != "incomplete" || r1.IncompleteDetails == nil || r1.IncompleteDetails.Reason != "max_output_tokens" || r1.Usage.OutputTokens != 5 {
		t.Errorf("cut by max_output_tokens: %+v", r1)
	}
	// A chain of previous_response_id: each follow-up reads the stored
	// conversation, so its prompt holds the whole chain and hits the cache.
	prev, prevInput := r1.ID, r1.Usage.InputTokens
	for i := range 4 {
		r := respond(t, a, `{"input": [{"role": "user", "content": [{"type": "input_text", "text": "And then?"}]}], "previous_response_id": "`+prev+`", "seed": `+itoa(i)+`, "max_output_tokens": 8}`)
		if r.Usage.InputTokens <= prevInput || r.Usage.InputTokensDetails.CachedTokens == 0 {
			t.Errorf("link %d: %d input tokens (%d cached) after %d", i, r.Usage.InputTokens, r.Usage.InputTokensDetails.CachedTokens, prevInput)
		}
		prev, prevInput = r.ID, r.Usage.InputTokens
	}
	// Stored responses live in one engine: another answers 404, as vLLM.
	status, _, body := post(t, b, "/v1/responses", `{"input": "And then?", "previous_response_id": "`+prev+`"}`)
	if status != 404 || !strings.Contains(body, "not found") || !strings.Contains(body, `"param":"previous_response_id"`) {
		t.Errorf("follow-up on another engine: %d %s", status, body)
	}
	if status, _, body := post(t, a, "/v1/responses", `{"input": "x", "previous_response_id": "resp_unknown"}`); status != 404 {
		t.Errorf("unknown previous_response_id: %d %s", status, body)
	}
	if status, body := get(t, a+"/v1/responses/"+prev); status != 200 || !strings.Contains(body, prev) {
		t.Errorf("GET the stored response: %d %s", status, body)
	}
	// Tools: a function call with arguments that satisfy the schema, then
	// an answer once its output is in the input.
	tools := `"tools": [{"type": "function", "name": "get_weather", "parameters": ` + schemas[0] + `}]`
	call := respond(t, a, `{"input": "Weather?", "seed": 3, `+tools+`}`)
	if len(call.Output) != 1 || call.Output[0].Type != "function_call" || call.Output[0].Name != "get_weather" || !strings.HasPrefix(call.Output[0].CallID, "call_") {
		t.Fatalf("function call: %+v", call)
	}
	validate(t, schemas[0], call.Output[0].Arguments)
	answer := respond(t, a, `{"input": [{"role": "user", "content": "Weather?"}, {"type": "function_call", "call_id": "`+call.Output[0].CallID+`", "name": "get_weather", "arguments": `+quote(call.Output[0].Arguments)+`},
		{"type": "function_call_output", "call_id": "`+call.Output[0].CallID+`", "output": "sunny"}], "seed": 3, "max_output_tokens": 10, `+tools+`}`)
	if answer.Output[0].Type != "message" || answer.text() == "" {
		t.Errorf("answer after the tool: %+v", answer)
	}
	// Structured output through text.format.
	doc := respond(t, a, `{"input": "Fill in.", "seed": 4, "text": {"format": {"type": "json_schema", "name": "p", "schema": `+schemas[1]+`}}}`)
	validate(t, schemas[1], doc.text())
	for _, bad := range []struct{ body, param string }{
		{`{"input": "x", "prompt": {"id": "p"}}`, "prompt"},
		{`{"input": "x", "background": true, "store": false}`, "background"},
		{`{"input": "x", "text": {"format": {"type": "json_object"}}}`, "text"},
		{`{"input": [{"type": "file_search_call"}]}`, "input"},
		{`{"input": "x", "max_output_tokens": 0}`, "max_output_tokens"},
		{`{"input": "x", "tools": [{"type": "web_search"}]}`, "tools"},
	} {
		status, _, body := post(t, a, "/v1/responses", bad.body)
		var eb errorBody
		if json.Unmarshal([]byte(body), &eb); status != 400 || eb.Error.Param == nil || *eb.Error.Param != bad.param {
			t.Errorf("%s: %d %s; want a 400 naming %s", bad.body, status, body, bad.param)
		}
	}
}

func TestTokenizeEmbeddings(t *testing.T) {
	c := startCluster(t, nil)
	url := c.URLs()[0]
	_, _, body := post(t, url, "/tokenize", `{"prompt": "hello world", "return_token_strs": true}`)
	var tok struct {
		Count     int      `json:"count"`
		Tokens    []int    `json:"tokens"`
		TokenStrs []string `json:"token_strs"`
	}
	if json.Unmarshal([]byte(body), &tok); tok.Count != 3 || len(tok.Tokens) != 3 || strings.Join(tok.TokenStrs, "") != "<|begin_of_text|>hello world" {
		t.Errorf("tokenize: %s", body)
	}
	ids, _ := json.Marshal(tok.Tokens)
	if _, _, body := post(t, url, "/detokenize", `{"tokens": `+string(ids)+`}`); !strings.Contains(body, `hello world"`) {
		t.Errorf("detokenize: %s", body)
	}
	// Chat messages count as the engine's prompt counts them.
	_, _, body = post(t, url, "/tokenize", `{"messages": [{"role": "user", "content": "hi"}]}`)
	_, _, chat := post(t, url, chatURL, `{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}`)
	var cnt struct {
		Count int `json:"count"`
	}
	var ch struct {
		Usage usage `json:"usage"`
	}
	json.Unmarshal([]byte(body), &cnt)
	json.Unmarshal([]byte(chat), &ch)
	if cnt.Count == 0 || cnt.Count != ch.Usage.PromptTokens {
		t.Errorf("tokenize counts %d, the chat endpoint %d", cnt.Count, ch.Usage.PromptTokens)
	}
	if status, _, _ := post(t, url, "/detokenize", `{"tokens": [-1]}`); status != 400 {
		t.Errorf("detokenize of a bad id: %d", status)
	}

	before := c.Servers()[0].Engine().Counters()
	status, _, body := post(t, url, "/v1/embeddings", `{"input": ["the cat sat on the mat", "the cat sat on a mat", "quarterly revenue rose sharply"]}`)
	var emb struct {
		Data []struct {
			Embedding []float64 `json:"embedding"`
			Index     int       `json:"index"`
		} `json:"data"`
		Usage usage `json:"usage"`
	}
	if json.Unmarshal([]byte(body), &emb); status != 200 || len(emb.Data) != 3 || len(emb.Data[0].Embedding) != EmbeddingDims {
		t.Fatalf("embeddings: %d %.300s", status, body)
	}
	cos := func(x, y []float64) float64 {
		d, nx, ny := 0.0, 0.0, 0.0
		for k := range x {
			d, nx, ny = d+x[k]*y[k], nx+x[k]*x[k], ny+y[k]*y[k]
		}
		return d / math.Sqrt(nx*ny)
	}
	near, far := cos(emb.Data[0].Embedding, emb.Data[1].Embedding), cos(emb.Data[0].Embedding, emb.Data[2].Embedding)
	if math.Abs(cos(emb.Data[0].Embedding, emb.Data[0].Embedding)-1) > 1e-6 || near <= far {
		t.Errorf("cosine of near texts %.3f, of far ones %.3f", near, far)
	}
	after := c.Servers()[0].Engine().Counters()
	if after.PromptTokens-before.PromptTokens != int64(emb.Usage.PromptTokens) || emb.Usage.PromptTokens == 0 {
		t.Errorf("embeddings computed %d prompt tokens in the engine, usage says %d", after.PromptTokens-before.PromptTokens, emb.Usage.PromptTokens)
	}
	if status, _, body := post(t, url, "/v1/embeddings", `{"input": "x", "dimensions": 8, "encoding_format": "base64"}`); status != 200 || !strings.Contains(body, `"embedding":"`) {
		t.Errorf("base64, 8 dimensions: %d %s", status, body)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
