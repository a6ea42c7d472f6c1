package report

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/wfsched/wfsched/metrics"
	"github.com/wfsched/wfsched/router"
)

// TraceInfo describes a replayed trace.
type TraceInfo struct {
	ID               string  `json:"id"`
	Path             string  `json:"path"`
	Format           string  `json:"format"`
	Nodes            int     `json:"nodes"`
	LLMCalls         int     `json:"llm_calls"`
	SingleChain      bool    `json:"single_chain"`
	EstimatedSpanS   float64 `json:"estimated_span_s"`
	PrefixShareBound float64 `json:"prefix_share_bound"`
	PrefixAnyBound   float64 `json:"prefix_share_any_bound"`
	PromptTokens     int     `json:"prompt_tokens"`
}

// Workload describes what a run replayed, for telling whether two runs can
// be compared: the traces (id, nodes, LLM calls, prompt tokens, in order),
// how many workflows and how they arrived. Policy, routing and backend are
// left out: they are what a comparison compares.
func (r RunReport) Workload() string {
	var b strings.Builder
	for i, t := range r.Traces {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s (%d nodes, %d calls, %d prompt tokens)", t.ID, t.Nodes, t.LLMCalls, t.PromptTokens)
	}
	fmt.Fprintf(&b, "; %d workflow(s)", r.Config.Workflows)
	if r.Config.Arrival != "" {
		fmt.Fprintf(&b, " arriving %s", r.Config.Arrival)
	} else {
		fmt.Fprintf(&b, ", %d at once", r.Config.Concurrency)
	}
	return b.String()
}

// Backend says what served a run.
type Backend struct {
	Kind      string   `json:"kind"` // "embedded" or "endpoint"
	URLs      []string `json:"urls"`
	Model     string   `json:"model"`
	Profile   string   `json:"profile,omitempty"`
	TimeScale float64  `json:"time_scale"`
	// Clock is "virtual" (the embedded engines in modeled time, an event
	// loop) or "wall" (over HTTP in wall-clock time); "" in runs written
	// before virtual time, which were all wall.
	Clock string `json:"clock,omitempty"`
	// API is the endpoint calls went through on the wall clock: "chat"
	// ("" in runs before it was recorded), "completions" or "responses".
	API string `json:"api,omitempty"`
	// Routing is the router's logic when calls went through wfsched's
	// router (Router is its URL); URLs are then the servers behind it.
	Routing string `json:"routing_logic,omitempty"`
	Router  string `json:"router,omitempty"`
	// Capture is the capture file the router wrote (--capture), if any.
	Capture string `json:"capture,omitempty"`
	// RouterStats are the router's figures at the end of the run.
	RouterStats *router.Stats `json:"router_stats,omitempty"`
}

// bounds prints the prefix-sharing bounds, which are computed from the
// trace's prompts: through the Responses API the server builds each
// continued prompt from its stored outputs instead, so they do not bound
// that run's hit rate.
func bounds(r RunReport) string {
	b := fmt.Sprintf("%.1f%%, %.1f%%", 100*r.PrefixShareBound, 100*r.PrefixAnyBound)
	if r.Backend.API == "responses" {
		b += " (of the trace's prompts; not a bound here: through the Responses API continued prompts hold the server's stored outputs)"
	}
	return b
}

// RunConfig is a run's configuration as summary.json records it.
type RunConfig struct {
	Policy string `json:"policy"`
	// WorkflowPolicy orders calls across workflows ("" or "fcfs": none).
	WorkflowPolicy string   `json:"workflow_policy,omitempty"`
	MaxParallel    int      `json:"max_parallel"`
	OnError        string   `json:"on_error"`
	Context        string   `json:"context"`
	MaxTokens      int      `json:"max_tokens,omitempty"`    // a cap on each node's reference length
	OutputTokens   int      `json:"output_tokens,omitempty"` // every call's length, forced
	Temperature    *float64 `json:"temperature,omitempty"`
	IgnoreEOS      bool     `json:"ignore_eos"`
	ToolLatencyS   float64  `json:"tool_latency_s"`
	Workflows      int      `json:"workflows"`
	Concurrency    int      `json:"concurrency"`
	Seed           uint64   `json:"seed"`
	SLO            string   `json:"slo,omitempty"`
	// Arrival describes open-loop arrivals ("" for the closed loop).
	Arrival string `json:"arrival,omitempty"`
}

// RunReport is summary.json: everything needed to understand and repeat a
// run.
type RunReport struct {
	RunID    string            `json:"run_id"`
	Dir      string            `json:"dir"`
	Args     []string          `json:"args"`
	Config   RunConfig         `json:"config"`
	Traces   []TraceInfo       `json:"traces"`
	Backend  Backend           `json:"backend"`
	Versions map[string]string `json:"versions"`
	Start    time.Time         `json:"start"`
	End      time.Time         `json:"end"`
	WallS    float64           `json:"wall_s"`
	Outcome  string            `json:"outcome"`
	Reason   string            `json:"reason,omitempty"`
	// PrefixShareBound and PrefixAnyBound are the replayed workflows'
	// prefix-sharing bounds (same agent; any earlier prompt), weighted by
	// their prompt tokens. The second is the highest hit rate a prefix cache
	// could reach replaying each workflow on its own.
	PrefixShareBound float64         `json:"prefix_share_bound"`
	PrefixAnyBound   float64         `json:"prefix_share_any_bound"`
	Summary          metrics.Summary `json:"summary"`
	// Timing says how far the run's modeled times can be trusted; absent
	// for real servers and in runs written before it existed.
	Timing *Timing `json:"timing,omitempty"`
}

// Timing verdicts.
const (
	TimingExact      = "exact"      // the virtual clock: every time is the model's
	TimingReliable   = "reliable"   // the wall clock kept up with the model
	TimingUnreliable = "unreliable" // the wall clock fell behind: latencies overstated
)

// MaxOverstated is how much the latencies a wall-clock run measured may
// exceed the engines' own (see Timing.Overstated) before its timing is
// unreliable.
const MaxOverstated = 0.01

// MaxTTFTOverstated is the same for the mean time to first token, which
// carries a fixed overhead per call (HTTP, the router, goroutine
// hand-offs: about a millisecond here, 10% of a short TTFT at time scale
// 1) and so is allowed more.
const MaxTTFTOverstated = 0.25

// Timing is how well a run's clock kept to the model. On the wall clock
// the embedded engines record each request's latency in modeled time,
// and how late each step's outputs went out (a timer overshoots; a busy
// CPU falls behind); the client measures the same requests through HTTP,
// the router and its own goroutines. The difference is what the machine
// added, scaled up by the time scale: at a quarter of real time, a
// millisecond of HTTP counts as four.
type Timing struct {
	Clock   string `json:"clock"`
	Verdict string `json:"verdict"`
	// Steps counts the engines' steps, LateSteps those whose outputs
	// went out late; LateP50S and LateP99S are percentiles of every
	// step's lateness (modeled seconds, 0 for a step on time), LateTotalS
	// their sum.
	Steps      int64   `json:"steps,omitempty"`
	LateSteps  int64   `json:"late_steps,omitempty"`
	LateP50S   float64 `json:"late_p50_s"`
	LateP99S   float64 `json:"late_p99_s"`
	LateTotalS float64 `json:"late_total_s"`
	// EngineE2ES and MeasuredE2ES are the mean end-to-end latency of the
	// calls as the engines modeled it and as the client measured it, and
	// Overstated is how much the second exceeds the first (a share).
	// EngineTTFTS, MeasuredTTFTS and TTFTOverstated are the same for the
	// first token. The run is unreliable when Overstated exceeds
	// MaxOverstated or TTFTOverstated MaxTTFTOverstated.
	EngineE2ES     float64 `json:"engine_e2e_mean_s"`
	MeasuredE2ES   float64 `json:"measured_e2e_mean_s"`
	Overstated     float64 `json:"overstated"`
	EngineTTFTS    float64 `json:"engine_ttft_mean_s"`
	MeasuredTTFTS  float64 `json:"measured_ttft_mean_s"`
	TTFTOverstated float64 `json:"ttft_overstated"`
	Advice         string  `json:"advice,omitempty"`
}

// Answer is what a run found, in a sentence or two: how many workflows
// completed and how long they took, the latency of the first token, the
// prefix-cache hit rate against its bound, and what went wrong if anything.
func (r RunReport) Answer() string {
	s := r.Summary
	out := fmt.Sprintf("%d of %d workflows completed", s.Completed, s.Workflows)
	if r.Outcome != "" && r.Outcome != "completed" {
		out += " (" + r.Outcome + ")"
	}
	if s.Completion.N > 0 {
		out += fmt.Sprintf(", in %s at the median and %s at p99", seconds(float64(s.Completion.P50)), seconds(float64(s.Completion.P99)))
	}
	out += "."
	if s.TTFT.N > 0 {
		out += " TTFT p50 " + ms(float64(s.TTFT.P50))
		if !math.IsNaN(float64(s.CacheHitRate)) {
			out += fmt.Sprintf("; prefix-cache hit rate %.1f%%", 100*float64(s.CacheHitRate))
			if r.Backend.API != "responses" {
				out += fmt.Sprintf(" of a %.1f%% bound", 100*r.PrefixAnyBound)
			}
		}
		out += "."
	}
	if f := s.Faults; f.Any() {
		out += fmt.Sprintf(" %d retries, %d cut streams, %d timeouts, %d other errors, %d failovers.", f.Retries, f.CutStreams, f.Timeouts, f.Errors, f.Failovers)
	}
	return out
}

// ClockWords says which clock timed the run and what its times are.
func (r RunReport) ClockWords() string {
	switch {
	case r.Backend.Clock == "virtual":
		return "virtual clock: times are modeled, exactly"
	case r.Backend.TimeScale != 1:
		return fmt.Sprintf("wall clock, time scale %g: times are modeled (wall / scale)", r.Backend.TimeScale)
	case r.Backend.Kind == "embedded":
		return "wall clock, time scale 1: times are measured"
	}
	return "times are measured"
}

// TimingWords is the timing row: exact, reliable (with what the machine
// added) or unreliable with the advice, or unchecked for real servers.
func (r RunReport) TimingWords() string {
	t := r.Timing
	if t == nil {
		return "measured on the servers' own clocks (not checked)"
	}
	switch t.Verdict {
	case TimingExact:
		return "exact (virtual clock)"
	case TimingUnreliable:
		return fmt.Sprintf("UNRELIABLE: mean E2E %s measured against %s modeled (%+.1f%%), TTFT %s against %s (%+.0f%%); %s",
			ms(t.MeasuredE2ES), ms(t.EngineE2ES), 100*t.Overstated, ms(t.MeasuredTTFTS), ms(t.EngineTTFTS), 100*t.TTFTOverstated, t.Advice)
	}
	return fmt.Sprintf("reliable: mean E2E %s measured against %s modeled (%+.2f%%, limit %.0f%%), TTFT %s against %s (%+.0f%%, limit %.0f%%); step outputs %s late at p99",
		ms(t.MeasuredE2ES), ms(t.EngineE2ES), 100*t.Overstated, 100*MaxOverstated, ms(t.MeasuredTTFTS), ms(t.EngineTTFTS), 100*t.TTFTOverstated,
		100*MaxTTFTOverstated, ms(t.LateP99S))
}

// WriteRunText writes a run's summary table.
func WriteRunText(w io.Writer, r RunReport) error {
	s := r.Summary
	times := r.ClockWords()
	backend := "endpoint " + strings.Join(r.Backend.URLs, ", ")
	if r.Backend.Kind == "embedded" {
		backend = "embedded engine " + r.Backend.Profile
		if n := len(r.Backend.URLs); n > 1 {
			backend = fmt.Sprintf("%d embedded engines %s", n, r.Backend.Profile)
		}
	}
	if r.Backend.Routing != "" {
		backend += ", router " + r.Backend.Routing
	}
	if api := r.Backend.API; api != "" && api != "chat" {
		backend += ", calls through /v1/" + api
	}
	ids := make([]string, 0, len(r.Traces))
	for _, t := range r.Traces {
		ids = append(ids, t.ID)
	}
	workflows := fmt.Sprintf("%d workflow(s)", r.Config.Workflows)
	if r.Config.Arrival != "" {
		workflows = fmt.Sprintf("%d workflow(s) arriving %s", s.Workflows, r.Config.Arrival)
	}
	if _, err := fmt.Fprintf(w, "Run %s: policy %s, %s of %s, %s (%s)\nAnswer: %s\n",
		r.RunID, r.Config.Policy, workflows, elide(ids, 3, 1), backend, times, r.Answer()); err != nil {
		return err
	}
	rows := [][]string{
		{"outcome", r.Outcome + reason(r.Reason)},
		{"timing", r.TimingWords()},
		{"workflows completed", fmt.Sprintf("%d of %d", s.Completed, s.Workflows)},
		{"nodes", fmt.Sprintf("%d llm ok, %d tool ok, %d failed, %d skipped, %d canceled", s.Requests, s.ToolNodes, s.Failed, s.Skipped, s.Canceled)},
		{"run duration", seconds(s.DurationS)},
		{"makespan per workflow, mean (p50 / p90)", distSeconds(s.Makespan)},
		{"critical-path bound, mean", seconds(float64(s.Critical.Mean))},
		{"efficiency (bound / makespan), mean", num(s.Efficiency, "%.3f")},
		{"achieved parallelism, mean", num(s.Parallelism, "%.2f")},
		{"requests/s, output tokens/s", num(s.RequestsPerS, "%.2f") + ", " + num(s.OutputTokensPerS, "%.1f")},
		{"TTFT p50 / p90 / p99", pct(s.TTFT)},
		{"TPOT p50 / p90 / p99", pct(s.TPOT)},
		{"E2E latency p50 / p90 / p99", pct(s.E2E)},
		{"queue wait in wfsched p50 / p99", ms(float64(s.QueueWait.P50)) + " / " + ms(float64(s.QueueWait.P99))},
	}
	if s.Completion.N > 0 {
		rows = append(rows,
			[]string{"workflow completion time p50 / p90 / p99", seconds(float64(s.Completion.P50)) + " / " + seconds(float64(s.Completion.P90)) + " / " + seconds(float64(s.Completion.P99))},
			[]string{"workflow queueing delay p50 / p99", ms(float64(s.QueueDelay.P50)) + " / " + ms(float64(s.QueueDelay.P99))},
			[]string{"workflows completed per minute", num(s.WorkflowsPerMin, "%.2f")})
		if !math.IsNaN(float64(s.WorkflowGoodputMin)) {
			rows = append(rows, []string{"workflow goodput (wct SLO) per minute", num(s.WorkflowGoodputMin, "%.2f")})
		}
	}
	for _, u := range s.Utilisation {
		rows = append(rows, []string{"utilisation " + u.URL, utilisation(u)})
	}
	if f := s.Faults; f.Any() {
		rows = append(rows, []string{"retries, cut streams, timeouts, other errors, failovers",
			fmt.Sprintf("%d, %d, %d, %d, %d (of %d attempts)", f.Retries, f.CutStreams, f.Timeouts, f.Errors, f.Failovers, f.Attempts)})
	}
	if st := r.Backend.RouterStats; st != nil {
		rows = append(rows, []string{"router " + st.Logic, fmt.Sprintf("%d affinity hits, %d misses, %d spillovers, %d migrations",
			st.AffinityHits, st.AffinityMisses, st.Spillovers, st.Migrations)})
	}
	if s.SLO != "" && !math.IsNaN(float64(s.GoodFraction)) {
		rows = append(rows, []string{"goodput (" + s.SLO + ")", num(s.Goodput, "%.2f req/s") + ", " + num(s.GoodFraction*100, "%.1f%%") + " of requests good"})
	}
	rows = append(rows, [][]string{
		{"prefix-cache hit rate: responses, server counters", hitRate(s) + ", " + serverRate(s)},
		{"prefix-sharing bound: same agent, any prompt", bounds(r)},
	}...)
	if err := Table(w, []string{"figure", "value"}, rows); err != nil {
		return err
	}
	for _, t := range r.Traces {
		if t.SingleChain {
			if _, err := fmt.Fprintf(w, "Note: %s is a single chain (no two nodes can overlap), so no policy can make one workflow of it faster; concurrency across workflows and prefix reuse are what can help.\n", t.ID); err != nil {
				return err
			}
		}
	}
	_, err := fmt.Fprintf(w, "Results: %s (nodes.jsonl, workflows.jsonl, summary.json; report.html: wfsched report %s)\n", r.Dir, r.Dir)
	return err
}

// utilisation says how busy a server was: busy fraction (and how it was
// measured), KV-cache use, requests running and waiting.
func utilisation(u metrics.BackendUtil) string {
	if u.Samples == 0 && u.BusyFrom == "" {
		return "not measured (the server exposed no vLLM gauges)"
	}
	busy := "busy " + num(u.BusyFraction*100, "%.0f%%")
	if u.BusyFrom == "samples" {
		busy += " (sampled)"
	}
	if u.Samples == 0 {
		return busy
	}
	return fmt.Sprintf("%s, KV cache %s mean, %s max, running %s, waiting %s (max %s), %d samples", busy,
		num(u.KVUsageMean*100, "%.0f%%"), num(u.KVUsageMax*100, "%.0f%%"), num(u.RunningMean, "%.1f"),
		num(u.WaitingMean, "%.1f"), num(u.WaitingMax, "%.0f"), u.Samples)
}

func serverRate(s metrics.Summary) string {
	if math.IsNaN(float64(s.ServerHitRate)) {
		return "n/a (no vLLM counters on /metrics)"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(s.ServerHitRate))
}

func reason(r string) string {
	if r == "" {
		return ""
	}
	return " (" + r + ")"
}

func num(f metrics.Float, format string) string {
	if math.IsNaN(float64(f)) {
		return "n/a"
	}
	return fmt.Sprintf(format, float64(f))
}

func ms(s float64) string {
	if math.IsNaN(s) {
		return "n/a"
	}
	return fmt.Sprintf("%.1f ms", 1000*s)
}

func pct(d metrics.Dist) string {
	if d.N == 0 {
		return "n/a"
	}
	return ms(float64(d.P50)) + " / " + ms(float64(d.P90)) + " / " + ms(float64(d.P99))
}

func distSeconds(d metrics.Dist) string {
	if d.N == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%s (%s / %s)", seconds(float64(d.Mean)), seconds(float64(d.P50)), seconds(float64(d.P90)))
}

func hitRate(s metrics.Summary) string {
	if math.IsNaN(float64(s.CacheHitRate)) {
		return "unknown (the server did not report cached tokens)"
	}
	out := fmt.Sprintf("%.1f%%", 100*float64(s.CacheHitRate))
	if s.CachedUnknown > 0 {
		out += fmt.Sprintf(", %d responses did not say", s.CachedUnknown)
	}
	return out
}
