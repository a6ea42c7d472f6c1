package sim

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/wfsched/wfsched/internal/auth"
	"github.com/wfsched/wfsched/internal/wire"
)

// Version is the engine's version, reported by /version.
var Version = "dev"

// TimeScaleHeader carries the engine's time scale on every response, so a
// client can convert wall times back to modeled ones (modeled = wall / scale).
const TimeScaleHeader = wire.TimeScale

// DefaultMaxBodyBytes bounds a request body unless ServerConfig says.
const DefaultMaxBodyBytes = 32 << 20

// ServerConfig configures a Server. The zero value means defaults.
type ServerConfig struct {
	Faults Faults
	// NoPromptDetails answers prompt_tokens_details as null, as vLLM does
	// without --enable-prompt-tokens-details.
	NoPromptDetails bool
	// MaxBodyBytes bounds a request body (larger ones get 413); 0 means
	// DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// APIKey, when set, is the bearer token requests under /v1 must carry,
	// as vLLM's --api-key: others get 401 {"error": "Unauthorized"}.
	APIKey string
	// AutoToolChoice serves tool_choice "auto" (and tools without a
	// tool_choice), as vLLM's --enable-auto-tool-choice; without it such
	// requests get vLLM's 400.
	AutoToolChoice bool
	// ParallelToolCalls is how many tools an "auto" answer may call at
	// once (a model that emits several calls, as Hermes-style parsers
	// return them), when the request allows it (parallel_tool_calls not
	// false); 0 or 1: one call per answer.
	ParallelToolCalls int
}

// Server serves one Engine over vLLM's OpenAI-compatible HTTP API.
type Server struct {
	e       *Engine
	cfg     ServerConfig
	faults  *faultSource
	reg     *prometheus.Registry
	mux     *http.ServeMux
	closing chan struct{}
	// responses are the stored responses of /v1/responses, this
	// engine's only, as vLLM keeps them.
	responses responseStore
}

// NewServer returns a server for e.
func NewServer(e *Engine, cfg ServerConfig) (*Server, error) {
	if err := cfg.Faults.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	s := &Server{e: e, cfg: cfg, faults: newFaultSource(cfg.Faults), reg: prometheus.NewRegistry(), mux: http.NewServeMux(), closing: make(chan struct{})}
	s.reg.MustRegister(e.Collector())
	s.mux.HandleFunc("POST /v1/chat/completions", s.completions(true))
	s.mux.HandleFunc("POST /v1/completions", s.completions(false))
	s.mux.HandleFunc("POST /v1/responses", s.responsesHandler)
	s.mux.HandleFunc("GET /v1/responses/{id}", s.getResponse)
	s.mux.HandleFunc("POST /tokenize", s.tokenize)
	s.mux.HandleFunc("POST /detokenize", s.detokenize)
	s.mux.HandleFunc("POST /v1/embeddings", s.embeddings)
	s.mux.HandleFunc("GET /v1/models", s.models)
	s.mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	s.mux.HandleFunc("GET /version", s.version)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	return s, nil
}

// Engine is the served engine.
func (s *Server) Engine() *Engine { return s.e }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(TimeScaleHeader, strconv.FormatFloat(s.e.TimeScale(), 'g', -1, 64))
	if strings.HasPrefix(r.URL.Path, "/v1") && !auth.Bearer(r, s.cfg.APIKey) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error":"Unauthorized"}`)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// Serve runs the engine loop and serves HTTP on ln until ctx is done. Then
// it stops taking requests, ends running streams (finish reason "abort"),
// lets their handlers finish (up to ShutdownGrace) and closes every
// connection.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	var mu sync.Mutex
	busy := map[net.Conn]bool{} // connections serving a request
	hs := &http.Server{         // no WriteTimeout: streams
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(c net.Conn, st http.ConnState) {
			mu.Lock()
			defer mu.Unlock()
			if st == http.StateActive {
				busy[c] = true
			} else {
				delete(busy, c)
			}
		},
	}
	engineCtx, stopEngine := context.WithCancel(context.Background())
	engineDone := make(chan struct{})
	go func() {
		defer close(engineDone)
		s.e.Run(engineCtx)
	}()
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()
	select {
	case err := <-serveErr:
		stopEngine()
		<-engineDone
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		return err
	case <-ctx.Done():
	}
	ln.Close()
	close(s.closing) // hung handlers return
	stopEngine()     // streams end
	<-engineDone
	for deadline := time.Now().Add(ShutdownGrace); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		n := len(busy)
		mu.Unlock()
		if n == 0 {
			break
		}
	}
	err := hs.Close()
	<-serveErr
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// ShutdownGrace bounds how long Serve waits for handlers when stopping.
const ShutdownGrace = 2 * time.Second

// ListenAndServe serves on addr (default 127.0.0.1:8000) until ctx is done.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	if addr == "" {
		addr = "127.0.0.1:8000"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return s.Serve(ctx, ln)
}

func (s *Server) writeError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "application/json")
	if e.status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	w.WriteHeader(e.status)
	json.NewEncoder(w).Encode(e.body())
}

func (s *Server) models(w http.ResponseWriter, _ *http.Request) {
	type model struct {
		ID          string `json:"id"`
		Object      string `json:"object"`
		Created     int64  `json:"created"`
		OwnedBy     string `json:"owned_by"`
		Root        string `json:"root"`
		Parent      *int   `json:"parent"`
		MaxModelLen int    `json:"max_model_len"`
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"object": "list", "data": []model{{
		ID: s.e.Model(), Object: "model", Created: time.Now().Unix(), OwnedBy: "vllm", Root: s.e.Model(), MaxModelLen: s.e.prof.MaxModelLen,
	}}})
}

func (s *Server) version(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"version": "wfsched-sim " + Version, "engine": "wfsched-sim", "model": s.e.Model(),
		"profile": s.e.prof.Name, "time_scale": s.e.TimeScale(),
	})
}

func newID(prefix string) string {
	var b [12]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// completions serves /v1/chat/completions (chat) or /v1/completions.
func (s *Server) completions(chat bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, st, f, ok := s.accept(w, r, func(body []byte, requestID string) (*plan, *apiError) { return s.parse(body, chat, requestID) })
		if !ok {
			return
		}
		if p.req.Stream {
			a := &answer{s: s, p: p}
			s.stream(w, r, st, a, f, newChatEmitter(a, st))
			return
		}
		s.whole(w, r, st, p)
	}
}

// accept is a generation request's way in: its arrival, its fault, its
// body, its plan (by planner, the API's) and its submission to the engine.
// A failure is answered here (ok false).
func (s *Server) accept(w http.ResponseWriter, r *http.Request, planner func(body []byte, requestID string) (*plan, *apiError)) (*plan, *Stream, fault, bool) {
	arrival := s.e.clock.Now()
	f, ok := s.fault(w, r)
	if !ok {
		return nil, nil, f, false
	}
	body, apiErr := s.readBody(w, r)
	if apiErr == nil {
		var p *plan
		if p, apiErr = planner(body, r.Header.Get("X-Request-Id")); apiErr == nil {
			var st *Stream
			if st, apiErr = s.submit(p, arrival); apiErr == nil {
				return p, st, f, true
			}
		}
	}
	s.writeError(w, apiErr)
	return nil, nil, f, false
}

// fault draws the request's fault; a hang or an error status is answered
// here (ok false).
func (s *Server) fault(w http.ResponseWriter, r *http.Request) (fault, bool) {
	f, err := s.faults.draw(r)
	if err != nil {
		s.writeError(w, badRequest("", "%v", err))
		return f, false
	}
	if f.hang {
		select {
		case <-r.Context().Done():
		case <-s.closing:
		}
		return f, false
	}
	if f.status != 0 {
		s.writeError(w, &apiError{status: f.status, typ: http.StatusText(f.status), msg: fmt.Sprintf("injected fault: status %d", f.status)})
		return f, false
	}
	return f, true
}

// readBody reads a request body within MaxBodyBytes.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *apiError) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &apiError{status: http.StatusRequestEntityTooLarge, typ: "RequestEntityTooLarge", msg: fmt.Sprintf("request body over %d bytes", s.cfg.MaxBodyBytes)}
		}
		return nil, badRequest("", "reading the request: %v", err)
	}
	return body, nil
}

// submit hands a planned request to the engine.
func (s *Server) submit(p *plan, arrival time.Time) (*Stream, *apiError) {
	p.er.Arrival = arrival
	st, err := s.e.Submit(p.er)
	if errors.Is(err, ErrPriority) {
		return nil, badRequest("priority", "%v", err)
	}
	if err != nil {
		return nil, badRequest("", "%v", err)
	}
	return st, nil
}

func (s *Server) usage(st *Stream) *usage {
	p, cached, c := st.Usage()
	u := &usage{PromptTokens: p, CompletionTokens: c, TotalTokens: p + c}
	if !s.cfg.NoPromptDetails {
		u.PromptTokensDetails = &promptDetails{CachedTokens: cached}
	}
	return u
}

// wait blocks until the stream has output past from, ends, or the client
// goes away (which aborts the request).
func (s *Server) wait(r *http.Request, st *Stream) bool {
	select {
	case <-st.Notify():
		return true
	case <-r.Context().Done():
		st.Abort()
		return false
	}
}

func writeJSON(w io.Writer, v any) {
	json.NewEncoder(w).Encode(v)
}

func writeEvent(w *bufio.Writer, v any) {
	b, _ := json.Marshal(v)
	w.WriteString("data: ")
	w.Write(b)
	w.WriteString("\n\n")
}
