package metrics

import (
	"encoding/json"
	"math"
	"strconv"
	"sync"

	"github.com/wfsched/wfsched/scheduler"
)

func formatFloat(v float64) string        { return strconv.FormatFloat(v, 'g', 10, 64) }
func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// Recorder accumulates results; it is a scheduler.Sink and safe for
// concurrent use. Set SLO before the first result to count goodput.
type Recorder struct {
	SLO SLO
	// Idle maps a trace name to its completion time alone on an idle
	// server; when set, each completed workflow's slowdown (its completion
	// time over its trace's idle one) is recorded. Set before the first result.
	Idle map[string]float64

	mu   sync.Mutex
	good int

	ok, failed, skipped, canceled, tools int
	ttft, tpot, itl, e2e, queue          sample
	prompt, completion                   int
	cachedPrompt, cached, unknownCached  int
	usageMissing                         int

	workflows, completed                int
	makespan, critical, efficiency, par sample
	wct, queueDelay, wfHit              sample // workflow completion, queueing, hit rate
	slowdown                            sample
	slowSum, slowSq                     float64 // of every slowdown, for Jain's index
	goodWorkflows                       int

	faults FaultTotals

	// Arrivals and completions, for throughput inside the arrival window.
	firstArrival, lastArrival float64
	arrivals                  []float64 // every workflow's arrival time
	ends                      []float64 // completed workflows' end times
}

var _ scheduler.Sink = (*Recorder)(nil)

// Node records one node's result.
func (r *Recorder) Node(res scheduler.NodeResult) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.faults.add(res.Attempts)
	switch res.Status {
	case scheduler.StatusSkipped:
		r.skipped++
		return nil
	case scheduler.StatusCanceled:
		r.canceled++
		return nil
	case scheduler.StatusFailed:
		r.failed++
		return nil
	}
	if res.Kind != "llm" {
		r.tools++
		return nil
	}
	r.ok++
	r.ttft.add(res.TTFTS)
	r.e2e.add(res.E2ES)
	r.queue.add(res.QueueWaitS)
	for _, v := range res.ITLS {
		r.itl.add(v)
	}
	tpot, hasTPOT := 0.0, res.CompletionTokens > 1
	if hasTPOT {
		tpot = (res.E2ES - res.TTFTS) / float64(res.CompletionTokens-1)
		r.tpot.add(tpot)
	}
	if r.SLO.good(res.TTFTS, tpot, res.E2ES, hasTPOT) {
		r.good++
	}
	r.prompt += res.PromptTokens
	r.completion += res.CompletionTokens
	if !res.UsageReported {
		r.usageMissing++
	}
	if res.CachedTokens != nil {
		r.cached += *res.CachedTokens
		r.cachedPrompt += res.PromptTokens
	} else {
		r.unknownCached++
	}
	return nil
}

// Workflow records one workflow's result.
func (r *Recorder) Workflow(w scheduler.WorkflowResult) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.workflows == 0 || w.ArrivalS < r.firstArrival {
		r.firstArrival = w.ArrivalS
	}
	r.lastArrival = max(r.lastArrival, w.ArrivalS)
	r.arrivals = append(r.arrivals, w.ArrivalS)
	r.workflows++
	if w.Outcome != scheduler.OutcomeCompleted {
		return nil
	}
	r.ends = append(r.ends, w.EndS)
	r.completed++
	r.wct.add(w.CompletionS)
	r.queueDelay.add(w.QueueDelayS)
	if idle := r.Idle[w.Trace]; idle > 0 {
		x := w.CompletionS / idle
		r.slowdown.add(x)
		r.slowSum += x
		r.slowSq += x * x
	}
	if w.CachedKnown && w.PromptTokens > 0 {
		r.wfHit.add(float64(w.CachedTokens) / float64(w.PromptTokens))
	}
	if r.SLO.Workflow == 0 || w.CompletionS <= r.SLO.Workflow {
		r.goodWorkflows++
	}
	r.makespan.add(w.MakespanS)
	r.critical.add(w.CriticalPathS)
	r.efficiency.add(w.Efficiency)
	r.par.add(w.Parallelism)
	return nil
}

// Summary is a run's figures. Times in modeled seconds.
type Summary struct {
	DurationS float64 `json:"duration_s"`

	Requests         int   `json:"requests"` // LLM calls that succeeded
	Failed           int   `json:"failed"`
	Skipped          int   `json:"skipped"`
	Canceled         int   `json:"canceled"`
	ToolNodes        int   `json:"tool_nodes"`
	RequestsPerS     Float `json:"requests_per_s"`
	OutputTokensPerS Float `json:"output_tokens_per_s"`

	TTFT      Dist `json:"ttft_s"`
	TPOT      Dist `json:"tpot_s"` // requests with more than one output token
	ITL       Dist `json:"itl_s"`  // every gap, pooled over requests
	E2E       Dist `json:"e2e_s"`
	QueueWait Dist `json:"queue_wait_s"`

	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	// CompletionCounted is how many requests' output tokens were counted by
	// the client because the server sent no usage.
	CompletionCounted int `json:"completion_counted_client_side"`
	CachedTokens      int `json:"cached_tokens"`
	// CacheHitRate is cached over prompt tokens of the requests whose
	// response said how many were cached (NaN when none did);
	// CachedUnknown counts the others.
	CacheHitRate  Float `json:"cache_hit_rate"`
	CachedUnknown int   `json:"cached_unknown"`

	// SLO, when set, gives Goodput: requests meeting every objective per
	// second, and GoodFraction: their share of successful requests.
	SLO          string `json:"slo,omitempty"`
	Goodput      Float  `json:"goodput_per_s"`
	GoodFraction Float  `json:"good_fraction"`

	// Server holds the servers' counter deltas over the run (from their
	// /metrics) and ServerHitRate their prefix-cache hit rate; NaN when no
	// server exposed the counters.
	Server        ServerCounters `json:"server_counters"`
	ServerHitRate Float          `json:"server_cache_hit_rate"`

	Workflows   int   `json:"workflows"`
	Completed   int   `json:"workflows_completed"`
	Makespan    Dist  `json:"makespan_s"`
	Critical    Dist  `json:"critical_path_s"`
	Efficiency  Float `json:"efficiency_mean"`
	Parallelism Float `json:"parallelism_mean"`

	// Workflow-level figures: completion time (arrival to the last node's
	// end), queueing delay (arrival to the first call), each workflow's
	// prefix-cache hit rate, workflows completed per minute, and, with a
	// workflow SLO (wct:MS), workflows completed within it per minute.
	Completion         Dist  `json:"workflow_completion_s"`
	QueueDelay         Dist  `json:"workflow_queue_delay_s"`
	WorkflowHitRate    Dist  `json:"workflow_cache_hit_rate"`
	WorkflowsPerMin    Float `json:"workflows_per_min"`
	WorkflowGoodputMin Float `json:"workflow_goodput_per_min"`
	// Slowdown is each workflow's completion time over its trace's on an
	// idle server (only when the idle times were given, as by sweep).
	Slowdown *Dist `json:"workflow_slowdown,omitempty"`
	// SlowdownFairness is Jain's fairness index over the slowdowns,
	// (sum x)^2 / (n sum x^2): 1 when every workflow is slowed alike, 1/n
	// when one bears it all; NaN without slowdowns.
	SlowdownFairness Float `json:"workflow_slowdown_fairness"`

	// Faults counts what went wrong on the way to the calls' results.
	Faults FaultTotals `json:"faults"`

	// ArrivalWindowS is the time from the first workflow's arrival to
	// the last's. WindowPerMin is the throughput while load was offered:
	// the workflows completed per minute from a warm-up W after the first
	// arrival to the last arrival, and WindowOfferedPerMin the workflows
	// that arrived per minute over the same stretch. W is twice the
	// longest idle completion time of the traces when those are known
	// (sweep; twice, the default saturation slowdown, so that every
	// workflow an unsaturated system serves has had the time to complete),
	// else the run's median completion time. Unsaturated, completions
	// then keep pace with arrivals whatever each trace's length, so the
	// two rates agree; past saturation completions go on at the system's
	// capacity, below the arrivals. Unlike workflows per minute over the
	// whole run, the drain after the last arrival does not dilute it. NaN
	// when the stretch is empty.
	ArrivalWindowS      Float `json:"arrival_window_s"`
	WindowPerMin        Float `json:"window_workflows_per_min"`
	WindowOfferedPerMin Float `json:"window_offered_per_min"`

	// Utilisation is each server's busy fraction, KV-cache use and
	// requests running and waiting over the run (see Sampler).
	Utilisation []BackendUtil `json:"backend_utilisation,omitempty"`
}

// FaultCounts count the attempts of LLM calls, succeeded or not, and how
// they failed.
type FaultCounts struct {
	Attempts int `json:"attempts"`
	// Retries are attempts after a call's first.
	Retries int `json:"retries"`
	// CutStreams are responses that began but did not finish (a broken or
	// aborted stream, a short body, fewer tokens than the usage said).
	CutStreams int `json:"cut_streams"`
	// Timeouts are attempts that ran past the client's timeout.
	Timeouts int `json:"timeouts"`
	// Errors are the other failed attempts: error statuses, refused or
	// broken connections.
	Errors int `json:"errors"`
	// Failovers are requests wfsched's router moved off a backend before
	// their first byte: the client never sees them (0 without the router).
	Failovers int64 `json:"failovers"`
}

// Any reports whether anything went wrong.
func (c FaultCounts) Any() bool {
	return c.Retries+c.CutStreams+c.Timeouts+c.Errors > 0 || c.Failovers > 0
}

// FaultTotals are a run's FaultCounts, in total and per backend (the
// server that answered each attempt, "unknown" when none did).
type FaultTotals struct {
	FaultCounts
	ByBackend map[string]*FaultCounts `json:"by_backend,omitempty"`
}

func (t *FaultTotals) backend(url string) *FaultCounts {
	if url == "" {
		url = "unknown"
	}
	if t.ByBackend == nil {
		t.ByBackend = map[string]*FaultCounts{}
	}
	c := t.ByBackend[url]
	if c == nil {
		c = &FaultCounts{}
		t.ByBackend[url] = c
	}
	return c
}

func (t *FaultTotals) add(attempts []scheduler.Attempt) {
	for k, a := range attempts {
		b := t.backend(a.Backend)
		for _, c := range []*FaultCounts{&t.FaultCounts, b} {
			c.Attempts++
			if k > 0 {
				c.Retries++
			}
			switch {
			case a.Err == "":
			case a.Cut:
				c.CutStreams++
			case a.Timeout:
				c.Timeouts++
			default:
				c.Errors++
			}
		}
	}
}

func (t FaultTotals) clone() FaultTotals {
	out := FaultTotals{FaultCounts: t.FaultCounts}
	if t.ByBackend != nil {
		out.ByBackend = make(map[string]*FaultCounts, len(t.ByBackend))
		for u, c := range t.ByBackend {
			cc := *c
			out.ByBackend[u] = &cc
		}
	}
	return out
}

// WithFailovers adds the router's failovers per backend URL.
func (s Summary) WithFailovers(byBackend map[string]int64) Summary {
	s.Faults = s.Faults.clone() // the caller's Summary keeps its own counts
	s.Faults.Failovers = 0
	for u, n := range byBackend {
		if n == 0 {
			continue
		}
		s.Faults.Failovers += n
		s.Faults.backend(u).Failovers = n
	}
	return s
}

// WithServer records the servers' counter deltas over the run.
func (s Summary) WithServer(delta ServerCounters) Summary {
	s.Server = delta
	s.ServerHitRate = Float(math.NaN())
	if delta.Found {
		s.ServerHitRate = delta.HitRate()
	}
	return s
}

// maxValue is the largest value of m, 0 for none.
func maxValue(m map[string]float64) float64 {
	v := 0.0
	for _, x := range m {
		v = max(v, x)
	}
	return v
}

// Summarize computes the summary of everything recorded over a run of the
// given modeled duration.
func (r *Recorder) Summarize(durationS float64) Summary {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := Summary{
		DurationS: durationS, Requests: r.ok, Failed: r.failed, Skipped: r.skipped, Canceled: r.canceled, ToolNodes: r.tools,
		TTFT: r.ttft.describe(), TPOT: r.tpot.describe(), ITL: r.itl.describe(), E2E: r.e2e.describe(), QueueWait: r.queue.describe(),
		PromptTokens: r.prompt, CompletionTokens: r.completion, CompletionCounted: r.usageMissing, CachedTokens: r.cached,
		CachedUnknown: r.unknownCached, Workflows: r.workflows, Completed: r.completed,
		Makespan: r.makespan.describe(), Critical: r.critical.describe(),
		Efficiency: Float(r.efficiency.mean()), Parallelism: Float(r.par.mean()),
		Completion: r.wct.describe(), QueueDelay: r.queueDelay.describe(), WorkflowHitRate: r.wfHit.describe(),
		WorkflowsPerMin: Float(math.NaN()), WorkflowGoodputMin: Float(math.NaN()),
		CacheHitRate: Float(math.NaN()), RequestsPerS: Float(math.NaN()), OutputTokensPerS: Float(math.NaN()),
		Goodput: Float(math.NaN()), GoodFraction: Float(math.NaN()), ServerHitRate: Float(math.NaN()),
		Faults: r.faults.clone(), ArrivalWindowS: Float(r.lastArrival - r.firstArrival), WindowPerMin: Float(math.NaN()),
	}
	s.WindowOfferedPerMin = Float(math.NaN())
	if len(r.ends) > 0 {
		warm := float64(s.Completion.P50)
		if longest := maxValue(r.Idle); longest > 0 {
			warm = 2 * longest
		}
		from, to := r.firstArrival+warm, r.lastArrival
		if to > from {
			done, came := 0, 0
			for _, e := range r.ends {
				if e >= from && e <= to {
					done++
				}
			}
			for _, a := range r.arrivals {
				if a >= from && a <= to {
					came++
				}
			}
			s.WindowPerMin = Float(60 * float64(done) / (to - from))
			s.WindowOfferedPerMin = Float(60 * float64(came) / (to - from))
		}
	}
	if !r.SLO.IsZero() {
		s.SLO = r.SLO.String()
		if durationS > 0 {
			s.Goodput = Float(float64(r.good) / durationS)
		}
		if r.ok > 0 {
			s.GoodFraction = Float(float64(r.good) / float64(r.ok))
		}
	}
	s.SlowdownFairness = Float(math.NaN())
	if r.Idle != nil {
		d := r.slowdown.describe()
		s.Slowdown = &d
		if r.slowSq > 0 {
			s.SlowdownFairness = Float(r.slowSum * r.slowSum / (float64(r.slowdown.n) * r.slowSq))
		}
	}
	if r.cachedPrompt > 0 {
		s.CacheHitRate = Float(float64(r.cached) / float64(r.cachedPrompt))
	}
	if durationS > 0 {
		s.WorkflowsPerMin = Float(60 * float64(r.completed) / durationS)
		if r.SLO.Workflow > 0 {
			s.WorkflowGoodputMin = Float(60 * float64(r.goodWorkflows) / durationS)
		}
	}
	if durationS > 0 {
		s.RequestsPerS = Float(float64(r.ok) / durationS)
		s.OutputTokensPerS = Float(float64(r.completion) / durationS)
	}
	return s
}
