package router

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRefusedInputs: what the router cannot route on faithfully or keep
// within bounds is refused with a 400 whose body does not echo the input.
func TestRefusedInputs(t *testing.T) {
	f := newFake(t)
	_, url := startRouter(t, Config{Backends: backends(f), HealthInterval: time.Hour})
	long := strings.Repeat("a", 300)
	huge := strings.Repeat("w", 900<<10)
	for name, tc := range map[string]struct {
		body string
		hdr  []string
	}{
		"long agent_id":          {body: wfBody("w1", long, "x")},
		"long parent_request_id": {body: `{"model":"m","messages":[],"workflow_metadata":{"workflow_id":"w1","parent_request_id":"` + long + `"}}`},
		"huge workflow_id":       {body: wfBody(huge, "a", "x")},
		"long X-Agent-Id":        {body: `{"model":"m","messages":[]}`, hdr: []string{"X-Workflow-Id", "w1", "X-Agent-Id", long}},
		"long X-Session-Id":      {body: `{"model":"m","messages":[]}`, hdr: []string{"X-Session-Id", long}},
		"two workflow_metadata":  {body: `{"workflow_metadata":{"workflow_id":"a"},"model":"m","messages":[],"workflow_metadata":{"workflow_id":"b"}}`},
		"duplicate member":       {body: `{"model":"m","messages":[],"workflow_metadata":{"workflow_id":"a","workflow_id":"b"}}`},
		"metadata not an object": {body: `{"model":"m","messages":[],"workflow_metadata":[1]}`},
	} {
		code, out := completion(t, url, tc.body, tc.hdr...)
		if code != 400 || len(out) > 1024 {
			t.Errorf("%s: %d with a %d-byte body, want 400 and a short error", name, code, len(out))
		}
	}
	if f.count() != 0 {
		t.Errorf("%d refused requests reached the backend", f.count())
	}
}

func TestLongPollTimeoutIsStrict(t *testing.T) {
	_, url := startRouter(t, Config{Backends: backends(newFake(t)), HealthInterval: time.Hour})
	get := func(q string) int {
		resp, err := http.Get(url + "/v1/workflows/w/agents/a/messages?timeout=" + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, q := range []string{"Inf", "NaN", "1e10", "-1", "61", "x", "0x10"} {
		if code := get(q); code != 400 {
			t.Errorf("timeout=%s: %d, want 400", q, code)
		}
	}
	start := time.Now()
	if code := get("0.05"); code != 200 || time.Since(start) < 50*time.Millisecond {
		t.Errorf("timeout=0.05: %d after %v", code, time.Since(start))
	}
}

func postMsg(t *testing.T, url, wf, target string, payloadBytes int) int {
	t.Helper()
	body := fmt.Sprintf(`{"source_agent":"s","target_agent":%q,"payload":%q}`, target, strings.Repeat("p", payloadBytes))
	resp, err := http.Post(url+"/v1/workflows/"+wf+"/messages", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestMessageBytesBounded(t *testing.T) {
	rt, url := startRouter(t, Config{Backends: backends(newFake(t)), HealthInterval: time.Hour,
		MaxQueueBytes: 10_000, MaxMessages: 25_000})
	// Per queue: three 3 kB messages fit, a fourth does not.
	for k := 0; k < 3; k++ {
		if code := postMsg(t, url, "w", "a", 3000); code != 200 {
			t.Fatalf("message %d: %d", k, code)
		}
	}
	if code := postMsg(t, url, "w", "a", 3000); code != 429 {
		t.Errorf("over the queue's bytes: %d, want 429", code)
	}
	// In total: other queues fill the rest.
	for k := 0; k < 4; k++ {
		postMsg(t, url, "w", fmt.Sprintf("b%d", k), 3000)
	}
	if code := postMsg(t, url, "w", "c", 3000); code != 429 {
		t.Errorf("over the total bytes: %d, want 429", code)
	}
	if b := rt.StatsNow().Messages.Bytes; b > 25_000 || b < 20_000 {
		t.Errorf("queues hold %d bytes, limit 25000", b)
	}
	// Reading gives the bytes back.
	resp, err := http.Get(url + "/v1/workflows/w/agents/a/messages")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if code := postMsg(t, url, "w", "c", 3000); code != 200 {
		t.Errorf("after a read: %d", code)
	}
	rt.Forget("w")
	if st := rt.StatsNow().Messages; st.Bytes != 0 || st.Pending != 0 {
		t.Errorf("after forgetting the workflow: %+v", st)
	}
}

func TestWorkflowTableBounded(t *testing.T) {
	rt, url := startRouter(t, Config{Backends: backends(newFake(t)), HealthInterval: time.Hour, MaxWorkflowBytes: 20_000, MaxAgents: 3})
	id := strings.Repeat("w", 200)
	for k := 0; k < 200; k++ {
		if code, _ := completion(t, url, wfBody(fmt.Sprintf("%s%d", id, k), "a", "x")); code != 200 {
			t.Fatal(code)
		}
	}
	rt.table.mu.Lock()
	n, b := len(rt.table.m), rt.table.bytes
	rt.table.mu.Unlock()
	if b > 20_000 || n >= 200 || n == 0 {
		t.Errorf("%d workflows keep %d bytes, budget 20000", n, b)
	}
	// Agents beyond the cap are counted, not kept.
	for k := 0; k < 6; k++ {
		completion(t, url, wfBody("agents", fmt.Sprintf("agent-%d", k), "x"))
	}
	st, _ := rt.Balancer.status("agents")
	if len(st.Agents) != 3 || st.UntrackedAgentRequests != 3 || st.TotalRequests != 6 {
		t.Errorf("status %+v", st)
	}
	for _, id := range rt.table.ids() {
		rt.Forget(id)
	}
	if rt.table.bytes != 0 {
		t.Errorf("%d bytes counted with no workflow left", rt.table.bytes)
	}
}

// rawConn opens a connection and sends the start of a request whose body
// never comes.
func rawConn(t *testing.T, url string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
	return c
}

func TestConnectionLimit(t *testing.T) {
	f := newFake(t)
	rt, url := startRouter(t, Config{Backends: backends(f), HealthInterval: time.Hour, MaxConns: 4, ReservedConns: 1})
	// Slow clients take every connection; a real request still gets in,
	// closing the oldest of them.
	var slow []net.Conn
	for k := 0; k < 6; k++ {
		slow = append(slow, rawConn(t, url))
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	resp, err := hc.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(`{"model":"m","messages":[]}`))
	if err != nil {
		t.Fatalf("a normal request under a slow-client flood: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || rt.conns.held() > 4+1 {
		t.Errorf("status %d, %d connections held (limit 4+1)", resp.StatusCode, rt.conns.held())
	}
	// The first slow connections were closed to make room.
	slow[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := slow[0].Read(make([]byte, 1)); err == nil {
		t.Error("the oldest slow connection was not closed")
	}
	if rt.conns.evicted.Load() == 0 {
		t.Error("no eviction counted")
	}
}

func TestReservedConnectionsServeHealth(t *testing.T) {
	f := newFake(t)
	f.hang.Store(true)
	rt, url := startRouter(t, Config{Backends: backends(f), HealthInterval: time.Hour, MaxConns: 2, ReservedConns: 1})
	// Two requests the backend never answers: both connections serving.
	for k := 0; k < 2; k++ {
		c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		body := `{"model":"m","messages":[]}`
		fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	}
	deadline := time.Now().Add(5 * time.Second)
	for rt.StatsNow().Backends[0].InFlight < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	// The reserve serves /health, and only /health and /metrics.
	get := func(path string) (int, error) {
		c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
		if err != nil {
			return 0, err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := get("/health"); code != 200 {
		t.Errorf("/health with every connection serving: %d %v", code, err)
	}
	if code, err := get("/v1/workflows/stats"); code != 503 {
		t.Errorf("an API request on a reserved connection: %d %v, want 503", code, err)
	}
}

// TestConnectionsOverEveryLimit: with every slot and the reserve held by
// connections being served, a new connection is answered a well-formed 503
// and closed; the count of held connections does not move.
func TestConnectionsOverEveryLimit(t *testing.T) {
	lim := newConnLimiter(1, 1, 0)
	var held []*conn
	for k := 0; k < 2; k++ { // the slot, then the reserve
		a, b := net.Pipe()
		defer b.Close()
		c := lim.admit(a)
		if c == nil || c.reserved != (k == 1) {
			t.Fatalf("connection %d: %+v", k, c)
		}
		lim.setState(c, connServing)
		held = append(held, c)
	}
	a, b := net.Pipe()
	defer b.Close()
	admitted := make(chan *conn, 1)
	go func() { admitted <- lim.admit(a) }()
	br := bufio.NewReader(b)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("over every limit: %v %v", resp, err)
	}
	msg, err := io.ReadAll(resp.Body)
	if err != nil || !strings.Contains(string(msg), "connection limit") || !json.Valid(msg) {
		t.Errorf("refusal body %q: %v", msg, err)
	}
	// The body is exactly Content-Length long: nothing follows it.
	if rest, _ := io.ReadAll(br); len(rest) != 0 {
		t.Errorf("%q after the body: Content-Length is wrong", rest)
	}
	if c := <-admitted; c != nil || lim.refused.Load() != 1 || lim.held() != 2 {
		t.Errorf("admitted %v, refused %d, held %d", c, lim.refused.Load(), lim.held())
	}
	// A served connection going idle becomes evictable: the next one then
	// takes its slot.
	lim.setState(held[0], connWaiting)
	a2, b2 := net.Pipe()
	defer b2.Close()
	if c := lim.admit(a2); c == nil || c.reserved || lim.evicted.Load() != 1 || lim.held() != 2 {
		t.Errorf("after one went idle: %+v, evicted %d, held %d", c, lim.evicted.Load(), lim.held())
	}
}

func TestBodyTimeout(t *testing.T) {
	_, url := startRouter(t, Config{Backends: backends(newFake(t)), HealthInterval: time.Hour, BodyTimeout: 100 * time.Millisecond})
	c := rawConn(t, url)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err == nil {
		resp.Body.Close()
	}
	if err == nil && resp.StatusCode != 400 || time.Since(start) > 3*time.Second {
		t.Errorf("a body that never comes: %v %v after %v", resp, err, time.Since(start))
	}
}

func TestBodyBytesHeldBounded(t *testing.T) {
	f := newFake(t)
	rt, url := startRouter(t, Config{Backends: backends(f), HealthInterval: time.Hour, MaxBodyBytesHeld: 4 << 20})
	// A large body arriving slowly holds 2.25 MiB (and up to a quarter more).
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() {
		req, _ := http.NewRequest("POST", url+"/v1/chat/completions", pr)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	pw.Write([]byte(`{"model":"m","messages":[],"pad":"`))
	chunk := []byte(strings.Repeat("x", 64<<10))
	for held := 0; held < 9<<18; held += len(chunk) {
		pw.Write(chunk)
	}
	deadline := time.Now().Add(5 * time.Second)
	for rt.bodies.held.Load() < 9<<18 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	// Another large body does not fit in the three quarters large bodies
	// may take; an ordinary request still does.
	big := `{"model":"m","messages":[],"pad":"` + strings.Repeat("y", 1<<20) + `"}`
	if code, _ := completion(t, url, big); code != 503 {
		t.Errorf("a second large body: %d, want 503", code)
	}
	if code, _ := completion(t, url, `{"model":"m","messages":[]}`); code != 200 {
		t.Errorf("a small request beside held large bodies: %d", code)
	}
	pw.CloseWithError(io.ErrUnexpectedEOF)
	for rt.bodies.held.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if h := rt.bodies.held.Load(); h != 0 {
		t.Errorf("%d body bytes still counted after every request ended", h)
	}
}

func TestAPIKey(t *testing.T) {
	f := newFake(t)
	_, url := startRouter(t, Config{Backends: backends(f), HealthInterval: time.Hour, APIKey: "s3cret"})
	do := func(method, path, key string) (int, string) {
		req, _ := http.NewRequest(method, url+path, strings.NewReader(`{"model":"m","messages":[]}`))
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := do("GET", "/health", ""); code != 200 {
		t.Errorf("/health without a key: %d", code)
	}
	for _, path := range []string{"/v1/models", "/metrics", "/v1/workflows/stats"} {
		code, body := do("GET", path, "wrong")
		var e struct {
			Error struct {
				Message string `json:"message"`
				Code    int    `json:"code"`
			} `json:"error"`
		}
		if code != 401 || json.Unmarshal([]byte(body), &e) != nil || e.Error.Code != 401 {
			t.Errorf("%s with a wrong key: %d %s", path, code, body)
		}
	}
	if code, _ := do("POST", "/v1/chat/completions", "s3cret"); code != 200 || f.count() != 1 {
		t.Errorf("with the key: %d, backend saw %d", code, f.count())
	}
}
