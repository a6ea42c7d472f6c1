package router

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// fastHeartbeat shortens the replicas' heartbeat and liveness for a test,
// until its routers have stopped (a cleanup registered before theirs runs
// after them).
func fastHeartbeat(t *testing.T, beat, ttl time.Duration) {
	h, r := heartbeat, replicaTTL
	t.Cleanup(func() { heartbeat, replicaTTL = h, r })
	heartbeat, replicaTTL = beat, ttl
}

// startReplica serves a router until the returned stop is called (or the
// test ends): a replica that can be killed mid-test.
func startReplica(t testing.TB, cfg Config) (*Router, string, func()) {
	t.Helper()
	rt, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { rt.Serve(ctx, ln); close(done) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Error("router did not stop")
			}
		})
	}
	t.Cleanup(stop)
	return rt, "http://" + ln.Addr().String(), stop
}

func postMessage(t *testing.T, url, wf, from, to string, k int) string {
	t.Helper()
	resp, err := http.Post(url+"/v1/workflows/"+wf+"/messages", "application/json",
		strings.NewReader(fmt.Sprintf(`{"source_agent":%q,"target_agent":%q,"payload":{"k":%d}}`, from, to, k)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		ID string `json:"message_id"`
	}
	json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != 200 || out.ID == "" {
		t.Fatalf("post through %s: %d", url, resp.StatusCode)
	}
	return out.ID
}

func readMessages(t *testing.T, url, wf, agent, query string) []Message {
	t.Helper()
	resp, err := http.Get(url + "/v1/workflows/" + wf + "/agents/" + agent + "/messages" + query)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Messages []Message `json:"messages"`
	}
	json.NewDecoder(resp.Body).Decode(&out)
	return out.Messages
}

func healthOf(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url + "/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Status string }
	json.NewDecoder(resp.Body).Decode(&out)
	return out.Status
}

// servedCalls counts each workflow's calls by the URL of the backend that
// served them.
func servedCalls(fs []*fakeBackend) map[string]map[string]int {
	out := map[string]map[string]int{}
	for wf, on := range servedBy(fs) {
		out[wf] = map[string]int{}
		for i, n := range on {
			out[wf][fs[i].URL] = n
		}
	}
	return out
}

// servedBy counts each workflow's calls by the fake backend that served
// them (the first word of a call's prompt is its workflow id).
func servedBy(fs []*fakeBackend) map[string]map[int]int {
	out := map[string]map[int]int{}
	for i, f := range fs {
		f.mu.Lock()
		for _, b := range f.bodies {
			var req struct {
				Messages []struct{ Content string } `json:"messages"`
			}
			json.Unmarshal(b, &req)
			wf := strings.Fields(req.Messages[0].Content)[0]
			if out[wf] == nil {
				out[wf] = map[int]int{}
			}
			out[wf][i]++
		}
		f.mu.Unlock()
	}
	return out
}

// Three replicas on one Redis behind a client that spreads each
// workflow's calls over all three: every workflow gets one home, kept by
// all; the figures any replica reports sum over all; a message posted
// through one replica wakes a long poll on another.
func TestReplicasShareState(t *testing.T) {
	state := testRedis(t)
	fs := []*fakeBackend{newFake(t), newFake(t), newFake(t), newFake(t)}
	var urls []string
	var rts []*Router
	for range 3 {
		rt, url, _ := startReplica(t, Config{Backends: backends(fs...), HealthInterval: time.Hour, State: state})
		rts, urls = append(rts, rt), append(urls, url)
	}
	const workflows, calls = 60, 6
	for c := 0; c < calls; c++ {
		for w := 0; w < workflows; w++ {
			id := fmt.Sprintf("wf-%d", w)
			url := urls[(w+c)%len(urls)]
			if code, out := completion(t, url, wfBody(id, fmt.Sprintf("agent-%d", c%2), id+" call"), "X-Request-Id", "r"); code != 200 || out != sse {
				t.Fatalf("%s call %d through %s: %d %q", id, c, url, code, out)
			}
		}
	}
	// Every call went to its workflow's one home but those counted as
	// spilled. (The fakes' short answers carry a Content-Length: a client
	// can send its next call before the router has recorded the end of the
	// last in Redis, which then still counts on the home for a moment.)
	served, spilled := servedCalls(fs), int64(0)
	for w := 0; w < workflows; w++ {
		id := fmt.Sprintf("wf-%d", w)
		st, _ := rts[w%3].Balancer.status(id)
		off := 0
		for u, n := range served[id] {
			if u != st.AssignedInstance {
				off += n
			}
		}
		if int64(off) != st.Spillovers || st.Migrations != 0 {
			t.Errorf("%s: %d calls off its home %s, %d spilled: %v", id, off, st.AssignedInstance, st.Spillovers, served[id])
		}
		spilled += st.Spillovers
	}
	for i, rt := range rts {
		s := rt.StatsNow()
		if s.AffinityMisses != workflows || s.AffinityHits != workflows*(calls-1) || s.ActiveWorkflows != workflows || s.Spillovers != spilled {
			t.Errorf("replica %d stats: misses %d hits %d active %d spills %d", i, s.AffinityMisses, s.AffinityHits, s.ActiveWorkflows, s.Spillovers)
		}
		homes, limit := int64(0), int64(bound(DefaultLoadFactor, workflows-1, len(fs)))
		for _, b := range s.Backends {
			homes += b.Workflows
			if b.Workflows > limit {
				t.Errorf("backend %s is home to %d workflows, bound %d", b.URL, b.Workflows, limit)
			}
		}
		if homes != workflows {
			t.Errorf("replica %d counts %d homes for %d workflows", i, homes, workflows)
		}
		st, ok := rt.Balancer.status("wf-7")
		if !ok || st.TotalRequests != calls || st.CacheHits != calls-1 || st.Agents["agent-0"] != calls/2 || st.InFlight != 0 || st.PromptTokens != 40*calls {
			t.Errorf("replica %d status of wf-7: %+v", i, st)
		}
	}

	// Messages: posted through one, read through another.
	for k := 0; k < 5; k++ {
		postMessage(t, urls[k%3], "wf-1", "a", "b", k)
	}
	got := readMessages(t, urls[2], "wf-1", "b", "?limit=3")
	got = append(got, readMessages(t, urls[1], "wf-1", "b", "")...)
	if len(got) != 5 {
		t.Fatalf("read %d of 5 messages", len(got))
	}
	for k, m := range got {
		if string(m.Payload) != fmt.Sprintf(`{"k":%d}`, k) || m.Source != "a" || !strings.HasPrefix(m.ID, "msg-") {
			t.Errorf("message %d: %+v", k, m)
		}
	}
	// A long poll on one replica wakes on a post through another, well
	// before its once-a-second look at Redis would find the message.
	var wakes []time.Duration
	for k := 0; k < 5; k++ {
		agent := fmt.Sprintf("late-%d", k)
		done := make(chan time.Time, 1)
		go func() {
			readMessages(t, urls[0], "wf-2", agent, "?timeout=10")
			done <- time.Now()
		}()
		for !waiting(rts[0], "wf-2", agent) {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(20 * time.Millisecond) // let the poll settle into its wait
		posted := time.Now()
		postMessage(t, urls[1], "wf-2", "a", agent, k)
		wakes = append(wakes, (<-done).Sub(posted))
	}
	for _, d := range wakes {
		if d > recheck/2 {
			t.Errorf("a long poll woke %v after the post on another replica: %v", d, wakes)
		}
	}
	t.Logf("long polls woke after the post on another replica: %v", wakes)
	if s := rts[1].StatsNow().Messages; s.Sent != 10 || s.Received != 10 || s.Pending != 0 {
		t.Errorf("message stats %+v", s)
	}
}

func TestStateErrors(t *testing.T) {
	f := newFake(t)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().String()
	ln.Close()
	for _, c := range []struct{ state, want string }{
		{"redis://" + closed + "/0", "does not answer"},
		{"postgres://x", "want memory or redis://HOST:PORT/DB"},
		{"redis://127.0.0.1:6379/notanumber", "redis://HOST:PORT/DB"},
	} {
		_, err := New(Config{Backends: []string{f.URL}, State: c.state})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("state %s: %v, want %q", c.state, err, c.want)
		}
	}
}

// Redis lost while serving: the replica routes on its own state (the same
// homes), says degraded, counts the errors, and resumes when Redis
// returns, keeping the homes it gave meanwhile.
func TestRedisLostWhileServing(t *testing.T) {
	fastHeartbeat(t, 50*time.Millisecond, 500*time.Millisecond)
	srv, err := startRedisServer("")
	needRedis(t, err)
	defer func() { srv.stop() }()
	fs := []*fakeBackend{newFake(t), newFake(t), newFake(t)}
	var logged []string
	var mu sync.Mutex
	rt, url, _ := startReplica(t, Config{Backends: backends(fs...), HealthInterval: time.Hour, State: srv.url()})
	rt.shared.logf = func(format string, args ...any) {
		mu.Lock()
		logged = append(logged, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	homes := map[string]string{}
	for w := 0; w < 12; w++ {
		id := fmt.Sprintf("w%d", w)
		completion(t, url, wfBody(id, "a", id))
		st, _ := rt.Balancer.status(id)
		homes[id] = st.AssignedInstance
	}
	if h := healthOf(t, url); h != "ok" {
		t.Fatalf("health %q before the loss", h)
	}

	srv.stop()
	for w := 0; w < 12; w++ {
		id := fmt.Sprintf("w%d", w)
		if code, _ := completion(t, url, wfBody(id, "a", id)); code != 200 {
			t.Fatalf("%s without Redis: %d", id, code)
		}
		if st, _ := rt.Balancer.status(id); st.AssignedInstance != homes[id] {
			t.Errorf("%s moved from %s to %s without Redis", id, homes[id], st.AssignedInstance)
		}
	}
	completion(t, url, wfBody("new-while-lost", "a", "new-while-lost"))
	lostHome, _ := rt.Balancer.status("new-while-lost")
	postMessage(t, url, "w1", "a", "b", 1)
	if h := healthOf(t, url); h != "degraded" {
		t.Errorf("health %q without Redis", h)
	}
	resp, _ := http.Get(url + "/metrics")
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(m), "wfsched_router_state_degraded 1") || strings.Contains(string(m), "wfsched_router_state_errors_total 0") {
		t.Errorf("metrics do not show the loss")
	}

	// Redis returns (empty: it kept nothing).
	srv2, err := startRedisServer(srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.stop()
	for deadline := time.Now().Add(5 * time.Second); healthOf(t, url) != "ok"; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the replica did not resume when Redis returned")
		}
	}
	completion(t, url, wfBody("new-while-lost", "a", "new-while-lost"))
	if st, _ := rt.Balancer.status("new-while-lost"); st.AssignedInstance != lostHome.AssignedInstance || st.TotalRequests != 1 {
		t.Errorf("a workflow routed without Redis moved when it returned: %+v, was on %s", st, lostHome.AssignedInstance)
	}
	if got := readMessages(t, url, "w1", "b", ""); len(got) != 1 {
		t.Errorf("the message posted without Redis: %+v", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(logged) != 2 || !strings.Contains(logged[0], "lost") || !strings.Contains(logged[1], "back") {
		t.Errorf("logged %q, want one line at the loss and one at the return", logged)
	}
}

// A replica killed with requests in flight: the others carry on with its
// workflows' homes, every message queued through it is delivered, and its
// in-flight requests stop counting once it is no longer alive.
func TestReplicaKilledMidRun(t *testing.T) {
	fastHeartbeat(t, 50*time.Millisecond, 300*time.Millisecond)
	state := testRedis(t)
	fs := []*fakeBackend{newFake(t), newFake(t)}
	a, urlA, stopA := startReplica(t, Config{Backends: backends(fs...), HealthInterval: time.Hour, State: state})
	b, urlB, _ := startReplica(t, Config{Backends: backends(fs...), HealthInterval: time.Hour, State: state})
	for w := 0; w < 10; w++ {
		id := fmt.Sprintf("w%d", w)
		completion(t, urlA, wfBody(id, "a", id))
		postMessage(t, urlA, id, "a", "b", w)
	}
	// One request hangs in flight on A when it dies.
	fs[0].hang.Store(true)
	fs[1].hang.Store(true)
	go func() {
		req, _ := http.NewRequest("POST", urlA+"/v1/chat/completions", strings.NewReader(wfBody("w0", "a", "w0 hangs")))
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
	}()
	for st, _ := b.Balancer.status("w0"); st.InFlight != 1; st, _ = b.Balancer.status("w0") {
		time.Sleep(5 * time.Millisecond)
	}
	// Killed: A's Redis connection goes first, so that nothing it does
	// on its way out reaches Redis (its request's end included).
	a.shared.c.Close()
	stopA()
	fs[0].hang.Store(false)
	fs[1].hang.Store(false)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if st, _ := b.Balancer.status("w0"); st.InFlight == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the killed replica's request still counts in flight")
		}
	}
	misses := b.StatsNow().AffinityMisses
	for w := 0; w < 10; w++ {
		id := fmt.Sprintf("w%d", w)
		completion(t, urlB, wfBody(id, "a", id))
		if got := readMessages(t, urlB, id, "b", ""); len(got) != 1 || string(got[0].Payload) != fmt.Sprintf(`{"k":%d}`, w) {
			t.Errorf("%s's message through the survivor: %+v", id, got)
		}
	}
	for wf, on := range servedBy(fs) {
		if len(on) != 1 {
			t.Errorf("%s served by backends %v", wf, on)
		}
	}
	if s := b.StatsNow(); s.AffinityMisses != misses {
		t.Errorf("the survivor gave %d new homes to the killed replica's workflows", s.AffinityMisses-misses)
	}
}

// BenchmarkStateRoute routes one request and records its end, as the proxy
// does around every workflow request, with the state in memory and in
// Redis (the added latency of shared state, without HTTP).
func BenchmarkStateRoute(b *testing.B) {
	srv, err := startRedisServer("")
	if err != nil {
		b.Skip(err)
	}
	defer srv.stop()
	for _, state := range []string{"memory", srv.url()} {
		name := "memory"
		if state != "memory" {
			name = "redis"
		}
		b.Run(name, func(b *testing.B) {
			rt, err := New(Config{Backends: []string{"http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3", "http://127.0.0.1:4"}, State: state})
			if err != nil {
				b.Fatal(err)
			}
			meta := make([]*Metadata, 1000)
			for i := range meta {
				meta[i] = &Metadata{WorkflowID: fmt.Sprintf("wf-%d", i), AgentID: "a"}
			}
			k := 0
			for b.Loop() {
				m := meta[k%len(meta)]
				k++
				d := rt.Route(&Request{Meta: m, Session: m.WorkflowID})
				rt.Begin(d.Backend)
				rt.End(d.Backend)
				rt.Finish(m.WorkflowID, d.Backend, 100, 80, true)
			}
		})
	}
}

// A Responses API chain whose links alternate between two replicas: each
// follow-up reaches the engine that stored the response it continues,
// whichever replica saw that response.
func TestReplicasShareResponses(t *testing.T) {
	state := testRedis(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var urls []string
	for i := range 4 {
		u, stop := simEngine(t, ctx, uint64(i+1))
		defer stop()
		urls = append(urls, u)
	}
	var routers []string
	for range 2 {
		_, u, _ := startReplica(t, Config{Backends: urls, Logic: "round-robin", FallbackLogic: "round-robin", HealthInterval: time.Hour, State: state})
		routers = append(routers, u)
	}
	prev, home := "", ""
	for i := range 6 {
		body := `{"input": "Next step?", "max_output_tokens": 4`
		if prev != "" {
			body += `, "previous_response_id": "` + prev + `"`
		}
		status, h, out := send(t, "POST", routers[i%2]+"/v1/responses", body+`}`)
		if status != 200 {
			t.Fatalf("link %d: %d %s", i, status, out)
		}
		if home == "" {
			home = h.Get("X-Wfsched-Backend")
		} else if got := h.Get("X-Wfsched-Backend"); got != home {
			t.Errorf("link %d answered by %s, the chain's responses are on %s", i, got, home)
		}
		if prev = responseID([]byte(out)); prev == "" {
			t.Fatalf("link %d: no response id", i)
		}
	}
}

// The bounds hold over Redis too: the bytes of the strings workflow
// records keep (--max-workflow-bytes) and the long polls' wakes.
func TestRedisBounds(t *testing.T) {
	state := testRedis(t)
	f := newFake(t)
	rt, url, _ := startReplica(t, Config{Backends: []string{f.URL}, HealthInterval: time.Hour, State: state, MaxWorkflowBytes: 4000, MaxAgents: 4})
	for w := 0; w < 40; w++ {
		for a := 0; a < 6; a++ {
			completion(t, url, wfBody(fmt.Sprintf("w%d-%s", w, strings.Repeat("x", 40)), fmt.Sprintf("agent-%d-%s", a, strings.Repeat("y", 40)), "w"))
		}
	}
	var bytes int64
	rt.shared.use(func(ctx context.Context) error {
		var err error
		bytes, err = rt.shared.c.HGet(ctx, redisPrefix+"stats", "bytes").Int64()
		return err
	})
	s := rt.StatsNow()
	if bytes > 4000 || bytes <= 0 || s.Evicted == 0 || s.ActiveWorkflows >= 40 {
		t.Errorf("records keep %d bytes (budget 4000), %d evicted, %d left", bytes, s.Evicted, s.ActiveWorkflows)
	}
	if st, ok := rt.Balancer.status(fmt.Sprintf("w39-%s", strings.Repeat("x", 40))); !ok || len(st.Agents) != 4 || st.UntrackedAgentRequests != 2 {
		t.Errorf("status %+v", st)
	}
	// Long polls that time out leave no wake behind.
	for k := 0; k < 20; k++ {
		readMessages(t, url, "w", fmt.Sprintf("nobody-%d", k), "?timeout=0.01")
	}
	rt.shared.wakeMu.Lock()
	defer rt.shared.wakeMu.Unlock()
	if n := len(rt.shared.wakes); n != 0 {
		t.Errorf("%d wakes left after the polls ended", n)
	}
}
