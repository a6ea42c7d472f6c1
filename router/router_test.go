package router

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wfsched/wfsched/internal/testenv"
)

// fakeBackend answers completions with a fixed SSE stream and records
// every body it receives.
type fakeBackend struct {
	*httptest.Server
	mu     sync.Mutex
	bodies [][]byte
	down   atomic.Bool // /health and completions answer 503
	sick   atomic.Bool // /health answers 503, completions work
	hang   atomic.Bool // completions never answer
	stall  atomic.Bool // completions send one chunk, then nothing
}

const sse = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\" a\"}}]}\n\n" +
	"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":40,\"completion_tokens\":1,\"total_tokens\":41,\"prompt_tokens_details\":{\"cached_tokens\":32}}}\n\n" +
	"data: [DONE]\n\n"

func newFake(t *testing.T) *fakeBackend {
	f := &fakeBackend{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.down.Load() {
			w.WriteHeader(503)
			return
		}
		switch r.URL.Path {
		case "/health":
			if f.sick.Load() {
				w.WriteHeader(503)
				return
			}
			w.Header().Set("X-Wfsched-Time-Scale", "0.5")
			return
		case "/v1/models":
			fmt.Fprintf(w, `{"data": [{"id": "m-%s"}]}`, r.Host)
			return
		}
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.bodies = append(f.bodies, b)
		f.mu.Unlock()
		if f.hang.Load() {
			<-r.Context().Done()
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		if f.stall.Load() {
			io.WriteString(w, "data: {\"choices\":[]}\n\n")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		}
		io.WriteString(w, sse)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeBackend) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.bodies)
}

func startRouter(t *testing.T, cfg Config) (*Router, string) {
	t.Helper()
	rt, url, _ := startReplica(t, cfg)
	return rt, url
}

func completion(t *testing.T, url, body string, hdr ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func wfBody(wf, agent, text string) string {
	return fmt.Sprintf(`{"model":"m","messages":[{"role":"user","content":%q}],"stream":true,"workflow_metadata":{"workflow_id":%q,"agent_id":%q}}`, text, wf, agent)
}

func backends(fs ...*fakeBackend) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.URL)
	}
	return out
}

func TestWorkflowAffinityAndLoadBound(t *testing.T) {
	forEachState(t, func(t *testing.T, state string) {
		fs := []*fakeBackend{newFake(t), newFake(t), newFake(t), newFake(t)}
		rt, url := startRouter(t, Config{Backends: backends(fs...), HealthInterval: time.Hour, State: state})
		const workflows, calls = 100, 4
		for c := 0; c < calls; c++ {
			for w := 0; w < workflows; w++ {
				if code, out := completion(t, url, wfBody(fmt.Sprintf("wf-%d", w), "a", fmt.Sprintf("wf-%d call %d", w, c))); code != 200 || out != sse {
					t.Fatalf("status %d body %q", code, out)
				}
			}
		}
		// Every call of a workflow reached one backend.
		home := map[string]int{}
		for i, f := range fs {
			for _, b := range f.bodies {
				var req struct {
					Messages []struct{ Content string } `json:"messages"`
				}
				json.Unmarshal(b, &req)
				wf := strings.Fields(req.Messages[0].Content)[0]
				if h, ok := home[wf]; ok && h != i {
					t.Fatalf("%s served by backends %d and %d", wf, h, i)
				}
				home[wf] = i
				if bytes.Contains(b, []byte("workflow_metadata")) {
					t.Fatal("workflow_metadata reached a backend")
				}
			}
		}
		s := rt.StatsNow()
		limit := int64(bound(DefaultLoadFactor, workflows-1, 4))
		for _, b := range s.Backends {
			if b.Workflows > limit {
				t.Errorf("backend %s is home to %d workflows, bound %d", b.URL, b.Workflows, limit)
			}
		}
		if s.AffinityHits != workflows*(calls-1) || s.AffinityMisses != workflows || s.Spillovers != 0 || s.ActiveWorkflows != workflows {
			t.Errorf("stats %+v", s)
		}
		st, ok := rt.Balancer.status("wf-7")
		if !ok || st.TotalRequests != calls || st.AssignedInstance == "" || st.CacheHitRate == nil || *st.CacheHitRate != 0.8 {
			t.Errorf("status %+v", st)
		}
	})
}

func TestSpilloverUnderLoad(t *testing.T) {
	fs := []*fakeBackend{newFake(t), newFake(t)}
	rt, url := startRouter(t, Config{Backends: backends(fs...), HealthInterval: time.Hour})
	// Two workflows with one home (placed while the backends are idle, so
	// by their ring walks).
	home := func(id string) string { st, _ := rt.Balancer.status(id); return st.AssignedInstance }
	completion(t, url, wfBody("busy", "a", "x"))
	other := ""
	for k := 0; other == "" && k < 100; k++ {
		id := fmt.Sprintf("other-%d", k)
		if completion(t, url, wfBody(id, "a", "x")); home(id) == home("busy") {
			other = id
		}
	}
	if other == "" {
		t.Fatal("no second workflow shares the first one's home")
	}
	for _, f := range fs {
		f.hang.Store(true)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	inFlight := func(wf string, n int) {
		for k := 0; k < n; k++ {
			before := fs[0].count() + fs[1].count()
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequestWithContext(ctx, "POST", url+"/v1/chat/completions", strings.NewReader(wfBody(wf, "a", "x")))
				if resp, err := http.DefaultClient.Do(req); err == nil {
					resp.Body.Close()
				}
			}()
			for fs[0].count()+fs[1].count() < before+1 { // wait until it is in flight
				time.Sleep(time.Millisecond)
			}
		}
	}
	// A fan-out of four parallel calls stays home: the home is judged
	// without the workflow's own calls in flight (up to the bound).
	inFlight("busy", 4)
	if s := rt.StatsNow(); s.Spillovers != 0 {
		t.Errorf("a workflow's own fan-out spilled: %+v", s)
	}
	// Another workflow's call finds the home over the bound
	// ceil(1.25*(4+1)/2) = 4 with four in flight: it spills.
	inFlight(other, 1)
	s := rt.StatsNow()
	cancel()
	wg.Wait()
	if st, _ := rt.Balancer.status(other); s.Spillovers != 1 || st.Spillovers != 1 {
		t.Errorf("no spillover: stats %+v, status of %s %+v", s, other, st)
	}
	deadline := time.Now().Add(5 * time.Second)
	for rt.list()[0].inFlight.Load()+rt.list()[1].inFlight.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("in-flight counts not given back after the clients left")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWithoutMetadataBytesPassThrough(t *testing.T) {
	f := newFake(t)
	_, url := startRouter(t, Config{Backends: backends(f), HealthInterval: time.Hour})
	odd := "{ \"model\" : \"m\",\n\t\"messages\": [ {\"role\":\"user\", \"content\":\"héllo \\u00e9\"} ],  \"stream\":true }"
	if code, out := completion(t, url, odd); code != 200 || out != sse {
		t.Fatalf("%d %q", code, out)
	}
	with := "{\"workflow_metadata\": {\"workflow_id\": \"w\"}, \"model\" : \"m\",\n\t\"stream\":true }"
	completion(t, url, with)
	if string(f.bodies[0]) != odd {
		t.Errorf("body changed:\n%s\n%s", odd, f.bodies[0])
	}
	if string(f.bodies[1]) != "{\"model\" : \"m\",\n\t\"stream\":true }" {
		t.Errorf("stripped body %q", f.bodies[1])
	}
}

func TestHungAndStalledBackends(t *testing.T) {
	hung, good := newFake(t), newFake(t)
	hung.hang.Store(true)
	_, url := startRouter(t, Config{Backends: backends(hung, good), Logic: "roundrobin", FirstByteTimeout: 200 * time.Millisecond, HealthInterval: time.Hour})
	start := time.Now()
	// A completion the hung backend read gets a 504, not a second run on
	// the other backend: the first may still be running.
	codes := map[int]int{}
	for k := 0; k < 4; k++ {
		code, out := completion(t, url, `{"model":"m","messages":[]}`)
		codes[code]++
		if code == 200 && out != sse || code != 200 && code != 504 {
			t.Fatalf("request %d: %d %q", k, code, out)
		}
	}
	if codes[200] != 2 || codes[504] != 2 || hung.count() != 2 || good.count() != 2 {
		t.Errorf("answers %v, hung backend read %d, good one %d: want 2 and 2, each request run once", codes, hung.count(), good.count())
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a hung backend held the router for %v", d)
	}
	// A stream that stops producing is ended after the idle timeout.
	stalled := newFake(t)
	stalled.stall.Store(true)
	_, url2 := startRouter(t, Config{Backends: backends(stalled), IdleTimeout: 200 * time.Millisecond, HealthInterval: time.Hour})
	start = time.Now()
	req, _ := http.NewRequest("POST", url2+"/v1/chat/completions", strings.NewReader(`{"model":"m","messages":[]}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	// The client must see the stream broken, not ended as if complete.
	if resp.StatusCode != 200 || !strings.HasPrefix(string(out), "data:") || !errors.Is(err, io.ErrUnexpectedEOF) || time.Since(start) > 5*time.Second {
		t.Errorf("stalled stream: %d %q, read error %v, after %v", resp.StatusCode, out, err, time.Since(start))
	}
}

func TestFailedBackendMovesWorkflows(t *testing.T) {
	forEachState(t, func(t *testing.T, state string) {
		a, b := newFake(t), newFake(t)
		rt, url := startRouter(t, Config{Backends: backends(a, b), HealthInterval: 20 * time.Millisecond, State: state})
		var ids []string
		for w := 0; len(ids) < 3 && w < 100; w++ {
			id := fmt.Sprintf("w%d", w)
			completion(t, url, wfBody(id, "x", id))
			if st, _ := rt.Balancer.status(id); st.AssignedInstance == a.URL {
				ids = append(ids, id)
			}
		}
		a.down.Store(true)
		deadline := time.Now().Add(5 * time.Second)
		for rt.list()[0].healthy.Load() {
			if time.Now().After(deadline) {
				t.Fatal("backend never marked down")
			}
			time.Sleep(5 * time.Millisecond)
		}
		for _, id := range ids {
			if code, out := completion(t, url, wfBody(id, "x", id)); code != 200 || out != sse {
				t.Fatalf("%s after failover: %d %q", id, code, out)
			}
			st, _ := rt.Balancer.status(id)
			if st.AssignedInstance != b.URL || st.Migrations != 1 {
				t.Errorf("%s: %+v", id, st)
			}
		}
		// Recovery breaks nothing: moved workflows stay, everything serves.
		a.down.Store(false)
		for rt.list()[0].healthy.Load() == false {
			time.Sleep(5 * time.Millisecond)
		}
		for _, id := range ids {
			completion(t, url, wfBody(id, "x", id))
			if st, _ := rt.Balancer.status(id); st.AssignedInstance != b.URL || st.Migrations != 1 {
				t.Errorf("%s after recovery: %+v", id, st)
			}
		}
		if s := rt.StatsNow(); s.Migrations != int64(len(ids)) {
			t.Errorf("migrations %d, want %d", s.Migrations, len(ids))
		}
	})
}

func TestMessaging(t *testing.T) {
	forEachState(t, func(t *testing.T, state string) {
		now := time.Unix(1000, 0)
		var mu sync.Mutex
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		rt, url := startRouter(t, Config{Backends: []string{newFake(t).URL}, MaxQueueSize: 3, MaxQueues: 2, MaxPayload: 64, MessageTTL: time.Minute, Now: clock, HealthInterval: time.Hour, State: state})
		post := func(wf, body string) (int, string) {
			resp, err := http.Post(url+"/v1/workflows/"+wf+"/messages", "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		get := func(wf, agent, q string) (int, []Message) {
			resp, err := http.Get(url + "/v1/workflows/" + wf + "/agents/" + agent + "/messages" + q)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var out struct {
				Messages []Message `json:"messages"`
				Count    int       `json:"count"`
			}
			json.NewDecoder(resp.Body).Decode(&out)
			return resp.StatusCode, out.Messages
		}
		msg := func(to string, k int) string {
			return fmt.Sprintf(`{"source_agent": "a", "target_agent": %q, "message_type": "data", "payload": {"k": %d}}`, to, k)
		}
		for k := 1; k <= 3; k++ {
			if code, out := post("w1", msg("b", k)); code != 200 || !strings.Contains(out, `"status":"sent"`) {
				t.Fatalf("send %d: %d %s", k, code, out)
			}
		}
		if code, out := post("w1", msg("b", 4)); code != 429 || !strings.Contains(out, "full") {
			t.Errorf("full queue: %d %s", code, out)
		}
		_, got := get("w1", "b", "")
		if len(got) != 3 || string(got[0].Payload) != `{"k":1}` || string(got[2].Payload) != `{"k":3}` || got[0].Source != "a" {
			t.Errorf("messages out of order: %+v", got)
		}
		// Limits and bad input.
		for _, c := range []struct {
			wf, body string
			code     int
		}{
			{"w1", `{"source_agent": "a", "target_agent": "b", "payload": "` + strings.Repeat("x", 100) + `"}`, 413},
			{"w1", `{"source_agent": "", "target_agent": "b"}`, 400},
			{"w1", `{"source_agent": "a", "target_agent": "b c"}`, 400},
			{"w1", `not json`, 400},
			{"bad%20id", msg("b", 1), 400},
		} {
			if code, out := post(c.wf, c.body); code != c.code {
				t.Errorf("%s %s: %d %s, want %d", c.wf, c.body, code, out, c.code)
			}
		}
		post("q1", msg("x", 1))
		post("q2", msg("x", 1))
		if code, out := post("q3", msg("x", 1)); code != 429 || !strings.Contains(out, "too many") {
			t.Errorf("queue limit: %d %s", code, out)
		}
		// A long poll on a queue that does not exist yet returns as soon as a
		// message arrives.
		done := make(chan []Message, 1)
		start := time.Now()
		go func() {
			_, m := get("w9", "late", "?timeout=30")
			done <- m
		}()
		for {
			if waiting(rt, "w9", "late") {
				break
			}
			time.Sleep(time.Millisecond)
		}
		get("q1", "x", "") // make room under the queue limit
		if code, out := post("w9", msg("late", 7)); code != 200 {
			t.Fatalf("%d %s", code, out)
		}
		select {
		case m := <-done:
			if len(m) != 1 || time.Since(start) > 10*time.Second {
				t.Errorf("long poll got %+v after %v", m, time.Since(start))
			}
		case <-time.After(10 * time.Second):
			t.Fatal("long poll did not wake")
		}
		// Messages expire after their TTL.
		post("w2", msg("old", 1))
		mu.Lock()
		now = now.Add(2 * time.Minute)
		mu.Unlock()
		if _, m := get("w2", "old", ""); len(m) != 0 || expiredCount(rt) == 0 {
			t.Errorf("expired message delivered: %+v", m)
		}
	})
}

func TestWorkflowLifecycle(t *testing.T) {
	forEachState(t, func(t *testing.T, state string) {
		now := time.Unix(0, 0)
		var mu sync.Mutex
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		f := newFake(t)
		rt, url := startRouter(t, Config{Backends: []string{f.URL}, MaxWorkflows: 5, WorkflowTTL: time.Minute, Now: clock, HealthInterval: time.Hour, State: state})
		for w := 0; w < 8; w++ {
			if code, _ := completion(t, url, wfBody(fmt.Sprintf("w%d", w), "a", "x")); code != 200 {
				t.Fatalf("workflow %d refused at the limit", w)
			}
		}
		if ids := rt.table.ids(); len(ids) != 5 || ids[0] != "w3" {
			t.Errorf("after LRU eviction: %v", ids)
		}
		mu.Lock()
		now = now.Add(2 * time.Minute)
		mu.Unlock()
		completion(t, url, wfBody("w7", "a", "x")) // active again
		if n := rt.workflows.sweep(); n != 4 || rt.table.len() != 1 {
			t.Errorf("swept %d, left %v", n, rt.table.ids())
		}
		req, _ := http.NewRequest("DELETE", url+"/v1/workflows/w7", nil)
		resp, _ := http.DefaultClient.Do(req)
		resp.Body.Close()
		if resp.StatusCode != 200 || rt.table.len() != 0 || rt.StatsNow().Backends[0].Workflows != 0 {
			t.Errorf("delete: %d, %d left, homes %d", resp.StatusCode, rt.table.len(), rt.StatsNow().Backends[0].Workflows)
		}
		resp, _ = http.Get(url + "/v1/workflows/w7/status")
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Errorf("status of a deleted workflow: %d", resp.StatusCode)
		}
	})
}

func TestMetricsModelsHealth(t *testing.T) {
	a, b := newFake(t), newFake(t)
	_, url := startRouter(t, Config{Backends: backends(a, b), HealthInterval: 20 * time.Millisecond})
	completion(t, url, wfBody("secret-workflow-id", "agent", "x"))
	resp, _ := http.Get(url + "/metrics")
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"wfsched_router_requests_total", "wfsched_router_affinity_misses_total 1", "wfsched_router_active_workflows 1",
		"wfsched_router_cached_prompt_tokens_total", "wfsched_router_routing_decision_seconds_bucket"} {
		if !bytes.Contains(m, []byte(want)) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if bytes.Contains(m, []byte("secret-workflow-id")) || bytes.Contains(m, []byte("agent=")) {
		t.Error("a workflow or agent id became a label")
	}
	resp, _ = http.Get(url + "/v1/models")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Count(string(body), `"id":"m-`) != 2 {
		t.Errorf("models union %s", body)
	}
	time.Sleep(0) // health was checked at start
	resp, _ = http.Get(url + "/health")
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Wfsched-Time-Scale") != "0.5" {
		t.Errorf("health %d scale %q", resp.StatusCode, resp.Header.Get("X-Wfsched-Time-Scale"))
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{
		{},
		{Backends: []string{"localhost:1"}},
		{Backends: []string{"http://x"}, Logic: "random"},
		{Backends: []string{"http://x"}, FallbackLogic: "workflow_aware"},
		{Backends: []string{"http://x"}, LoadFactor: 0.9},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if rt, err := New(Config{Backends: []string{"http://x"}, Logic: "workflow_aware"}); err != nil || rt.Logic() != "workflow-aware" {
		t.Errorf("design spelling: %v", err)
	}
}

func TestMetadataFieldsAndLimits(t *testing.T) {
	fs := []*fakeBackend{newFake(t), newFake(t)}
	for _, f := range fs {
		f.hang.Store(true)
	}
	rt, url := startRouter(t, Config{Backends: backends(fs...), HealthInterval: time.Hour, MaxBodyBytes: 1024})
	if code, _ := completion(t, url, `{"messages": "`+strings.Repeat("x", 2000)+`"}`); code != 413 {
		t.Errorf("oversize body: %d", code)
	}
	for _, bad := range []string{
		`{"workflow_metadata": {"workflow_id": "w", "context_sharing_strategy": "telepathy"}}`,
		`{"workflow_metadata": {"workflow_id": "w", "workflow_priority": -1}}`,
		`{"workflow_metadata": {"workflow_id": "has space"}}`,
		`{"workflow_metadata": "not an object"}`,
	} {
		if code, out := completion(t, url, bad); code != 400 {
			t.Errorf("%s: %d %s", bad, code, out)
		}
	}
	// Priority: with four requests in flight on two backends, a workflow of
	// priority 4 stays home; one of priority 1 spills (see
	// TestSpilloverUnderLoad).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for k := 0; k < 4; k++ {
		go func() {
			body := `{"workflow_metadata": {"workflow_id": "vip", "workflow_priority": 4, "parent_request_id": "r-41"}}`
			req, _ := http.NewRequestWithContext(ctx, "POST", url+"/v1/chat/completions", strings.NewReader(body))
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
		for fs[0].count()+fs[1].count() < k+1 {
			time.Sleep(time.Millisecond)
		}
	}
	st, _ := rt.Balancer.status("vip")
	if st.Spillovers != 0 || st.Priority != 4 || st.LastParentRequestID != "r-41" {
		t.Errorf("priority workflow: %+v", st)
	}
	// context_sharing_strategy none: no affinity, no workflow tracked.
	for _, f := range fs {
		f.hang.Store(false)
	}
	completion(t, url, `{"workflow_metadata": {"workflow_id": "loner", "context_sharing_strategy": "none"}}`)
	if _, ok := rt.Balancer.status("loner"); ok {
		t.Error("a workflow that shares no context was given a home")
	}
}

func TestKilledBackend(t *testing.T) {
	a, b := newFake(t), newFake(t)
	rt, url := startRouter(t, Config{Backends: backends(a, b), HealthInterval: 20 * time.Millisecond})
	var onA string
	for w := 0; onA == "" && w < 100; w++ {
		id := fmt.Sprintf("k%d", w)
		completion(t, url, wfBody(id, "x", id))
		if st, _ := rt.Balancer.status(id); st.AssignedInstance == a.URL {
			onA = id
		}
	}
	a.Close() // killed: connections are refused
	// Before the health check notices, requests fail over before any byte.
	if code, out := completion(t, url, wfBody(onA, "x", onA)); code != 200 || out != sse {
		t.Fatalf("request to a killed home: %d %q", code, out)
	}
	for rt.list()[0].healthy.Load() {
		time.Sleep(5 * time.Millisecond)
	}
	completion(t, url, wfBody(onA, "x", onA))
	if st, _ := rt.Balancer.status(onA); st.AssignedInstance != b.URL || st.Migrations != 1 {
		t.Errorf("after the kill: %+v", st)
	}
}

// TestAllBackendsMarkedDown: health checks can be wrong (an engine under
// load answers them late); with every backend marked down the router still
// tries them instead of refusing, and fails only if none answers.
func TestAllBackendsMarkedDown(t *testing.T) {
	a, b := newFake(t), newFake(t)
	a.sick.Store(true)
	b.sick.Store(true)
	rt, url := startRouter(t, Config{Backends: backends(a, b), HealthInterval: 20 * time.Millisecond})
	deadline := time.Now().Add(5 * time.Second)
	for (rt.list()[0].healthy.Load() || rt.list()[1].healthy.Load()) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if rt.list()[0].healthy.Load() || rt.list()[1].healthy.Load() {
		t.Fatal("the health checks did not mark the backends down")
	}
	if code, out := completion(t, url, wfBody("w", "x", "hi")); code != 200 || out != sse {
		t.Errorf("every backend marked down but serving: %d %q", code, out)
	}
	a.down.Store(true)
	b.down.Store(true)
	if code, _ := completion(t, url, wfBody("w", "x", "hi")); code != 503 {
		t.Errorf("every backend really down: %d, want their 503", code)
	}
}

func expiredCount(rt *Router) int64 {
	_, _, n := rt.mail.totals()
	return n
}

// A workflow's home is the least loaded backend among those under the
// bound on homes, not the first on its ring walk.
func TestHomeByLoad(t *testing.T) {
	bl, err := NewBalancer(Config{Backends: []string{"a", "b", "c"}})
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range []int{5, 0, 3} {
		for range n {
			bl.Begin(i)
		}
	}
	route := func(id string) int {
		d := bl.Route(&Request{Meta: &Metadata{WorkflowID: id}, Session: id})
		bl.Begin(d.Backend)
		return d.Backend
	}
	// Whatever their ring walks, each new workflow goes where the load
	// is least among the backends under the bound on homes,
	// ceil(1.25 * (homes+1) / 3): b (load 0); c, as b holds the one home
	// the bound allows; b (homes 1 of 2, load 1); c (b at the bound);
	// b (homes 2 of 3, load 2 against 5 and 5).
	var got []int
	for k := range 5 {
		got = append(got, route(fmt.Sprintf("wf-%d", k)))
	}
	if fmt.Sprint(got) != "[1 2 1 2 1]" {
		t.Errorf("homes %v, want [1 2 1 2 1]", got)
	}
}

// TestHealthLog: a router whose backends are not up yet says so once, and
// logs each backend as it comes up and goes down, so a client's 503 is
// explained where the router runs.
func TestHealthLog(t *testing.T) {
	var logged testenv.Buffer
	log.SetOutput(&logged)
	defer log.SetOutput(os.Stderr)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there yet
	startRouter(t, Config{Backends: []string{"http://" + addr}, HealthInterval: 20 * time.Millisecond})
	waitLog := func(want string) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if strings.Contains(logged.String(), want) {
				return
			}
		}
		t.Fatalf("the router's log lacks %q:\n%s", want, logged.String())
	}
	waitLog("no backend answers /health yet (http://" + addr + ")")
	if ln, err = net.Listen("tcp", addr); err != nil {
		t.Skipf("%s was taken meanwhile: %v", addr, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}
	go srv.Serve(ln)
	waitLog("backend http://" + addr + " answers /health: it takes requests")
	srv.Close()
	waitLog("backend http://" + addr + " is down")
	if n := strings.Count(logged.String(), "no backend answers"); n != 1 {
		t.Errorf("the startup line came %d times", n)
	}
}
