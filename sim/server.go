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
}

// Server serves one Engine over vLLM's OpenAI-compatible HTTP API.
type Server struct {
	e       *Engine
	cfg     ServerConfig
	faults  *faultSource
	reg     *prometheus.Registry
	mux     *http.ServeMux
	closing chan struct{}
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
		arrival := s.e.clock.Now()
		f, err := s.faults.draw(r)
		if err != nil {
			s.writeError(w, badRequest("", "%v", err))
			return
		}
		if f.hang {
			select {
			case <-r.Context().Done():
			case <-s.closing:
			}
			return
		}
		if f.status != 0 {
			s.writeError(w, &apiError{status: f.status, typ: http.StatusText(f.status), msg: fmt.Sprintf("injected fault: status %d", f.status)})
			return
		}
		req, st, apiErr := s.admit(w, r, chat, arrival)
		if apiErr != nil {
			s.writeError(w, apiErr)
			return
		}
		id, object := newID("cmpl-"), "text_completion"
		if chat {
			id, object = newID("chatcmpl-"), "chat.completion"
		}
		if req.Stream {
			s.stream(w, r, st, chat, id, object+".chunk", req, f)
			return
		}
		s.whole(w, r, st, chat, id, object)
	}
}

// admit validates a request and submits it to the engine.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, chat bool, arrival time.Time) (*completionRequest, *Stream, *apiError) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, nil, &apiError{status: http.StatusRequestEntityTooLarge, typ: "RequestEntityTooLarge", msg: fmt.Sprintf("request body over %d bytes", s.cfg.MaxBodyBytes)}
		}
		return nil, nil, badRequest("", "reading the request: %v", err)
	}
	var req completionRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, nil, badRequest("", "malformed JSON body: %v", err)
	}
	if req.Model != "" && req.Model != s.e.Model() {
		return nil, nil, &apiError{status: http.StatusNotFound, typ: "NotFoundError", param: "model", msg: fmt.Sprintf("The model `%s` does not exist.", req.Model)}
	}
	if req.N != nil && *req.N != 1 {
		return nil, nil, badRequest("n", "n = %d: only n = 1 is supported", *req.N)
	}
	if req.Temperature != nil && (*req.Temperature < 0 || *req.Temperature > 2) {
		return nil, nil, badRequest("temperature", "temperature %v: want 0 to 2", *req.Temperature)
	}
	if req.MinTokens < 0 {
		return nil, nil, badRequest("min_tokens", "min_tokens %d is negative", req.MinTokens)
	}
	var prompt []int
	var apiErr *apiError
	if chat {
		prompt, err = chatPrompt(s.e.Encoder(), req.Messages)
	} else {
		prompt, err = completionPrompt(s.e.Encoder(), req.Prompt)
	}
	if errors.As(err, &apiErr) {
		return nil, nil, apiErr
	}
	stop, err := stopStrings(req.Stop)
	if errors.As(err, &apiErr) {
		return nil, nil, apiErr
	}
	maxLen := s.e.prof.MaxModelLen
	maxTokens := maxLen - len(prompt)
	param := "max_tokens"
	for _, m := range []*int{req.MaxTokens, req.MaxCompletionTokens} {
		if m != nil {
			maxTokens = *m
			if m == req.MaxCompletionTokens {
				param = "max_completion_tokens"
			}
		}
	}
	if maxTokens < 1 || len(prompt)+maxTokens > maxLen {
		if maxTokens >= 1 || len(prompt) >= maxLen {
			return nil, nil, badRequest(param, "This model's maximum context length is %d tokens. However, you requested %d tokens (%d in the messages, %d in the completion). Please reduce the length of the messages or completion.",
				maxLen, len(prompt)+max(maxTokens, 0), len(prompt), max(maxTokens, 0))
		}
		return nil, nil, badRequest(param, "%s = %d: must be at least 1", param, maxTokens)
	}
	if req.MinTokens > maxTokens {
		return nil, nil, badRequest("min_tokens", "min_tokens (%d) must be at most max_tokens (%d)", req.MinTokens, maxTokens)
	}
	er := Request{Prompt: prompt, MaxTokens: maxTokens, MinTokens: req.MinTokens, IgnoreEOS: req.IgnoreEOS, Stop: stop, Arrival: arrival, Priority: req.Priority}
	if req.Seed != nil {
		seed := uint64(*req.Seed)
		er.Seed = &seed
	}
	st, err := s.e.Submit(er)
	if errors.Is(err, ErrPriority) {
		return nil, nil, badRequest("priority", "%v", err)
	}
	if err != nil {
		return nil, nil, badRequest("", "%v", err)
	}
	return &req, st, nil
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

func (s *Server) whole(w http.ResponseWriter, r *http.Request, st *Stream, chat bool, id, object string) {
	var toks []int
	var reason string
	for {
		var done bool
		toks, done, reason = st.Snapshot(0)
		if done {
			break
		}
		if !s.wait(r, st) {
			return
		}
	}
	text := s.detok(toks)
	choice := map[string]any{"index": 0, "logprobs": nil, "finish_reason": reason, "stop_reason": nil}
	if chat {
		choice["message"] = map[string]any{"role": "assistant", "content": text, "tool_calls": []any{}}
	} else {
		choice["text"] = text
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"id": id, "object": object, "created": time.Now().Unix(), "model": s.e.Model(),
		"choices": []any{choice}, "usage": s.usage(st),
	})
}

func (s *Server) detok(toks []int) string {
	var b []byte
	for _, t := range toks {
		b = append(b, s.e.TokenText(t)...)
	}
	return string(b)
}

// stream writes server-sent events as vLLM does: for chat a first chunk with
// the assistant role, then one chunk per output token (the last carrying the
// finish reason), a usage chunk when stream_options.include_usage is set,
// and "data: [DONE]".
func (s *Server) stream(w http.ResponseWriter, r *http.Request, st *Stream, chat bool, id, object string, req *completionRequest, f fault) {
	fl, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 4096)
	created := time.Now().Unix()
	chunk := func(delta string, role bool, reason string) {
		var choice map[string]any
		if chat {
			d := map[string]any{"content": delta}
			if role {
				d = map[string]any{"role": "assistant", "content": ""}
			}
			choice = map[string]any{"index": 0, "delta": d, "logprobs": nil, "finish_reason": nil}
		} else {
			choice = map[string]any{"index": 0, "text": delta, "logprobs": nil, "finish_reason": nil}
		}
		if reason != "" {
			choice["finish_reason"], choice["stop_reason"] = reason, nil
		}
		writeEvent(bw, map[string]any{"id": id, "object": object, "created": created, "model": s.e.Model(), "choices": []any{choice}})
	}
	flush := func() {
		bw.Flush()
		if fl != nil {
			fl.Flush()
		}
	}
	sent, chunks := 0, 0
	last := time.Now()
	for {
		toks, done, reason := st.Snapshot(sent)
		for k, t := range toks {
			if f.cutAfter >= 0 && chunks >= f.cutAfter {
				flush()
				st.Abort()
				panic(http.ErrAbortHandler) // close the connection mid-stream
			}
			if f.slow > 1 {
				flush()
				time.Sleep(time.Duration(float64(time.Since(last)) * (f.slow - 1)))
			}
			if sent == 0 && chat {
				chunk("", true, "")
			}
			end := ""
			if done && k == len(toks)-1 {
				end = reason
			}
			chunk(s.e.TokenText(t), false, end)
			sent++
			chunks++
			last = time.Now()
		}
		if done {
			if len(toks) == 0 {
				chunk("", false, reason)
			}
			break
		}
		flush()
		if !s.wait(r, st) {
			return
		}
	}
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		writeEvent(bw, map[string]any{"id": id, "object": object, "created": created, "model": s.e.Model(), "choices": []any{}, "usage": s.usage(st)})
	}
	bw.WriteString("data: [DONE]\n\n")
	flush()
}

func writeEvent(w *bufio.Writer, v any) {
	b, _ := json.Marshal(v)
	w.WriteString("data: ")
	w.Write(b)
	w.WriteString("\n\n")
}
