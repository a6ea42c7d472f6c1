package metrics

import (
	"math"

	"gonum.org/v1/gonum/stat"
	"gonum.org/v1/gonum/stat/distuv"
)

// Figure is one number a comparison reports for each run.
type Figure struct {
	Key           string
	Label         string
	Unit          string // "s", "%", "/s" or ""
	LowerIsBetter bool
	Get           func(Summary) float64
}

// Figures are the figures comparisons report, in order.
var Figures = []Figure{
	{"makespan_s", "makespan per workflow, mean", "s", true, func(s Summary) float64 { return float64(s.Makespan.Mean) }},
	{"efficiency", "critical-path efficiency", "", false, func(s Summary) float64 { return float64(s.Efficiency) }},
	{"parallelism", "achieved parallelism", "", false, func(s Summary) float64 { return float64(s.Parallelism) }},
	{"run_duration_s", "run duration", "s", true, func(s Summary) float64 { return s.DurationS }},
	{"requests_per_s", "requests per second", "/s", false, func(s Summary) float64 { return float64(s.RequestsPerS) }},
	{"output_tokens_per_s", "output tokens per second", "/s", false, func(s Summary) float64 { return float64(s.OutputTokensPerS) }},
	{"ttft_p50_s", "TTFT p50", "s", true, func(s Summary) float64 { return float64(s.TTFT.P50) }},
	{"ttft_p99_s", "TTFT p99", "s", true, func(s Summary) float64 { return float64(s.TTFT.P99) }},
	{"tpot_p50_s", "TPOT p50", "s", true, func(s Summary) float64 { return float64(s.TPOT.P50) }},
	{"e2e_p50_s", "E2E latency p50", "s", true, func(s Summary) float64 { return float64(s.E2E.P50) }},
	{"e2e_p99_s", "E2E latency p99", "s", true, func(s Summary) float64 { return float64(s.E2E.P99) }},
	{"cache_hit_rate", "prefix-cache hit rate (responses)", "%", false, func(s Summary) float64 { return float64(s.CacheHitRate) }},
	{"server_cache_hit_rate", "prefix-cache hit rate (server)", "%", false, func(s Summary) float64 { return float64(s.ServerHitRate) }},
	{"goodput_per_s", "goodput", "/s", false, func(s Summary) float64 { return float64(s.Goodput) }},
	{"workflow_completion_mean_s", "workflow completion time, mean", "s", true, func(s Summary) float64 { return float64(s.Completion.Mean) }},
	{"workflow_completion_p50_s", "workflow completion time p50", "s", true, func(s Summary) float64 { return float64(s.Completion.P50) }},
	{"workflow_completion_p90_s", "workflow completion time p90", "s", true, func(s Summary) float64 { return float64(s.Completion.P90) }},
	{"workflow_completion_p99_s", "workflow completion time p99", "s", true, func(s Summary) float64 { return float64(s.Completion.P99) }},
	{"workflow_slowdown_p50", "workflow slowdown p50", "x", true, func(s Summary) float64 {
		if s.Slowdown == nil {
			return math.NaN()
		}
		return float64(s.Slowdown.P50)
	}},
	{"slowdown_fairness", "Jain's fairness over slowdowns", "", false, func(s Summary) float64 { return float64(s.SlowdownFairness) }},
	{"workflow_queue_delay_p50_s", "workflow queueing delay p50", "s", true, func(s Summary) float64 { return float64(s.QueueDelay.P50) }},
	{"workflows_per_min", "workflows completed per minute", "/min", false, func(s Summary) float64 { return float64(s.WorkflowsPerMin) }},
	{"workflow_goodput_per_min", "workflow goodput", "/min", false, func(s Summary) float64 { return float64(s.WorkflowGoodputMin) }},
}

// Estimate is a sample mean with a 95% confidence interval from Student's
// t distribution (NaN bounds with fewer than two values).
type Estimate struct {
	N    int     `json:"n"`
	Mean Float   `json:"mean"`
	Lo   Float   `json:"ci95_low"`
	Hi   Float   `json:"ci95_high"`
	Vals []Float `json:"values"`
}

// Estimate95 estimates the mean of xs, ignoring NaNs.
func Estimate95(xs []float64) Estimate {
	var v []float64
	for _, x := range xs {
		if !math.IsNaN(x) && !math.IsInf(x, 0) {
			v = append(v, x)
		}
	}
	e := Estimate{N: len(v), Mean: Float(math.NaN()), Lo: Float(math.NaN()), Hi: Float(math.NaN())}
	for _, x := range v {
		e.Vals = append(e.Vals, Float(x))
	}
	if len(v) == 0 {
		return e
	}
	m := stat.Mean(v, nil)
	e.Mean = Float(m)
	if len(v) < 2 {
		return e
	}
	half := distuv.StudentsT{Mu: 0, Sigma: 1, Nu: float64(len(v) - 1)}.Quantile(0.975) * stat.StdDev(v, nil) / math.Sqrt(float64(len(v)))
	e.Lo, e.Hi = Float(m-half), Float(m+half)
	return e
}

// Arm is one configuration compared: the summaries of its repeated runs,
// in iteration order.
type Arm struct {
	Label     string
	Summaries []Summary
}

// ArmResult is an arm's estimates.
type ArmResult struct {
	Label   string              `json:"label"`
	Runs    int                 `json:"runs"`
	Figures map[string]Estimate `json:"figures"`
	// Speedup is the baseline's makespan over this arm's, paired by
	// iteration when both have as many runs (interleaved runs share
	// conditions), else from the means without an interval.
	Speedup Estimate `json:"speedup"`
	// Significant reports whether the speedup's interval excludes 1.
	Significant bool `json:"significant"`
}

// Comparison is the estimated figures of every arm.
type Comparison struct {
	Baseline string      `json:"baseline"`
	Arms     []ArmResult `json:"arms"`
}

// Compare estimates every figure of every arm and each arm's speedup over
// the baseline arm (by label; the first arm when not found).
func Compare(arms []Arm, baseline string) Comparison {
	base := 0
	for i, a := range arms {
		if a.Label == baseline {
			base = i
		}
	}
	c := Comparison{}
	if len(arms) == 0 {
		return c
	}
	c.Baseline = arms[base].Label
	makespan := func(a Arm) []float64 {
		out := make([]float64, len(a.Summaries))
		for i, s := range a.Summaries {
			out[i] = float64(s.Makespan.Mean)
		}
		return out
	}
	bm := makespan(arms[base])
	for _, a := range arms {
		r := ArmResult{Label: a.Label, Runs: len(a.Summaries), Figures: map[string]Estimate{}}
		for _, f := range Figures {
			vals := make([]float64, len(a.Summaries))
			for i, s := range a.Summaries {
				vals[i] = f.Get(s)
			}
			r.Figures[f.Key] = Estimate95(vals)
		}
		am := makespan(a)
		if len(am) == len(bm) {
			ratios := make([]float64, len(am))
			for i := range am {
				ratios[i] = bm[i] / am[i]
			}
			r.Speedup = Estimate95(ratios)
		} else {
			r.Speedup = Estimate95([]float64{Estimate95(bm).Mean.f() / Estimate95(am).Mean.f()})
		}
		lo, hi := float64(r.Speedup.Lo), float64(r.Speedup.Hi)
		r.Significant = !math.IsNaN(lo) && (lo > 1 || hi < 1)
		c.Arms = append(c.Arms, r)
	}
	return c
}

func (f Float) f() float64 { return float64(f) }
