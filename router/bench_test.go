package router

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// instantBackend answers every request at once with a short event stream,
// after reading its body.
func instantBackend(tb testing.TB) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, sse)
	}))
	tb.Cleanup(s.Close)
	return s
}

// BenchmarkProxyOverhead measures the latency the router adds (p50 and p99
// over sequential requests) and its throughput (parallel requests), next to
// a plain httputil.ReverseProxy and a direct call, against a backend that
// answers at once; the router also with net/http's server alone
// (--net-http-server) and, with redis-server installed, with its state in
// Redis (--state).
func BenchmarkProxyOverhead(b *testing.B) {
	backend := instantBackend(b)
	serve := func(h http.Handler) (string, func()) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		srv := &http.Server{Handler: h}
		go srv.Serve(ln)
		return "http://" + ln.Addr().String(), func() { srv.Close() }
	}
	// Routers serve as wfsched router does (Router.Serve): with their own
	// HTTP/1.1 path, and with net/http's server alone beside it.
	serveRouter := func(cfg Config) string {
		cfg.Backends, cfg.HealthInterval = []string{backend.URL}, time.Hour
		_, u, _ := startReplica(b, cfg)
		return u
	}
	target, _ := url.Parse(backend.URL)
	plain := httputil.NewSingleHostReverseProxy(target)
	plain.FlushInterval = -1
	routerURL := serveRouter(Config{})
	netHTTPURL := serveRouter(Config{NetHTTPServer: true})
	plainURL, stopP := serve(plain)
	defer stopP()
	body := `{"model":"m","messages":[{"role":"user","content":"hello there, a prompt of some length"}],"stream":true,"workflow_metadata":{"workflow_id":"wf-%d","agent_id":"a"}}`
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	call := func(base string, k int) {
		resp, err := hc.Post(base+"/v1/chat/completions", "application/json", strings.NewReader(fmt.Sprintf(body, k%1000)))
		if err != nil {
			panic(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	arms := []struct{ name, url string }{{"direct", backend.URL}, {"httputil", plainURL}, {"router", routerURL}, {"router-net-http", netHTTPURL}}
	// The router with its state shared in Redis, where redis-server is
	// installed: the cost of shared state, beside the rest.
	if srv, err := startRedisServer(""); err == nil {
		defer srv.stop()
		arms = append(arms, struct{ name, url string }{"router-redis", serveRouter(Config{State: srv.url()})})
	} else {
		b.Logf("no router-redis arm: %v", err)
	}
	for _, c := range arms {
		b.Run(c.name+"/latency", func(b *testing.B) {
			var lat []float64
			for i := 0; b.Loop(); i++ {
				start := time.Now()
				call(c.url, i)
				lat = append(lat, float64(time.Since(start).Microseconds()))
			}
			sort.Float64s(lat)
			b.ReportMetric(lat[len(lat)/2], "p50-us")
			b.ReportMetric(lat[len(lat)*99/100], "p99-us")
		})
		b.Run(c.name+"/throughput", func(b *testing.B) {
			var mu sync.Mutex
			k := 0
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					mu.Lock()
					k++
					i := k
					mu.Unlock()
					call(c.url, i)
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}

// BenchmarkTrackedWorkflows routes the first request of 100,000 workflows
// and reports the heap the router holds for them.
func BenchmarkTrackedWorkflows(b *testing.B) {
	for b.Loop() {
		rt, err := New(Config{Backends: []string{"http://a", "http://b", "http://c", "http://d"}, HealthInterval: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for i := 0; i < 100_000; i++ {
			r := &Request{Meta: &Metadata{WorkflowID: fmt.Sprintf("workflow-%06d", i), AgentID: "planner"}}
			pick := rt.Route(r).Backend
			rt.workflows.done(r.Meta.WorkflowID, 0, 1000, 900, true)
			if pick < 0 {
				b.Fatal("no backend")
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if rt.table.len() != 100_000 {
			b.Fatalf("%d workflows tracked", rt.table.len())
		}
		b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/(1<<20), "MiB")
		b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/100_000, "B/workflow")
		_ = context.Background()
	}
}

// BenchmarkParseCompletion measures reading what routing needs from a
// request body (stripping workflow_metadata), by body size.
func BenchmarkParseCompletion(b *testing.B) {
	for _, size := range []int{4 << 10, 1 << 20, 30 << 20} {
		body := []byte(fmt.Sprintf(`{"model":"m","messages":[{"role":"user","content":%q}],"stream":true,"workflow_metadata":{"workflow_id":"wf-1","agent_id":"a"}}`,
			strings.Repeat("x", size)))
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			buf := make([]byte, len(body))
			for i := 0; i < b.N; i++ {
				copy(buf, body)
				if _, req, err := parseCompletion(buf, http.Header{}); err != nil || req.Meta == nil {
					b.Fatal(err)
				}
			}
		})
	}
}
