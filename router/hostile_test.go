package router

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// hostileBackend is a backend that misbehaves in the ways a proxy must
// survive (issue #30), chosen per request by its X-Mode header. Its
// answers carry the id in the request body, so a client can tell its own
// answer from another's; forged answers carry the id "forged". It logs the
// id of every request it reads whole.
type hostileBackend struct {
	ln   net.Listener
	late chan struct{} // an unsolicited answer was sent on an idle connection

	mu   sync.Mutex
	seen map[string]int // request id: times read
}

// forged is an answer no client asked for.
const forged = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"id\":\"forged\"}"

func newHostileBackend(t *testing.T) *hostileBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hostileBackend{ln: ln, seen: map[string]int{}, late: make(chan struct{}, 64)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go h.serve(c)
		}
	}()
	return h
}

func (h *hostileBackend) url() string { return "http://" + h.ln.Addr().String() }

func (h *hostileBackend) times(id string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.seen[id]
}

func (h *hostileBackend) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for n := 0; ; { // n: completions read on this connection
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		mode := req.Header.Get("X-Mode")
		if mode == "stall-read" { // reads the head, then nothing more
			time.Sleep(5 * time.Second)
			return
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return
		}
		if req.URL.Path == "/health" {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
			continue
		}
		n++
		id := strings.TrimSuffix(strings.TrimPrefix(string(body), `{"id":"`), `"}`)
		h.mu.Lock()
		h.seen[id]++
		h.mu.Unlock()
		answer := fmt.Sprintf(`{"id":%q}`, id)
		ok := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(answer), answer)
		switch mode {
		case "extra": // more bytes than the answer framed: a whole answer
			io.WriteString(c, ok+forged)
		case "late-extra": // an answer, then one more while the connection idles
			io.WriteString(c, ok)
			time.Sleep(10 * time.Millisecond)
			io.WriteString(c, forged)
			h.late <- struct{}{}
		case "204-body":
			io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n"+forged)
		case "conflicting-lengths":
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Length: %d\r\n\r\n%s%s", len(answer), len(answer)+len(forged), answer, forged)
		case "signed-length":
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: +%d\r\n\r\n%s", len(answer), answer)
		case "cl-te": // chunked for a reader of codings, longer for one of lengths
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n%s",
				len(answer)+200, len(answer), answer, forged)
		case "chunked-gzip":
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(answer), answer)
		case "close-second": // reads a connection's second completion whole, then closes
			if n > 1 {
				return
			}
			io.WriteString(c, ok)
		default:
			io.WriteString(c, ok)
		}
	}
}

// TestHostileBackend sends clients one by one and then together through
// the router (both of its servers) to a backend misbehaving in each way:
// every client gets exactly its own answer, or a 502 or 504, never
// another's bytes, and no request reaches the backend twice.
func TestHostileBackend(t *testing.T) {
	for _, c := range []struct {
		mode     string
		want     int  // the status every client gets
		parallel bool // also 8 clients at once
	}{
		{"none", 200, true},
		{"extra", 200, true},
		// The next request goes once the extra answer is on the idle
		// connection: sent before, it would be that request's answer
		// (Go's Transport cannot tell either).
		{"late-extra", 200, false},
		{"204-body", 204, true},
		{"conflicting-lengths", 502, true},
		{"signed-length", 502, true},
		{"cl-te", 200, true},
		{"chunked-gzip", 502, true},
		{"close-second", 0, false},
		{"stall-read", 504, true},
	} {
		for _, netHTTP := range []bool{false, true} {
			name := c.mode
			if netHTTP {
				name += "/net-http-server"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				be := newHostileBackend(t)
				rt, url := startRouter(t, Config{Backends: []string{be.url()}, HealthInterval: time.Hour,
					FirstByteTimeout: 300 * time.Millisecond, NetHTTPServer: netHTTP})
				ask := func(id string) (int, string) {
					req, _ := http.NewRequest("POST", url+"/v1/chat/completions", strings.NewReader(`{"id":"`+id+`"}`))
					req.Header.Set("X-Mode", c.mode)
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Errorf("%s: %v", id, err)
						return 0, ""
					}
					defer resp.Body.Close()
					b, _ := io.ReadAll(resp.Body)
					return resp.StatusCode, string(b)
				}
				check := func(id string, code int, body string) {
					if strings.Contains(body, "forged") || code == 200 && body != `{"id":"`+id+`"}` {
						t.Errorf("%s: %d %q: another answer than its own", id, code, body)
						return
					}
					want := c.want
					if c.mode == "close-second" && code == 200 {
						want = 200 // the first request on each connection is answered
					} else if c.mode == "close-second" {
						want = 502
					}
					if code != want {
						t.Errorf("%s: %d %q, want %d", id, code, body, want)
					}
				}
				for k := range 8 {
					id := fmt.Sprintf("seq-%d", k)
					code, body := ask(id)
					check(id, code, body)
					if c.mode == "late-extra" {
						select {
						case <-be.late:
						case <-time.After(10 * time.Second):
							t.Fatal("the backend sent no late answer")
						}
					}
				}
				if c.parallel {
					var wg sync.WaitGroup
					for k := range 8 {
						wg.Go(func() {
							id := fmt.Sprintf("par-%d", k)
							code, body := ask(id)
							check(id, code, body)
						})
					}
					wg.Wait()
				}
				for k := range 8 {
					for _, id := range []string{fmt.Sprintf("seq-%d", k), fmt.Sprintf("par-%d", k)} {
						if n := be.times(id); n > 1 {
							t.Errorf("%s reached the backend %d times", id, n)
						}
					}
				}
				if c.mode == "close-second" {
					if n := be.times("seq-1"); n != 1 {
						t.Errorf("the POST the backend read and dropped reached it %d times, want once", n)
					}
				}
				if c.mode == "extra" || c.mode == "late-extra" || c.mode == "204-body" {
					if rt.up.unsolicitedAnswers.Load() == 0 {
						t.Error("no unsolicited answer counted")
					}
				}
			})
		}
	}
}
