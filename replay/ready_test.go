package replay

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/wfsched/wfsched/sim"
)

// freeAddr is a loopback address nothing listens on (for now).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestWaitReady: a server that comes up after the command started is
// waited for; one that never does is reported by what went wrong, and
// "is the server running?" only when nothing listens.
func TestWaitReady(t *testing.T) {
	old := readyCheck
	readyCheck = 500 * time.Millisecond
	t.Cleanup(func() { readyCheck = old })
	t.Run("a server starting late", func(t *testing.T) {
		addr := freeAddr(t)
		go func() {
			time.Sleep(400 * time.Millisecond)
			c, err := sim.Start(context.Background(), sim.ClusterConfig{Instances: 1, Listen: addr})
			if err != nil {
				t.Error(err)
				return
			}
			t.Cleanup(func() { c.Close() })
		}()
		var log bytes.Buffer
		be, err := Start(context.Background(), Spec{Endpoints: []string{"http://" + addr}, WaitReady: 20 * time.Second, Log: &log})
		if err != nil {
			t.Fatalf("%v (%s)", err, log.String())
		}
		be.Close()
		if !strings.Contains(log.String(), "waiting up to 20s for http://"+addr) {
			t.Errorf("log %q: no word of the wait", log.String())
		}
	})
	hang := func() string { // accepts, never answers
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				t.Cleanup(func() { c.Close() })
			}
		}()
		return "http://" + ln.Addr().String()
	}
	answering := func(code int) string {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(code) }))
		t.Cleanup(s.Close)
		return s.URL
	}
	for _, c := range []struct {
		name, url, hint string
		notHint         string
	}{
		{"nothing listens", "http://" + freeAddr(t), "is the server running?", ""},
		{"accepts, never answers", hang(), "accepted the connection but did not answer", "is the server running"},
		{"not ready", answering(503), "up but not ready (503)", "is the server running"},
		{"not an OpenAI server", answering(404), "not as an OpenAI-compatible server", "is the server running"},
		{"a key wanted", answering(401), "wants an API key", "is the server running"},
	} {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			_, err := Start(context.Background(), Spec{Endpoints: []string{c.url}, WaitReady: 300 * time.Millisecond})
			var re *Error
			if !errors.As(err, &re) || !strings.Contains(re.Hint, c.hint) || c.notHint != "" && strings.Contains(re.Hint, c.notHint) {
				t.Fatalf("error %v, hint %q: want a hint with %q", err, hintOf(err), c.hint)
			}
			if d := time.Since(start); d < 300*time.Millisecond && c.name != "a key wanted" {
				t.Errorf("gave up after %v, before --wait-ready's 300ms", d)
			}
		})
	}
	t.Run("an endpoint's path", func(t *testing.T) {
		_, err := Start(context.Background(), Spec{Endpoints: []string{"http://127.0.0.1:8000/v1/chat/completions"}})
		var re *Error
		if !errors.As(err, &re) || !re.Usage || !strings.Contains(err.Error(), "give the server's base URL, http://127.0.0.1:8000") {
			t.Fatalf("%v", err)
		}
	})
}

func hintOf(err error) string {
	var re *Error
	if errors.As(err, &re) {
		return re.Hint
	}
	return ""
}
