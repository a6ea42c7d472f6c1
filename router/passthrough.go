package router

import (
	"container/list"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/wfsched/wfsched/internal/jsonscan"
)

// Every endpoint of vLLM's OpenAI-compatible server reaches a backend:
// chat, completions and responses are routed by workflow (proxy); the
// others pass through to the least loaded healthy backend with the same
// body limits, timeouts and failover (passthrough).

// Pass-through modes (Config.Passthrough).
const (
	PassAll  = "all"  // any path the router does not serve itself
	PassVLLM = "vllm" // only the paths vLLM serves (VLLMPaths)
	PassNone = "none" // none: 404, as before
)

// VLLMPaths are the endpoints vLLM's OpenAI-compatible server serves
// besides chat, completions and responses (v0.10 and after), passed
// through in every mode but none.
var VLLMPaths = []string{
	"/v1/embeddings", "/v1/score", "/v1/rerank", "/v2/rerank", "/rerank", "/score", "/pooling", "/classify",
	"/tokenize", "/detokenize", "/version", "/ping", "/load", "/invocations",
	"/v1/audio/transcriptions", "/v1/audio/translations", "/v1/load_lora_adapter", "/v1/unload_lora_adapter",
	"/v1/responses/", // GET and cancel of a stored response: see passthrough
}

func knownVLLMPath(path string) bool {
	for _, p := range VLLMPaths {
		if path == p || strings.HasSuffix(p, "/") && strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

// passthrough serves every path the router has no handler for.
func (rt *Router) passthrough(w http.ResponseWriter, r *http.Request) {
	known := knownVLLMPath(r.URL.Path)
	switch {
	case rt.cfg.Passthrough == PassNone,
		rt.cfg.Passthrough == PassVLLM && !known,
		!known && !strings.HasPrefix(r.URL.Path, "/v1/") && !strings.HasPrefix(r.URL.Path, "/v2/"):
		apiError(w, http.StatusNotFound, "no route for %s %s (the router passes through vLLM's endpoints and, with --passthrough all, any path under /v1/)", r.Method, clip(r.URL.Path))
		return
	}
	label := "other"
	if known {
		label = r.URL.Path
		if strings.HasPrefix(label, "/v1/responses/") {
			label = "/v1/responses/{id}"
		}
	}
	rt.m.passthrough.WithLabelValues(label).Inc()
	var body []byte
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		b, release, ok := rt.readBody(w, r, rt.cfg.MaxBodyBytes, "request body")
		if !ok {
			return
		}
		defer release()
		body = b
	}
	start := time.Now()
	// A stored response is read (or cancelled) where it was stored.
	if id, ok := strings.CutPrefix(r.URL.Path, "/v1/responses/"); ok {
		id, _, _ = strings.Cut(id, "/")
		if home, ok := rt.ResponseHome(id); ok {
			rt.send(w, r, body, home, false, true, start, nil)
			return
		}
	}
	pick, anyBackend := rt.leastLoaded(), false
	if pick < 0 {
		pick, anyBackend = rt.leastLoadedOf(func(int, *backend) bool { return true }), true
		rt.m.allDown.Inc()
	}
	rt.send(w, r, body, pick, anyBackend, false, start, nil)
}

// stringField reads a top-level string member of a JSON object, "" when
// absent or not a string.
func stringField(body []byte, key string) string {
	var buf [16]jsonscan.Member
	members, _, ok := jsonscan.ObjectInto(buf[:0], body, 0)
	if !ok {
		return ""
	}
	for _, m := range members {
		if jsonscan.KeyIs(body[m.KeyStart:m.KeyEnd], key) {
			var s string
			if json.Unmarshal(body[m.ValueStart:m.ValueEnd], &s) != nil {
				return ""
			}
			return s
		}
	}
	return ""
}

var responseIDPattern = regexp.MustCompile(`"id"\s*:\s*"(resp_[A-Za-z0-9_-]{1,200})"`)

// responseID finds the response id in the first bytes of a Responses API
// answer: the object itself, or the response.created event of a stream.
func responseID(head []byte) string {
	if m := responseIDPattern.FindSubmatch(head); m != nil {
		return string(m[1])
	}
	return ""
}

// notFound answers 404 in the OpenAI error shape, naming param.
func notFound(w http.ResponseWriter, param, format string, args ...any) {
	var body struct {
		Error struct {
			Message string `json:"message"`
			Type    string `json:"type"`
			Param   string `json:"param"`
			Code    int    `json:"code"`
		} `json:"error"`
	}
	body.Error.Message, body.Error.Type, body.Error.Param, body.Error.Code = fmt.Sprintf(format, args...), "NotFoundError", param, http.StatusNotFound
	writeJSON(w, http.StatusNotFound, body)
}

// DefaultMaxResponses bounds the response ids the router remembers.
const DefaultMaxResponses = 100_000

// responseStore remembers which backend (by URL, so the record survives
// a change of the backend list) produced each Responses API response: in
// this process (responseHomes) or shared by router replicas
// (redisResponses).
type responseStore interface {
	put(id, url string)
	get(id string) (string, bool)
}

// responseHomes keeps response homes in this process, for the workflow
// TTL and up to a count, least recently used out first.
type responseHomes struct {
	mu  sync.Mutex
	m   map[string]*list.Element
	lru list.List // of *responseHome, front: newest
	max int
	ttl time.Duration
	now func() time.Time
}

type responseHome struct {
	id, url string
	at      time.Time
}

func newResponseHomes(max int, ttl time.Duration, now func() time.Time) *responseHomes {
	return &responseHomes{m: map[string]*list.Element{}, max: max, ttl: ttl, now: now}
}

func (h *responseHomes) put(id, url string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if e, ok := h.m[id]; ok {
		rec := e.Value.(*responseHome)
		rec.url, rec.at = url, h.now()
		h.lru.MoveToFront(e)
		return
	}
	h.m[id] = h.lru.PushFront(&responseHome{id: id, url: url, at: h.now()})
	for h.lru.Len() > h.max {
		old := h.lru.Back()
		h.lru.Remove(old)
		delete(h.m, old.Value.(*responseHome).id)
	}
}

func (h *responseHomes) get(id string) (string, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e, ok := h.m[id]
	if !ok {
		return "", false
	}
	rec := e.Value.(*responseHome)
	if h.now().Sub(rec.at) > h.ttl {
		h.lru.Remove(e)
		delete(h.m, id)
		return "", false
	}
	rec.at = h.now()
	h.lru.MoveToFront(e)
	return rec.url, true
}

// RememberResponse records that the backend at url produced response id.
func (bl *Balancer) RememberResponse(id, url string) { bl.responses.put(id, url) }

// ResponseHome is the index of the backend that produced response id.
func (bl *Balancer) ResponseHome(id string) (int, bool) {
	url, ok := bl.responses.get(id)
	if !ok {
		return 0, false
	}
	for i, b := range bl.list() {
		if b.url == url {
			return i, true
		}
	}
	return 0, false
}
