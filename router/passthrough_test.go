package router

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wfsched/wfsched/capture"
	"github.com/wfsched/wfsched/internal/wire"
	"github.com/wfsched/wfsched/sim"
)

// simEngine serves one embedded engine on loopback until stop, a
// thousand times faster than real time.
func simEngine(t *testing.T, ctx context.Context, seed uint64) (string, func()) {
	t.Helper()
	return simEngineWith(t, ctx, sim.Config{TimeScale: 0.001, Seed: seed})
}

// simEngineWith serves an engine of cfg on loopback until stop.
func simEngineWith(t *testing.T, ctx context.Context, cfg sim.Config) (string, func()) {
	t.Helper()
	e, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sim.NewServer(e, sim.ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ctx, ln)
	}()
	var once sync.Once
	return "http://" + ln.Addr().String(), func() { once.Do(func() { cancel(); <-done }) }
}

func send(t *testing.T, method, url, body string) (int, http.Header, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// A chain of previous_response_id calls through a round-robin router over
// four engines: every follow-up reaches the engine that stored the
// response it continues (elsewhere it would be a 404), streamed or not.
func TestResponsesChainFollowsItsBackend(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var urls []string
	var stops []func()
	for i := range 4 {
		u, stop := simEngine(t, ctx, uint64(i+1))
		urls, stops = append(urls, u), append(stops, stop)
	}
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
	rt, url := startRouter(t, Config{Backends: urls, Logic: "round-robin", FallbackLogic: "round-robin"})
	prev, home := "", ""
	for i := range 5 {
		body := `{"input": "Next step?", "max_output_tokens": 4`
		if prev != "" {
			body += `, "previous_response_id": "` + prev + `"`
		}
		if i == 2 {
			body += `, "stream": true`
		}
		status, h, out := send(t, "POST", url+"/v1/responses", body+`}`)
		if status != 200 {
			t.Fatalf("link %d: %d %s", i, status, out)
		}
		if home == "" {
			home = h.Get(wire.Backend)
		} else if got := h.Get(wire.Backend); got != home {
			t.Errorf("link %d answered by %s, the chain's responses are on %s", i, got, home)
		}
		id := responseID([]byte(out))
		if id == "" {
			t.Fatalf("link %d: no response id in %.200s", i, out)
		}
		prev = id
	}
	// Round-robin really spreads requests without a previous response.
	seen := map[string]bool{}
	for range 4 {
		_, h, _ := send(t, "POST", url+"/v1/responses", `{"input": "hi", "max_output_tokens": 1}`)
		seen[h.Get(wire.Backend)] = true
	}
	if len(seen) < 3 {
		t.Errorf("round-robin used %d backends for fresh responses", len(seen))
	}
	// GET of a stored response goes to its engine too.
	if status, _, out := send(t, "GET", url+"/v1/responses/"+prev, ""); status != 200 || !strings.Contains(out, prev) {
		t.Errorf("GET /v1/responses/%s: %d %s", prev, status, out)
	}
	// The home goes down: a clear 404 naming the lost backend.
	for i, u := range urls {
		if u == home {
			stops[i]()
		}
	}
	rt.checkHealthN(ctx, 1)
	status, _, out := send(t, "POST", url+"/v1/responses", `{"input": "And?", "previous_response_id": "`+prev+`"}`)
	var eb struct {
		Error struct {
			Message, Type, Param string
		}
	}
	if json.Unmarshal([]byte(out), &eb); status != 404 || eb.Error.Param != "previous_response_id" || !strings.Contains(eb.Error.Message, home) {
		t.Errorf("follow-up after its backend died: %d %s", status, out)
	}
}

func TestPassthroughEndpoints(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	u1, stop1 := simEngine(t, ctx, 1)
	defer stop1()
	u2, stop2 := simEngine(t, ctx, 2)
	defer stop2()
	_, url := startRouter(t, Config{Backends: []string{u1, u2}})
	for _, tt := range []struct {
		method, path, body, want string
		status                   int
	}{
		{"POST", "/tokenize", `{"prompt": "hello world"}`, `"count":3`, 200},
		{"POST", "/detokenize", `{"tokens": [15339, 1917]}`, `hello world`, 200},
		{"POST", "/v1/embeddings", `{"input": "hello", "dimensions": 4}`, `"object":"embedding"`, 200},
		{"GET", "/version", ``, `wfsched-sim`, 200},
		{"POST", "/v1/not-an-endpoint", `{}`, `404`, 404}, // passed through: the backend's 404
		{"POST", "/not-under-v1", `{}`, `no route`, 404},
	} {
		status, h, out := send(t, tt.method, url+tt.path, tt.body)
		if status != tt.status || !strings.Contains(out, tt.want) {
			t.Errorf("%s %s: %d %s", tt.method, tt.path, status, out)
		}
		if tt.path != "/not-under-v1" && h.Get(wire.Backend) == "" {
			t.Errorf("%s %s: not answered by a backend", tt.method, tt.path)
		}
	}
	// Failover before the first byte, as for completions.
	stop2()
	for range 6 {
		if status, _, out := send(t, "POST", url+"/tokenize", `{"prompt": "x"}`); status != 200 {
			t.Errorf("with one backend dead: %d %s", status, out)
		}
	}
	// The mode restricts.
	_, vurl := startRouter(t, Config{Backends: []string{u1}, Passthrough: PassVLLM})
	if status, h, _ := send(t, "POST", vurl+"/v1/not-an-endpoint", `{}`); status != 404 || h.Get(wire.Backend) != "" {
		t.Errorf("--passthrough vllm let an unknown path through")
	}
	if status, _, _ := send(t, "POST", vurl+"/tokenize", `{"prompt": "x"}`); status != 200 {
		t.Errorf("--passthrough vllm refused /tokenize")
	}
	_, nurl := startRouter(t, Config{Backends: []string{u1}, Passthrough: PassNone})
	if status, _, _ := send(t, "POST", nurl+"/tokenize", `{"prompt": "x"}`); status != 404 {
		t.Errorf("--passthrough none passed /tokenize")
	}
	if _, err := New(Config{Backends: []string{u1}, Passthrough: "some"}); err == nil {
		t.Errorf("an unknown passthrough mode was taken")
	}
}

// The design documents' answer shapes: a message send says "sent" with an
// id and a Unix-seconds timestamp; status has cache_hits and created_at in
// Unix seconds; today's fields stay beside them.
func TestDesignDocumentShapes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	eng, stop := simEngine(t, ctx, 1)
	defer stop()
	_, url := startRouter(t, Config{Backends: []string{eng}})
	for range 2 {
		if status, _, body := send(t, "POST", url+"/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"max_tokens":2,"workflow_metadata":{"workflow_id":"w","agent_id":"a"}}`); status != 200 {
			t.Fatalf("%d %s", status, body)
		}
	}
	_, _, body := send(t, "POST", url+"/v1/workflows/w/messages", `{"source_agent":"a","target_agent":"b","payload":{"x":1}}`)
	var sent struct {
		ID        string    `json:"message_id"`
		Status    string    `json:"status"`
		Timestamp float64   `json:"timestamp"`
		Time      time.Time `json:"time"`
	}
	if err := json.Unmarshal([]byte(body), &sent); err != nil || sent.Status != "sent" || sent.ID == "" || sent.Timestamp < 1e9 || sent.Time.IsZero() {
		t.Errorf("send: %s", body)
	}
	_, _, body = send(t, "GET", url+"/v1/workflows/w/agents/b/messages", "")
	var got struct {
		Messages []struct {
			ID        string    `json:"id"`
			Timestamp float64   `json:"timestamp"`
			Time      time.Time `json:"time"`
		} `json:"messages"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil || len(got.Messages) != 1 || got.Messages[0].ID != sent.ID ||
		got.Messages[0].Timestamp != sent.Timestamp || !got.Messages[0].Time.Equal(sent.Time) {
		t.Errorf("receive: %s", body)
	}
	_, _, body = send(t, "GET", url+"/v1/workflows/w/status", "")
	var st struct {
		CreatedAt     float64 `json:"created_at"`
		CacheHits     *int64  `json:"cache_hits"`
		TotalRequests int64   `json:"total_requests"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil || st.CreatedAt < 1e9 || st.CacheHits == nil || *st.CacheHits != 1 || st.TotalRequests != 2 {
		t.Errorf("status: %s", body)
	}
}

// The capture keeps answers within the router's body budget: a long answer
// is captured truncated (its token counts the server's), and the budget is
// all given back.
func TestCaptureWithinBodyBudget(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	eng, stop := simEngine(t, ctx, 1)
	defer stop()
	w, err := capture.Create(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	rt, url := startRouter(t, Config{Backends: []string{eng}, Capture: w, CaptureContent: capture.Full, MaxBodyBytesHeld: 256 << 10})
	status, _, body := send(t, "POST", url+"/v1/chat/completions",
		`{"messages":[{"role":"user","content":"a long story"}],"max_tokens":4000,"ignore_eos":true,"stream":true,"stream_options":{"include_usage":true}}`)
	if status != 200 || !strings.Contains(body, "[DONE]") {
		t.Fatalf("%d %.200s", status, body)
	}
	deadline := time.Now().Add(5 * time.Second)
	var recs []capture.Record
	for len(recs) == 0 && time.Now().Before(deadline) {
		f, _ := os.Open(w.Path())
		recs, _ = capture.Read(f, w.Path())
		f.Close()
		time.Sleep(10 * time.Millisecond)
	}
	if len(recs) != 1 || !recs[0].Truncated || recs[0].CompletionTokens != 4000 || recs[0].Output.Text == "" {
		t.Fatalf("records %+v", recs)
	}
	if held := rt.bodies.held.Load(); held != 0 {
		t.Errorf("%d bytes of the body budget still held", held)
	}
}
