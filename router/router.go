package router

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Defaults of Config's zero values.
const (
	DefaultLogic              = "workflow-aware"
	DefaultFallback           = "least-loaded"
	DefaultLoadFactor         = 1.25
	DefaultWorkflowTTL        = time.Hour
	DefaultMaxWorkflows       = 100_000
	DefaultMaxConnsPerBackend = 1024 // four times vLLM's default max_num_seqs
	DefaultMaxQueueSize       = 1000
	DefaultMaxQueues          = 10_000
	DefaultMaxPayloadBytes    = 1 << 20
	DefaultMessageTTL         = 300 * time.Second
	DefaultMaxBodyBytes       = 32 << 20
	DefaultConnectTimeout     = 5 * time.Second
	DefaultFirstByteTimeout   = 10 * time.Minute
	DefaultIdleTimeout        = 5 * time.Minute
	DefaultHealthInterval     = 2 * time.Second
	MaxLongPoll               = 60 * time.Second
)

// Config configures a Router. The zero value of each field but Backends
// means its default.
type Config struct {
	Backends      []string // base URLs, with or without /v1
	Logic         string   // a name from Logics
	FallbackLogic string   // for requests without a workflow id
	LoadFactor    float64  // bounded-load factor (1 + epsilon), > 1
	WorkflowTTL   time.Duration
	MaxWorkflows  int
	MaxQueueSize  int // messages per (workflow, agent) queue
	MaxQueues     int // queues holding messages
	MaxPayload    int64
	MessageTTL    time.Duration
	MaxBodyBytes  int64
	// Timeouts: connecting to a backend, waiting for its response headers
	// (the first byte), and between two reads of its body. There is no
	// total timeout: streams last as long as they produce.
	ConnectTimeout, FirstByteTimeout, IdleTimeout time.Duration
	HealthInterval                                time.Duration
	// MaxConnsPerBackend bounds the connections to each backend
	// (DefaultMaxConnsPerBackend when 0); requests beyond it wait in the
	// router for one instead of exhausting file descriptors.
	MaxConnsPerBackend int
	// Models, when set, is what /v1/models lists instead of asking the
	// backends (the design's --static-models).
	Models []string
	Now    func() time.Time // nil: time.Now
}

func (c *Config) setDefaults() {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if c.Logic == "" {
		c.Logic = DefaultLogic
	}
	if c.FallbackLogic == "" {
		c.FallbackLogic = DefaultFallback
	}
	if c.LoadFactor == 0 {
		c.LoadFactor = DefaultLoadFactor
	}
	def(&c.WorkflowTTL, DefaultWorkflowTTL)
	def(&c.MessageTTL, DefaultMessageTTL)
	def(&c.ConnectTimeout, DefaultConnectTimeout)
	def(&c.FirstByteTimeout, DefaultFirstByteTimeout)
	def(&c.IdleTimeout, DefaultIdleTimeout)
	def(&c.HealthInterval, DefaultHealthInterval)
	if c.MaxWorkflows == 0 {
		c.MaxWorkflows = DefaultMaxWorkflows
	}
	if c.MaxConnsPerBackend == 0 {
		c.MaxConnsPerBackend = DefaultMaxConnsPerBackend
	}
	if c.MaxQueueSize == 0 {
		c.MaxQueueSize = DefaultMaxQueueSize
	}
	if c.MaxQueues == 0 {
		c.MaxQueues = DefaultMaxQueues
	}
	if c.MaxPayload == 0 {
		c.MaxPayload = DefaultMaxPayloadBytes
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if len(c.Backends) == 0 {
		return errors.New("no backend: give at least one server URL")
	}
	for _, b := range c.Backends {
		if !strings.HasPrefix(b, "http://") && !strings.HasPrefix(b, "https://") {
			return fmt.Errorf("backend %q: want an http:// or https:// URL", b)
		}
	}
	if _, err := newLogic(c.Logic); c.Logic != "" && err != nil {
		return err
	}
	if fb := normalizeLogic(c.FallbackLogic); fb == "workflow-aware" {
		return errors.New("the fallback logic cannot be workflow-aware: it serves requests without a workflow")
	} else if _, err := newLogic(fb); c.FallbackLogic != "" && err != nil {
		return fmt.Errorf("fallback: %w", err)
	}
	if c.LoadFactor != 0 && c.LoadFactor <= 1 {
		return fmt.Errorf("load factor %v: want more than 1 (1.25 lets a backend take 25%% more than the average)", c.LoadFactor)
	}
	if c.WorkflowTTL < 0 || c.MaxWorkflows < 0 || c.MaxQueueSize < 0 || c.MaxQueues < 0 || c.MaxPayload < 0 || c.MessageTTL < 0 {
		return errors.New("limits and TTLs must not be negative")
	}
	return nil
}

// Router is the workflow-affinity reverse proxy. It is an http.Handler;
// Run drives its health checks and sweeps.
type Router struct {
	cfg       Config
	backends  []*backend
	ring      *ring
	logic     Logic
	fallback  Logic
	workflows *workflowTable
	mail      *mailboxes
	transport *http.Transport
	mux       *http.ServeMux
	reg       *prometheus.Registry
	m         *routerMetrics
	tie       atomic.Uint64
}

// New returns a router for cfg. Backends start healthy; Run checks them.
func New(cfg Config) (*Router, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	logic, _ := newLogic(cfg.Logic)
	fallback, _ := newLogic(cfg.FallbackLogic)
	rt := &Router{cfg: cfg, logic: logic, fallback: fallback, mux: http.NewServeMux(), reg: prometheus.NewRegistry()}
	var urls []string
	for _, u := range cfg.Backends {
		u = strings.TrimSuffix(strings.TrimSuffix(u, "/"), "/v1")
		b := &backend{url: u, prefix: newPrefixIndex(200_000)}
		b.healthy.Store(true)
		b.timeScale.Store("")
		rt.backends = append(rt.backends, b)
		urls = append(urls, u)
	}
	rt.ring = newRing(urls)
	rt.workflows = newWorkflowTable(rt.backends, cfg.WorkflowTTL, cfg.MaxWorkflows, cfg.Now)
	rt.mail = newMailboxes(cfg.MaxQueueSize, cfg.MaxQueues, cfg.MessageTTL, cfg.Now)
	rt.transport = &http.Transport{
		Proxy:                 nil, // backends are addressed directly
		DialContext:           (&net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: 30 * time.Second}).DialContext,
		ResponseHeaderTimeout: cfg.FirstByteTimeout,
		MaxIdleConns:          4096,
		MaxIdleConnsPerHost:   4096,
		MaxConnsPerHost:       cfg.MaxConnsPerBackend,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true, // pass bytes through as they are
	}
	rt.m = newRouterMetrics(rt)
	rt.mux.HandleFunc("POST /v1/chat/completions", rt.proxy)
	rt.mux.HandleFunc("POST /v1/completions", rt.proxy)
	rt.mux.HandleFunc("GET /v1/models", rt.models)
	rt.mux.HandleFunc("GET /health", rt.health)
	rt.mux.Handle("GET /metrics", promhttp.HandlerFor(rt.reg, promhttp.HandlerOpts{}))
	rt.mux.HandleFunc("GET /v1/workflows/stats", rt.stats)
	rt.mux.HandleFunc("GET /v1/workflows/{id}/status", rt.status)
	rt.mux.HandleFunc("DELETE /v1/workflows/{id}", rt.deleteWorkflow)
	rt.mux.HandleFunc("POST /v1/workflows/{id}/messages", rt.postMessage)
	rt.mux.HandleFunc("GET /v1/workflows/{id}/agents/{agent}/messages", rt.getMessages)
	return rt, nil
}

// Logic is the routing logic's name.
func (rt *Router) Logic() string { return rt.logic.Name() }

// ServeHTTP implements http.Handler.
func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) { rt.mux.ServeHTTP(w, r) }

// Run checks the backends' health periodically and sweeps idle workflows
// and old messages until ctx is done. Serve runs it after a first check.
func (rt *Router) Run(ctx context.Context) {
	health := time.NewTicker(rt.cfg.HealthInterval)
	defer health.Stop()
	sweepEvery := min(max(rt.cfg.WorkflowTTL/10, time.Second), 30*time.Second)
	sweep := time.NewTicker(sweepEvery)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-health.C:
			rt.checkHealth(ctx)
		case <-sweep.C:
			rt.workflows.sweep()
			rt.mail.sweep()
		}
	}
}

// checkHealth probes every backend's /health: two failures in a row mark it
// down (one, on the first check, when nothing is known yet), one success up
// again. Probes never touch in-flight counts.
func (rt *Router) checkHealth(ctx context.Context) {
	rt.checkHealthN(ctx, 2)
}

func (rt *Router) checkHealthN(ctx context.Context, downAfter int64) {
	for _, b := range rt.backends {
		hctx, cancel := context.WithTimeout(ctx, min(rt.cfg.HealthInterval, 2*time.Second))
		req, _ := http.NewRequestWithContext(hctx, "GET", b.url+"/health", nil)
		resp, err := rt.transport.RoundTrip(req)
		ok := err == nil && resp.StatusCode == http.StatusOK
		if resp != nil {
			b.timeScale.Store(resp.Header.Get("X-Wfsched-Time-Scale"))
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		if ok {
			b.fails.Store(0)
			b.healthy.Store(true)
		} else if b.fails.Add(1) >= downAfter {
			b.healthy.Store(false)
		}
	}
}

// Serve serves on ln until ctx is done.
func (rt *Router) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{Handler: rt, ReadHeaderTimeout: 10 * time.Second}
	rt.checkHealthN(ctx, 1) // serve with the backends' state known
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		rt.Run(runCtx)
	}()
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
		shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if hs.Shutdown(shut) != nil {
			hs.Close()
		}
		cancel()
		err = <-errc
	}
	stop()
	<-done
	rt.transport.CloseIdleConnections()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// apiError answers with OpenAI's error JSON.
func apiError(w http.ResponseWriter, status int, format string, args ...any) {
	var body struct {
		Error struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Param   *string `json:"param"`
			Code    int     `json:"code"`
		} `json:"error"`
	}
	body.Error.Message, body.Error.Type, body.Error.Code = fmt.Sprintf(format, args...), http.StatusText(status), status
	writeJSON(w, status, body)
}

// hopHeaders are not forwarded (RFC 9110 connection-specific fields), nor
// are the workflow headers the router consumes.
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9._:@/+-]{1,256}$`)

// proxy routes and forwards a completion request.
func (rt *Router) proxy(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, rt.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			apiError(w, http.StatusRequestEntityTooLarge, "request body over %d bytes", rt.cfg.MaxBodyBytes)
			return
		}
		apiError(w, http.StatusBadRequest, "reading the request: %v", err)
		return
	}
	req := &Request{Prompt: func() string { return promptText(body) }}
	if out, raw, ok := stripField(body, "workflow_metadata"); ok {
		var md Metadata
		if err := json.Unmarshal(raw, &md); err != nil {
			apiError(w, http.StatusBadRequest, "workflow_metadata: %v", err)
			return
		}
		body, req.Meta = out, &md
	}
	if id := r.Header.Get("X-Workflow-Id"); id != "" && req.Meta == nil {
		req.Meta = &Metadata{WorkflowID: id, AgentID: r.Header.Get("X-Agent-Id")}
	}
	if req.Meta != nil {
		switch {
		case req.Meta.WorkflowID != "" && !idPattern.MatchString(req.Meta.WorkflowID):
			apiError(w, http.StatusBadRequest, "workflow_id %q: want 1 to 256 letters, digits or ._:@/+-", req.Meta.WorkflowID)
			return
		case req.Meta.WorkflowPriority < 0:
			apiError(w, http.StatusBadRequest, "workflow_priority %v: want a positive number (1 is normal)", req.Meta.WorkflowPriority)
			return
		}
		switch req.Meta.ContextSharingStrategy {
		case "", "auto", "broadcast", "selective", "none":
		default:
			apiError(w, http.StatusBadRequest, "context_sharing_strategy %q: want auto, broadcast, selective or none", req.Meta.ContextSharingStrategy)
			return
		}
	}
	if req.Meta != nil {
		req.Session = req.Meta.WorkflowID
	} else {
		req.Session = r.Header.Get("X-Session-Id")
	}

	start := time.Now()
	pick := rt.logic.Pick(rt, req)
	rt.m.decision.WithLabelValues(rt.logic.Name()).Observe(time.Since(start).Seconds())
	wf := ""
	if rt.logic.Name() == "workflow-aware" && req.Affinity != "" {
		wf = req.Meta.WorkflowID
		switch req.Affinity {
		case "hit":
			rt.m.affinityHits.Inc()
		case "miss":
			rt.m.affinityMisses.Inc()
		}
		if req.Spilled {
			rt.m.spillovers.Inc()
		}
	}
	prompt, cached, known := 0, 0, false
	defer func() {
		if wf != "" {
			rt.workflows.done(wf, prompt, cached, known)
		}
	}()
	if pick < 0 {
		apiError(w, http.StatusServiceUnavailable, "no healthy backend")
		return
	}
	// Failover before the first byte only: connection errors and header
	// timeouts move to the next healthy backend.
	tried := map[int]bool{}
	for {
		tried[pick] = true
		b := rt.backends[pick]
		resp, err := rt.forward(r, b, body)
		if err == nil {
			prompt, cached, known = rt.relay(w, r, b, resp, start)
			return
		}
		if r.Context().Err() != nil {
			return // the client left
		}
		rt.m.requests.WithLabelValues(b.url, "error").Inc()
		next := -1
		for i, c := range rt.backends {
			if !tried[i] && c.healthy.Load() && (next < 0 || c.inFlight.Load() < rt.backends[next].inFlight.Load()) {
				next = i
			}
		}
		if next < 0 {
			apiError(w, http.StatusBadGateway, "backend %s: %v", b.url, err)
			return
		}
		pick = next
	}
}

// forward sends the request to b and returns its response headers. The
// in-flight count is taken here and given back by relay (or on error).
func (rt *Router) forward(r *http.Request, b *backend, body []byte) (*http.Response, error) {
	out, err := http.NewRequestWithContext(r.Context(), r.Method, b.url+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	out.Header = r.Header.Clone()
	for _, h := range hopHeaders {
		out.Header.Del(h)
	}
	out.Header.Del("X-Workflow-Id")
	out.Header.Del("X-Agent-Id")
	out.ContentLength = int64(len(body))
	b.inFlight.Add(1)
	rt.m.inFlight.WithLabelValues(b.url).Inc()
	resp, err := rt.transport.RoundTrip(out)
	if err != nil {
		b.inFlight.Add(-1)
		rt.m.inFlight.WithLabelValues(b.url).Dec()
	}
	return resp, err
}

// relay copies the backend's response to the client byte for byte,
// flushing after every read, with an idle-gap timeout; it reads the usage
// the response reports. It gives back the in-flight count.
func (rt *Router) relay(w http.ResponseWriter, r *http.Request, b *backend, resp *http.Response, start time.Time) (prompt, cached int, known bool) {
	defer func() {
		b.inFlight.Add(-1)
		rt.m.inFlight.WithLabelValues(b.url).Dec()
		resp.Body.Close()
		rt.m.duration.WithLabelValues(b.url).Observe(time.Since(start).Seconds())
	}()
	rt.m.requests.WithLabelValues(b.url, strconv.Itoa(resp.StatusCode)).Inc()
	h := w.Header()
	for k, v := range resp.Header {
		h[k] = v
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
	w.WriteHeader(resp.StatusCode)
	fl, _ := w.(http.Flusher)
	idle := time.AfterFunc(rt.cfg.IdleTimeout, func() { resp.Body.Close() })
	defer idle.Stop()
	buf := make([]byte, 32<<10)
	var tail []byte // the last bytes, where usage is
	first := true
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if first {
				rt.m.ttft.WithLabelValues(b.url).Observe(time.Since(start).Seconds())
				first = false
			}
			if _, werr := w.Write(buf[:n]); werr != nil {
				return // the client left: the deferred Close cancels upstream
			}
			if fl != nil {
				fl.Flush()
			}
			tail = append(tail, buf[:n]...)
			if len(tail) > 16<<10 {
				tail = tail[len(tail)-8<<10:]
			}
		}
		if err != nil {
			break
		}
		idle.Reset(rt.cfg.IdleTimeout)
	}
	prompt, cached, known = parseUsage(tail)
	if prompt > 0 {
		rt.m.promptTokens.WithLabelValues(b.url).Add(float64(prompt))
	}
	if known {
		rt.m.cachedTokens.WithLabelValues(b.url).Add(float64(cached))
	}
	return prompt, cached, known
}

var (
	usagePrompt = regexp.MustCompile(`"prompt_tokens"\s*:\s*(\d+)`)
	usageCached = regexp.MustCompile(`"cached_tokens"\s*:\s*(\d+)`)
)

// parseUsage reads the last usage object in a response's tail.
func parseUsage(tail []byte) (prompt, cached int, known bool) {
	k := bytes.LastIndex(tail, []byte(`"usage"`))
	if k < 0 {
		return 0, 0, false
	}
	u := tail[k:]
	if m := usagePrompt.FindSubmatch(u); m != nil {
		prompt, _ = strconv.Atoi(string(m[1]))
	}
	if m := usageCached.FindSubmatch(u); m != nil {
		cached, _ = strconv.Atoi(string(m[1]))
		known = true
	}
	return prompt, cached, known
}

// models lists the union of the backends' models (or the static list).
func (rt *Router) models(w http.ResponseWriter, r *http.Request) {
	type model struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		OwnedBy string `json:"owned_by"`
	}
	seen := map[string]bool{}
	var data []model
	add := func(id string) {
		if !seen[id] {
			seen[id] = true
			data = append(data, model{ID: id, Object: "model", OwnedBy: "vllm"})
		}
	}
	for _, m := range rt.cfg.Models {
		add(m)
	}
	if len(rt.cfg.Models) == 0 {
		for _, b := range rt.backends {
			if !b.healthy.Load() {
				continue
			}
			ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
			req, _ := http.NewRequestWithContext(ctx, "GET", b.url+"/v1/models", nil)
			resp, err := rt.transport.RoundTrip(req)
			if err == nil {
				var list struct {
					Data []struct {
						ID string `json:"id"`
					} `json:"data"`
				}
				json.NewDecoder(resp.Body).Decode(&list)
				resp.Body.Close()
				for _, m := range list.Data {
					add(m.ID)
				}
			}
			cancel()
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}

// health answers 200 while some backend is healthy, passing on the
// backends' time scale (wfsched's engine) so clients can convert times.
func (rt *Router) health(w http.ResponseWriter, _ *http.Request) {
	ok := false
	for _, b := range rt.backends {
		if b.healthy.Load() {
			ok = true
			if s, _ := b.timeScale.Load().(string); s != "" {
				w.Header().Set("X-Wfsched-Time-Scale", s)
			}
		}
	}
	if !ok {
		apiError(w, http.StatusServiceUnavailable, "no healthy backend")
		return
	}
	w.WriteHeader(http.StatusOK)
}
