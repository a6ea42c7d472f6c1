package sim

import (
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Histogram buckets, in seconds, as vLLM defines them for its own metrics.
var (
	ttftBuckets = []float64{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640, 2560}
	itlBuckets  = []float64{0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80}
	reqBuckets  = []float64{0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680}
)

// hist is a cumulative-bucket histogram.
type hist struct {
	bounds []float64
	counts []uint64 // per bucket, not cumulative; the last is +Inf
	sum    float64
	n      uint64
	last   time.Duration // the last value observed and its bucket: the
	lastK  int           // decodes of one step all observe the same gap
}

func newHist(bounds []float64) *hist {
	return &hist{bounds: bounds, counts: make([]uint64, len(bounds)+1)}
}

func (h *hist) observe(d time.Duration) {
	v := d.Seconds()
	if d != h.last || h.n == 0 {
		h.last, h.lastK = d, sort.SearchFloat64s(h.bounds, v)
	}
	h.counts[h.lastK]++
	h.sum += v
	h.n++
}

func (h *hist) metric(desc *prometheus.Desc, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(h.bounds))
	var cum uint64
	for i, b := range h.bounds {
		cum += h.counts[i]
		buckets[b] = cum
	}
	return prometheus.MustNewConstHistogram(desc, h.n, h.sum, buckets, labels...)
}

// stats are the engine's counters, gauges and histograms, updated by the
// engine loop and read by scrapes. Times are modeled seconds.
type stats struct {
	mu    sync.Mutex
	model string

	queries, hits int64 // prefix cache, in tokens
	preemptions   int64
	prompt        int64
	generated     int64
	success       map[string]int64
	steps         int64
	busySec       float64 // modeled time spent in steps
	running       int
	waiting       int
	kvUsage       float64
	lagSec        float64
	lateness      lateness

	ttft, itlH, e2e, queue, prefill, decode *hist
}

func newStats(model string) *stats {
	return &stats{
		model: model, success: map[string]int64{},
		ttft: newHist(ttftBuckets), itlH: newHist(itlBuckets), e2e: newHist(reqBuckets),
		queue: newHist(reqBuckets), prefill: newHist(reqBuckets), decode: newHist(reqBuckets),
	}
}

// The engine loop holds mu while it schedules and runs a step, and so while
// it calls the methods below or bumps the counters; scrapes take mu too.

func (s *stats) first(ttft, queue, prefill time.Duration) {
	s.ttft.observe(ttft)
	s.queue.observe(queue)
	s.prefill.observe(prefill)
}

func (s *stats) itl(d time.Duration) { s.itlH.observe(d) }

func (s *stats) finished(reason string, outputs, prompt int, e2e, decode time.Duration) {
	s.success[reason]++
	s.prompt += int64(prompt)
	s.e2e.observe(e2e)
	s.decode.observe(decode)
}

// late records how far past its modeled end a step's outputs went out on
// the wall clock: the lag gauge and the lateness distribution.
func (s *stats) late(d time.Duration) {
	d = max(0, d)
	s.mu.Lock()
	s.lagSec = d.Seconds()
	s.lateness.add(d)
	s.mu.Unlock()
}

// lateness is the distribution of steps' late outputs: a count, a total
// and a uniform sample (reservoir) for percentiles.
type lateness struct {
	steps, lateSteps int64
	total            time.Duration
	sample           []time.Duration
	rng              rand.PCG
}

const lateSample = 4096

func (l *lateness) add(d time.Duration) {
	l.steps++
	if d > 0 {
		l.lateSteps++
		l.total += d
	}
	if len(l.sample) < lateSample {
		l.sample = append(l.sample, d)
		return
	}
	if k := l.rng.Uint64() % uint64(l.steps); k < lateSample {
		l.sample[k] = d
	}
}

// Lateness is how late an engine's outputs went out on the wall clock, in
// modeled time: what the engine could not keep up with (zero on a virtual
// clock, where nothing is ever late). A step's outputs go out when its
// sleep ends, so the timer's overshoot makes every step a little late; an
// engine the CPU cannot keep up with falls further and further behind.
type Lateness struct {
	Steps     int64         // steps measured
	LateSteps int64         // steps whose outputs went out late
	Total     time.Duration // sum of the steps' lateness
	// Sample is a uniform sample of every step's lateness (0 when on
	// time), at most 4096, for percentiles.
	Sample []time.Duration
}

// Lateness returns the engine's lateness so far.
func (e *Engine) Lateness() Lateness {
	s := e.stats
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.lateness
	return Lateness{Steps: l.steps, LateSteps: l.lateSteps, Total: l.total, Sample: append([]time.Duration(nil), l.sample...)}
}

func (s *stats) gauges(running, waiting int, kv *kvCache) {
	s.running, s.waiting = running, waiting
	s.kvUsage = float64(kv.used()) / float64(len(kv.blocks))
}

// Metric names, as vLLM exposes them (counters with _total), plus
// wfsched's own under wfsched_sim_.
var (
	modelLabel = []string{"model_name"}
	descs      = struct {
		running, waiting, kvUsage, lag                     *prometheus.Desc
		queries, hits, preempt, prompt, generated, success *prometheus.Desc
		steps, busy                                        *prometheus.Desc
		ttft, itl, e2e, queue, prefill, decode             *prometheus.Desc
	}{
		running:   prometheus.NewDesc("vllm:num_requests_running", "Number of requests in the running batch.", modelLabel, nil),
		waiting:   prometheus.NewDesc("vllm:num_requests_waiting", "Number of requests waiting to be scheduled.", modelLabel, nil),
		kvUsage:   prometheus.NewDesc("vllm:kv_cache_usage_perc", "Fraction of KV-cache blocks in use, 0 to 1.", modelLabel, nil),
		lag:       prometheus.NewDesc("wfsched_sim_lag_seconds", "How far the engine runs behind the modeled schedule after its last step, in modeled seconds (0 when it keeps up).", modelLabel, nil),
		queries:   prometheus.NewDesc("vllm:prefix_cache_queries_total", "Prompt tokens looked up in the prefix cache.", modelLabel, nil),
		hits:      prometheus.NewDesc("vllm:prefix_cache_hits_total", "Prompt tokens found in the prefix cache.", modelLabel, nil),
		preempt:   prometheus.NewDesc("vllm:num_preemptions_total", "Requests preempted (to be recomputed).", modelLabel, nil),
		prompt:    prometheus.NewDesc("vllm:prompt_tokens_total", "Prompt tokens of finished requests.", modelLabel, nil),
		generated: prometheus.NewDesc("vllm:generation_tokens_total", "Generated tokens.", modelLabel, nil),
		success:   prometheus.NewDesc("vllm:request_success_total", "Finished requests, by finish reason.", []string{"model_name", "finished_reason"}, nil),
		steps:     prometheus.NewDesc("wfsched_sim_steps_total", "Engine steps run.", modelLabel, nil),
		busy:      prometheus.NewDesc("wfsched_sim_busy_seconds_total", "Modeled time the engine spent running steps: over an interval, its increase divided by the interval is the GPU's busy fraction.", modelLabel, nil),
		ttft:      prometheus.NewDesc("vllm:time_to_first_token_seconds", "Time to first token (modeled).", modelLabel, nil),
		itl:       prometheus.NewDesc("vllm:inter_token_latency_seconds", "Time between consecutive output tokens (modeled).", modelLabel, nil),
		e2e:       prometheus.NewDesc("vllm:e2e_request_latency_seconds", "Arrival to finish (modeled).", modelLabel, nil),
		queue:     prometheus.NewDesc("vllm:request_queue_time_seconds", "Arrival to first scheduling (modeled).", modelLabel, nil),
		prefill:   prometheus.NewDesc("vllm:request_prefill_time_seconds", "First scheduling to first token (modeled).", modelLabel, nil),
		decode:    prometheus.NewDesc("vllm:request_decode_time_seconds", "First token to finish (modeled).", modelLabel, nil),
	}
)

// Describe implements prometheus.Collector.
func (s *stats) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descs.running, descs.waiting, descs.kvUsage, descs.lag, descs.queries, descs.hits,
		descs.preempt, descs.prompt, descs.generated, descs.success, descs.steps, descs.busy, descs.ttft, descs.itl, descs.e2e,
		descs.queue, descs.prefill, descs.decode} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: one consistent view.
func (s *stats) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.model
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, m)
	}
	counter := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), m)
	}
	gauge(descs.running, float64(s.running))
	gauge(descs.waiting, float64(s.waiting))
	gauge(descs.kvUsage, s.kvUsage)
	gauge(descs.lag, s.lagSec)
	counter(descs.queries, s.queries)
	counter(descs.hits, s.hits)
	counter(descs.preempt, s.preemptions)
	counter(descs.prompt, s.prompt)
	counter(descs.generated, s.generated)
	counter(descs.steps, s.steps)
	ch <- prometheus.MustNewConstMetric(descs.busy, prometheus.CounterValue, s.busySec, m)
	for _, r := range []string{FinishStop, FinishLength} {
		ch <- prometheus.MustNewConstMetric(descs.success, prometheus.CounterValue, float64(s.success[r]), m, r)
	}
	ch <- s.ttft.metric(descs.ttft, m)
	ch <- s.itlH.metric(descs.itl, m)
	ch <- s.e2e.metric(descs.e2e, m)
	ch <- s.queue.metric(descs.queue, m)
	ch <- s.prefill.metric(descs.prefill, m)
	ch <- s.decode.metric(descs.decode, m)
}

// Counters is a snapshot of the engine's counters, for tests and reports.
type Counters struct {
	PrefixQueries, PrefixHits, Preemptions, PromptTokens, GenerationTokens, Steps int64
	Finished                                                                      map[string]int64
	Running, Waiting                                                              int
	KVUsage                                                                       float64
	BusySeconds                                                                   float64 // modeled time spent in steps
	// TTFTSum and E2ESum add up the modeled time to first token and
	// end-to-end latency (arrival to finish) of TTFTCount and E2ECount
	// requests (aborted ones left out of E2E).
	TTFTSum, E2ESum     float64
	TTFTCount, E2ECount int64
}

func (s *stats) counters() Counters {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := map[string]int64{}
	for k, v := range s.success {
		f[k] = v
	}
	return Counters{PrefixQueries: s.queries, PrefixHits: s.hits, Preemptions: s.preemptions, PromptTokens: s.prompt,
		GenerationTokens: s.generated, Steps: s.steps, Finished: f, Running: s.running, Waiting: s.waiting, KVUsage: s.kvUsage, BusySeconds: s.busySec,
		TTFTSum: s.ttft.sum, TTFTCount: int64(s.ttft.n), E2ESum: s.e2e.sum, E2ECount: int64(s.e2e.n)}
}
