package sim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	openai "github.com/sashabaranov/go-openai"
)

// startCluster serves engines on loopback with a fake clock (modeled time
// runs as fast as the CPU allows) unless mod sets another.
func startCluster(t *testing.T, mod func(*ClusterConfig)) *Cluster {
	t.Helper()
	cfg := ClusterConfig{Engine: Config{Clock: NewFakeClock(t0), Seed: 1}}
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	c, err := Start(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		cancel()
	})
	return c
}

func client(url string) *openai.Client {
	cfg := openai.DefaultConfig("unused")
	cfg.BaseURL = url + "/v1"
	return openai.NewClientWithConfig(cfg)
}

func TestChatNonStreamingWithOpenAIClient(t *testing.T) {
	c := startCluster(t, nil)
	cl := client(c.URLs()[0])
	ctx := context.Background()
	req := openai.ChatCompletionRequest{
		Model:     c.Servers()[0].Engine().Model(),
		Messages:  []openai.ChatCompletionMessage{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Name three colours, please, in a sentence of some length."}},
		MaxTokens: 12,
	}
	resp, err := cl.CreateChatCompletion(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Choices) != 1 || resp.Choices[0].Message.Role != "assistant" || resp.Choices[0].Message.Content == "" {
		t.Fatalf("choices %+v", resp.Choices)
	}
	enc := c.Servers()[0].Engine().Encoder()
	if n := enc.Count(resp.Choices[0].Message.Content); n != resp.Usage.CompletionTokens {
		t.Errorf("content is %d tokens, usage says %d", n, resp.Usage.CompletionTokens)
	}
	if resp.Usage.PromptTokens < 20 || resp.Usage.TotalTokens != resp.Usage.PromptTokens+resp.Usage.CompletionTokens {
		t.Errorf("usage %+v", resp.Usage)
	}
	if resp.Usage.PromptTokensDetails == nil || resp.Usage.PromptTokensDetails.CachedTokens != 0 {
		t.Errorf("first request cached details %+v", resp.Usage.PromptTokensDetails)
	}
	// The same prompt again hits the prefix cache (the vLLM cap applies).
	resp2, err := cl.CreateChatCompletion(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	want := (resp.Usage.PromptTokens - 1) / 16 * 16
	if got := resp2.Usage.PromptTokensDetails.CachedTokens; got != want {
		t.Errorf("repeat cached %d, want %d", got, want)
	}
}

func TestChatStreamingWithOpenAIClient(t *testing.T) {
	c := startCluster(t, nil)
	cl := client(c.URLs()[0])
	stream, err := cl.CreateChatCompletionStream(context.Background(), openai.ChatCompletionRequest{
		Messages:      []openai.ChatCompletionMessage{{Role: "user", Content: "Count to ten."}},
		MaxTokens:     25,
		Stream:        true,
		StreamOptions: &openai.StreamOptions{IncludeUsage: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	var content strings.Builder
	chunks, roleChunks := 0, 0
	var finish openai.FinishReason
	var u *openai.Usage
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if r.Usage != nil {
			u = r.Usage
		}
		for _, ch := range r.Choices {
			if ch.Delta.Role == "assistant" {
				roleChunks++
				continue
			}
			if ch.Delta.Content != "" {
				chunks++
				content.WriteString(ch.Delta.Content)
			}
			if ch.FinishReason != "" {
				finish = ch.FinishReason
			}
		}
	}
	if roleChunks != 1 || u == nil || chunks != u.CompletionTokens || chunks == 0 {
		t.Fatalf("role chunks %d, content chunks %d, usage %+v", roleChunks, chunks, u)
	}
	if finish != openai.FinishReasonStop && finish != openai.FinishReasonLength {
		t.Errorf("finish reason %q", finish)
	}
	if u.CompletionTokens == 25 && finish != openai.FinishReasonLength {
		t.Errorf("%d tokens but finish %q", u.CompletionTokens, finish)
	}
}

// post sends a raw JSON body and returns status, headers and body.
func post(t *testing.T, url, path, body string, header ...string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestCompletionsRawSSE(t *testing.T) {
	c := startCluster(t, nil)
	status, h, body := post(t, c.URLs()[0], "/v1/completions",
		`{"prompt": "Once upon a time", "max_tokens": 5, "ignore_eos": true, "stream": true, "stream_options": {"include_usage": true}, "temperature": 0, "some_unknown_field": {"x": 1}}`)
	if status != 200 || h.Get("Content-Type") != "text/event-stream" || h.Get(TimeScaleHeader) != "1" {
		t.Fatalf("status %d headers %v body %s", status, h, body)
	}
	var events []string
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		if !strings.HasPrefix(line, "data: ") {
			t.Fatalf("not an SSE data line: %q", line)
		}
		events = append(events, strings.TrimPrefix(line, "data: "))
	}
	// 5 token chunks, a usage chunk, [DONE].
	if len(events) != 7 || events[6] != "[DONE]" {
		t.Fatalf("events %q", events)
	}
	var last struct {
		Object  string `json:"object"`
		Choices []struct {
			Text         string  `json:"text"`
			FinishReason *string `json:"finish_reason"`
		} `json:"choices"`
	}
	json.Unmarshal([]byte(events[4]), &last)
	if last.Object != "text_completion" || last.Choices[0].FinishReason == nil || *last.Choices[0].FinishReason != "length" {
		t.Errorf("last token chunk %s", events[4])
	}
	var u struct {
		Choices []any `json:"choices"`
		Usage   usage `json:"usage"`
	}
	json.Unmarshal([]byte(events[5]), &u)
	if len(u.Choices) != 0 || u.Usage.CompletionTokens != 5 || u.Usage.PromptTokens != 5 { // BOS + 4 tokens
		t.Errorf("usage chunk %s", events[5])
	}
}

func TestErrors(t *testing.T) {
	c := startCluster(t, func(cc *ClusterConfig) {
		p := builtin[DefaultProfile]
		p.MaxModelLen = 1000
		cc.Engine.Profile = p
		cc.Server.MaxBodyBytes = 4096
	})
	url := c.URLs()[0]
	tests := []struct {
		name, path, body string
		status           int
		want             string
	}{
		{"malformed JSON", "/v1/chat/completions", `{"messages": [`, 400, "malformed JSON"},
		{"missing messages", "/v1/chat/completions", `{"max_tokens": 3}`, 400, "messages: field required"},
		{"missing prompt", "/v1/completions", `{"max_tokens": 3}`, 400, "prompt: field required"},
		{"n > 1", "/v1/chat/completions", `{"messages": [{"role": "user", "content": "hi"}], "n": 2}`, 400, "only n = 1"},
		{"over the context", "/v1/chat/completions", `{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5000}`, 400, "maximum context length is 1000 tokens"},
		{"unknown model", "/v1/chat/completions", `{"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}`, 404, "The model `gpt-9` does not exist."},
		{"bad role", "/v1/chat/completions", `{"messages": [{"role": "wizard", "content": "hi"}]}`, 400, `unknown role "wizard"`},
		{"bad temperature", "/v1/chat/completions", `{"messages": [{"role": "user", "content": "hi"}], "temperature": -1}`, 400, "temperature"},
		{"bad fault header", "/v1/chat/completions", `{"messages": [{"role": "user", "content": "hi"}]}`, 400, "unknown fault"},
		{"priority under fcfs", "/v1/chat/completions", `{"messages": [{"role": "user", "content": "hi"}], "priority": 5}`, 400, "priority scheduling is not enabled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hdr []string
			if tt.name == "bad fault header" {
				hdr = []string{FaultHeader, "explode"}
			}
			status, _, body := post(t, url, tt.path, tt.body, hdr...)
			if status != tt.status {
				t.Errorf("status %d, want %d (%s)", status, tt.status, body)
			}
			var eb errorBody
			if err := json.Unmarshal([]byte(body), &eb); err != nil || eb.Error.Code != tt.status || !strings.Contains(eb.Error.Message, tt.want) {
				t.Errorf("error body %s: want code %d and %q", body, tt.status, tt.want)
			}
		})
	}
	// Under the priority policy the field is taken.
	pc := startCluster(t, func(cc *ClusterConfig) { cc.Engine.SchedulingPolicy = SchedulingPriority })
	if status, _, body := post(t, pc.URLs()[0], "/v1/chat/completions", `{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "priority": -3}`); status != 200 {
		t.Errorf("priority under the priority policy: %d %s", status, body)
	}
	big := `{"prompt": "` + strings.Repeat("a", 5000) + `"}`
	if status, _, _ := post(t, url, "/v1/completions", big); status != 413 {
		t.Errorf("oversize body: status %d, want 413", status)
	}
	// The engine is still serving.
	if status, _, body := post(t, url, "/v1/chat/completions", `{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}`); status != 200 {
		t.Errorf("after errors: %d %s", status, body)
	}
}

func TestModelsHealthVersion(t *testing.T) {
	c := startCluster(t, func(cc *ClusterConfig) { cc.Engine.TimeScale = 0.1; cc.Engine.Model = "my-model" })
	url := c.URLs()[0]
	get := func(path string) (int, http.Header, string) {
		resp, err := http.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	if status, _, _ := get("/health"); status != 200 {
		t.Errorf("/health %d", status)
	}
	_, _, body := get("/v1/models")
	var models struct {
		Data []struct {
			ID          string `json:"id"`
			MaxModelLen int    `json:"max_model_len"`
		} `json:"data"`
	}
	if json.Unmarshal([]byte(body), &models); len(models.Data) != 1 || models.Data[0].ID != "my-model" || models.Data[0].MaxModelLen != 131072 {
		t.Errorf("/v1/models %s", body)
	}
	_, h, body := get("/version")
	var v struct {
		TimeScale float64 `json:"time_scale"`
		Profile   string  `json:"profile"`
	}
	if json.Unmarshal([]byte(body), &v); v.TimeScale != 0.1 || v.Profile != DefaultProfile || h.Get(TimeScaleHeader) != "0.1" {
		t.Errorf("/version %s, header %q", body, h.Get(TimeScaleHeader))
	}
	if _, err := client(url).ListModels(context.Background()); err != nil {
		t.Errorf("go-openai ListModels: %v", err)
	}
}

// scrape reads the instance's /metrics into family -> summed value.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.Metric {
			key, hasModel := name, false
			for _, l := range m.GetLabel() {
				if l.GetName() == "model_name" {
					hasModel = true
					continue
				}
				key += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			if !hasModel {
				t.Errorf("%s has no model_name label", name)
			}
			switch {
			case m.Counter != nil:
				out[key] += m.Counter.GetValue()
			case m.Gauge != nil:
				out[key] += m.Gauge.GetValue()
			case m.Histogram != nil:
				out[key+"_count"] += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return out
}

func TestMetricsMatchWhatHappened(t *testing.T) {
	c := startCluster(t, nil)
	url := c.URLs()[0]
	prompts, cached, generated := 0, 0, 0
	for i := 0; i < 4; i++ {
		body := `{"messages": [{"role": "user", "content": "Summarize the plot of a long novel in detail, please."}], "max_tokens": 7, "ignore_eos": true}`
		status, _, out := post(t, url, "/v1/chat/completions", body)
		if status != 200 {
			t.Fatal(out)
		}
		var r struct{ Usage usage }
		json.Unmarshal([]byte(out), &r)
		prompts += r.Usage.PromptTokens
		cached += r.Usage.PromptTokensDetails.CachedTokens
		generated += r.Usage.CompletionTokens
	}
	m := scrape(t, url)
	checks := map[string]float64{
		"vllm:prefix_cache_queries_total":                    float64(prompts),
		"vllm:prefix_cache_hits_total":                       float64(cached),
		"vllm:prompt_tokens_total":                           float64(prompts),
		"vllm:generation_tokens_total":                       float64(generated),
		"vllm:request_success_total{finished_reason=length}": 4,
		"vllm:num_requests_running":                          0,
		"vllm:time_to_first_token_seconds_count":             4,
		"vllm:e2e_request_latency_seconds_count":             4,
		"vllm:inter_token_latency_seconds_count":             float64(generated - 4),
		"vllm:num_preemptions_total":                         0,
	}
	for k, want := range checks {
		if got, ok := m[k]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, want)
		}
	}
	if cached == 0 {
		t.Error("no prefix hits on repeated prompts")
	}
}

func TestFaults(t *testing.T) {
	c := startCluster(t, nil)
	url := c.URLs()[0]
	body := `{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8, "ignore_eos": true, "stream": true}`
	status, h, out := post(t, url, "/v1/chat/completions", body, FaultHeader, "error=429")
	if status != 429 || h.Get("Retry-After") != "1" || !strings.Contains(out, "injected fault") {
		t.Errorf("429 fault: %d %v %s", status, h, out)
	}
	if status, _, _ := post(t, url, "/v1/chat/completions", body, FaultHeader, "error=503"); status != 503 {
		t.Errorf("503 fault: %d", status)
	}
	// Cut: the stream ends abruptly, without [DONE].
	req, _ := http.NewRequest("POST", url+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set(FaultHeader, "cut=2")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil || bytes.Contains(b, []byte("[DONE]")) || bytes.Count(b, []byte("data: ")) > 3 {
		t.Errorf("cut stream: err %v, body %s", err, b)
	}
	// Hang: no answer at all; the client gives up.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ = http.NewRequestWithContext(ctx, "POST", url+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set(FaultHeader, "hang")
	if _, err := http.DefaultClient.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("hang: err %v, want a deadline", err)
	}
	// Rates: with an error rate of 1 every request fails.
	c2 := startCluster(t, func(cc *ClusterConfig) { cc.Server.Faults = Faults{ErrorRate: 1, ErrorStatus: 500} })
	if status, _, _ := post(t, c2.URLs()[0], "/v1/chat/completions", body); status != 500 {
		t.Errorf("error rate 1: status %d", status)
	}
}

func TestSlowFactor(t *testing.T) {
	run := func(slow float64) time.Duration {
		e, _, _ := newTestEngine(t, func(c *Config) { c.SlowFactor = slow })
		st, _ := e.Submit(Request{Prompt: prompt(200, 0), MaxTokens: 30, IgnoreEOS: true})
		runAll(t, e)
		a, times := st.Times()
		return times[len(times)-1] - a
	}
	base, slow := run(1), run(1.2)
	if r := float64(slow) / float64(base); r < 1.199 || r > 1.201 {
		t.Errorf("slow factor 1.2 gave ratio %.4f", r)
	}
}

func TestClientDisconnectAborts(t *testing.T) {
	c := startCluster(t, func(cc *ClusterConfig) { cc.Engine.Clock = nil; cc.Engine.TimeScale = 1 })
	e := c.Servers()[0].Engine()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", c.URLs()[0]+"/v1/chat/completions",
		strings.NewReader(`{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5000, "ignore_eos": true, "stream": true}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil { // the first chunk arrived
		t.Fatal(err)
	}
	cancel()
	resp.Body.Close()
	deadline := time.Now().Add(10 * time.Second)
	for e.Counters().Running > 0 || e.kvUsed() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("request still running after the client left: %+v", e.Counters())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
