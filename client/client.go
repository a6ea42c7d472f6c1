package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	openai "github.com/sashabaranov/go-openai"
	"github.com/wfsched/wfsched/internal/wire"
	"github.com/wfsched/wfsched/scheduler"
)

// Defaults for Config's zero values.
const (
	DefaultTimeout     = 10 * time.Minute
	DefaultMaxAttempts = 4
	DefaultBackoff     = 250 * time.Millisecond
	DefaultMaxBackoff  = 10 * time.Second
	// DefaultMaxConns bounds the connections, so the calls in flight, to
	// one server: thousands of streams in one process (client, router and
	// embedded engines each holding a descriptor per call) would otherwise
	// exhaust the open-file limit. A vLLM server runs at most max_num_seqs
	// (256 by default) sequences at once, so the bound does not limit it.
	DefaultMaxConns = 2048
)

// Config configures a Client. The zero value of each field but BaseURL
// means its default.
type Config struct {
	// BaseURL is the server, with or without the /v1 suffix.
	BaseURL string
	// Model names the served model; "" asks the server (Discover).
	Model  string
	APIKey string
	// Timeout bounds one attempt; DefaultTimeout when 0.
	Timeout time.Duration
	// MaxAttempts bounds the tries of one call (1 = no retry).
	MaxAttempts int
	// Backoff is the first retry's base delay, doubled each retry up to
	// MaxBackoff, with full jitter; Retry-After, when longer, wins.
	Backoff, MaxBackoff time.Duration
	// NoStream asks for whole responses (TTFT is then E2E).
	NoStream bool
	// API is the endpoint calls go through: APIChat ("" too),
	// APICompletions or APIResponses.
	API string
	// Seed seeds the jitter.
	Seed uint64
	// MaxConns bounds the calls in flight, so the connections, to the
	// server (DefaultMaxConns when 0); further calls wait, by their
	// priority and then in order, and the wait counts in their TTFT as a
	// wait in the server's queue would.
	MaxConns int
	// HTTPClient is the transport; nil means one with no total timeout and
	// keep-alive pools sized for many concurrent calls.
	HTTPClient *http.Client
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.BaseURL == "" {
		return errors.New("no server URL")
	}
	if !strings.HasPrefix(c.BaseURL, "http://") && !strings.HasPrefix(c.BaseURL, "https://") {
		return fmt.Errorf("server URL %q: want http:// or https://", c.BaseURL)
	}
	for _, ep := range endpointPaths {
		if strings.HasSuffix(strings.TrimSuffix(c.BaseURL, "/"), ep) {
			return fmt.Errorf("server URL %q names an endpoint (%s): give the server's base URL, %s", c.BaseURL, ep,
				strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(c.BaseURL, "/"), ep), "/v1"))
		}
	}
	if c.Timeout < 0 || c.MaxAttempts < 0 || c.Backoff < 0 || c.MaxBackoff < 0 || c.MaxConns < 0 {
		return errors.New("timeouts, attempts, backoffs and connections must not be negative")
	}
	if err := CheckAPI(c.API); err != nil {
		return err
	}
	return nil
}

// endpointPaths are API paths a server URL given by mistake may end in.
var endpointPaths = []string{"/chat/completions", "/completions", "/responses", "/models", "/health"}

// Client sends measured chat completions to one server. It is safe for
// concurrent use.
type Client struct {
	cfg  Config
	base string // without /v1
	oa   *openai.Client
	hc   *http.Client

	mu     sync.Mutex
	rng    *rand.Rand
	gate   *gate
	chains chains // the Responses API's previous responses, per agent
}

var _ scheduler.Completer = (*Client)(nil)

// New returns a client for cfg.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.Backoff == 0 {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        4096,
			MaxIdleConnsPerHost: 4096,
			MaxConnsPerHost:     cfg.MaxConns,
			IdleConnTimeout:     90 * time.Second,
		}}
	}
	base := strings.TrimSuffix(strings.TrimSuffix(cfg.BaseURL, "/"), "/v1")
	oc := openai.DefaultConfig(cfg.APIKey)
	oc.BaseURL = base + "/v1"
	oc.HTTPClient = doer{hc: hc}
	return &Client{cfg: cfg, base: base, oa: openai.NewClientWithConfig(oc), hc: hc, rng: rand.New(rand.NewPCG(cfg.Seed, 0x636c69)), gate: newGate(cfg.MaxConns)}, nil
}

// BaseURL is the server's URL without /v1.
func (c *Client) BaseURL() string { return c.base }

// Model is the model the client asks for.
func (c *Client) Model() string { return c.cfg.Model }

// Health checks the server's /health (an OpenAI server without one is
// checked through /v1/models) and returns its time scale: the
// X-Wfsched-Time-Scale header of wfsched's engine and router, 1 for any
// other server.
func (c *Client) Health(ctx context.Context) (timeScale float64, err error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", c.base+"/health", nil)
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("cannot reach %s: %w", c.base, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	timeScale = 1
	if s, err := strconv.ParseFloat(resp.Header.Get(wire.TimeScale), 64); err == nil && s > 0 {
		timeScale = s
	}
	if resp.StatusCode == http.StatusNotFound {
		_, err := c.Models(ctx)
		return timeScale, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s/health answered %d", c.base, resp.StatusCode)
	}
	return timeScale, nil
}

// Models lists the served models.
func (c *Client) Models(ctx context.Context) ([]string, error) {
	list, err := c.oa.ListModels(ctx)
	if err != nil {
		return nil, fmt.Errorf("list models at %s: %w", c.base, err)
	}
	var ids []string
	for _, m := range list.Models {
		ids = append(ids, m.ID)
	}
	return ids, nil
}

// Discover sets the model to the server's first when none was given.
func (c *Client) Discover(ctx context.Context) error {
	if c.cfg.Model != "" {
		return nil
	}
	ids, err := c.Models(ctx)
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return fmt.Errorf("%s serves no model", c.base)
	}
	c.cfg.Model = ids[0]
	return nil
}

// Complete sends the call, retrying failed attempts, and measures it.
func (c *Client) Complete(ctx context.Context, call scheduler.Call) scheduler.CallResult {
	var attempts []scheduler.Attempt
	for k := 0; ; k++ {
		start := time.Now()
		res, ex := c.once(ctx, call)
		a := scheduler.Attempt{Start: start, Duration: time.Since(start), Status: ex.status, Backend: ex.backend}
		if a.Backend == "" && ex.status != 0 {
			a.Backend = c.base
		}
		if res.Err != nil {
			a.Err = res.Err.Error()
			var cut *CutError
			a.Cut = errors.As(res.Err, &cut)
			a.Timeout = ex.timedOut
		}
		attempts = append(attempts, a)
		res.Attempts = attempts
		if res.Err == nil || !retryable(ctx, ex.status) || k+1 >= c.cfg.MaxAttempts {
			return res
		}
		timer := time.NewTimer(c.backoff(k, ex.retryAfter))
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			res.Err = fmt.Errorf("%w (after %d attempts; last: %v)", ctx.Err(), k+1, res.Err)
			return res
		}
	}
}

// CutError is a response that began but did not finish. Its partial output
// is never taken as the call's result: the attempt failed and is retried.
type CutError struct {
	Chunks int    // output chunks that arrived
	Reason string // what was missing
	Err    error  // the read error, if the body broke off
}

func (e *CutError) Error() string {
	s := fmt.Sprintf("response cut after %d output chunks: %s", e.Chunks, e.Reason)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *CutError) Unwrap() error { return e.Err }

// backoff is the delay before retry k (0-based): full jitter over an
// exponentially growing cap, but never less than Retry-After.
func (c *Client) backoff(k int, retryAfter time.Duration) time.Duration {
	limit := c.cfg.Backoff << min(k, 20)
	limit = min(limit, c.cfg.MaxBackoff)
	c.mu.Lock()
	d := time.Duration(c.rng.Int64N(int64(limit) + 1))
	c.mu.Unlock()
	return max(d, retryAfter)
}

// retryable tells failures worth another try: 429, 5xx, connection errors,
// timeouts and cut streams, unless the caller gave up.
func retryable(ctx context.Context, status int) bool {
	if ctx.Err() != nil {
		return false
	}
	switch {
	case status == http.StatusTooManyRequests || status >= 500:
		return true
	case status >= 400:
		return false
	}
	return true // no status: connection error, timeout, cut stream
}

// once runs one attempt, once the gate lets it.
func (c *Client) once(ctx context.Context, call scheduler.Call) (scheduler.CallResult, *extras) {
	if err := c.gate.acquire(ctx, call.Priority); err != nil {
		return scheduler.CallResult{Err: err}, &extras{}
	}
	defer c.gate.release()
	ex := &extras{body: map[string]any{}, headers: map[string]string{}, timeScale: 1}
	for k, v := range call.Headers {
		ex.headers[k] = v
	}
	if call.Workflow != "" {
		ex.body["workflow_metadata"] = map[string]any{"workflow_id": call.Workflow, "agent_id": call.Agent, "workflow_priority": 1.0}
		ex.headers["X-Workflow-Id"], ex.headers["X-Agent-Id"] = call.Workflow, call.Agent
	}
	if call.Temperature != nil {
		ex.body["temperature"] = *call.Temperature
	}
	if call.IgnoreEOS {
		ex.body["ignore_eos"] = true
	}
	if call.MinTokens > 0 {
		ex.body["min_tokens"] = call.MinTokens
	}
	if call.Priority != 0 {
		ex.body["priority"] = call.Priority
	}
	actx, cancel := context.WithTimeout(withExtras(ctx, ex), c.cfg.Timeout)
	defer cancel()
	req := openai.ChatCompletionRequest{Model: c.cfg.Model, MaxTokens: call.MaxTokens}
	for _, m := range call.Messages {
		msg := openai.ChatCompletionMessage{Role: m.Role, Content: m.Content, ToolCallID: m.ToolCallID}
		for _, tc := range m.ToolCalls {
			args := tc.Arguments
			if args == "" {
				args = "{}"
			}
			msg.ToolCalls = append(msg.ToolCalls, openai.ToolCall{ID: tc.ID, Type: openai.ToolTypeFunction,
				Function: openai.FunctionCall{Name: tc.Name, Arguments: args}})
		}
		req.Messages = append(req.Messages, msg)
	}
	if call.Seed != nil {
		s := int(*call.Seed)
		req.Seed = &s
	}
	var res scheduler.CallResult
	switch {
	case c.cfg.API == APICompletions || c.cfg.API == APIResponses:
		res = c.viaHTTP(actx, call)
	case c.cfg.NoStream:
		res = c.whole(actx, req)
	default:
		res = c.stream(actx, req)
	}
	res.Status, res.TimeScale = ex.status, ex.timeScale
	if res.Err != nil && actx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
		res.Err = fmt.Errorf("timed out after %v: %w", c.cfg.Timeout, res.Err)
		ex.timedOut = true
	}
	return res, ex
}

func (c *Client) whole(ctx context.Context, req openai.ChatCompletionRequest) scheduler.CallResult {
	res := scheduler.CallResult{Start: time.Now()}
	resp, err := c.oa.CreateChatCompletion(ctx, req)
	res.E2E = time.Since(res.Start)
	res.TTFT = res.E2E
	if err != nil {
		var apiErr *openai.APIError
		var reqErr *openai.RequestError
		if ex, _ := ctx.Value(extrasKey{}).(*extras); ex != nil && ex.status == http.StatusOK && !errors.As(err, &apiErr) && !errors.As(err, &reqErr) {
			// A 200 whose body did not arrive whole or did not parse.
			err = &CutError{Reason: "the response body broke off or did not parse", Err: err}
		}
		res.Err = err
		return res
	}
	if len(resp.Choices) > 0 {
		res.Text = resp.Choices[0].Message.Content
		res.FinishReason = string(resp.Choices[0].FinishReason)
	}
	setUsage(&res, &resp.Usage)
	switch res.FinishReason {
	case "":
		res.Err = &CutError{Reason: "the response has no finish_reason"}
	case "abort":
		res.Err = &CutError{Reason: "the server aborted the request (finish_reason abort)"}
	}
	return res
}

func (c *Client) stream(ctx context.Context, req openai.ChatCompletionRequest) scheduler.CallResult {
	req.Stream = true
	req.StreamOptions = &openai.StreamOptions{IncludeUsage: true}
	res := scheduler.CallResult{Start: time.Now()}
	st, err := c.oa.CreateChatCompletionStream(ctx, req)
	if err != nil {
		res.E2E = time.Since(res.Start)
		res.Err = err
		return res
	}
	defer st.Close()
	ex, _ := ctx.Value(extrasKey{}).(*extras)
	o := outputs{res: &res}
	for {
		r, err := st.Recv()
		now := time.Now()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			res.E2E = now.Sub(res.Start)
			res.Err = &CutError{Chunks: o.chunks, Reason: "the stream broke off", Err: err}
			if ctx.Err() != nil {
				res.Err = fmt.Errorf("stream broke after %d chunks: %w", o.chunks, err)
			}
			res.Text = o.text.String()
			return res
		}
		if r.Usage != nil {
			setUsage(&res, r.Usage)
		}
		for _, ch := range r.Choices {
			o.output(now, ch.Delta.Content)
			if ch.FinishReason != "" {
				res.FinishReason = string(ch.FinishReason)
			}
		}
	}
	res.E2E = time.Since(res.Start)
	res.Text = o.text.String()
	if !res.UsageReported {
		res.CompletionTokens = o.chunks
	}
	if o.chunks == 0 {
		res.TTFT = res.E2E
	}
	res.Err = checkStream(ex, &res, o.chunks)
	return res
}

// outputs times the chunks that carry output: the first is the time to
// first token, the gaps between them the inter-token latencies.
type outputs struct {
	res    *scheduler.CallResult
	last   time.Time
	chunks int
	text   strings.Builder
}

func (o *outputs) output(now time.Time, delta string) {
	if delta == "" {
		return
	}
	if o.chunks == 0 {
		o.res.TTFT = now.Sub(o.res.Start)
	} else {
		o.res.ITL = append(o.res.ITL, now.Sub(o.last))
	}
	o.last = now
	o.chunks++
	o.text.WriteString(delta)
}

// checkStream tells a stream that ended cleanly from one that was cut: it
// must end with "data: [DONE]" and carry a finish reason, and on wfsched's
// engine, which sends one output token per chunk, as many chunks as its
// usage counts tokens. (Other servers may pack several tokens into one
// chunk or hold back a partial character, so the count is checked only
// where it is exact.)
func checkStream(ex *extras, res *scheduler.CallResult, chunks int) error {
	switch {
	case ex == nil || ex.sse == nil:
		return nil // not an event stream: go-openai already refused it
	case !ex.sse.done:
		return &CutError{Chunks: chunks, Reason: "the stream ended without data: [DONE]"}
	case res.FinishReason == "":
		return &CutError{Chunks: chunks, Reason: "the stream ended without a finish_reason"}
	case res.FinishReason == "abort":
		return &CutError{Chunks: chunks, Reason: "the server aborted the request (finish_reason abort)"}
	case ex.engine && res.UsageReported && res.CompletionTokens != chunks:
		return &CutError{Chunks: chunks, Reason: fmt.Sprintf("usage counts %d output tokens but %d arrived", res.CompletionTokens, chunks)}
	}
	return nil
}

func setUsage(res *scheduler.CallResult, u *openai.Usage) {
	res.UsageReported = true
	res.PromptTokens, res.CompletionTokens = u.PromptTokens, u.CompletionTokens
	if u.PromptTokensDetails != nil {
		n := u.PromptTokensDetails.CachedTokens
		res.CachedTokens = &n
	}
}
