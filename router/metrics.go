package router

import "github.com/prometheus/client_golang/prometheus"

// routerMetrics are the router's Prometheus metrics, on its own registry.
// Labels are bounded: backend, code, logic; never a workflow or agent id.
type routerMetrics struct {
	requests                     *prometheus.CounterVec
	inFlight                     *prometheus.GaugeVec
	affinityHits, affinityMisses prometheus.Counter
	spillovers                   prometheus.Counter
	decision                     *prometheus.HistogramVec
	decided                      prometheus.Observer // decision, of this router's logic
	ttft, duration               *prometheus.HistogramVec
	promptTokens, cachedTokens   *prometheus.CounterVec
	cutStreams, failovers        *prometheus.CounterVec
	bodyRefused                  prometheus.Counter
	allDown                      prometheus.Counter
	responsesPinned              prometheus.Counter
	responsesLost                prometheus.Counter
	passthrough                  *prometheus.CounterVec
	captured, captureErrors      prometheus.Counter
}

var latencyBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

func newRouterMetrics(rt *Router) *routerMetrics {
	m := &routerMetrics{
		requests:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wfsched_router_requests_total", Help: "Completion requests forwarded, by backend and status code (error: no response)."}, []string{"backend", "code"}),
		inFlight:        prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "wfsched_router_in_flight", Help: "Requests in flight, by backend."}, []string{"backend"}),
		affinityHits:    prometheus.NewCounter(prometheus.CounterOpts{Name: "wfsched_router_affinity_hits_total", Help: "Workflow requests routed to their home backend's workflow as assigned."}),
		affinityMisses:  prometheus.NewCounter(prometheus.CounterOpts{Name: "wfsched_router_affinity_misses_total", Help: "Workflow requests that had to pick a home (new workflow or migration)."}),
		spillovers:      prometheus.NewCounter(prometheus.CounterOpts{Name: "wfsched_router_spillovers_total", Help: "Workflow requests sent elsewhere because their home was over the load bound."}),
		decision:        prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "wfsched_router_routing_decision_seconds", Help: "Time to choose a backend.", Buckets: prometheus.ExponentialBuckets(1e-6, 4, 10)}, []string{"logic"}),
		ttft:            prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "wfsched_router_ttft_seconds", Help: "Time to the backend's first body byte, by backend.", Buckets: latencyBuckets}, []string{"backend"}),
		duration:        prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "wfsched_router_request_duration_seconds", Help: "Request duration through the router, by backend.", Buckets: latencyBuckets}, []string{"backend"}),
		promptTokens:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wfsched_router_prompt_tokens_total", Help: "Prompt tokens the backends' responses reported."}, []string{"backend"}),
		cachedTokens:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wfsched_router_cached_prompt_tokens_total", Help: "Cached prompt tokens the backends' responses reported."}, []string{"backend"}),
		cutStreams:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wfsched_router_cut_streams_total", Help: "Responses whose backend broke off after the first byte; the router aborted the client's response."}, []string{"backend"}),
		allDown:         prometheus.NewCounter(prometheus.CounterOpts{Name: "wfsched_router_all_backends_down_total", Help: "Requests that found every backend marked down by health checks and were tried on them anyway."}),
		bodyRefused:     prometheus.NewCounter(prometheus.CounterOpts{Name: "wfsched_router_body_budget_refused_total", Help: "Requests refused (503) because the router held as many request bytes as --max-body-bytes-held allows."}),
		responsesPinned: prometheus.NewCounter(prometheus.CounterOpts{Name: "wfsched_router_responses_pinned_total", Help: "Responses API follow-ups (previous_response_id) sent to the backend that stored the response they continue."}),
		responsesLost:   prometheus.NewCounter(prometheus.CounterOpts{Name: "wfsched_router_responses_lost_total", Help: "Responses API follow-ups refused (404) because the backend storing their previous response is down."}),
		passthrough:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wfsched_router_passthrough_requests_total", Help: "Requests to other endpoints passed through to the least loaded backend, by endpoint (other: a path vLLM does not list)."}, []string{"endpoint"}),
		captured:        prometheus.NewCounter(prometheus.CounterOpts{Name: "wfsched_router_captured_total", Help: "Calls written to the capture (--capture)."}),
		captureErrors:   prometheus.NewCounter(prometheus.CounterOpts{Name: "wfsched_router_capture_errors_total", Help: "Calls the capture could not write (the call itself was served)."}),
		failovers:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wfsched_router_failovers_total", Help: "Requests moved to another backend before their first byte, by the backend that failed."}, []string{"backend"}),
	}
	rt.reg.MustRegister(m.requests, m.inFlight, m.affinityHits, m.affinityMisses, m.spillovers, m.decision, m.ttft, m.duration, m.promptTokens, m.cachedTokens, m.cutStreams, m.failovers, m.bodyRefused, m.allDown, m.responsesPinned, m.responsesLost, m.passthrough, m.captured, m.captureErrors)
	gauge := func(name, help string, f func() float64) {
		rt.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
	}
	counter := func(name, help string, f func() float64) {
		rt.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
	}
	gauge("wfsched_router_active_workflows", "Workflows tracked.", func() float64 { return float64(rt.workflows.stats().workflows) })
	gauge("wfsched_router_admission_waiting", "Requests waiting for admission to a backend (--admission).", func() float64 { return float64(rt.Held()) })
	counter("wfsched_router_migrations_total", "Workflows moved off a failed home.", func() float64 { return float64(rt.workflows.stats().migrations) })
	counter("wfsched_router_messages_sent_total", "Agent messages queued.", func() float64 { n, _, _ := rt.mail.totals(); return float64(n) })
	counter("wfsched_router_messages_received_total", "Agent messages delivered.", func() float64 { _, n, _ := rt.mail.totals(); return float64(n) })
	counter("wfsched_router_messages_expired_total", "Agent messages dropped after their TTL.", func() float64 { _, _, n := rt.mail.totals(); return float64(n) })
	gauge("wfsched_router_message_queue_depth", "Messages waiting in all queues.", func() float64 { n, _, _ := rt.mail.depth(); return float64(n) })
	gauge("wfsched_router_message_queue_bytes", "Bytes held in all message queues, as the limits count them.", func() float64 { _, _, b := rt.mail.depth(); return float64(b) })
	counter("wfsched_router_state_errors_total", "Operations on the shared state's Redis (--state) that failed; the router routed on its own state.", func() float64 {
		if rt.shared == nil {
			return 0
		}
		return float64(rt.shared.errors.Load())
	})
	gauge("wfsched_router_state_degraded", "1 while the shared state's Redis is lost and the router routes on its own state.", func() float64 {
		if rt.shared != nil && rt.shared.degraded.Load() {
			return 1
		}
		return 0
	})
	counter("wfsched_router_discovery_errors_total", "Service discovery lookups (--service-discovery dns) that failed or found nothing; the backends stayed as they were.", func() float64 { return float64(rt.discoveryErrors.Load()) })
	gauge("wfsched_router_backends_present", "Backends routed to: all given, or those service discovery finds now.", func() float64 { return float64(len(rt.present())) })
	gauge("wfsched_router_body_bytes_held", "Bytes of request bodies held now.", func() float64 { return float64(rt.bodies.held.Load()) })
	gauge("wfsched_router_client_connections", "Client connections held now.", func() float64 { return float64(rt.conns.held()) })
	counter("wfsched_router_connections_evicted_total", "Connections closed at the connection limit to make room (idle, or slow to send their request).", func() float64 { return float64(rt.conns.evicted.Load()) })
	counter("wfsched_router_connections_refused_total", "Connections refused with 503 over the connection limit and its reserve.", func() float64 { return float64(rt.conns.refused.Load()) })
	counter("wfsched_router_backend_unsolicited_total", "Backend connections closed because the backend sent bytes outside any answer (more than an answer's framing said, or while the connection was idle): kept, they would have been the next request's answer.", func() float64 { return float64(rt.up.unsolicitedAnswers.Load()) })
	counter("wfsched_router_connections_handed_over_total", "Client connections handed to Go's net/http server at a request the router's own HTTP/1.1 path does not take (HTTP/1.0, a chunked or 100-continue body, an upgrade, a head over 8 KiB, lenient syntax).", func() float64 { return float64(rt.conns.handed.Load()) })
	m.decided = m.decision.WithLabelValues(rt.logic.Name())
	for _, b := range rt.list() {
		m.addBackend(rt, b)
	}
	return m
}

// backendSeries are a backend's per-request series, their labels resolved
// once: a label lookup at every use was 2% of the router's CPU under load
// (pprof, wrk against instant backends).
type backendSeries struct {
	inFlight                   prometheus.Gauge
	ttft, duration             prometheus.Observer
	promptTokens, cachedTokens prometheus.Counter
	ok                         prometheus.Counter // requests answered 200
}

// of returns b's series.
func (m *routerMetrics) of(b *backend) *backendSeries {
	if s := b.series.Load(); s != nil {
		return s
	}
	b.series.CompareAndSwap(nil, &backendSeries{inFlight: m.inFlight.WithLabelValues(b.url), ttft: m.ttft.WithLabelValues(b.url),
		duration: m.duration.WithLabelValues(b.url), promptTokens: m.promptTokens.WithLabelValues(b.url),
		cachedTokens: m.cachedTokens.WithLabelValues(b.url), ok: m.requests.WithLabelValues(b.url, "200")})
	return b.series.Load()
}

// addBackend creates a backend's series, at 0, so that rates and
// dashboards see them before its first event (at the start, or when it
// joins).
func (m *routerMetrics) addBackend(rt *Router, b *backend) {
	m.failovers.WithLabelValues(b.url)
	m.cutStreams.WithLabelValues(b.url)
	m.of(b)
	labels := prometheus.Labels{"backend": b.url}
	rt.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "wfsched_router_backend_workflows", Help: "Workflows whose home is the backend.", ConstLabels: labels},
		func() float64 { return float64(b.homes.Load()) }))
	rt.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "wfsched_router_backend_healthy", Help: "1 while the backend passes its health checks (0 once service discovery no longer finds it).", ConstLabels: labels},
		func() float64 {
			if b.healthy.Load() {
				return 1
			}
			return 0
		}))
}
