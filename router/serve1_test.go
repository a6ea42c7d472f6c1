package router

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// heads are request heads the router's own HTTP/1.1 path takes or hands
// over; take says which.
var heads = []struct {
	head string
	take bool
}{
	{"POST /v1/chat/completions HTTP/1.1\r\nHost: r\r\nContent-Type: application/json\r\nX-Workflow-Id: wf-1\r\nContent-Length: 12\r\n\r\n", true},
	{"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1:8001\r\n\r\n", true},
	{"GET /workflows/a%20b/status?x=1&y=%2F HTTP/1.1\r\nHost: r\r\n\r\n", true},
	{"GET /a? HTTP/1.1\r\nHost: r\r\n\r\n", true},
	{"GET //double/slash HTTP/1.1\r\nHost: r\r\n\r\n", true},
	{"GET / HTTP/1.1\r\nhost: r\r\nx-workflow-id:  spaced \t\r\nACCEPT: */*\r\nX-Dup: 1\r\nX-dup: 2\r\n\r\n", true},
	{"GET / HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n", true},
	{"GET / HTTP/1.1\r\nHost: r\r\nConnection: keep-alive\r\nX-Obs: caf\xc3\xa9\r\n\r\n", true},
	{"GET / HTTP/1.1\r\nHost: r\r\nX-Empty:\r\n\r\n", true},
	// Handed over: net/http judges.
	{"GET / HTTP/1.0\r\nHost: r\r\n\r\n", false},
	{"POST / HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: chunked\r\n\r\n", false},
	{"POST / HTTP/1.1\r\nHost: r\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n", false},
	{"GET / HTTP/1.1\r\nHost: r\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", false},
	{"GET / HTTP/1.1\r\nHost: r\r\nX-Folded: a\r\n b\r\n\r\n", false},
	{"GET / HTTP/1.1\r\nHost : r\r\n\r\n", false},
	{"GET / HTTP/1.1\r\n\r\n", false},
	{"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", false},
	{"POST / HTTP/1.1\r\nHost: r\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", false},
	{"POST / HTTP/1.1\r\nHost: r\r\nContent-Length: +3\r\n\r\n", false},
	{"POST / HTTP/1.1\r\nHost: r\r\nContent-Length: 3x\r\n\r\n", false},
	// The cases of issue #30 and the smuggling classics: handed over,
	// so net/http refuses them.
	{"POST / HTTP/1.1\r\nHost: r\r\nContent-Length: -0\r\n\r\n", false},
	{"POST / HTTP/1.1\r\nHost: r\r\nContent-Length: -5\r\n\r\n", false},
	{"POST / HTTP/1.1\r\nHost: r\r\nContent-Length: 1_0\r\n\r\n", false},
	{"POST / HTTP/1.1\r\nHost: r\r\nContent-Length: 0x5\r\n\r\n", false},
	{"POST / HTTP/1.1\r\nHost: r\r\nContent-Length:\r\n\r\n", false},
	{"POST / HTTP/1.1\r\nHost: r\r\nContent-Length: 99999999999999999999\r\n\r\n", false},
	{"POST / HTTP/1.1\r\nHost: r\r\nContent-Length: 5, 5\r\n\r\n", false},
	{"POST / HTTP/1.1\r\nHost: r\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", false},
	{"POST / HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", false},
	{"POST / HTTP/1.1\r\nHost: r\r\nTransfer-Encoding:\tchunked\r\n\r\n", false},
	{"POST / HTTP/1.1\r\nHost: r\r\nTransfer-Encoding : chunked\r\n\r\n", false},
	{"POST / HTTP/1.1\r\nHost: r\r\nConnection: X-Foo\r\nX-Foo: secret\r\n\r\n", false},
	{"GET / HTTP/1.1\r\nHost: r\r\nX-A: a\rb\r\n\r\n", false},
	{"GET / HTTP/1.1\r\nHost: r\r\n X-Lead: a\r\n\r\n", false},
	{"POST / HTTP/1.1\r\nHost: r\r\nContent-Length: 00\r\n\r\n", true},
	{"GET http://r/ HTTP/1.1\r\nHost: r\r\n\r\n", false},
	{"GET * HTTP/1.1\r\nHost: r\r\n\r\n", false},
	{"GET /a#frag HTTP/1.1\r\nHost: r\r\n\r\n", false},
	{"GET / HTTP/1.1\r\nHost: r\r\nX-Bad: a\x00b\r\n\r\n", false},
	{"GET / HTTP/1.1\r\nHost: r/x\r\n\r\n", false},
	{"G(T / HTTP/1.1\r\nHost: r\r\n\r\n", false},
	{"GET  / HTTP/1.1\r\nHost: r\r\n\r\n", false},
}

// TestParseHead checks which heads the router takes, and that what it
// makes of one it takes is what net/http makes of it.
func TestParseHead(t *testing.T) {
	for _, tt := range heads {
		if end := headEnd([]byte(tt.head)); end != len(tt.head) {
			t.Errorf("%q: head ends at %d, want %d", tt.head, end, len(tt.head))
			continue
		}
		if _, ok := parseHead([]byte(tt.head)); ok != tt.take {
			t.Errorf("%q: taken %v, want %v", tt.head, ok, tt.take)
		}
		likeNetHTTP(t, []byte(tt.head))
	}
	for _, partial := range []string{"GET / HTTP/1.1\r\nHost: r\r\n", "GET / HTTP/1.1\r\n", "GET"} {
		if end := headEnd([]byte(partial)); end != 0 {
			t.Errorf("%q: a partial head ends at %d", partial, end)
		}
	}
	for _, bare := range []string{"GET / HTTP/1.1\nHost: r\n\n", "\r\nGET / HTTP/1.1\r\n\r\n"} {
		if end := headEnd([]byte(bare)); end != -1 {
			t.Errorf("%q: %d, want -1 (handed over)", bare, end)
		}
	}
}

// likeNetHTTP fails t if parseHead takes head and net/http reads it
// otherwise, or refuses it.
func likeNetHTTP(t *testing.T, head []byte) {
	t.Helper()
	got, ok := parseHead(head)
	if !ok {
		return
	}
	want, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
	if err != nil {
		t.Fatalf("%q: taken, but net/http refuses it: %v", head, err)
	}
	type view struct {
		Method, Proto, Host, RequestURI, URL string
		Path, RawPath, RawQuery              string
		ForceQuery, Close                    bool
		ContentLength                        int64
		Header                               http.Header
	}
	v := func(r *http.Request) view {
		return view{r.Method, r.Proto, r.Host, r.RequestURI, r.URL.String(), r.URL.Path, r.URL.RawPath, r.URL.RawQuery,
			r.URL.ForceQuery, r.Close, r.ContentLength, r.Header}
	}
	if d := cmp.Diff(v(want), v(got)); d != "" {
		t.Errorf("%q: read otherwise than net/http reads it (-net/http +router):\n%s", head, d)
	}
}

// FuzzParseHead holds the router's request parsing to net/http's on every
// head it takes.
func FuzzParseHead(f *testing.F) {
	for _, tt := range heads {
		f.Add([]byte(tt.head))
	}
	f.Fuzz(func(t *testing.T, head []byte) {
		if end := headEnd(head); end > 0 {
			likeNetHTTP(t, head[:end])
		}
	})
}

// TestParseFields checks the answer-side use: canonical keys, trimmed
// values, duplicates kept in order.
func TestParseFields(t *testing.T) {
	h, ok := parseFields("content-type: text/event-stream\r\nX-A:1\r\nx-a: 2 \r\nDate: now\r\n\r\n")
	want := http.Header{"Content-Type": {"text/event-stream"}, "X-A": {"1", "2"}, "Date": {"now"}}
	if !ok || !cmp.Equal(h, want) {
		t.Errorf("%v %v", ok, h)
	}
	if _, ok := parseFields("Bad Name: x\r\n\r\n"); ok {
		t.Error("a name with a space was taken")
	}
	if _, ok := parseFields("X-A: 1\r\n"); ok {
		t.Error("fields without their end were taken")
	}
}

// rawRouter starts a router and returns a raw connection to it and its
// fake backend.
func rawRouter(t *testing.T, cfg Config) (*Router, *fakeBackend, func() net.Conn) {
	t.Helper()
	f := newFake(t)
	cfg.Backends, cfg.HealthInterval = backends(f), time.Hour
	rt, url := startRouter(t, cfg)
	return rt, f, func() net.Conn {
		c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		return c
	}
}

func readResponses(t *testing.T, br *bufio.Reader, method string, n int) []*http.Response {
	t.Helper()
	var out []*http.Response
	for range n {
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("response %d: %v", len(out)+1, err)
		}
		if resp.StatusCode == http.StatusContinue {
			resp, err = http.ReadResponse(br, &http.Request{Method: method})
			if err != nil {
				t.Fatalf("response %d after 100 Continue: %v", len(out)+1, err)
			}
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("response %d body: %v", len(out)+1, err)
		}
		resp.Body = io.NopCloser(bytes.NewReader(b))
		out = append(out, resp)
	}
	return out
}

func bodyOf(r *http.Response) string {
	b, _ := io.ReadAll(r.Body)
	return string(b)
}

// TestHandOver sends, on one connection each, a request the router serves
// itself and then one it hands to net/http, then another: all three are
// answered, the connection is handed over once, and net/http serves it on.
func TestHandOver(t *testing.T) {
	body := wfBody("wf-h", "a", "hi")
	plain := fmt.Sprintf("POST /v1/chat/completions HTTP/1.1\r\nHost: r\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	odd := map[string]string{
		"HTTP/1.0": fmt.Sprintf("POST /v1/chat/completions HTTP/1.0\r\nHost: r\r\nConnection: keep-alive\r\nContent-Length: %d\r\n\r\n%s", len(body), body),
		"chunked":  fmt.Sprintf("POST /v1/chat/completions HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(body), body),
		"expect":   fmt.Sprintf("POST /v1/chat/completions HTTP/1.1\r\nHost: r\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n%s", len(body), body),
		"long":     fmt.Sprintf("POST /v1/chat/completions HTTP/1.1\r\nHost: r\r\nX-Pad: %s\r\nContent-Length: %d\r\n\r\n%s", strings.Repeat("p", 10<<10), len(body), body),
		"bare LF":  fmt.Sprintf("POST /v1/chat/completions HTTP/1.1\nHost: r\nContent-Length: %d\n\n%s", len(body), body),
	}
	for name, req := range odd {
		t.Run(name, func(t *testing.T) {
			rt, _, dial := rawRouter(t, Config{})
			c := dial()
			// All three at once: pipelined, the odd one mid-stream.
			if _, err := io.WriteString(c, plain+req+plain); err != nil {
				t.Fatal(err)
			}
			for i, resp := range readResponses(t, bufio.NewReader(c), "POST", 3) {
				if b := bodyOf(resp); resp.StatusCode != 200 || b != sse {
					t.Errorf("response %d: %d %q", i+1, resp.StatusCode, b)
				}
			}
			if n := rt.conns.handed.Load(); n != 1 {
				t.Errorf("handed over %d connections, want 1", n)
			}
		})
	}
}

// TestOwnServer checks what the router's HTTP/1.1 path answers itself:
// pipelined requests in order, HEAD without a body, Connection: close,
// short answers with their length, streams chunked, a body left unread.
func TestOwnServer(t *testing.T) {
	rt, f, dial := rawRouter(t, Config{})
	body := wfBody("wf-o", "a", "hi")
	post := fmt.Sprintf("POST /v1/chat/completions HTTP/1.1\r\nHost: r\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	c := dial()
	io.WriteString(c, post+"GET /health HTTP/1.1\r\nHost: r\r\n\r\n"+post+"GET /metrics HTTP/1.1\r\nHost: r\r\n\r\n")
	rs := readResponses(t, bufio.NewReader(c), "POST", 4)
	if rs[0].StatusCode != 200 || bodyOf(rs[0]) != sse || rs[2].StatusCode != 200 || bodyOf(rs[2]) != sse {
		t.Errorf("pipelined completions: %v %v", rs[0], rs[2])
	}
	// Longer than the buffer an answer's length is found in: chunked.
	if m := rs[3]; m.StatusCode != 200 || len(m.TransferEncoding) != 1 || !strings.Contains(bodyOf(m), "wfsched_router_connections_handed_over_total 0") {
		t.Errorf("metrics: %d %v", m.StatusCode, m.TransferEncoding)
	}
	if h := rs[1]; h.StatusCode != 200 || h.ContentLength <= 0 || h.Header.Get("Date") == "" || !strings.Contains(bodyOf(h), "ok") {
		t.Errorf("health: %d, length %d, %v", h.StatusCode, h.ContentLength, h.Header)
	}
	if f.count() != 2 {
		t.Errorf("backend saw %d completions, want 2", f.count())
	}

	c = dial()
	io.WriteString(c, "HEAD /health HTTP/1.1\r\nHost: r\r\n\r\nGET /health HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n")
	br := bufio.NewReader(c)
	head := readResponses(t, br, "HEAD", 1)[0]
	if head.StatusCode != 200 || bodyOf(head) != "" {
		t.Errorf("HEAD: %d %q", head.StatusCode, bodyOf(head))
	}
	last := readResponses(t, br, "GET", 1)[0]
	if last.StatusCode != 200 || !last.Close {
		t.Errorf("Connection: close was not answered with it: %v", last.Header)
	}
	if n, err := br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("after Connection: close the connection stays open: %d %v", n, err)
	}

	// A body the handler does not read (401 before it) is read past.
	key := Config{APIKey: "k"}
	_, _, dialKey := rawRouter(t, key)
	c = dialKey()
	io.WriteString(c, post+"GET /health HTTP/1.1\r\nHost: r\r\n\r\n")
	rs = readResponses(t, bufio.NewReader(c), "POST", 2)
	if rs[0].StatusCode != 401 || rs[1].StatusCode != 200 {
		t.Errorf("unread body: %d then %d", rs[0].StatusCode, rs[1].StatusCode)
	}
	if n := rt.conns.handed.Load(); n != 0 {
		t.Errorf("%d connections handed over", n)
	}
}

// TestHangupCancels checks that a client leaving while its request waits
// for the backend cancels the backend's request, on the router's own path.
func TestHangupCancels(t *testing.T) {
	rt, f, dial := rawRouter(t, Config{})
	f.hang.Store(true)
	body := wfBody("wf-x", "a", "hi")
	c := dial()
	fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: r\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	deadline := time.Now().Add(5 * time.Second)
	for rt.list()[0].inFlight.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the request never reached the backend")
		}
		time.Sleep(time.Millisecond)
	}
	c.Close()
	for rt.list()[0].inFlight.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the backend's request still runs after its client left")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if rt.conns.handed.Load() != 0 {
		t.Error("handed over")
	}
}

// TestHangupStopRace: the hang-up watch's goroutine may start only after
// its request has ended (a busy machine schedules it late). Its stop then
// comes first, and the watch must not undo it: an answer aborted mid-stream
// (its backend cut) must still close the client's connection, and a
// finished one's connection must still be closed at the idle timeout. The
// hook delays the watch past both ends.
func TestHangupStopRace(t *testing.T) {
	hook := func() { time.Sleep(300 * time.Millisecond) }
	hangupReadHook.Store(&hook)
	defer hangupReadHook.Store(nil)
	// A backend that sends a stream's first event, then after 100 ms (past
	// hangupCheck) either ends it or breaks it off.
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/chat/completions" {
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\" a\"}}]}\n\n")
		w.(http.Flusher).Flush()
		time.Sleep(100 * time.Millisecond)
		if r.Header.Get("X-Cut") != "" {
			c, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				c.Close()
			}
			return
		}
		io.WriteString(w, "data: [DONE]\n\n")
	}))
	defer backend.Close()
	rt, url := startRouter(t, Config{Backends: []string{backend.URL}, HealthInterval: time.Hour, ClientIdleTimeout: 400 * time.Millisecond})
	body := wfBody("wf-race", "a", "hi")
	for _, tc := range []struct {
		name, extra string
		cut         bool
	}{{"an answer cut mid-stream", "X-Cut: 1\r\n", true}, {"a whole answer, then idle", "", false}} {
		c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: r\r\n%sContent-Length: %d\r\n\r\n%s", tc.extra, len(body), body)
		start := time.Now()
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got, err := io.ReadAll(resp.Body)
		switch {
		case tc.cut && (err == nil || isTimeout(err)):
			t.Errorf("%s: read %q, then %v after %v: the connection was not closed", tc.name, got, err, time.Since(start))
		case !tc.cut && (err != nil || !bytes.HasSuffix(got, []byte("data: [DONE]\n\n"))):
			t.Errorf("%s: read %q, then %v", tc.name, got, err)
		}
		if !tc.cut {
			// The connection now idles: the server closes it at the idle
			// timeout, 400 ms, long before the client's deadline.
			if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
				t.Errorf("%s: read %d, %v after %v: the idle connection was not closed", tc.name, n, err, time.Since(start))
			}
		}
	}
	if cuts := rt.list()[0].cuts.Load(); cuts != 1 {
		t.Errorf("%d cut streams counted, want 1", cuts)
	}
}

// TestOwnServerTimeouts checks the bounds on a client that sends nothing:
// a new connection must send its request head within the header timeout,
// a kept-alive one may wait idle until the idle timeout.
func TestOwnServerTimeouts(t *testing.T) {
	_, _, dial := rawRouter(t, Config{HeaderTimeout: 200 * time.Millisecond, ClientIdleTimeout: 800 * time.Millisecond})
	closedWithin := func(c net.Conn, min, max time.Duration, what string) {
		t.Helper()
		start := time.Now()
		n, err := c.Read(make([]byte, 1))
		if took := time.Since(start); n != 0 || err != io.EOF || took < min || took > max {
			t.Errorf("%s: read %d %v after %v, want the end between %v and %v", what, n, err, took, min, max)
		}
	}
	silent, partial, kept := dial(), dial(), dial()
	start0 := time.Now()
	io.WriteString(partial, "GET /health HTTP/1.1\r\nHo")
	io.WriteString(kept, "GET /health HTTP/1.1\r\nHost: r\r\n\r\n")
	br := bufio.NewReader(kept)
	readResponses(t, br, "GET", 1)
	closedWithin(silent, 100*time.Millisecond, 700*time.Millisecond, "a connection that sends nothing")
	// A head cut short by the deadline gets net/http's 400, at the
	// deadline.
	if b, err := io.ReadAll(partial); string(b) != headTimedOut || err != nil || time.Since(start0) > 700*time.Millisecond {
		t.Errorf("a head that stops: %q %v after %v, want net/http's 400", b, err, time.Since(start0))
	}
	// kept has waited past the header timeout: still served.
	io.WriteString(kept, "GET /health HTTP/1.1\r\nHost: r\r\n\r\n")
	if r := readResponses(t, br, "GET", 1)[0]; r.StatusCode != 200 {
		t.Errorf("kept-alive connection: %d", r.StatusCode)
	}
	start := time.Now()
	if n, err := br.Read(make([]byte, 1)); n != 0 || err != io.EOF || time.Since(start) < 500*time.Millisecond {
		t.Errorf("idle connection: %d %v after %v", n, err, time.Since(start))
	}
	// The first head's deadline counts from the connection's start, not
	// from its first byte (sent here just before the deadline: counted
	// from it, the connection would last 1.9 s).
	_, _, dialSlow := rawRouter(t, Config{HeaderTimeout: time.Second})
	late := dialSlow()
	lateStart := time.Now()
	time.Sleep(900 * time.Millisecond)
	io.WriteString(late, "G")
	if b, _ := io.ReadAll(late); string(b) != headTimedOut || time.Since(lateStart) > 1500*time.Millisecond {
		t.Errorf("a first byte just before the deadline: %q after %v, want the 400 at about 1s", b, time.Since(lateStart))
	}
}

// TestWriteFields checks an answer's fields as the router writes them: as
// net/http would read them back, a bad name dropped, no line broken.
func TestWriteFields(t *testing.T) {
	h := http.Header{"Content-Type": {"text/event-stream"}, "X-A": {"1", " 2 "}, "Bad Name": {"x"},
		"X-Split": {"a\r\nX-Injected: 1"}, "X-Wfsched-Backend": {"http://127.0.0.1:8100"}}
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	bw.WriteString("HTTP/1.1 200 OK\r\n")
	writeFields(bw, h)
	bw.WriteString("Content-Length: 0\r\n\r\n")
	bw.Flush()
	resp, err := http.ReadResponse(bufio.NewReader(&buf), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := http.Header{"Content-Type": {"text/event-stream"}, "X-A": {"1", "2"}, "X-Split": {"a  X-Injected: 1"},
		"X-Wfsched-Backend": {"http://127.0.0.1:8100"}, "Content-Length": {"0"}}
	if d := cmp.Diff(want, resp.Header); d != "" {
		t.Errorf("fields read back (-want +got):\n%s", d)
	}
}

// TestServeListenerFails checks that Serve returns its listener's error,
// and nil once its context ends, with the router's own path and with
// net/http's server alone.
func TestServeListenerFails(t *testing.T) {
	f := newFake(t)
	for _, netHTTP := range []bool{false, true} {
		rt, err := New(Config{Backends: backends(f), HealthInterval: time.Hour, NetHTTPServer: netHTTP})
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln.Close()
		done := make(chan error, 1)
		go func() { done <- rt.Serve(context.Background(), ln) }()
		select {
		case err := <-done:
			if err == nil {
				t.Errorf("net/http only %v: Serve on a closed listener returned nil", netHTTP)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("net/http only %v: Serve on a closed listener did not return", netHTTP)
		}
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() { done <- rt.Serve(ctx, ln) }()
		if code, _ := completion(t, "http://"+ln.Addr().String(), wfBody("wf-s", "a", "x")); code != 200 {
			t.Errorf("net/http only %v: %d", netHTTP, code)
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("net/http only %v: Serve stopped with %v", netHTTP, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("net/http only %v: Serve did not stop", netHTTP)
		}
	}
}
