package router

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The router under abuse runs in a process of its own, so that its memory
// is measured alone: BenchmarkAbuse starts this test binary again with
// WFSCHED_ABUSE_BACKEND set, and this "test" serves the router with its
// default limits on a loopback port it prints, until its stdin closes.
func TestAbuseRouterProcess(t *testing.T) {
	backend := os.Getenv("WFSCHED_ABUSE_BACKEND")
	if backend == "" {
		t.Skip("the router process of BenchmarkAbuse")
	}
	cfg := Config{Backends: []string{backend}, HealthInterval: time.Hour}
	rt, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	debug.SetMemoryLimit(MemoryCeiling(cfg)) // as wfsched router does
	debug.SetGCPercent(GCPercent)
	fmt.Printf("ceiling %d\n", MemoryCeiling(cfg))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("listening %s\n", ln.Addr())
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		io.Copy(io.Discard, os.Stdin) // the parent is gone when this ends
		cancel()
	}()
	rt.Serve(ctx, ln)
}

// rssMB reads a process's resident set (VmRSS) and peak (VmHWM) in MiB.
func rssMB(pid int) (rss, peak float64) {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 {
			kb, _ := strconv.ParseFloat(f[1], 64)
			switch f[0] {
			case "VmRSS:":
				rss = kb / 1024
			case "VmHWM:":
				peak = kb / 1024
			}
		}
	}
	return rss, peak
}

// abuse is one hostile client's behaviour, bounded in count and time; it
// returns a line saying what the router answered.
type abuse struct {
	name string
	run  func(ctx context.Context, base string) string
}

// codes counts answers by status (0: no answer: error or closed).
type codes struct {
	mu sync.Mutex
	m  map[int]int
}

func (c *codes) add(code int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[int]int{}
	}
	c.m[code]++
}

func (c *codes) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var keys []int
	for k := range c.m {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	var parts []string
	for _, k := range keys {
		name := strconv.Itoa(k)
		if k == 0 {
			name = "no answer"
		}
		parts = append(parts, fmt.Sprintf("%s x%d", name, c.m[k]))
	}
	return strings.Join(parts, ", ")
}

func post(ctx context.Context, hc *http.Client, url string, body io.Reader, c *codes, hdr ...string) {
	req, _ := http.NewRequestWithContext(ctx, "POST", url, body)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := hc.Do(req)
	if err != nil {
		c.add(0)
		return
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	c.add(resp.StatusCode)
}

// parallel runs f n times, k at a time, until done or ctx ends.
func parallel(ctx context.Context, n, k int, f func(i int)) {
	sem := make(chan struct{}, k)
	var wg sync.WaitGroup
	for i := 0; i < n && ctx.Err() == nil; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			f(i)
		}(i)
	}
	wg.Wait()
}

var abuses = []abuse{
	{"30 requests with 10 MiB agent and parent ids", func(ctx context.Context, base string) string {
		var c codes
		hc := &http.Client{}
		long := strings.Repeat("a", 10<<20)
		parallel(ctx, 30, 4, func(i int) {
			body := fmt.Sprintf(`{"model":"m","messages":[],"stream":true,"workflow_metadata":{"workflow_id":"w%d","agent_id":%q,"parent_request_id":%q}}`, i, long, long)
			post(ctx, hc, base+"/v1/chat/completions", strings.NewReader(body), &c)
		})
		return c.String()
	}},
	{"2 queues x 1000 messages of 1 MB", func(ctx context.Context, base string) string {
		var c codes
		hc := &http.Client{}
		payload := strings.Repeat("p", 1_000_000)
		parallel(ctx, 2000, 8, func(i int) {
			body := fmt.Sprintf(`{"source_agent":"s","target_agent":"t%d","payload":%q}`, i%2, payload)
			post(ctx, hc, base+"/v1/workflows/flood/messages", strings.NewReader(body), &c)
		})
		return c.String()
	}},
	{"8,000 connections that never finish their body", func(ctx context.Context, base string) string {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		addr := strings.TrimPrefix(base, "http://")
		failed := 0
		for i := 0; i < 8000 && ctx.Err() == nil; i++ {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				failed++
				continue
			}
			fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"model\":")
			conns = append(conns, c)
		}
		select { // hold them
		case <-ctx.Done():
		case <-time.After(5 * time.Second):
		}
		// How many did the router close (read: EOF or reset)?
		closed := 0
		for _, c := range conns {
			c.SetReadDeadline(time.Now().Add(time.Millisecond))
			if _, err := c.Read(make([]byte, 1)); err != nil && !isTimeout(err) {
				closed++
			}
		}
		return fmt.Sprintf("%d opened (%d dials failed), %d closed by the router while held", len(conns), failed, closed)
	}},
	{"16 concurrent 30 MB request bodies, repeated", func(ctx context.Context, base string) string {
		var c codes
		hc := &http.Client{}
		pad := strings.Repeat("x", 30<<20)
		parallel(ctx, 64, 16, func(i int) {
			body := `{"model":"m","messages":[],"stream":true,"pad":"` + pad + `"}`
			post(ctx, hc, base+"/v1/chat/completions", strings.NewReader(body), &c)
		})
		return c.String()
	}},
	{"900 KB workflow ids, duplicate metadata, bad long-poll timeouts", func(ctx context.Context, base string) string {
		var c codes
		hc := &http.Client{}
		huge := strings.Repeat("w", 900<<10)
		var echoed atomic.Int64
		parallel(ctx, 300, 8, func(i int) {
			switch i % 3 {
			case 0:
				req, _ := http.NewRequestWithContext(ctx, "POST", base+"/v1/chat/completions",
					strings.NewReader(fmt.Sprintf(`{"model":"m","messages":[],"workflow_metadata":{"workflow_id":%q}}`, huge)))
				resp, err := hc.Do(req)
				if err != nil {
					c.add(0)
					return
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				echoed.Store(max(echoed.Load(), n))
				c.add(resp.StatusCode)
			case 1:
				post(ctx, hc, base+"/v1/chat/completions", strings.NewReader(`{"workflow_metadata":{"workflow_id":"a"},"model":"m","messages":[],"workflow_metadata":{"workflow_id":"b"}}`), &c)
			case 2:
				q := []string{"Inf", "NaN", "1e10"}[i%9/3]
				resp, err := hc.Get(base + "/v1/workflows/w/agents/a/messages?timeout=" + q)
				if err != nil {
					c.add(0)
					return
				}
				resp.Body.Close()
				c.add(resp.StatusCode)
			}
		})
		return fmt.Sprintf("%s; largest error body %d bytes", c.String(), echoed.Load())
	}},
}

// BenchmarkAbuse attacks a router process (default limits, in front of an
// instant streaming backend) with each abuse in turn, bounded in count and
// time, on loopback only, while a well-behaved client sends a completion
// every 50 ms on a new connection. It reports, per abuse, the normal
// requests' success and latency and the router's memory; a few messages
// queued before the first abuse must all be there after the last.
//
//	go test ./router -run '^$' -bench Abuse -benchtime 1x
func BenchmarkAbuse(b *testing.B) {
	backend := instantBackend(b)
	cmd := exec.Command(os.Args[0], "-test.run=^TestAbuseRouterProcess$", "-test.v")
	cmd.Env = append(os.Environ(), "WFSCHED_ABUSE_BACKEND="+backend.URL)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	sc := bufio.NewScanner(stdout)
	base := ""
	ceiling := 0.0
	for sc.Scan() {
		if c, ok := strings.CutPrefix(sc.Text(), "ceiling "); ok {
			v, _ := strconv.ParseFloat(c, 64)
			ceiling = v / (1 << 20)
		}
		if addr, ok := strings.CutPrefix(sc.Text(), "listening "); ok {
			base = "http://" + addr
			break
		}
	}
	if base == "" {
		b.Fatal("the router process did not start")
	}
	go io.Copy(io.Discard, stdout)
	pid := cmd.Process.Pid
	startRSS, _ := rssMB(pid)

	// Accepted before the abuse: must survive it.
	const kept = 20
	for i := 0; i < kept; i++ {
		resp, err := http.Post(base+"/v1/workflows/keep/messages", "application/json",
			strings.NewReader(fmt.Sprintf(`{"source_agent":"s","target_agent":"k","payload":{"n":%d}}`, i)))
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("message %d: %v", i, err)
		}
		resp.Body.Close()
	}
	normal := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	for i := 0; i < b.N; i++ {
		for _, a := range abuses {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			var (
				mu        sync.Mutex
				lat       []time.Duration
				failures  int
				peakRSS   float64
				abuseDone = make(chan string, 1)
			)
			go func() { abuseDone <- a.run(ctx, base) }()
			tick := time.NewTicker(50 * time.Millisecond)
			var answer string
		probe:
			for k := 0; ; k++ {
				select {
				case answer = <-abuseDone:
					break probe
				case <-tick.C:
				}
				if r, _ := rssMB(pid); r > peakRSS {
					peakRSS = r
				}
				go func(k int) {
					t0 := time.Now()
					resp, err := normal.Post(base+"/v1/chat/completions", "application/json",
						strings.NewReader(fmt.Sprintf(`{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,"workflow_metadata":{"workflow_id":"normal-%d","agent_id":"a"}}`, k)))
					ok := err == nil
					if ok {
						out, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						ok = resp.StatusCode == 200 && string(out) == sse
					}
					mu.Lock()
					defer mu.Unlock()
					if ok {
						lat = append(lat, time.Since(t0))
					} else {
						failures++
					}
				}(k)
			}
			tick.Stop()
			cancel()
			time.Sleep(time.Second) // let the last probes finish
			rss, _ := rssMB(pid)
			mu.Lock()
			sort.Slice(lat, func(x, y int) bool { return lat[x] < lat[y] })
			var p50, worst time.Duration
			if len(lat) > 0 {
				p50, worst = lat[len(lat)/2], lat[len(lat)-1]
			}
			fmt.Printf("%s: router answered %s\n    normal requests: %d ok, %d failed, p50 %v, max %v; router RSS peak %.0f MiB, after %.0f MiB (start %.0f MiB)\n",
				a.name, answer, len(lat), failures, p50.Round(time.Microsecond), worst.Round(time.Microsecond), peakRSS, rss, startRSS)
			mu.Unlock()
		}
	}
	resp, err := http.Get(base + "/v1/workflows/keep/agents/k/messages?limit=1000")
	if err != nil {
		b.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if n := strings.Count(string(body), `"n":`); n != kept {
		b.Errorf("%d of the %d messages queued before the abuse are left", n, kept)
	}
	_, peak := rssMB(pid)
	fmt.Printf("router RSS peak over every abuse %.0f MiB; documented ceiling with the default limits %.0f MiB; %d of %d messages queued before the abuse left after it\n",
		peak, ceiling, strings.Count(string(body), `"n":`), kept)
	if peak > ceiling {
		b.Errorf("the router's RSS (%.0f MiB) went over its documented ceiling (%.0f MiB)", peak, ceiling)
	}
	b.ReportMetric(peak, "router-peak-MiB")
}
