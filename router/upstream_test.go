package router

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func testUpstream(maxConns int) *upstream {
	return newUpstream(time.Second, 5*time.Second, 90*time.Second, maxConns)
}

// connCounter counts the connections a test server accepts.
func connCounter(srv *httptest.Server) *atomic.Int64 {
	var n atomic.Int64
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			n.Add(1)
		}
	}
	return &n
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("body: %v", err)
	}
	return string(b)
}

// Answers framed by length, by chunks (with a trailer) and not at all
// (to the connection's end) all arrive whole; kept-alive connections are
// reused; the request arrives as sent, less the headers a backend must
// not get.
func TestUpstreamFraming(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get("X-Workflow-Id") != "" || r.Header.Get("Connection") != "" || r.Header.Get("Te") != "" {
			t.Errorf("forwarded %v", r.Header)
		}
		echo := fmt.Sprintf("%s %s %s %d %s %s", r.Method, r.URL.RequestURI(), r.Host, r.ContentLength, body, r.Header.Get("Authorization"))
		switch r.URL.Path {
		case "/api/length":
			io.WriteString(w, echo)
		case "/api/chunks":
			w.Header().Set("Trailer", "X-Sum")
			for i := 0; i < 3; i++ {
				io.WriteString(w, echo)
				w.(http.Flusher).Flush()
			}
			w.Header().Set("X-Sum", "3")
		case "/api/close":
			w.Header().Set("Connection", "close")
			io.WriteString(w, echo)
		case "/api/empty":
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	conns := connCounter(srv)
	srv.Start()
	defer srv.Close()
	u := testUpstream(0)
	defer u.closeIdle()
	base := srv.URL + "/api/"
	h := http.Header{"X-Workflow-Id": {"wf"}, "Connection": {"x"}, "Te": {"trailers"}, "Authorization": {"Bearer k"}}
	host := strings.TrimPrefix(srv.URL, "http://")
	for i := 0; i < 3; i++ {
		for _, c := range []struct{ path, want string }{
			{"length?q=1", "POST /api/length?q=1 " + host + " 2 {} Bearer k"},
			{"chunks", strings.Repeat("POST /api/chunks "+host+" 2 {} Bearer k", 3)},
			{"empty", ""},
		} {
			resp, err := u.do(context.Background(), strings.TrimSuffix(base, "/"), "POST", "/"+c.path, h, []byte("{}"))
			if err != nil {
				t.Fatal(err)
			}
			if got := readAll(t, resp); got != c.want {
				t.Fatalf("%s: %q, want %q", c.path, got, c.want)
			}
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for 9 sequential requests, want 1 kept alive", n)
	}
	resp, err := u.do(context.Background(), srv.URL+"/api", "GET", "/close", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, resp); got != "GET /api/close "+host+" 0  " {
		t.Fatalf("close: %q", got)
	}
	resp, err = u.do(context.Background(), srv.URL+"/api", "GET", "/length", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections, want a new one after Connection: close", n)
	}
}

// scripted is a backend that answers each connection with the script's
// next function (raw bytes on the wire).
func scripted(t *testing.T, script ...func(c net.Conn, r *bufio.Reader)) (url string, accepted *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted = &atomic.Int64{}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			k := int(accepted.Add(1)) - 1
			wg.Go(func() {
				defer c.Close()
				if k < len(script) {
					script[k](c, bufio.NewReader(c))
				}
			})
		}
	})
	return "http://" + ln.Addr().String(), accepted
}

// readRequest reads one request's head and body (Content-Length framed).
func readRequest(r *bufio.Reader) error {
	req, err := http.ReadRequest(r)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, req.Body)
	return err
}

// A kept-alive connection the backend closed is found stale when used:
// the request goes again, once, on a new connection. Informational
// answers are skipped, an HTTP/1.0 answer without length ends with its
// connection.
func TestUpstreamStaleConnection(t *testing.T) {
	url, accepted := scripted(t,
		func(c net.Conn, r *bufio.Reader) {
			readRequest(r)
			io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
			// then close without saying so: the connection looks reusable
		},
		func(c net.Conn, r *bufio.Reader) {
			readRequest(r)
			io.WriteString(c, "HTTP/1.0 200 OK\r\nX-A: b\r\n\r\nsecond")
		},
	)
	u := testUpstream(0)
	for _, want := range []string{"first", "second"} {
		resp, err := u.do(context.Background(), url, "POST", "/v1/chat/completions", nil, []byte(`{"a":1}`))
		if err != nil {
			t.Fatalf("%s: %v", want, err)
		}
		if got := readAll(t, resp); got != want {
			t.Fatalf("%q, want %q", got, want)
		}
		time.Sleep(50 * time.Millisecond) // the first connection's close arrives
	}
	if n := accepted.Load(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
}

// A backend that answers garbage, or closes a new connection without a
// byte, is an error (not retried: nothing says the backend did not act).
func TestUpstreamBadAnswers(t *testing.T) {
	for _, c := range []struct {
		name, answer, want string
	}{
		{"status", "HTP/1.1 200 OK\r\n\r\n", "malformed answer: version"},
		{"code", "HTTP/1.1 2x0 OK\r\n\r\n", "malformed answer: status code"},
		{"header", "HTTP/1.1 200 OK\r\nbad header\r\n\r\n", "malformed MIME header"},
		{"nothing", "", "EOF"},
		{"long head", "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", maxHeadBytes) + "\r\n\r\n", "over 65536 bytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			url, accepted := scripted(t, func(conn net.Conn, r *bufio.Reader) {
				readRequest(r)
				io.WriteString(conn, c.answer)
			})
			_, err := testUpstream(0).do(context.Background(), url, "POST", "/", nil, []byte("{}"))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
			if n := accepted.Load(); n != 1 {
				t.Fatalf("%d connections, want 1 (no retry on a new connection)", n)
			}
		})
	}
	// A long head that is well formed is read whole.
	url, _ := scripted(t, func(conn net.Conn, r *bufio.Reader) {
		readRequest(r)
		io.WriteString(conn, "HTTP/1.1 200 OK\r\nX-Big: "+strings.Repeat("a", 20000)+"\r\nContent-Length: 2\r\n\r\nok")
	})
	resp, err := testUpstream(0).do(context.Background(), url, "GET", "/", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, resp); got != "ok" || len(resp.Header.Get("X-Big")) != 20000 {
		t.Fatalf("body %q, header of %d bytes", got, len(resp.Header.Get("X-Big")))
	}
}

// Streams arrive as they are sent: a chunk is read before the backend
// sends the next.
func TestUpstreamStreams(t *testing.T) {
	next := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < 3; i++ {
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			<-next
		}
	}))
	defer srv.Close()
	resp, err := testUpstream(0).do(context.Background(), srv.URL, "POST", "/", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	for i := 0; i < 3; i++ {
		n, err := resp.Body.Read(buf)
		if err != nil || string(buf[:n]) != fmt.Sprintf("data: %d\n\n", i) {
			t.Fatalf("read %d: %q %v", i, buf[:n], err)
		}
		next <- struct{}{}
	}
	if _, err := io.ReadAll(resp.Body); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// At most maxConns connections per backend: the other requests wait for
// one, and every request is served.
func TestUpstreamMaxConns(t *testing.T) {
	var now, most atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := now.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(20 * time.Millisecond)
		now.Add(-1)
		io.WriteString(w, "ok")
	}))
	conns := connCounter(srv)
	srv.Start()
	defer srv.Close()
	u := testUpstream(2)
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Go(func() {
			resp, err := u.do(context.Background(), srv.URL, "GET", "/", nil, nil)
			if err != nil {
				t.Error(err)
				return
			}
			if got := readAll(t, resp); got != "ok" {
				t.Errorf("%q", got)
			}
		})
	}
	wg.Wait()
	if m, c := most.Load(), conns.Load(); m > 2 || c > 2 {
		t.Fatalf("%d requests at once over %d connections, want at most 2", m, c)
	}
	// A waiter whose context ends leaves the line.
	held, err := u.do(context.Background(), srv.URL, "GET", "/", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	held2, err := u.do(context.Background(), srv.URL, "GET", "/", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := u.do(ctx, srv.URL, "GET", "/", nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting past its context: %v", err)
	}
	readAll(t, held)
	readAll(t, held2)
	p, _ := u.pool(srv.URL)
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.waiters) != 0 || p.open != 2 || len(p.idle) != 2 {
		t.Fatalf("pool: %d waiters, %d open, %d idle", len(p.waiters), p.open, len(p.idle))
	}
}

// The request's context ends it while it waits for the answer's head and
// while it reads the body; a Close from another goroutine ends a read in
// flight; the first byte must come within the header timeout. None of
// these connections is reused.
func TestUpstreamCancel(t *testing.T) {
	release := make(chan struct{})
	var heads atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			return
		case "/head":
			heads.Add(1)
		case "/body":
			io.WriteString(w, "head")
			w.(http.Flusher).Flush()
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	u := testUpstream(0)

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(30*time.Millisecond, cancel)
	if _, err := u.do(ctx, srv.URL, "GET", "/head", nil, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled before the head: %v", err)
	}

	ctx, cancel = context.WithCancel(context.Background())
	resp, err := u.do(ctx, srv.URL, "GET", "/body", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if n, _ := resp.Body.Read(buf); string(buf[:n]) != "head" {
		t.Fatalf("%q", buf[:n])
	}
	time.AfterFunc(30*time.Millisecond, cancel)
	if _, err := resp.Body.Read(buf); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled in the body: %v", err)
	}
	resp.Body.Close()

	resp, err = u.do(context.Background(), srv.URL, "GET", "/body", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Read(buf)
	time.AfterFunc(30*time.Millisecond, func() { resp.Body.Close() })
	if _, err := resp.Body.Read(buf); !errors.Is(err, errUpstreamClosed) {
		t.Fatalf("closed in the body: %v", err)
	}

	// On a kept-alive connection, a timeout is not taken for a stale
	// connection: the request is not sent again.
	resp, err = u.do(context.Background(), srv.URL, "GET", "/ok", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	u.headerTimeout = 50 * time.Millisecond
	if _, err := u.do(context.Background(), srv.URL, "GET", "/head", nil, nil); err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("past the header timeout: %v", err)
	}
	if n := heads.Load(); n != 2 {
		t.Fatalf("the backend saw %d requests for /head, want 2 (one per call)", n)
	}
	p, _ := u.pool(srv.URL)
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle) != 0 || p.open != 0 {
		t.Fatalf("pool after cancellations: %d idle, %d open; want none", len(p.idle), p.open)
	}
}

// https backends: TLS, HTTP/1.1.
func TestUpstreamTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %v", r.Proto, r.TLS != nil)
	}))
	defer srv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	u := testUpstream(0)
	u.tlsConfig = &tls.Config{RootCAs: roots}
	for i := 0; i < 2; i++ {
		resp, err := u.do(context.Background(), srv.URL, "GET", "/", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, resp); got != "HTTP/1.1 true" {
			t.Fatalf("%q", got)
		}
	}
	if _, err := testUpstream(0).do(context.Background(), srv.URL, "GET", "/", nil, nil); err == nil {
		t.Fatal("an untrusted certificate was accepted")
	}
}
