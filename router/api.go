package router

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"
)

// Stats is GET /v1/workflows/stats.
type Stats struct {
	Logic           string `json:"routing_logic"`
	ActiveWorkflows int    `json:"active_workflows"`
	AffinityHits    int64  `json:"affinity_hits"`
	AffinityMisses  int64  `json:"affinity_misses"`
	Spillovers      int64  `json:"spillovers"`
	Migrations      int64  `json:"migrations"`
	Evicted         int64  `json:"evicted"`
	Expired         int64  `json:"expired"`
	// AdmissionWaiting counts the requests waiting for admission to a
	// backend (with an admission limit).
	AdmissionWaiting int64          `json:"admission_waiting,omitempty"`
	Backends         []BackendStats `json:"backends"`
	Messages         MessageStats   `json:"messages"`
}

// BackendStats is one backend's figures.
type BackendStats struct {
	URL       string `json:"url"`
	Healthy   bool   `json:"healthy"`
	InFlight  int64  `json:"in_flight"`
	Workflows int64  `json:"workflows"` // whose home it is
	// CutStreams counts responses the backend broke off after the first
	// byte (the router aborted them); Failovers requests moved off it
	// before their first byte.
	CutStreams int64 `json:"cut_streams"`
	Failovers  int64 `json:"failovers"`
}

// MessageStats are the message queues' figures.
type MessageStats struct {
	Sent     int64 `json:"sent"`
	Received int64 `json:"received"`
	Expired  int64 `json:"expired"`
	Pending  int   `json:"pending"`
	Queues   int   `json:"queues"`
	Bytes    int64 `json:"bytes"` // held in every queue, as the limits count them
}

// StatsNow returns the router's figures.
func (rt *Router) StatsNow() Stats {
	s := rt.Balancer.Stats()
	if rt.shared != nil {
		if b, ok := rt.shared.backendTotals(rt.present()); ok {
			s.Backends = b
		}
	}
	pending, queues, bytes := rt.mail.depth()
	sent, received, expired := rt.mail.totals()
	s.Messages = MessageStats{Sent: sent, Received: received, Expired: expired, Pending: pending, Queues: queues, Bytes: bytes}
	return s
}

func (rt *Router) stats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, rt.StatsNow())
}

func (rt *Router) status(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s, ok := rt.Balancer.status(id)
	if !ok {
		apiError(w, http.StatusNotFound, "workflow %s is not known (never seen, ended, or idle past its TTL)", clip(id))
		return
	}
	s.MessagesPending = rt.mail.pending(id)
	writeJSON(w, http.StatusOK, s)
}

func (rt *Router) deleteWorkflow(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !rt.Forget(id) {
		apiError(w, http.StatusNotFound, "workflow %s is not known", clip(id))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"workflow_id": id, "deleted": true})
}

func (rt *Router) postMessage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !validID(id) {
		apiError(w, http.StatusBadRequest, "workflow id %s: want 1 to %d letters, digits or ._:@/+-", clip(id), MaxIDLength)
		return
	}
	body, release, ok := rt.readBody(w, r, rt.cfg.MaxPayload+64<<10, "message")
	if !ok {
		return
	}
	defer release()
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
	case !validID(in.Source):
		apiError(w, http.StatusBadRequest, "source_agent %s: want 1 to %d letters, digits or ._:@/+-", clip(in.Source), MaxIDLength)
		return
	case !validID(in.Target):
		apiError(w, http.StatusBadRequest, "target_agent %s: want 1 to %d letters, digits or ._:@/+-", clip(in.Target), MaxIDLength)
		return
	case len(in.Type) > 64:
		apiError(w, http.StatusBadRequest, "message_type %s: want at most 64 bytes", clip(in.Type))
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
	// The queue keeps its own copy of the payload, not the request body.
	msg, err := rt.mail.send(id, Message{Source: in.Source, Target: in.Target, Type: in.Type, Payload: bytes.Clone(in.Payload)})
	var full *ErrFull
	if errors.As(err, &full) {
		w.Header().Set("Retry-After", "1")
		apiError(w, http.StatusTooManyRequests, "%s", full.Reason)
		return
	}
	// The design documents' answer ("sent", Unix seconds), with the queue's
	// view beside it.
	writeJSON(w, http.StatusOK, map[string]any{"message_id": msg.ID, "status": "sent", "queued": true,
		"timestamp": unixSeconds(msg.Timestamp), "time": msg.Timestamp})
}

// parseTimeout reads a long poll's ?timeout= strictly: a finite number of
// seconds from 0 to MaxLongPoll.
func parseTimeout(v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	s, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(s) || s < 0 || s > MaxLongPoll.Seconds() {
		return 0, fmt.Errorf("timeout %s: want a number of seconds from 0 to %g", clip(v), MaxLongPoll.Seconds())
	}
	return time.Duration(s * float64(time.Second)), nil
}

func (rt *Router) getMessages(w http.ResponseWriter, r *http.Request) {
	id, agent := r.PathValue("id"), r.PathValue("agent")
	if !validID(id) || !validID(agent) {
		apiError(w, http.StatusBadRequest, "bad workflow or agent id: want 1 to %d letters, digits or ._:@/+-", MaxIDLength)
		return
	}
	timeout, err := parseTimeout(r.URL.Query().Get("timeout"))
	if err != nil {
		apiError(w, http.StatusBadRequest, "%v", err)
		return
	}
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			apiError(w, http.StatusBadRequest, "limit %s: want a positive number", clip(v))
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
	known := rt.Balancer.Forget(id)
	return rt.mail.forget(id) || known
}
