package router_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wfsched/wfsched/client"
	"github.com/wfsched/wfsched/dag"
	"github.com/wfsched/wfsched/router"
	"github.com/wfsched/wfsched/scheduler"
	"github.com/wfsched/wfsched/sim"
	"github.com/wfsched/wfsched/tokenizer"
)

// killableListener lets a test kill a server as kill -9 would, seen from
// the network: the listener and every connection close at once, mid-stream.
type killableListener struct {
	net.Listener
	mu     sync.Mutex
	conns  []*countingConn
	killed bool
	dead   atomic.Bool // every connection dies at its next write
}

// countingConn counts the bytes written since the connection last read
// (since its current request came in), and whether the last write ended a
// chunked body: past a response's headers and before its end, the server
// is mid-stream.
type countingConn struct {
	net.Conn
	l       *killableListener
	written atomic.Int64
	ended   atomic.Bool
}

// reset closes the connection as a dead process's is: with a reset.
func (c *countingConn) reset() {
	if tc, ok := c.Conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Conn.Close()
}

func (c *countingConn) Read(p []byte) (int, error) {
	c.written.Store(0)
	c.ended.Store(false)
	return c.Conn.Read(p)
}

func (c *countingConn) Write(p []byte) (int, error) {
	if c.l.dead.Load() {
		c.reset()
		return 0, net.ErrClosed
	}
	c.written.Add(int64(len(p)))
	c.ended.Store(bytes.HasSuffix(p, []byte("0\r\n\r\n")))
	return c.Conn.Write(p)
}

// streaming tells whether some connection is in the middle of a response,
// past its headers and first chunks.
func (l *killableListener) streaming() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		if c.written.Load() > 1500 && !c.ended.Load() {
			return true
		}
	}
	return false
}

func (l *killableListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.killed {
		c.Close()
		return nil, net.ErrClosed
	}
	cc := &countingConn{Conn: c, l: l}
	l.conns = append(l.conns, cc)
	return cc, nil
}

// kill stops the server as a crash would: no new connection, idle ones
// reset now, and those in the middle of a response reset at their next
// write, so the response breaks off mid-stream.
func (l *killableListener) kill() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.killed = true
	l.dead.Store(true)
	l.Listener.Close()
	for _, c := range l.conns {
		if c.written.Load() == 0 || c.ended.Load() {
			c.reset()
		}
	}
}

// engine starts one embedded engine on a killable loopback listener.
func engine(t *testing.T, ctx context.Context, seed uint64, scale float64, faults sim.Faults) (string, *killableListener, func()) {
	t.Helper()
	prof, err := sim.LoadProfile(sim.DefaultProfile)
	if err != nil {
		t.Fatal(err)
	}
	e, err := sim.New(sim.Config{Profile: prof, TimeScale: scale, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sim.NewServer(e, sim.ServerConfig{Faults: faults})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	kl := &killableListener{Listener: ln}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ctx, kl)
	}()
	return "http://" + ln.Addr().String(), kl, func() { cancel(); <-done }
}

// collect is a scheduler sink keeping every node result.
type collect struct {
	mu    sync.Mutex
	nodes []scheduler.NodeResult
	first chan struct{} // closed at the first result
	once  sync.Once
}

func (c *collect) Node(r scheduler.NodeResult) error {
	c.mu.Lock()
	c.nodes = append(c.nodes, r)
	c.mu.Unlock()
	c.once.Do(func() { close(c.first) })
	return nil
}

func (c *collect) Workflow(scheduler.WorkflowResult) error { return nil }

type chaosCase struct {
	scale     float64       // the engines' time scale
	timeout   time.Duration // per attempt: short where engines hang requests
	output    int           // output tokens of every call (0: the generated ones)
	faults    sim.Faults
	workflows int
	shape     string
	nodes     int
}

// chaos replays generated workflows through a router in front of two
// engines and kills the first engine while streams run on it. It returns
// the node results, the graph, and the router's stats at the end.
func chaos(t *testing.T, c chaosCase) ([]scheduler.NodeResult, *dag.Graph, router.Stats) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	enc, err := tokenizer.Default()
	if err != nil {
		t.Fatal(err)
	}
	g, err := dag.Generate(dag.GenConfig{Shape: c.shape, Nodes: c.nodes, Seed: 7}, enc)
	if err != nil {
		t.Fatal(err)
	}
	if c.output > 0 {
		for _, n := range g.Nodes {
			n.OutputTokens.N = c.output
		}
	}
	f2 := c.faults
	f2.Seed++
	urlA, killA, stopA := engine(t, ctx, 1, c.scale, c.faults)
	urlB, _, stopB := engine(t, ctx, 2, c.scale, f2)
	defer stopB()
	defer stopA()

	rt, err := router.New(router.Config{Backends: []string{urlA, urlB}, Logic: "roundrobin", HealthInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rctx, stopRouter := context.WithCancel(ctx)
	routerDone := make(chan error, 1)
	go func() { routerDone <- rt.Serve(rctx, ln) }()
	defer func() {
		stopRouter()
		if err := <-routerDone; err != nil {
			t.Errorf("router: %v", err)
		}
	}()

	transport := &http.Transport{MaxConnsPerHost: 64, MaxIdleConnsPerHost: 64}
	defer transport.CloseIdleConnections()
	cl, err := client.New(client.Config{BaseURL: "http://" + ln.Addr().String(), Model: "", MaxAttempts: 6,
		Backoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Timeout: c.timeout,
		HTTPClient: &http.Client{Transport: transport}})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Discover(ctx); err != nil {
		t.Fatal(err)
	}

	// Kill engine A, after some results, while it is mid-stream.
	sink := &collect{first: make(chan struct{})}
	killed := make(chan struct{})
	go func() {
		defer close(killed)
		select {
		case <-sink.first:
		case <-ctx.Done():
			return
		}
		for ctx.Err() == nil {
			if killA.streaming() {
				killA.kill()
				return
			}
			time.Sleep(200 * time.Microsecond)
		}
	}()
	res, err := scheduler.Run(ctx, scheduler.Config{Policy: scheduler.Parallel{}, Workflows: c.workflows, Concurrency: c.workflows, TimeScale: c.scale, Seed: 1},
		[]*dag.Graph{g}, cl, sink)
	<-killed
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if res.Nodes != c.workflows*len(g.Nodes) {
		t.Errorf("%d node results for %d workflows of %d nodes: some not accounted for", res.Nodes, c.workflows, len(g.Nodes))
	}
	// A request whose client gave up (a timeout on a hung engine) is
	// unwound by the router as soon as it sees the client gone: wait for
	// that, boundedly; a leaked in-flight count stays and fails the caller.
	st := rt.StatsNow()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); st = rt.StatsNow() {
		busy := int64(0)
		for _, b := range st.Backends {
			busy += b.InFlight
		}
		if busy == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return sink.nodes, g, st
}

// checkNoShortOK fails on any LLM node recorded ok that did not get its
// whole output: with ignore_eos the engine sends exactly the node's
// reference length on the final attempt, one token per chunk.
func checkNoShortOK(t *testing.T, nodes []scheduler.NodeResult, g *dag.Graph) (cuts int) {
	t.Helper()
	want := map[string]int{}
	for _, n := range g.Nodes {
		want[n.ID] = max(1, n.OutputTokens.N)
	}
	for _, r := range nodes {
		for _, a := range r.Attempts {
			if a.Cut {
				cuts++
			}
		}
		switch {
		case r.Kind != string(dag.KindLLM):
		case r.Status == scheduler.StatusOK:
			chunks := len(r.ITLS) + 1
			if r.CompletionTokens != want[r.Node] || chunks != want[r.Node] || !r.UsageReported || r.FinishReason != "length" {
				t.Errorf("%s/%s ok with %d tokens in %d chunks (want %d), usage %v, finish %q",
					r.Workflow, r.Node, r.CompletionTokens, chunks, want[r.Node], r.UsageReported, r.FinishReason)
			}
		case r.Status == scheduler.StatusFailed:
			if r.Error == "" || len(r.Attempts) == 0 {
				t.Errorf("%s/%s failed without a reason or attempts", r.Workflow, r.Node)
			}
		case r.Status == scheduler.StatusSkipped:
			if r.Error == "" {
				t.Errorf("%s/%s skipped without a reason", r.Workflow, r.Node)
			}
		default:
			t.Errorf("%s/%s: status %q", r.Workflow, r.Node, r.Status)
		}
	}
	return cuts
}

// TestBackendKilledMidStream kills an engine while it streams behind the
// router: every stream it was sending must reach the client as broken (not
// as a short success), be retried, and finish whole on the other engine.
func TestBackendKilledMidStream(t *testing.T) {
	// Long streams: the one the kill breaks is far from its end.
	// No engine hangs here: a long timeout, so that a slow machine (the
	// race detector, every package's tests at once) cannot fail a call.
	nodes, g, st := chaos(t, chaosCase{scale: 0.05, timeout: time.Minute, output: 300, workflows: 4, shape: "fanout", nodes: 12})
	cuts := checkNoShortOK(t, nodes, g)
	failed := 0
	for _, r := range nodes {
		if r.Status != scheduler.StatusOK {
			failed++
			if failed <= 3 {
				t.Logf("%s/%s %s: %s; attempts %+v", r.Workflow, r.Node, r.Status, r.Error, r.Attempts)
			}
		}
	}
	if failed != 0 {
		t.Errorf("%d nodes not ok: one engine left, every call should finish there", failed)
	}
	if cuts == 0 || st.Backends[0].CutStreams == 0 {
		t.Errorf("the kill cut no stream (client saw %d, router counted %d): the test did not test", cuts, st.Backends[0].CutStreams)
	}
}

// TestChaos runs engines that fail, hang and cut streams behind the router,
// kills one mid-run, and checks that every node is accounted for, no ok
// node is short, the router holds nothing afterwards, and no goroutine is
// left behind.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos run")
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	goroutines := runtime.NumGoroutine()

	faults := sim.Faults{ErrorRate: 0.08, CutRate: 0.08, HangRate: 0.01, Seed: 3}
	nodes, g, st := chaos(t, chaosCase{scale: 0.05, timeout: 3 * time.Second, faults: faults, workflows: 6, shape: "agents", nodes: 30})
	cuts := checkNoShortOK(t, nodes, g)
	if cuts == 0 {
		t.Error("no cut stream seen: the faults did not fire")
	}
	for _, b := range st.Backends {
		if b.InFlight != 0 {
			t.Errorf("backend %s: %d in flight after the run", b.URL, b.InFlight)
		}
	}
	if st.Messages.Pending != 0 {
		t.Errorf("%d messages pending", st.Messages.Pending)
	}
	nodes = nil

	// Everything the run started has stopped (engines, router, client
	// connections): goroutines return to where they were.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > goroutines && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > goroutines {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines left (from %d):\n%s", n-goroutines, goroutines, buf[:runtime.Stack(buf, true)])
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 32<<20 {
		t.Errorf("heap grew by %d MiB over the run and stayed", grew>>20)
	}
	fmt.Fprintf(testWriter{t}, "chaos: %d cut attempts, heap %d -> %d KiB", cuts, before.HeapAlloc>>10, after.HeapAlloc>>10)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// TestAuthorizationForwarded: the router passes a client's Authorization
// header to the backend unchanged, so an engine started with an API key (as
// vLLM's --api-key) serves the client that has it and refuses the others.
func TestAuthorizationForwarded(t *testing.T) {
	prof, err := sim.LoadProfile(sim.DefaultProfile)
	if err != nil {
		t.Fatal(err)
	}
	e, err := sim.New(sim.Config{Profile: prof, TimeScale: 0.01, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sim.NewServer(e, sim.ServerConfig{APIKey: "engine-key"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	eln, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(ctx, eln)
	rt, err := router.New(router.Config{Backends: []string{"http://" + eln.Addr().String()}, HealthInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	rln, _ := net.Listen("tcp", "127.0.0.1:0")
	go rt.Serve(ctx, rln)
	for _, tc := range []struct {
		key  string
		want bool
	}{{"engine-key", true}, {"", false}, {"other", false}} {
		cl, err := client.New(client.Config{BaseURL: "http://" + rln.Addr().String(), Model: e.Model(), APIKey: tc.key, MaxAttempts: 1})
		if err != nil {
			t.Fatal(err)
		}
		r := cl.Complete(ctx, scheduler.Call{Messages: []scheduler.Message{{Role: "user", Content: "hello"}}, MaxTokens: 4, IgnoreEOS: true})
		if ok := r.Err == nil; ok != tc.want || (!ok && r.Status != 401) || (ok && r.CompletionTokens != 4) {
			t.Errorf("key %q: err %v, status %d, %d tokens", tc.key, r.Err, r.Status, r.CompletionTokens)
		}
	}
}
