package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
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
		if s, err := strconv.ParseFloat(resp.Header.Get("X-Wfsched-Time-Scale"), 64); err == nil && s > 0 {
			ex.timeScale = s
		}
	}
	return resp, err
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
