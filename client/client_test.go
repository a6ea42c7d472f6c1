package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wfsched/wfsched/scheduler"
	"github.com/wfsched/wfsched/sim"
)

func startSim(t *testing.T, mod func(*sim.ClusterConfig)) *sim.Cluster {
	t.Helper()
	cfg := sim.ClusterConfig{Engine: sim.Config{Clock: sim.NewFakeClock(time.Unix(0, 0)), Seed: 1}}
	if mod != nil {
		mod(&cfg)
	}
	c, err := sim.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func userCall(text string, maxTokens int) scheduler.Call {
	return scheduler.Call{Messages: []scheduler.Message{{Role: "user", Content: text}}, MaxTokens: maxTokens, IgnoreEOS: true}
}

func TestStreamingMeasuresAgainstEngine(t *testing.T) {
	c := startSim(t, nil)
	cl := newClient(t, Config{BaseURL: c.URLs()[0] + "/v1"})
	ctx := context.Background()
	if scale, err := cl.Health(ctx); err != nil || scale != 1 {
		t.Fatalf("health: scale %v, %v", scale, err)
	}
	if err := cl.Discover(ctx); err != nil || cl.Model() != "meta-llama/Llama-3.1-8B-Instruct" {
		t.Fatalf("discover: %q %v", cl.Model(), err)
	}
	call := userCall(strings.Repeat("Tell me a long story about scheduling. ", 10), 20)
	r := cl.Complete(ctx, call)
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	if r.CompletionTokens != 20 || !r.UsageReported || len(r.ITL) != 19 || r.TTFT <= 0 || r.E2E < r.TTFT {
		t.Errorf("result: tokens %d usage %v itl %d ttft %v e2e %v", r.CompletionTokens, r.UsageReported, len(r.ITL), r.TTFT, r.E2E)
	}
	if r.CachedTokens == nil || *r.CachedTokens != 0 || r.FinishReason != "length" || r.TimeScale != 1 || len(r.Attempts) != 1 {
		t.Errorf("cached %v finish %q scale %v attempts %d", r.CachedTokens, r.FinishReason, r.TimeScale, len(r.Attempts))
	}
	r2 := cl.Complete(ctx, call)
	if want := (r.PromptTokens - 1) / 16 * 16; r2.CachedTokens == nil || *r2.CachedTokens != want {
		t.Errorf("repeat cached %v, want %d", r2.CachedTokens, want)
	}
	// Whole responses measure too.
	whole := newClient(t, Config{BaseURL: c.URLs()[0], NoStream: true})
	r3 := whole.Complete(ctx, call)
	if r3.Err != nil || r3.CompletionTokens != 20 || r3.TTFT != r3.E2E {
		t.Errorf("non-streaming: %+v", r3)
	}
}

func TestCachedTokensNullIsUnknown(t *testing.T) {
	c := startSim(t, func(cc *sim.ClusterConfig) { cc.Server.NoPromptDetails = true })
	cl := newClient(t, Config{BaseURL: c.URLs()[0]})
	r := cl.Complete(context.Background(), userCall("hi", 3))
	if r.Err != nil || r.CachedTokens != nil {
		t.Errorf("err %v cached %v: null must read as unknown", r.Err, r.CachedTokens)
	}
}

// capture is a fake server that records requests and answers a short
// stream, or fails the first failures requests with status.
type capture struct {
	mu       sync.Mutex
	bodies   []map[string]any
	headers  []http.Header
	failures int
	status   int
	retry    string
}

func (s *capture) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var m map[string]any
	json.Unmarshal(b, &m)
	s.mu.Lock()
	s.bodies = append(s.bodies, m)
	s.headers = append(s.headers, r.Header.Clone())
	fail := len(s.bodies) <= s.failures
	s.mu.Unlock()
	if fail {
		if s.retry != "" {
			w.Header().Set("Retry-After", s.retry)
		}
		w.WriteHeader(s.status)
		fmt.Fprintf(w, `{"error": {"message": "busy", "type": "x", "param": null, "code": %d}}`, s.status)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Wfsched-Time-Scale", "0.5")
	fmt.Fprint(w, `data: {"id":"1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}`+"\n\n")
	fmt.Fprint(w, `data: {"id":"1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":"stop"}]}`+"\n\n")
	fmt.Fprint(w, `data: {"id":"1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}`+"\n\n")
	fmt.Fprint(w, "data: [DONE]\n\n")
}

func TestExtrasHeadersAndTemperatureZero(t *testing.T) {
	srv := &capture{}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	cl := newClient(t, Config{BaseURL: ts.URL, Model: "m"})
	zero := 0.0
	call := userCall("hi", 7)
	call.Temperature = &zero
	call.MinTokens = 7
	call.Workflow, call.Agent = "wf-1", "planner"
	r := cl.Complete(context.Background(), call)
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	b := srv.bodies[0]
	if v, ok := b["temperature"]; !ok || v != 0.0 {
		t.Errorf("temperature %v (present %v): 0 must be sent", v, ok)
	}
	if b["ignore_eos"] != true || b["min_tokens"] != 7.0 || b["max_tokens"] != 7.0 || b["stream"] != true {
		t.Errorf("body %v", b)
	}
	wm, _ := b["workflow_metadata"].(map[string]any)
	if wm["workflow_id"] != "wf-1" || wm["agent_id"] != "planner" {
		t.Errorf("workflow_metadata %v", b["workflow_metadata"])
	}
	if so, _ := b["stream_options"].(map[string]any); so["include_usage"] != true {
		t.Errorf("stream_options %v", b["stream_options"])
	}
	h := srv.headers[0]
	if h.Get("X-Workflow-Id") != "wf-1" || h.Get("X-Agent-Id") != "planner" {
		t.Errorf("headers %v", h)
	}
	if r.TimeScale != 0.5 || r.Text != "ok" || r.CachedTokens != nil || r.PromptTokens != 5 {
		t.Errorf("result %+v", r)
	}
	// Without a temperature none is sent.
	cl.Complete(context.Background(), userCall("hi", 1))
	if _, ok := srv.bodies[1]["temperature"]; ok {
		t.Error("temperature sent though none was set")
	}
}

func TestRetries(t *testing.T) {
	t.Run("503 then success", func(t *testing.T) {
		srv := &capture{failures: 2, status: 503}
		ts := httptest.NewServer(srv)
		defer ts.Close()
		cl := newClient(t, Config{BaseURL: ts.URL, Model: "m", Backoff: time.Millisecond})
		r := cl.Complete(context.Background(), userCall("hi", 1))
		if r.Err != nil || len(r.Attempts) != 3 || r.Attempts[0].Status != 503 || r.Attempts[2].Status != 200 || r.Attempts[0].Err == "" {
			t.Errorf("err %v attempts %+v", r.Err, r.Attempts)
		}
	})
	t.Run("429 honours Retry-After", func(t *testing.T) {
		srv := &capture{failures: 1, status: 429, retry: "0.3"}
		ts := httptest.NewServer(srv)
		defer ts.Close()
		cl := newClient(t, Config{BaseURL: ts.URL, Model: "m", Backoff: time.Millisecond})
		r := cl.Complete(context.Background(), userCall("hi", 1))
		if r.Err != nil || len(r.Attempts) != 2 {
			t.Fatalf("err %v attempts %+v", r.Err, r.Attempts)
		}
		if gap := r.Attempts[1].Start.Sub(r.Attempts[0].Start); gap < 300*time.Millisecond {
			t.Errorf("retried after %v, before Retry-After's 0.3 s", gap)
		}
	})
	t.Run("400 is not retried", func(t *testing.T) {
		srv := &capture{failures: 5, status: 400}
		ts := httptest.NewServer(srv)
		defer ts.Close()
		cl := newClient(t, Config{BaseURL: ts.URL, Model: "m", Backoff: time.Millisecond})
		if r := cl.Complete(context.Background(), userCall("hi", 1)); r.Err == nil || len(r.Attempts) != 1 || r.Status != 400 {
			t.Errorf("err %v attempts %d status %d", r.Err, len(r.Attempts), r.Status)
		}
	})
	t.Run("attempts are bounded", func(t *testing.T) {
		srv := &capture{failures: 100, status: 500}
		ts := httptest.NewServer(srv)
		defer ts.Close()
		cl := newClient(t, Config{BaseURL: ts.URL, Model: "m", Backoff: time.Millisecond, MaxAttempts: 3})
		if r := cl.Complete(context.Background(), userCall("hi", 1)); r.Err == nil || len(r.Attempts) != 3 {
			t.Errorf("err %v attempts %d", r.Err, len(r.Attempts))
		}
	})
	t.Run("connection refused", func(t *testing.T) {
		ts := httptest.NewServer(http.NotFoundHandler())
		url := ts.URL
		ts.Close()
		cl := newClient(t, Config{BaseURL: url, Model: "m", Backoff: time.Millisecond, MaxAttempts: 2})
		if r := cl.Complete(context.Background(), userCall("hi", 1)); r.Err == nil || len(r.Attempts) != 2 || r.Attempts[0].Status != 0 {
			t.Errorf("err %v attempts %+v", r.Err, r.Attempts)
		}
		if _, err := cl.Health(context.Background()); err == nil || !strings.Contains(err.Error(), "cannot reach") {
			t.Errorf("health: %v", err)
		}
	})
	t.Run("timeouts and cut streams are retried", func(t *testing.T) {
		c := startSim(t, nil)
		cl := newClient(t, Config{BaseURL: c.URLs()[0], Timeout: 100 * time.Millisecond, Backoff: time.Millisecond, MaxAttempts: 2})
		call := userCall("hi", 5)
		call.Headers = map[string]string{sim.FaultHeader: "hang"}
		r := cl.Complete(context.Background(), call)
		if r.Err == nil || len(r.Attempts) != 2 || !strings.Contains(r.Err.Error(), "timed out") || !r.Attempts[0].Timeout || r.Attempts[0].Cut {
			t.Errorf("hang: err %v attempts %+v", r.Err, r.Attempts)
		}
		call.Headers = map[string]string{sim.FaultHeader: "cut=2"}
		r = cl.Complete(context.Background(), call)
		if r.Err == nil || len(r.Attempts) != 2 || !strings.Contains(r.Err.Error(), "stream broke") || !r.Attempts[1].Cut || r.Attempts[1].Backend != c.URLs()[0] {
			t.Errorf("cut: err %v attempts %+v", r.Err, r.Attempts)
		}
	})
}

// TestCutResponses: a response that began but did not finish is a failed
// attempt, however cleanly its bytes ended.
func TestCutResponses(t *testing.T) {
	const (
		role  = `data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}` + "\n\n"
		tok   = `data: {"choices":[{"index":0,"delta":{"content":" a"},"finish_reason":null}]}` + "\n\n"
		last  = `data: {"choices":[{"index":0,"delta":{"content":" b"},"finish_reason":"length"}]}` + "\n\n"
		abort = `data: {"choices":[{"index":0,"delta":{"content":" b"},"finish_reason":"abort"}]}` + "\n\n"
		usage = `data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}` + "\n\n"
		done  = "data: [DONE]\n\n"
	)
	for _, tc := range []struct {
		name, body string
		stream     bool
		engine     bool   // answer as wfsched's engine (one token per chunk)
		short      string // Content-Length larger than the body
		cut        string // "" for a whole response
	}{
		{name: "whole stream", body: role + tok + tok + last + usage + done, stream: true, engine: true},
		{name: "no [DONE]", body: role + tok + tok + last + usage, stream: true, cut: "without data: [DONE]"},
		{name: "no finish reason", body: role + tok + tok + usage + done, stream: true, cut: "without a finish_reason"},
		{name: "finish reason abort", body: role + tok + tok + abort + usage + done, stream: true, cut: "aborted"},
		{name: "fewer chunks than usage", body: role + tok + last + usage + done, stream: true, engine: true, cut: "usage counts 3 output tokens but 2 arrived"},
		{name: "other servers may pack tokens", body: role + tok + last + usage + done, stream: true},
		{name: "whole response", body: `{"choices":[{"index":0,"message":{"role":"assistant","content":"a b"},"finish_reason":"length"}],"usage":{"prompt_tokens":5,"completion_tokens":2}}`},
		{name: "whole without finish reason", body: `{"choices":[{"index":0,"message":{"role":"assistant","content":"a"},"finish_reason":null}]}`, cut: "no finish_reason"},
		{name: "whole body broken off", body: `{"choices":[{"index":0,"message":{"role":"assis`, short: "1000", cut: "broke off"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.engine {
					w.Header().Set("X-Wfsched-Time-Scale", "1")
				}
				if tc.stream {
					w.Header().Set("Content-Type", "text/event-stream")
				} else {
					w.Header().Set("Content-Type", "application/json")
				}
				if tc.short != "" {
					w.Header().Set("Content-Length", tc.short)
				}
				io.WriteString(w, tc.body)
			}))
			defer ts.Close()
			cl := newClient(t, Config{BaseURL: ts.URL, Model: "m", MaxAttempts: 1, NoStream: !tc.stream})
			r := cl.Complete(context.Background(), userCall("hi", 3))
			var cut *CutError
			switch {
			case tc.cut == "" && r.Err != nil:
				t.Errorf("a whole response failed: %v", r.Err)
			case tc.cut != "" && (!errors.As(r.Err, &cut) || !strings.Contains(r.Err.Error(), tc.cut) || !r.Attempts[0].Cut):
				t.Errorf("want a cut (%s), got err %v attempts %+v", tc.cut, r.Err, r.Attempts)
			}
		})
	}
}

func TestCancelReturnsPromptly(t *testing.T) {
	c := startSim(t, func(cc *sim.ClusterConfig) { cc.Engine.Clock = nil; cc.Engine.TimeScale = 1 })
	cl := newClient(t, Config{BaseURL: c.URLs()[0]})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	r := cl.Complete(ctx, userCall("hi", 100_000))
	if r.Err == nil || !errors.Is(r.Err, context.Canceled) && !strings.Contains(r.Err.Error(), "canceled") {
		t.Errorf("err %v", r.Err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("returned %v after cancel", d)
	}
}

// MaxConns bounds the calls in flight to one server; the others wait for a
// connection and then complete.
func TestMaxConnsBoundsCallsInFlight(t *testing.T) {
	var mu sync.Mutex
	inFlight, peak := 0, 0
	inner := &capture{}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		inFlight++
		peak = max(peak, inFlight)
		mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		inner.ServeHTTP(w, r)
		mu.Lock()
		inFlight--
		mu.Unlock()
	}))
	defer ts.Close()
	cl := newClient(t, Config{BaseURL: ts.URL, Model: "m", MaxConns: 3})
	var wg sync.WaitGroup
	errs := make(chan error, 12)
	for range 12 {
		wg.Go(func() {
			if r := cl.Complete(context.Background(), userCall("hi", 1)); r.Err != nil {
				errs <- r.Err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if peak < 1 || peak > 3 {
		t.Errorf("%d calls reached the server at once, want at most 3", peak)
	}
	if len(inner.bodies) != 12 {
		t.Errorf("%d calls served, want 12", len(inner.bodies))
	}
}
