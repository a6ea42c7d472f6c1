package router

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/wfsched/wfsched/capture"
	"github.com/wfsched/wfsched/internal/auth"
	"github.com/wfsched/wfsched/internal/jsonscan"
	"github.com/wfsched/wfsched/internal/wire"
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
	DefaultMaxQueueBytes      = 16 << 20
	DefaultMaxMessageBytes    = 256 << 20
	DefaultMessageTTL         = 300 * time.Second
	DefaultMaxBodyBytes       = 32 << 20
	DefaultMaxBodyBytesHeld   = 256 << 20
	DefaultMaxWorkflowBytes   = 64 << 20
	DefaultMaxAgents          = 256
	DefaultMaxConns           = 4096
	DefaultReservedConns      = 32
	DefaultBodyTimeout        = 60 * time.Second
	DefaultHeaderTimeout      = 10 * time.Second
	DefaultClientIdleTimeout  = 2 * time.Minute
	DefaultWriteTimeout       = 30 * time.Second
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
	MaxQueueSize  int   // messages per (workflow, agent) queue
	MaxQueueBytes int64 // bytes per (workflow, agent) queue
	MaxQueues     int   // queues holding messages
	MaxMessages   int64 // bytes in every queue together
	MaxPayload    int64
	MessageTTL    time.Duration
	MaxBodyBytes  int64
	// MaxBodyBytesHeld bounds the request bodies held at once (read and
	// not yet finished), with the parts of answers kept for the capture or
	// for Responses ids. Bodies over 1 MiB may take only three quarters of
	// it, so that large bodies cannot crowd out ordinary requests.
	MaxBodyBytesHeld int64
	// MaxWorkflowBytes bounds the strings the workflow table keeps (ids,
	// agent ids, parent request ids); beyond it, as beyond MaxWorkflows,
	// the least recently used workflows are forgotten. MaxAgents bounds
	// the agent ids kept per workflow (more are counted, not named).
	MaxWorkflowBytes int64
	MaxAgents        int
	// MaxConns bounds the client connections the router holds; at the
	// limit it closes the connection idle (or sending its request) the
	// longest, and ReservedConns more may serve /health and /metrics only.
	MaxConns, ReservedConns int
	// HeaderTimeout and BodyTimeout bound the time a client may take to
	// send a request's headers and its body; ClientIdleTimeout closes
	// keep-alive connections idle that long.
	HeaderTimeout, BodyTimeout, ClientIdleTimeout time.Duration
	// NetHTTPServer serves every client connection with net/http's server;
	// by default the router serves the requests its clients send most
	// itself and hands a connection to net/http at the first it does not
	// take (serve1.go).
	NetHTTPServer bool
	// WriteTimeout closes a client connection whose answer has made no
	// progress that long: the client reads nothing (DefaultWriteTimeout
	// when 0). Its backend request is cancelled. A slow client that reads
	// is not affected, however long the answer lasts.
	WriteTimeout time.Duration
	// Forwarded says how the X-Forwarded-* fields of forwarded requests
	// are set: ForwardedAppend (the default), ForwardedReplace or
	// ForwardedTrust (forwarded.go).
	Forwarded string
	// APIKey, when set, is the bearer token every request but /health
	// must carry. Clients' Authorization headers are forwarded to the
	// backends unchanged either way.
	APIKey string
	// Timeouts: connecting to a backend, waiting for its response headers
	// (the first byte), and between two reads of its body. There is no
	// total timeout: streams last as long as they produce.
	ConnectTimeout, FirstByteTimeout, IdleTimeout time.Duration
	HealthInterval                                time.Duration
	// MaxConnsPerBackend bounds the connections to each backend
	// (DefaultMaxConnsPerBackend when 0); requests beyond it wait in the
	// router for one instead of exhausting file descriptors.
	MaxConnsPerBackend int
	// Admission, when positive, is how many requests each backend serves
	// at once: more wait at the router, by their priority field (lower
	// first) and then in arrival order, instead of queueing in the
	// backend. 0: every request goes on at once.
	Admission int
	// Models, when set, is what /v1/models lists instead of asking the
	// backends (the design's --static-models).
	Models []string
	// Passthrough says which other paths reach a backend: PassAll (the
	// default: vLLM's endpoints and any path under /v1/ or /v2/), PassVLLM
	// (vLLM's endpoints only) or PassNone.
	Passthrough string
	// MaxResponses bounds the Responses API response ids remembered for
	// previous_response_id affinity (DefaultMaxResponses when 0); they
	// expire after WorkflowTTL.
	MaxResponses int
	// Capture, when set, receives a record of every chat, completions and
	// responses call as it completes, its texts kept as CaptureContent
	// says (capture.Hash when ""). The caller closes it.
	Capture        *capture.Writer
	CaptureContent string
	// Discover, when set, finds the backends again every DiscoverInterval
	// (DefaultDiscoverInterval when 0): backends join and leave without a
	// restart (see DNSBackends). Backends is the first answer.
	Discover         func(ctx context.Context) ([]string, error)
	DiscoverInterval time.Duration
	// State is where workflow records and message queues live: "memory"
	// (the default: this process) or redis://HOST:PORT/DB, shared by
	// every router replica given the same URL and the same backends.
	State string
	Now   func() time.Time // nil: time.Now
}

func (c *Config) setDefaults() {
	orDefault(&c.Logic, DefaultLogic)
	orDefault(&c.FallbackLogic, DefaultFallback)
	orDefault(&c.LoadFactor, DefaultLoadFactor)
	orDefault(&c.Passthrough, PassAll)
	orDefault(&c.Forwarded, ForwardedAppend)
	orDefault(&c.CaptureContent, capture.Hash)
	orDefault(&c.MaxResponses, DefaultMaxResponses)
	for _, d := range []struct {
		v *time.Duration
		d time.Duration
	}{
		{&c.WorkflowTTL, DefaultWorkflowTTL}, {&c.MessageTTL, DefaultMessageTTL}, {&c.ConnectTimeout, DefaultConnectTimeout},
		{&c.FirstByteTimeout, DefaultFirstByteTimeout}, {&c.IdleTimeout, DefaultIdleTimeout}, {&c.HealthInterval, DefaultHealthInterval},
		{&c.HeaderTimeout, DefaultHeaderTimeout}, {&c.BodyTimeout, DefaultBodyTimeout}, {&c.ClientIdleTimeout, DefaultClientIdleTimeout},
		{&c.WriteTimeout, DefaultWriteTimeout}, {&c.DiscoverInterval, DefaultDiscoverInterval},
	} {
		orDefault(d.v, d.d)
	}
	for _, d := range []struct {
		v *int
		d int
	}{
		{&c.MaxWorkflows, DefaultMaxWorkflows}, {&c.MaxConnsPerBackend, DefaultMaxConnsPerBackend}, {&c.MaxQueueSize, DefaultMaxQueueSize},
		{&c.MaxQueues, DefaultMaxQueues}, {&c.MaxAgents, DefaultMaxAgents}, {&c.MaxConns, DefaultMaxConns}, {&c.ReservedConns, DefaultReservedConns},
	} {
		orDefault(d.v, d.d)
	}
	for _, d := range []struct {
		v *int64
		d int64
	}{
		{&c.MaxPayload, DefaultMaxPayloadBytes}, {&c.MaxBodyBytes, DefaultMaxBodyBytes}, {&c.MaxQueueBytes, DefaultMaxQueueBytes},
		{&c.MaxMessages, DefaultMaxMessageBytes}, {&c.MaxBodyBytesHeld, DefaultMaxBodyBytesHeld}, {&c.MaxWorkflowBytes, DefaultMaxWorkflowBytes},
	} {
		orDefault(d.v, d.d)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// orDefault sets *v to d when it holds its zero value.
func orDefault[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}

// MemoryCeiling is the memory the router may hold with cfg's limits, about:
// the request bodies it may hold, twice (what Go's collector lets pile up
// between collections), the message queues, the workflow table's strings,
// its per-workflow and per-connection records, and a base. `wfsched
// router` sets it as the Go runtime's soft memory limit.
func MemoryCeiling(cfg Config) int64 {
	cfg.setDefaults()
	perWorkflow := int64(600)  // the record, its LRU and map entries (BenchmarkTrackedWorkflows: 536 B)
	perConn := int64(48 << 10) // goroutine stack, buffers, a body's first 32 KiB
	return 2*cfg.MaxBodyBytesHeld + cfg.MaxMessages + cfg.MaxWorkflowBytes + int64(cfg.MaxWorkflows)*perWorkflow +
		int64(cfg.MaxConns+cfg.ReservedConns)*perConn + 64<<20
}

// GCPercent is the garbage collector's target (GOGC) `wfsched router` sets
// under MemoryCeiling: collect when the heap has grown by four times what
// is live. The router's live heap is small and its garbage per request, so
// Go's default (100) collected tens of times a second under load; under
// wrk 400 cut its CPU per request by about a tenth (docs/router.md, "Proxy
// speed"), and the ceiling still bounds the heap.
const GCPercent = 400

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
	return c.validateRouting()
}

// validateRouting checks what the Balancer reads: logics, load factor,
// limits and timeouts.
func (c Config) validateRouting() error {
	if _, err := newLogic(c.Logic); c.Logic != "" && err != nil {
		return err
	}
	if fb := normalizeLogic(c.FallbackLogic); fb == "workflow-aware" {
		return errors.New("the fallback logic cannot be workflow-aware: it serves requests without a workflow")
	} else if _, err := newLogic(fb); c.FallbackLogic != "" && err != nil {
		return fmt.Errorf("fallback: %w", err)
	}
	if c.CaptureContent != "" {
		if err := capture.CheckMode(c.CaptureContent); err != nil {
			return err
		}
	}
	if err := CheckState(c.State); err != nil {
		return err
	}
	if err := checkForwarded(c.Forwarded); err != nil {
		return err
	}
	switch c.Passthrough {
	case "", PassAll, PassVLLM, PassNone:
	default:
		return fmt.Errorf("passthrough %q: want %s, %s or %s", c.Passthrough, PassAll, PassVLLM, PassNone)
	}
	if c.LoadFactor != 0 && c.LoadFactor <= 1 {
		return fmt.Errorf("load factor %v: want more than 1 (1.25 lets a backend take 25%% more than the average)", c.LoadFactor)
	}
	if c.LoadFactor != 0 && (math.IsNaN(c.LoadFactor) || math.IsInf(c.LoadFactor, 0) || c.LoadFactor > 100) {
		return fmt.Errorf("load factor %v: want a number from just over 1 to 100", c.LoadFactor)
	}
	for _, v := range []int64{int64(c.MaxWorkflows), int64(c.MaxQueueSize), c.MaxQueueBytes, int64(c.MaxQueues), c.MaxMessages, c.MaxPayload,
		c.MaxBodyBytes, c.MaxBodyBytesHeld, c.MaxWorkflowBytes, int64(c.MaxAgents), int64(c.MaxConns), int64(c.ReservedConns), int64(c.MaxConnsPerBackend), int64(c.Admission), int64(c.MaxResponses)} {
		if v < 0 {
			return errors.New("limits must not be negative")
		}
	}
	for _, d := range []time.Duration{c.WorkflowTTL, c.MessageTTL, c.ConnectTimeout, c.FirstByteTimeout, c.IdleTimeout, c.HealthInterval,
		c.HeaderTimeout, c.BodyTimeout, c.ClientIdleTimeout, c.WriteTimeout} {
		if d < 0 {
			return errors.New("timeouts and TTLs must not be negative")
		}
	}
	return nil
}

// Router is the workflow-affinity reverse proxy. It is an http.Handler;
// Run drives its health checks and sweeps.
type Router struct {
	*Balancer
	cfg    Config
	mail   mailStore
	up     *upstream
	mux    *http.ServeMux
	reg    *prometheus.Registry
	m      *routerMetrics
	bodies bodyBudget
	conns  *connLimiter
	// captureErrs counts failed capture writes (the first is logged).
	captureErrs atomic.Int64
	// starting is set during the first health check, whose findings
	// Serve sums up in one line instead of one per backend.
	starting atomic.Bool
	// shared is the Redis of --state, nil with memory state.
	shared *redisState
	// joinMu orders changes of the backends (discovery, tests).
	joinMu          sync.Mutex
	discoveryErrors atomic.Int64
}

// New returns a router for cfg. Backends start healthy; Run checks them.
func New(cfg Config) (*Router, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	rt := &Router{Balancer: newBalancer(cfg), cfg: cfg, mux: http.NewServeMux(), reg: prometheus.NewRegistry(),
		bodies: bodyBudget{max: cfg.MaxBodyBytesHeld}, conns: newConnLimiter(cfg.MaxConns, cfg.ReservedConns, cfg.WriteTimeout)}
	mail := newMailboxes(limits{maxLen: cfg.MaxQueueSize, maxQueues: cfg.MaxQueues, maxQBytes: cfg.MaxQueueBytes, maxBytes: cfg.MaxMessages, ttl: cfg.MessageTTL}, cfg.Now)
	rt.mail = mail
	if opt, _ := stateOptions(cfg.State); opt != nil {
		st, err := dialRedis(cfg.State)
		if err != nil {
			return nil, err
		}
		rt.shared = st
		rt.workflows = newRedisWorkflows(st, rt.table)
		rt.responses = &redisResponses{s: st, local: rt.responses, max: cfg.MaxResponses, ttl: cfg.WorkflowTTL, now: cfg.Now}
		rt.mail = newRedisMail(st, mail)
	}
	rt.up = newUpstream(cfg.ConnectTimeout, cfg.FirstByteTimeout, 90*time.Second, cfg.MaxConnsPerBackend)
	rt.m = newRouterMetrics(rt)
	rt.mux.HandleFunc("POST /v1/chat/completions", rt.proxy)
	rt.mux.HandleFunc("POST /v1/completions", rt.proxy)
	rt.mux.HandleFunc("POST /v1/responses", rt.proxy)
	rt.mux.HandleFunc("/", rt.passthrough)
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

// ServeHTTP implements http.Handler. Before routing it enforces what holds
// for every endpoint: a reserved connection (over --max-connections) serves
// /health and /metrics only; with an API key every path but /health needs
// the bearer token; a request body must arrive within BodyTimeout.
func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := connOf(r)
	if c != nil && c.reserved && r.URL.Path != "/health" && r.URL.Path != "/metrics" {
		w.Header().Set("Connection", "close")
		w.Header().Set("Retry-After", "1")
		apiError(w, http.StatusServiceUnavailable, "the router is at its connection limit (--max-connections): this connection serves /health and /metrics only")
		return
	}
	if r.URL.Path != "/health" && !auth.Bearer(r, rt.cfg.APIKey) {
		w.Header().Set("WWW-Authenticate", "Bearer")
		apiError(w, http.StatusUnauthorized, "missing or wrong API key: send Authorization: Bearer KEY")
		return
	}
	if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
		rc := http.NewResponseController(w)
		rc.SetReadDeadline(time.Now().Add(rt.cfg.BodyTimeout))
		r.Body = &bodyWatch{ReadCloser: r.Body, done: func() {
			rc.SetReadDeadline(time.Time{})
			if c != nil {
				rt.conns.setState(c, connServing)
			}
		}}
	} else if c != nil {
		rt.conns.setState(c, connServing)
	}
	rt.mux.ServeHTTP(w, r)
}

// bodyBudget counts the bytes of request bodies the router holds. Bodies
// over largeBody may take only three quarters of it, so that a few large
// (or hostile) bodies cannot lock out ordinary requests.
type bodyBudget struct {
	max  int64
	held atomic.Int64
}

const largeBody = 1 << 20

func (b *bodyBudget) take(n int64, large bool) bool {
	limit := b.max
	if large {
		limit = b.max / 4 * 3
	}
	for {
		cur := b.held.Load()
		if cur+n > limit {
			return false
		}
		if b.held.CompareAndSwap(cur, cur+n) {
			return true
		}
	}
}

func (b *bodyBudget) give(n int64) { b.held.Add(-n) }

// readBody reads a request body of at most limit bytes within the body
// budget. On success the caller must call release once done with the body;
// on failure the error has been answered.
func (rt *Router) readBody(w http.ResponseWriter, r *http.Request, limit int64, what string) (body []byte, release func(), ok bool) {
	var taken int64
	release = func() { rt.bodies.give(taken) }
	lr := http.MaxBytesReader(w, r.Body, limit)
	var buf []byte
	for {
		if len(buf) == cap(buf) {
			// Grow as bytes arrive: a client that declares a length but
			// sends nothing holds 32 KiB. Once the first 32 KiB are in, a
			// declared length is taken whole (one copy); without one, the
			// buffer grows by a quarter, so what the budget counts stays
			// within 25% of what was sent.
			ceiling := limit + 1
			grow := max(int64(cap(buf))/4, 32<<10)
			if cl := r.ContentLength; cl >= 0 && cl < limit {
				ceiling = cl + 1 // one byte more to see the end
				if cap(buf) > 0 {
					grow = ceiling
				}
			}
			grow = min(grow, ceiling-int64(cap(buf)))
			if grow <= 0 { // more than the declared length: not HTTP/1.1
				release()
				apiError(w, http.StatusBadRequest, "the %s is longer than its Content-Length", what)
				return nil, nil, false
			}
			newCap := int64(cap(buf)) + grow
			if !rt.bodies.take(grow, newCap > largeBody) {
				release()
				rt.m.bodyRefused.Inc()
				w.Header().Set("Retry-After", "1")
				apiError(w, http.StatusServiceUnavailable, "the router holds as many request bytes as it may (--max-body-bytes-held %d); retry shortly", rt.cfg.MaxBodyBytesHeld)
				return nil, nil, false
			}
			taken += grow
			nb := make([]byte, len(buf), newCap)
			copy(nb, buf)
			buf = nb
		}
		n, err := lr.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, release, true
		}
		if err != nil {
			release()
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				apiError(w, http.StatusRequestEntityTooLarge, "%s over %d bytes", what, limit)
			} else {
				apiError(w, http.StatusBadRequest, "reading the %s: %v", what, err)
			}
			return nil, nil, false
		}
	}
}

// Run checks the backends' health periodically and sweeps idle workflows
// and old messages until ctx is done. Serve runs it after a first check.
func (rt *Router) Run(ctx context.Context) {
	health := time.NewTicker(rt.cfg.HealthInterval)
	defer health.Stop()
	sweepEvery := min(max(rt.cfg.WorkflowTTL/10, time.Second), 30*time.Second)
	sweep := time.NewTicker(sweepEvery)
	defer sweep.Stop()
	// Its helpers end with it.
	var helpers sync.WaitGroup
	defer helpers.Wait()
	if rt.shared != nil {
		helpers.Go(func() { rt.shared.run(ctx, rt.list) })
	}
	if rt.cfg.Discover != nil {
		helpers.Go(func() { rt.discover(ctx) })
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-health.C:
			rt.checkHealth(ctx)
		case <-sweep.C:
			rt.Expire()
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
	rt.probe(ctx, rt.present(), downAfter)
}

// probe checks the health of backends as checkHealthN says.
func (rt *Router) probe(ctx context.Context, backends []*backend, downAfter int64) {
	for _, b := range backends {
		// At least a second, whatever the interval: an engine that is
		// busy, not dead, can take a while to answer.
		hctx, cancel := context.WithTimeout(ctx, min(max(rt.cfg.HealthInterval, time.Second), 2*time.Second))
		resp, err := rt.up.do(hctx, b.url, "GET", "/health", nil, nil)
		ok := err == nil && resp.StatusCode == http.StatusOK
		if resp != nil {
			b.timeScale.Store(resp.Header.Get(wire.TimeScale))
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		switch {
		case b.gone.Load(): // left while it was probed
		case ok:
			b.fails.Store(0)
			if !b.healthy.Swap(true) {
				log.Printf("wfsched router: backend %s answers /health: it takes requests", b.url)
			}
		case b.fails.Add(1) >= downAfter:
			if b.healthy.Swap(false) && !rt.starting.Load() {
				log.Printf("wfsched router: backend %s is down (%s); its requests go to the others", b.url, healthProblem(resp, err))
			}
		}
	}
}

// healthProblem says why a health probe failed.
func healthProblem(resp *http.Response, err error) string {
	if err != nil {
		return err.Error()
	}
	return "/health answered " + resp.Status
}

// Serve serves on ln until ctx is done.
func (rt *Router) Serve(ctx context.Context, ln net.Listener) error {
	// No ReadTimeout or WriteTimeout: streams and long polls last. The
	// body's deadline is set per request (ServeHTTP).
	hs := &http.Server{Handler: rt, ReadHeaderTimeout: rt.cfg.HeaderTimeout, IdleTimeout: rt.cfg.ClientIdleTimeout,
		MaxHeaderBytes: 64 << 10}
	rt.conns.serverHooks(hs)
	ln = limitListener{Listener: ln, lim: rt.conns}
	// Serve with the backends' state known, and say when none is ready:
	// clients then get 503 until one answers /health (an engine still
	// loading, a vLLM downloading its model).
	rt.starting.Store(true)
	rt.checkHealthN(ctx, 1)
	rt.starting.Store(false)
	healthy := 0
	var down []string
	for _, b := range rt.present() {
		if b.healthy.Load() {
			healthy++
		} else {
			down = append(down, b.url)
		}
	}
	if healthy == 0 && len(down) > 0 {
		log.Printf("wfsched router: no backend answers /health yet (%s): requests get 503 until one does; checked every %v, and each one that comes up is logged",
			strings.Join(down, ", "), rt.cfg.HealthInterval)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		rt.Run(runCtx)
	}()
	errc := make(chan error, 1)
	var fast *h1Server
	if rt.cfg.NetHTTPServer {
		go func() { errc <- hs.Serve(ln) }()
	} else {
		handed := &handoffListener{ch: make(chan net.Conn), addr: ln.Addr(), done: make(chan struct{})}
		fast = newH1Server(rt, handed.ch)
		go hs.Serve(handed)
		go func() { errc <- fast.acceptLoop(ln) }()
	}
	var err error
	served := false // errc has answered
	select {
	case err = <-errc:
		served = true
	case <-ctx.Done():
		if fast != nil {
			ln.Close()
			<-errc // the closed listener's error
			served = true
		}
	}
	// Requests in flight get two seconds to end.
	shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	if fast != nil {
		fast.shutdown(shut)
	}
	if hs.Shutdown(shut) != nil {
		hs.Close()
	}
	cancel()
	if !served {
		err = <-errc
	}
	stop()
	<-done
	rt.up.closeIdle()
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

// MaxIDLength bounds every id the router keeps: workflow, agent, parent
// request and session ids.
const MaxIDLength = 256

// validID says whether s can be an id: 1 to MaxIDLength bytes of ASCII
// letters, digits and . _ : @ / + - (a loop, not a regular expression: it runs
// on every request; TestValidID holds it to the pattern).
func validID(s string) bool {
	if len(s) == 0 || len(s) > MaxIDLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.', c == '_', c == ':', c == '@', c == '/', c == '+', c == '-':
		default:
			return false
		}
	}
	return true
}

// clip quotes a client's value for an error message, cut to a few dozen
// bytes: an error never echoes a large input back.
func clip(s string) string {
	const keep = 48
	if len(s) <= keep {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%s... (%d bytes)", strconv.Quote(strings.ToValidUTF8(s[:keep], "")), len(s))
}

// parseCompletion reads what routing needs from a completion request: the
// workflow_metadata member (stripped from the body it returns, reusing
// body's memory) or else the X-Workflow-Id / X-Agent-Id headers, and the
// session key. An error means a 400: the request is refused, not guessed at.
func parseCompletion(body []byte, h http.Header) ([]byte, *Request, error) {
	req := &Request{}
	out, raw, ok, err := stripField(body, "workflow_metadata")
	if err != nil {
		return nil, nil, err
	}
	if ok {
		md, err := parseMetadata(raw)
		if err != nil {
			return nil, nil, fmt.Errorf("workflow_metadata: %w", err)
		}
		body, req.Meta = out, md
	}
	if id := h.Get("X-Workflow-Id"); id != "" && req.Meta == nil {
		req.Meta = &Metadata{WorkflowID: id, AgentID: h.Get("X-Agent-Id")}
		if err := req.Meta.validate(); err != nil {
			return nil, nil, fmt.Errorf("X-Workflow-Id / X-Agent-Id: %w", err)
		}
	}
	if req.Meta != nil {
		req.Session = req.Meta.WorkflowID
	} else if sid := h.Get("X-Session-Id"); len(sid) <= MaxIDLength {
		req.Session = sid
	} else {
		return nil, nil, fmt.Errorf("X-Session-Id %s: want at most %d bytes", clip(sid), MaxIDLength)
	}
	req.Prompt = func() string { return promptText(body) }
	return body, req, nil
}

// proxy routes and forwards a completion request.
func (rt *Router) proxy(w http.ResponseWriter, r *http.Request) {
	arrival := time.Now()
	body, release, ok := rt.readBody(w, r, rt.cfg.MaxBodyBytes, "request body")
	if !ok {
		return
	}
	defer release()
	body, req, err := parseCompletion(body, r.Header)
	if err != nil {
		apiError(w, http.StatusBadRequest, "%v", err)
		return
	}

	start := time.Now()
	d := rt.Route(req)
	pick := d.Backend
	rt.m.decided.Observe(time.Since(start).Seconds())
	wf := ""
	if d.Affinity != "" {
		wf = req.Meta.WorkflowID
		switch d.Affinity {
		case "hit":
			rt.m.affinityHits.Inc()
		case "miss":
			rt.m.affinityMisses.Inc()
		}
		if d.Spilled {
			rt.m.spillovers.Inc()
		}
	}
	prompt, cached, known := 0, 0, false
	defer func() {
		if wf != "" {
			rt.Finish(wf, d.Backend, prompt, cached, known)
		}
	}()
	// Every backend marked down: health checks can be wrong (an engine
	// under load answers them late), so try them all, least loaded first,
	// rather than refuse; the request fails only if none answers.
	anyBackend := false
	if pick < 0 {
		pick, anyBackend = rt.leastLoadedOf(func(_ int, b *backend) bool { return !b.gone.Load() }), true
		rt.m.allDown.Inc()
	}
	// The Responses API: a follow-up goes to the backend that stored the
	// response it continues, whatever the logic decided; that backend's
	// memory holds the conversation, no other can serve it.
	responses, pinned := r.URL.Path == "/v1/responses", false
	if responses {
		if prev := stringField(body, "previous_response_id"); prev != "" {
			if home, ok := rt.ResponseHome(prev); ok {
				if b := rt.list()[home]; !b.healthy.Load() {
					rt.m.responsesLost.Inc()
					notFound(w, "previous_response_id", "previous_response_id %s was stored by backend %s, which is down: stored responses live in that server's memory only; start again without previous_response_id (send the conversation as input)",
						clip(prev), b.url)
					return
				}
				pick, pinned, anyBackend = home, true, false
				rt.m.responsesPinned.Inc()
			}
		}
	}
	// Admission: over the limit, wait for a place on the chosen backend,
	// by priority; a client that leaves while waiting is let go.
	if rt.limit > 0 {
		admittedOn := pick
		ready := make(chan struct{})
		if ok, t := rt.Admit(pick, intField(body, "priority"), func() { close(ready) }); !ok {
			select {
			case <-ready:
			case <-r.Context().Done():
				if !rt.Leave(pick, t) {
					rt.Unadmit(pick)
				}
				return
			}
		}
		defer rt.Unadmit(admittedOn)
	}
	var info *relayInfo
	switch {
	case rt.cfg.Capture != nil:
		info = &relayInfo{keep: maxCaptured}
	case responses:
		info = &relayInfo{keep: maxHead}
	}
	if responses {
		info.remember = rt.RememberResponse
	}
	if info != nil {
		defer func() { rt.bodies.give(info.held) }()
	}
	prompt, cached, known = rt.send(w, r, body, pick, anyBackend, pinned, start, info)
	if rt.cfg.Capture != nil {
		rt.record(r, req, body, info, arrival, prompt, cached, known)
	}
}

// relayBuffers hold the 32 KiB each relay reads a response through: one
// per request was 81% of the bytes the router allocated under load (pprof,
// wrk against instant backends), and the collector's work a fifth of its
// CPU.
var relayBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// relayTails hold the last bytes of each response (where its usage is):
// room for 16 KiB and a 32 KiB read, reused as relayBuffers are.
var relayTails = sync.Pool{New: func() any { b := make([]byte, 0, 48<<10); return &b }}

// relayInfo is what relay tells of a response when asked: its first keep
// bytes (held within the router's body budget: when the budget is spent,
// or past keep, the rest is not kept and truncated says so), when its first
// and last bytes went out, its status, backend and output token count.
type relayInfo struct {
	keep       int
	body       []byte
	held       int64 // bytes of the body budget body holds
	truncated  bool
	completion int // output tokens the usage reported, -1 if none
	firstByte  time.Time
	lastByte   time.Time
	timeScale  float64 // the backend's, 0 when it did not say
	status     int
	backend    string
	// remember, when set, is given the Responses API id of the answer
	// as soon as its first bytes hold it, and the backend's URL.
	remember   func(id, url string)
	remembered bool
}

// send forwards a request to backend pick and relays the answer, and
// returns the usage it reported. Failover before the first byte only,
// and only where the request cannot run twice: a request that did not
// reach its backend whole (no connection, a failed write), or an
// idempotent one, moves to the next healthy backend (any backend with
// anyBackend) unless pinned (the request's state lives on pick alone);
// a completion the backend read and did not answer gets a 502 (a 504
// after --first-byte-timeout). After the first byte the response is the
// client's: a break then aborts it (see relay). info, when not nil, hears
// about the response.
func (rt *Router) send(w http.ResponseWriter, r *http.Request, body []byte, pick int, anyBackend, pinned bool, start time.Time, info *relayInfo) (prompt, cached int, known bool) {
	list := rt.list()
	tried := make([]bool, len(list))
	rt.setForwarded(r)
	again := replayable(r.Method, r.Header)
	for {
		tried[pick] = true
		b := list[pick]
		resp, err := rt.forward(r, b, body)
		if err == nil {
			prompt, cached, known, err = rt.relay(r.Context(), w, b, resp, start, info)
			if err == nil {
				return prompt, cached, known
			}
		}
		if r.Context().Err() != nil {
			return // the client left
		}
		rt.m.requests.WithLabelValues(b.url, "error").Inc()
		next := -1
		// Another backend only for a request that did not reach this
		// one whole, or one that may run twice: a completion this
		// backend read and then failed to answer may have run (and
		// stored a response), so its client hears of the failure and
		// decides (OpenAI's clients retry a 502 or 504 themselves).
		if !pinned && (again || unsent(err)) {
			next = rt.leastLoadedOf(func(i int, c *backend) bool {
				return i < len(tried) && !tried[i] && !c.gone.Load() && (anyBackend || c.healthy.Load())
			})
		}
		if next < 0 {
			if isTimeout(err) {
				apiError(w, http.StatusGatewayTimeout, "backend %s: no answer within --first-byte-timeout %v", b.url, rt.cfg.FirstByteTimeout)
				return
			}
			apiError(w, http.StatusBadGateway, "backend %s: %v", b.url, err)
			return
		}
		rt.m.failovers.WithLabelValues(b.url).Inc()
		b.failovers.Add(1)
		pick = next
	}
}

// forward sends the request to b and returns its response headers. The
// in-flight count is taken here and given back by relay (or on error).
func (rt *Router) forward(r *http.Request, b *backend, body []byte) (*http.Response, error) {
	b.inFlight.Add(1) // Begin, by pointer
	rt.m.of(b).inFlight.Inc()
	resp, err := rt.up.do(r.Context(), b.url, r.Method, r.URL.RequestURI(), r.Header, body)
	if err != nil {
		b.inFlight.Add(-1)
		rt.m.of(b).inFlight.Dec()
	}
	return resp, err
}

// relay copies the backend's response to the client byte for byte,
// flushing after every read, with an idle-gap timeout; it reads the usage
// the response reports. It gives back the in-flight count.
//
// Nothing is sent to the client before the backend's first body byte, so a
// backend that fails before it returns the error (the caller fails over).
// Once bytes have gone out, a read error (a dead backend, a cut stream, the
// idle timeout) aborts the client's response: the connection closes without
// the body's proper end, so the client sees a broken response instead of a
// short one that looks finished. This never returns in that case.
func (rt *Router) relay(ctx context.Context, w http.ResponseWriter, b *backend, resp *http.Response, start time.Time, info *relayInfo) (prompt, cached int, known bool, err error) {
	defer func() {
		b.inFlight.Add(-1)
		rt.m.of(b).inFlight.Dec()
		resp.Body.Close()
		rt.m.of(b).duration.Observe(time.Since(start).Seconds())
	}()
	idle := time.AfterFunc(rt.cfg.IdleTimeout, func() { resp.Body.Close() })
	defer idle.Stop()
	bp := relayBuffers.Get().(*[]byte)
	defer relayBuffers.Put(bp)
	buf := *bp
	n, rerr := resp.Body.Read(buf)
	if n == 0 && rerr != nil && rerr != io.EOF {
		return 0, 0, false, fmt.Errorf("response body broke before its first byte: %w", rerr)
	}
	if resp.StatusCode == http.StatusOK {
		rt.m.of(b).ok.Inc()
	} else {
		rt.m.requests.WithLabelValues(b.url, strconv.Itoa(resp.StatusCode)).Inc()
	}
	if info != nil {
		info.status, info.backend = resp.StatusCode, b.url
		info.timeScale, _ = strconv.ParseFloat(resp.Header.Get(wire.TimeScale), 64)
	}
	h := w.Header()
	for k, v := range resp.Header { // canonical keys (upstream reads them so, less the fields Connection named)
		if !isHop(k) {
			h[k] = v
		}
	}
	h.Set(wire.Backend, b.url)
	w.WriteHeader(resp.StatusCode)
	fl, _ := w.(http.Flusher)
	tp := relayTails.Get().(*[]byte)
	defer relayTails.Put(tp)
	tail := (*tp)[:0] // the last bytes, where usage is
	first := true
	for {
		if n > 0 {
			if first {
				if info != nil {
					info.firstByte = time.Now()
				}
				rt.m.of(b).ttft.Observe(time.Since(start).Seconds())
				first = false
			}
			if info != nil {
				switch k := min(n, info.keep-len(info.body)); {
				case info.truncated:
				case k > 0 && rt.bodies.take(int64(k), false):
					info.body = append(info.body, buf[:k]...)
					info.held += int64(k)
					info.truncated = k < n
				default: // past keep, or the budget is spent
					info.truncated = true
				}
			}
			if info != nil && info.remember != nil && !info.remembered {
				// A Responses API id is remembered before its bytes go:
				// no follow-up naming it can arrive first.
				if id := responseID(info.body); id != "" {
					info.remember(id, b.url)
					info.remembered = true
				} else if info.truncated || len(info.body) >= info.keep {
					info.remembered = true // no id in the head: none to remember
				}
			}
			if info != nil {
				info.lastByte = time.Now() // before the bytes go: no later call can precede it
			}
			if _, werr := w.Write(buf[:n]); werr != nil {
				return 0, 0, false, nil // the client left: the deferred Close cancels upstream
			}
			if fl != nil {
				fl.Flush()
			}
			tail = append(tail, buf[:n]...) // within its capacity: at most 16 KiB and a read
			if len(tail) > 16<<10 {
				// The last 8 KiB, moved to the front: the buffer is reused.
				tail = tail[:copy(tail, tail[len(tail)-8<<10:])]
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			if ctx.Err() != nil {
				// The client left (its request's context ended the
				// read), often just after the answer's last event: not
				// the backend's fault.
				break
			}
			rt.m.cutStreams.WithLabelValues(b.url).Inc()
			b.cuts.Add(1)
			panic(http.ErrAbortHandler) // end the client's response unfinished
		}
		idle.Reset(rt.cfg.IdleTimeout)
		n, rerr = resp.Body.Read(buf)
	}
	prompt, cached, known = parseUsage(tail)
	if info != nil {
		info.completion = -1
		if m := usageCompletion.FindAllSubmatch(tail, -1); len(m) > 0 {
			info.completion, _ = strconv.Atoi(string(m[len(m)-1][1]))
		}
	}
	if prompt > 0 {
		rt.m.of(b).promptTokens.Add(float64(prompt))
	}
	if known {
		rt.m.of(b).cachedTokens.Add(float64(cached))
	}
	return prompt, cached, known, nil
}

// maxHead is how much of a response's start relay keeps when asked.
const maxHead = 16 << 10

// parseUsage reads the last usage object in a response's tail. It scans
// bytes (a regular expression here was 3% of the router's CPU under load).
func parseUsage(tail []byte) (prompt, cached int, known bool) {
	k := bytes.LastIndex(tail, []byte(`"usage"`))
	if k < 0 {
		return 0, 0, false
	}
	u := tail[k:]
	prompt, _ = countField(u, `"prompt_tokens"`, `"input_tokens"`)
	cached, known = countField(u, `"cached_tokens"`)
	return prompt, cached, known
}

// countField finds the first of the quoted names in b followed by a colon
// and a count (white space allowed around the colon) and returns the count.
func countField(b []byte, names ...string) (n int, ok bool) {
	at := len(b)
	for _, name := range names {
		for i := 0; i < at; {
			j := bytes.Index(b[i:at], []byte(name))
			if j < 0 {
				break
			}
			j += i
			if v, ok2 := countAt(b, j+len(name)); ok2 {
				n, ok, at = v, true, j
				break
			}
			i = j + 1
		}
	}
	return n, ok
}

// countAt reads `\s*:\s*digits` at b[i:].
func countAt(b []byte, i int) (int, bool) {
	i = jsonscan.Space(b, i)
	if i >= len(b) || b[i] != ':' {
		return 0, false
	}
	i = jsonscan.Space(b, i+1)
	j := i
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		j++
	}
	v, err := strconv.Atoi(string(b[i:j]))
	return v, err == nil
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
		for _, b := range rt.list() {
			if !b.healthy.Load() {
				continue
			}
			ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
			resp, err := rt.up.do(ctx, b.url, "GET", "/v1/models", nil, nil)
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
// backends' time scale (wfsched's engine) so clients can convert times. Its
// body says "ok", or "degraded" while the shared state's Redis is lost
// (the router then routes on its own state).
func (rt *Router) health(w http.ResponseWriter, _ *http.Request) {
	ok := false
	for _, b := range rt.list() {
		if b.healthy.Load() {
			ok = true
			if s, _ := b.timeScale.Load().(string); s != "" {
				w.Header().Set(wire.TimeScale, s)
			}
		}
	}
	if !ok {
		apiError(w, http.StatusServiceUnavailable, "no healthy backend")
		return
	}
	state, detail := "memory", "ok"
	if rt.shared != nil {
		state = "redis"
		if rt.shared.degraded.Load() {
			detail = "degraded"
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": detail, "state": state})
}
