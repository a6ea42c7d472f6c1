package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/wfsched/wfsched/internal/wire"
)

// extrasKey carries one request's additions through go-openai's context.
type extrasKey struct{}

// extras are what go-openai cannot express, and what the transport saw.
type extras struct {
	body    map[string]any // merged into the JSON body
	headers map[string]string

	status     int
	retryAfter time.Duration
	timeScale  float64
	// engine is set when the server (or the router in front of it) is
	// wfsched's engine, which sends exactly one output token per chunk.
	engine bool
	// backend is the server that answered: the router's X-Wfsched-Backend
	// header, "" when the response did not name one.
	backend  string
	timedOut bool
	// sse watches the body of an event stream for "data: [DONE]".
	sse *sseWatch
}

// doer is the HTTP client go-openai uses: it rewrites each request with its
// extras and records the response's status and headers.
type doer struct{ hc *http.Client }

func (d doer) Do(req *http.Request) (*http.Response, error) {
	ex, _ := req.Context().Value(extrasKey{}).(*extras)
	if ex != nil && req.Body != nil && len(ex.body) > 0 {
		body, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(body, &m); err != nil {
			return nil, fmt.Errorf("rewrite request body: %w", err)
		}
		for k, v := range ex.body {
			b, err := json.Marshal(v)
			if err != nil {
				return nil, fmt.Errorf("request field %s: %w", k, err)
			}
			m[k] = b
		}
		if body, err = json.Marshal(m); err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	if ex != nil {
		for k, v := range ex.headers {
			req.Header.Set(k, v)
		}
	}
	resp, err := d.hc.Do(req)
	if ex != nil && resp != nil {
		ex.status = resp.StatusCode
		ex.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"))
		ex.timeScale = 1
		ts := resp.Header.Get(wire.TimeScale)
		if s, err := strconv.ParseFloat(ts, 64); err == nil && s > 0 {
			ex.timeScale = s
		}
		ex.engine = ts != ""
		ex.backend = resp.Header.Get(wire.Backend)
		if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			ex.sse = &sseWatch{rc: resp.Body}
			resp.Body = ex.sse
		}
	}
	return resp, err
}

// sseWatch passes an event stream through and notes whether its "data:
// [DONE]" line arrived: go-openai reports the end of a stream as io.EOF
// whether or not the server finished it, so the client needs its own
// evidence that the stream was not cut.
type sseWatch struct {
	rc   io.ReadCloser
	line []byte // the current line's first bytes (a [DONE] line is short)
	long bool   // the current line is longer than any [DONE] line
	done bool
}

func (s *sseWatch) Read(p []byte) (int, error) {
	n, err := s.rc.Read(p)
	b := p[:n]
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		part := b
		if i >= 0 {
			part = b[:i]
		}
		if !s.long {
			if len(s.line)+len(part) > 32 {
				s.long = true
			} else {
				s.line = append(s.line, part...)
			}
		}
		if i < 0 {
			break
		}
		if !s.long && isDone(s.line) {
			s.done = true
		}
		s.line, s.long = s.line[:0], false
		b = b[i+1:]
	}
	return n, err
}

func (s *sseWatch) Close() error { return s.rc.Close() }

// isDone tells the "data: [DONE]" line, spaces allowed as go-openai does.
func isDone(line []byte) bool {
	v, ok := bytes.CutPrefix(bytes.TrimSpace(line), []byte("data:"))
	return ok && string(bytes.TrimSpace(v)) == "[DONE]"
}

// parseRetryAfter reads seconds or an HTTP date; 0 when absent or bad.
func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil && s >= 0 {
		return time.Duration(s * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, time.Until(t))
	}
	return 0
}

func withExtras(ctx context.Context, ex *extras) context.Context {
	return context.WithValue(ctx, extrasKey{}, ex)
}
