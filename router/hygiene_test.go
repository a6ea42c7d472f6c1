package router

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// echoBackend records the requests it is sent and answers as its
// handler says.
type echoBackend struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []*http.Request
}

func newEchoBackend(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) *echoBackend {
	e := &echoBackend{}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path != "/health" {
			e.mu.Lock()
			e.reqs = append(e.reqs, r)
			e.mu.Unlock()
		}
		if answer != nil {
			answer(w, r)
		}
	}))
	t.Cleanup(e.Close)
	return e
}

func (e *echoBackend) requests() []*http.Request {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*http.Request(nil), e.reqs...)
}

// rawExchange sends raw to the router at url and reads one answer.
func rawExchange(t *testing.T, url, raw string) *http.Response {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, raw)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%q: %v", raw, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp
}

// bothServers runs f against the router's own server and net/http's.
func bothServers(t *testing.T, f func(t *testing.T, netHTTP bool)) {
	for _, netHTTP := range []bool{false, true} {
		t.Run(fmt.Sprintf("net-http-server=%v", netHTTP), func(t *testing.T) {
			t.Parallel()
			f(t, netHTTP)
		})
	}
}

// TestConnectionNamedFields: fields a message's Connection field names
// are hop-by-hop (RFC 9110 7.6.1) and are not forwarded, either way.
func TestConnectionNamedFields(t *testing.T) {
	bothServers(t, func(t *testing.T, netHTTP bool) {
		// The backend names its field beside "close" too: net/http's
		// reading drops a Connection field that says close, and the
		// fields it named must go with it.
		for _, conn := range []string{"X-Secret", "close, X-Secret"} {
			be := newEchoBackend(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Connection", conn)
				w.Header().Set("X-Secret", "backend's")
				w.Header().Set("X-Public", "p")
				io.WriteString(w, "{}")
			})
			_, url := startRouter(t, Config{Backends: []string{be.URL}, HealthInterval: time.Hour, NetHTTPServer: netHTTP})
			resp := rawExchange(t, url, "POST /v1/chat/completions HTTP/1.1\r\nHost: r\r\nConnection: X-Foo, keep-alive\r\n"+
				"X-Foo: client's\r\nX-Bar: ok\r\nContent-Length: 2\r\n\r\n{}")
			if resp.StatusCode != 200 || resp.Header.Get("X-Secret") != "" || resp.Header.Get("X-Public") != "p" {
				t.Errorf("Connection: %s: client got %d, X-Secret %q, X-Public %q: want 200, none, p", conn, resp.StatusCode, resp.Header.Get("X-Secret"), resp.Header.Get("X-Public"))
			}
			reqs := be.requests()
			if len(reqs) != 1 || reqs[0].Header.Get("X-Foo") != "" || reqs[0].Header.Get("X-Bar") != "ok" {
				t.Fatalf("backend got %d requests, the first with %v", len(reqs), reqs[0].Header)
			}
		}
	})
}

// TestForwardedFields: X-Forwarded-For gets the client's address (after
// what the client sent, or alone), and X-Forwarded-Host and -Proto are
// the router's unless a trusted front proxy set them.
func TestForwardedFields(t *testing.T) {
	for _, c := range []struct {
		mode, xff, host, proto string
	}{
		{"", "10.9.8.7, 127.0.0.1", "router.example", "http"},
		{ForwardedAppend, "10.9.8.7, 127.0.0.1", "router.example", "http"},
		{ForwardedReplace, "127.0.0.1", "router.example", "http"},
		{ForwardedTrust, "10.9.8.7, 127.0.0.1", "front.example", "https"},
	} {
		bothServers(t, func(t *testing.T, netHTTP bool) {
			be := newEchoBackend(t, nil)
			_, url := startRouter(t, Config{Backends: []string{be.URL}, HealthInterval: time.Hour, NetHTTPServer: netHTTP, Forwarded: c.mode})
			rawExchange(t, url, "POST /v1/chat/completions HTTP/1.1\r\nHost: router.example\r\nX-Forwarded-For: 10.9.8.7\r\n"+
				"X-Forwarded-Host: front.example\r\nX-Forwarded-Proto: https\r\nContent-Length: 2\r\n\r\n{}")
			reqs := be.requests()
			if len(reqs) != 1 {
				t.Fatalf("backend got %d requests", len(reqs))
			}
			h := reqs[0].Header
			if h.Get("X-Forwarded-For") != c.xff || h.Get("X-Forwarded-Host") != c.host || h.Get("X-Forwarded-Proto") != c.proto || len(h["X-Forwarded-For"]) != 1 {
				t.Errorf("mode %q: X-Forwarded-For %q, -Host %q, -Proto %q; want %q, %q, %q", c.mode,
					h["X-Forwarded-For"], h.Get("X-Forwarded-Host"), h.Get("X-Forwarded-Proto"), c.xff, c.host, c.proto)
			}
		})
	}
	if _, err := New(Config{Backends: []string{"http://b"}, Forwarded: "sometimes"}); err == nil || !strings.Contains(err.Error(), "append") {
		t.Errorf("a bad --forwarded: %v", err)
	}
}

// TestSignedContentLength: "Content-Length: -0" is not a length (net/http
// answers 400): the bytes after it must not reach a backend as a request.
func TestSignedContentLength(t *testing.T) {
	bothServers(t, func(t *testing.T, netHTTP bool) {
		be := newEchoBackend(t, nil)
		_, url := startRouter(t, Config{Backends: []string{be.URL}, HealthInterval: time.Hour, NetHTTPServer: netHTTP})
		for _, cl := range []string{"-0", "+0", "-5", " 0x5"} {
			resp := rawExchange(t, url, "POST /v1/chat/completions HTTP/1.1\r\nHost: r\r\nContent-Length: "+cl+"\r\n\r\n"+
				"helloGET /v1/second HTTP/1.1\r\nHost: r\r\n\r\n")
			if resp.StatusCode != 400 {
				t.Errorf("Content-Length %q: %d, want 400", cl, resp.StatusCode)
			}
		}
		for _, r := range be.requests() {
			t.Errorf("a backend got %s %s", r.Method, r.URL)
		}
	})
}

// streamer answers a stream of size bytes (0: until the client goes) and
// says on done when a stream ended, with how much it sent.
func streamer(done chan<- int) func(w http.ResponseWriter, r *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		size, _ := strconv.Atoi(r.URL.Query().Get("size"))
		chunk := bytes.Repeat([]byte("x"), 32<<10)
		w.Header().Set("Content-Type", "text/event-stream")
		sent := 0
		for (size == 0 || sent < size) && r.Context().Err() == nil {
			n := len(chunk)
			if size > 0 {
				n = min(n, size-sent)
			}
			if _, err := w.Write(chunk[:n]); err != nil {
				break
			}
			w.(http.Flusher).Flush()
			sent += n
		}
		done <- sent
	}
}

// stalledClient asks for an endless stream and reads nothing.
func stalledClient(t *testing.T, url string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).SetReadBuffer(4 << 10)
	t.Cleanup(func() { c.Close() })
	io.WriteString(c, "POST /v1/chat/completions?size=0 HTTP/1.1\r\nHost: r\r\nContent-Length: 2\r\n\r\n{}")
	return c
}

// TestWriteTimeout: a client that reads nothing of its stream is closed
// after the write timeout and its backend request cancelled; one that
// reads slowly gets its whole answer, on both servers.
func TestWriteTimeout(t *testing.T) {
	bothServers(t, func(t *testing.T, netHTTP bool) {
		done := make(chan int, 4)
		be := newEchoBackend(t, streamer(done))
		_, url := startRouter(t, Config{Backends: []string{be.URL}, HealthInterval: time.Hour, NetHTTPServer: netHTTP,
			WriteTimeout: 250 * time.Millisecond})
		start := time.Now()
		stalledClient(t, url)
		select {
		case <-done:
			if d := time.Since(start); d < 250*time.Millisecond {
				t.Errorf("the stalled client's stream ended after %v, before the write timeout", d)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a client that reads nothing still holds its stream after 10s (write timeout 250ms)")
		}
		// A slow reader: 64 KiB every 25 ms of a 6 MiB answer, so the
		// router's writes wait on a full send queue again and again. (The
		// kernel wakes a blocked writer only once a third of its queue
		// has drained; with the queues of this loopback that happens
		// within the timeout, so this passes on a write's own progress
		// too, without conn.Write's look at the acknowledged bytes.)
		const size = 6 << 20
		c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.(*net.TCPConn).SetReadBuffer(64 << 10)
		c.SetDeadline(time.Now().Add(30 * time.Second))
		fmt.Fprintf(c, "POST /v1/chat/completions?size=%d HTTP/1.1\r\nHost: r\r\nContent-Length: 2\r\n\r\n{}", size)
		resp, err := http.ReadResponse(bufio.NewReaderSize(c, 64<<10), nil)
		if err != nil {
			t.Fatal(err)
		}
		got, buf := 0, make([]byte, 64<<10)
		for {
			n, err := io.ReadFull(resp.Body, buf)
			got += n
			if err != nil {
				break
			}
			time.Sleep(25 * time.Millisecond)
		}
		if got != size {
			t.Errorf("a slow reader got %d of %d bytes", got, size)
		}
	})
}

// TestStalledWritersEvictable: at the connection limit, a client whose
// answer has waited for it to read for a second gives its place to a new
// client, as an idle one would.
func TestStalledWritersEvictable(t *testing.T) {
	bothServers(t, func(t *testing.T, netHTTP bool) {
		done := make(chan int, 4)
		be := newEchoBackend(t, streamer(done))
		rt, url := startRouter(t, Config{Backends: []string{be.URL}, HealthInterval: time.Hour, NetHTTPServer: netHTTP,
			MaxConns: 2, ReservedConns: 1, WriteTimeout: time.Minute})
		stalledClient(t, url)
		stalledClient(t, url)
		deadline := time.Now().Add(10 * time.Second)
		for {
			rt.conns.mu.Lock()
			victim := rt.conns.stalled()
			rt.conns.mu.Unlock()
			if victim != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("no stalled writer after 10s")
			}
			time.Sleep(50 * time.Millisecond)
		}
		resp := rawExchange(t, url, "POST /v1/chat/completions?size=100 HTTP/1.1\r\nHost: r\r\nContent-Length: 2\r\n\r\n{}")
		if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || len(b) != 100 {
			t.Errorf("a new client at the limit of stalled ones: %d, %d bytes", resp.StatusCode, len(b))
		}
		if n := rt.conns.evicted.Load(); n != 1 {
			t.Errorf("%d connections evicted, want 1", n)
		}
	})
}
