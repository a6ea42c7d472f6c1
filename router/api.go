package router

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Stats is GET /v1/workflows/stats.
type Stats struct {
	Logic           string         `json:"routing_logic"`
	ActiveWorkflows int            `json:"active_workflows"`
	AffinityHits    int64          `json:"affinity_hits"`
	AffinityMisses  int64          `json:"affinity_misses"`
	Spillovers      int64          `json:"spillovers"`
	Migrations      int64          `json:"migrations"`
	Evicted         int64          `json:"evicted"`
	Expired         int64          `json:"expired"`
	Backends        []BackendStats `json:"backends"`
	Messages        MessageStats   `json:"messages"`
}

// BackendStats is one backend's figures.
type BackendStats struct {
	URL       string `json:"url"`
	Healthy   bool   `json:"healthy"`
	InFlight  int64  `json:"in_flight"`
	Workflows int64  `json:"workflows"` // whose home it is
}

// MessageStats are the message queues' figures.
type MessageStats struct {
	Sent     int64 `json:"sent"`
	Received int64 `json:"received"`
	Expired  int64 `json:"expired"`
	Pending  int   `json:"pending"`
	Queues   int   `json:"queues"`
}

// StatsNow returns the router's figures.
func (rt *Router) StatsNow() Stats {
	t := rt.workflows
	t.mu.Lock()
	s := Stats{Logic: rt.logic.Name(), ActiveWorkflows: len(t.m), AffinityHits: t.stats.hits, AffinityMisses: t.stats.misses,
		Spillovers: t.stats.spillovers, Migrations: t.stats.migrations, Evicted: t.stats.evicted, Expired: t.stats.expired}
	t.mu.Unlock()
	for _, b := range rt.backends {
		s.Backends = append(s.Backends, BackendStats{URL: b.url, Healthy: b.healthy.Load(), InFlight: b.inFlight.Load(), Workflows: b.homes.Load()})
	}
	pending, queues := rt.mail.depth()
	s.Messages = MessageStats{Sent: rt.mail.sent.Load(), Received: rt.mail.received.Load(), Expired: rt.mail.expired.Load(), Pending: pending, Queues: queues}
	return s
}

func (rt *Router) stats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, rt.StatsNow())
}

func (rt *Router) status(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s, ok := rt.workflows.status(rt, id)
	if !ok {
		apiError(w, http.StatusNotFound, "workflow %q is not known (never seen, ended, or idle past its TTL)", id)
		return
	}
	s.MessagesPending = rt.mail.pending(id)
	writeJSON(w, http.StatusOK, s)
}

func (rt *Router) deleteWorkflow(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !rt.Forget(id) {
		apiError(w, http.StatusNotFound, "workflow %q is not known", id)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"workflow_id": id, "deleted": true})
}

func (rt *Router) postMessage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !idPattern.MatchString(id) {
		apiError(w, http.StatusBadRequest, "workflow id %q: want 1 to 256 letters, digits or ._:@/+-", id)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, rt.cfg.MaxPayload+64<<10))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			apiError(w, http.StatusRequestEntityTooLarge, "message over %d bytes", rt.cfg.MaxPayload)
			return
		}
		apiError(w, http.StatusBadRequest, "reading the message: %v", err)
		return
	}
	var in struct {
		Source  string          `json:"source_agent"`
		Target  string          `json:"target_agent"`
		Type    string          `json:"message_type"`
		Payload json.RawMessage `json:"payload"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		apiError(w, http.StatusBadRequest, "malformed message JSON: %v (want {source_agent, target_agent, message_type, payload})", err)
		return
	}
	switch {
	case !idPattern.MatchString(in.Source):
		apiError(w, http.StatusBadRequest, "source_agent %q: want 1 to 256 letters, digits or ._:@/+-", in.Source)
		return
	case !idPattern.MatchString(in.Target):
		apiError(w, http.StatusBadRequest, "target_agent %q: want 1 to 256 letters, digits or ._:@/+-", in.Target)
		return
	case int64(len(in.Payload)) > rt.cfg.MaxPayload:
		apiError(w, http.StatusRequestEntityTooLarge, "payload of %d bytes is over the %d-byte limit", len(in.Payload), rt.cfg.MaxPayload)
		return
	}
	if in.Type == "" {
		in.Type = "data"
	}
	if len(in.Payload) == 0 {
		in.Payload = json.RawMessage("null")
	}
	msg, err := rt.mail.send(id, Message{Source: in.Source, Target: in.Target, Type: in.Type, Payload: in.Payload})
	var full *ErrFull
	if errors.As(err, &full) {
		w.Header().Set("Retry-After", "1")
		apiError(w, http.StatusTooManyRequests, "%s", full.Reason)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"message_id": msg.ID, "status": "queued", "timestamp": msg.Timestamp})
}

func (rt *Router) getMessages(w http.ResponseWriter, r *http.Request) {
	id, agent := r.PathValue("id"), r.PathValue("agent")
	if !idPattern.MatchString(id) || !idPattern.MatchString(agent) {
		apiError(w, http.StatusBadRequest, "bad workflow or agent id: want 1 to 256 letters, digits or ._:@/+-")
		return
	}
	timeout := time.Duration(0)
	if v := r.URL.Query().Get("timeout"); v != "" {
		s, err := strconv.ParseFloat(v, 64)
		if err != nil || s < 0 {
			apiError(w, http.StatusBadRequest, "timeout %q: want a number of seconds", v)
			return
		}
		timeout = min(time.Duration(s*float64(time.Second)), MaxLongPoll)
	}
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			apiError(w, http.StatusBadRequest, "limit %q: want a positive number", v)
			return
		}
		limit = min(n, 1000)
	}
	msgs := rt.mail.receive(r.Context(), id, agent, timeout, limit)
	if msgs == nil {
		msgs = []Message{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"messages": msgs, "count": len(msgs)})
}

// Forget drops a finished workflow's state and its message queues (as
// DELETE /v1/workflows/{id} does) and reports whether it was known. A
// replay calls it as each workflow ends, so the router holds only the
// workflows in flight.
func (rt *Router) Forget(id string) bool {
	if !rt.workflows.delete(id) {
		return false
	}
	rt.mail.forget(id)
	return true
}
