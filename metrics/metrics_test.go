package metrics

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"gonum.org/v1/gonum/stat"

	"github.com/wfsched/wfsched/scheduler"
)

func TestPercentileMatchesNumpyLinear(t *testing.T) {
	// Values numpy.percentile(x, q) gives with its default method.
	tests := []struct {
		x    []float64
		p    float64
		want float64
	}{
		{[]float64{1, 2, 3, 4}, 0.5, 2.5},
		{[]float64{1, 2, 3, 4}, 0.9, 3.7},
		{[]float64{1, 2, 3, 4}, 0.99, 3.97},
		{[]float64{10}, 0.99, 10},
		{[]float64{1, 3}, 0, 1},
		{[]float64{1, 3}, 1, 3},
		{[]float64{0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100}, 0.25, 25},
	}
	for _, tt := range tests {
		if got := Percentile(tt.x, tt.p); math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("Percentile(%v, %v) = %v, want %v", tt.x, tt.p, got, tt.want)
		}
	}
	// Why not gonum's LinInterp: it is another definition.
	if g := stat.Quantile(0.5, stat.LinInterp, []float64{1, 2, 3, 4}, nil); g == 2.5 {
		t.Errorf("gonum LinInterp gave numpy's %v: the comment in Percentile is stale", g)
	}
	if !math.IsNaN(Percentile(nil, 0.5)) {
		t.Error("empty sample must give NaN")
	}
}

func TestRecorderDefinitions(t *testing.T) {
	var r Recorder
	two := 40
	r.Node(scheduler.NodeResult{Kind: "llm", Status: "ok", TTFTS: 0.1, E2ES: 1.1, ITLS: []float64{0.5, 0.5}, PromptTokens: 100, CompletionTokens: 3, CachedTokens: &two, UsageReported: true})
	// One output token: no TPOT, as vLLM's benchmark defines it.
	r.Node(scheduler.NodeResult{Kind: "llm", Status: "ok", TTFTS: 0.3, E2ES: 0.3, PromptTokens: 50, CompletionTokens: 1, UsageReported: true})
	r.Node(scheduler.NodeResult{Kind: "tool", Status: "ok"})
	r.Node(scheduler.NodeResult{Kind: "llm", Status: "failed"})
	r.Node(scheduler.NodeResult{Kind: "llm", Status: "skipped"})
	r.Workflow(scheduler.WorkflowResult{Outcome: "completed", MakespanS: 2, CriticalPathS: 1.5, Efficiency: 0.75, Parallelism: 1.2})
	s := r.Summarize(4)
	if s.Requests != 2 || s.Failed != 1 || s.Skipped != 1 || s.ToolNodes != 1 {
		t.Errorf("counts %+v", s)
	}
	if s.TPOT.N != 1 || math.Abs(float64(s.TPOT.Mean)-0.5) > 1e-12 {
		t.Errorf("TPOT %+v, want one sample of (1.1-0.1)/(3-1) = 0.5", s.TPOT)
	}
	if s.TTFT.N != 2 || math.Abs(float64(s.TTFT.P50)-0.2) > 1e-12 || s.ITL.N != 2 {
		t.Errorf("TTFT %+v ITL %+v", s.TTFT, s.ITL)
	}
	// The second request's cached count is unknown: the rate uses the first.
	if s.CachedUnknown != 1 || math.Abs(float64(s.CacheHitRate)-0.4) > 1e-12 {
		t.Errorf("hit rate %v unknown %d", s.CacheHitRate, s.CachedUnknown)
	}
	if math.Abs(float64(s.RequestsPerS)-0.5) > 1e-12 || math.Abs(float64(s.OutputTokensPerS)-1) > 1e-12 {
		t.Errorf("throughput %v %v", s.RequestsPerS, s.OutputTokensPerS)
	}
	b, err := json.Marshal(Describe(nil))
	if err != nil || string(b) != `{"n":0,"mean":null,"std":null,"min":null,"p50":null,"p90":null,"p99":null,"max":null}` {
		t.Errorf("empty dist JSON %s %v", b, err)
	}
}

func TestGoodput(t *testing.T) {
	slo, err := ParseSLO("ttft:200,tpot:50,e2el:1000")
	if err != nil || slo.TTFT != 0.2 || slo.TPOT != 0.05 || slo.E2EL != 1 || slo.String() != "ttft:200,tpot:50,e2el:1000" {
		t.Fatalf("%+v %v", slo, err)
	}
	r := Recorder{SLO: slo}
	r.Node(scheduler.NodeResult{Kind: "llm", Status: "ok", TTFTS: 0.1, E2ES: 0.5, CompletionTokens: 9}) // tpot 0.05: good
	r.Node(scheduler.NodeResult{Kind: "llm", Status: "ok", TTFTS: 0.3, E2ES: 0.5, CompletionTokens: 5}) // ttft too slow
	r.Node(scheduler.NodeResult{Kind: "llm", Status: "ok", TTFTS: 0.1, E2ES: 0.9, CompletionTokens: 5}) // tpot 0.2: too slow
	r.Node(scheduler.NodeResult{Kind: "llm", Status: "ok", TTFTS: 0.1, E2ES: 0.1, CompletionTokens: 1}) // no tpot: good
	s := r.Summarize(2)
	if float64(s.Goodput) != 1 || float64(s.GoodFraction) != 0.5 {
		t.Errorf("goodput %v fraction %v, want 1/s and 0.5", s.Goodput, s.GoodFraction)
	}
	for _, bad := range []string{"ttft", "ttft:-1", "speed:5", "ttft:abc"} {
		if _, err := ParseSLO(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseCountersBothSpellings(t *testing.T) {
	python := `# HELP vllm:prefix_cache_queries Prefix cache queries
# TYPE vllm:prefix_cache_queries counter
vllm:prefix_cache_queries_total{model_name="m"} 1000.0
vllm:prefix_cache_hits_total{model_name="m",engine="0"} 250.0
vllm:prefix_cache_hits_total{model_name="m",engine="1"} 50.0
vllm:num_preemptions_total{model_name="m"} 3
vllm:prompt_tokens_total{model_name="a \"quoted\" {name}"} 1000
`
	c, err := ParseCounters(strings.NewReader(python))
	if err != nil || !c.Found || c.PrefixQueries != 1000 || c.PrefixHits != 300 || c.Preemptions != 3 || c.PromptTokens != 1000 {
		t.Errorf("python spelling: %+v %v", c, err)
	}
	bare := "vllm:prefix_cache_queries{model_name=\"m\"} 400\nvllm:prefix_cache_hits{model_name=\"m\"} 100\n"
	c, err = ParseCounters(strings.NewReader(bare))
	if err != nil || !c.Found || float64(c.HitRate()) != 0.25 {
		t.Errorf("bare spelling: %+v %v", c, err)
	}
	c, _ = ParseCounters(strings.NewReader("other_metric 1\n"))
	if c.Found || !math.IsNaN(float64(c.HitRate())) {
		t.Errorf("no counters: %+v", c)
	}
}

func TestEstimateAndCompare(t *testing.T) {
	// mean 2, sd 1, n 4: t(0.975, 3) = 3.182446, half-width 1.591223.
	e := Estimate95([]float64{1, 2, 3, 2, math.NaN()})
	if e.N != 4 || float64(e.Mean) != 2 || math.Abs(float64(e.Hi)-2-3.182446*math.Sqrt(2.0/3)/2) > 1e-5 {
		t.Errorf("estimate %+v", e)
	}
	if e1 := Estimate95([]float64{5}); !math.IsNaN(float64(e1.Lo)) || float64(e1.Mean) != 5 {
		t.Errorf("one value: %+v", e1)
	}
	sum := func(makespan float64) Summary { return Summary{Makespan: Dist{Mean: Float(makespan)}} }
	arms := []Arm{
		{"sequential", []Summary{sum(10), sum(11), sum(9.5)}},
		{"parallel", []Summary{sum(2), sum(2.2), sum(1.9)}},
		{"noise", []Summary{sum(9), sum(12), sum(10)}},
	}
	c := Compare(arms, "sequential")
	if c.Baseline != "sequential" || len(c.Arms) != 3 {
		t.Fatalf("%+v", c)
	}
	p := c.Arms[1]
	if math.Abs(float64(p.Speedup.Mean)-5) > 0.01 || !p.Significant {
		t.Errorf("parallel speedup %+v significant %v", p.Speedup, p.Significant)
	}
	if n := c.Arms[2]; n.Significant {
		t.Errorf("noise arm significant: %+v", n.Speedup)
	}
	if s := c.Arms[0]; float64(s.Speedup.Mean) != 1 || s.Significant {
		t.Errorf("baseline speedup %+v", s.Speedup)
	}
}

func TestSampleBounded(t *testing.T) {
	var s sample
	n := 3 * SampleCap
	for i := 0; i < n; i++ {
		s.add(float64(i % 1000))
	}
	d := s.describe()
	if len(s.vals) != SampleCap || d.N != n || math.Abs(float64(d.Mean)-499.5) > 1e-9 {
		t.Errorf("kept %d values, N %d, mean %v", len(s.vals), d.N, d.Mean)
	}
	// The reservoir is uniform: its median is near the true one.
	if math.Abs(float64(d.P50)-499.5) > 10 {
		t.Errorf("median of the sample %v, want about 499.5", d.P50)
	}
}

func TestSlowdownAgainstIdle(t *testing.T) {
	r := Recorder{Idle: map[string]float64{"a": 2, "b": 4}}
	done := scheduler.OutcomeCompleted
	r.Workflow(scheduler.WorkflowResult{Trace: "a", Outcome: done, CompletionS: 2})  // 1.0
	r.Workflow(scheduler.WorkflowResult{Trace: "a", Outcome: done, CompletionS: 6})  // 3.0
	r.Workflow(scheduler.WorkflowResult{Trace: "b", Outcome: done, CompletionS: 8})  // 2.0
	r.Workflow(scheduler.WorkflowResult{Trace: "c", Outcome: done, CompletionS: 99}) // no idle time: left out
	s := r.Summarize(10)
	if s.Slowdown == nil || s.Slowdown.N != 3 || float64(s.Slowdown.P50) != 2 || float64(s.Slowdown.Max) != 3 {
		t.Fatalf("slowdown %+v, want n=3 p50=2 max=3", s.Slowdown)
	}
	if (&Recorder{}).Summarize(1).Slowdown != nil {
		t.Error("slowdown reported without idle times")
	}
}

func TestFaultTotals(t *testing.T) {
	var r Recorder
	a := func(backend, err string, cut, timeout bool) scheduler.Attempt {
		return scheduler.Attempt{Backend: backend, Err: err, Cut: cut, Timeout: timeout}
	}
	r.Node(scheduler.NodeResult{Kind: "llm", Status: scheduler.StatusOK, CompletionTokens: 2, Attempts: []scheduler.Attempt{
		a("http://a", "cut", true, false), a("http://b", "", false, false)}})
	r.Node(scheduler.NodeResult{Kind: "llm", Status: scheduler.StatusFailed, Attempts: []scheduler.Attempt{
		a("", "timed out", false, true), a("http://a", "503", false, false), a("http://a", "cut", true, false)}})
	r.Node(scheduler.NodeResult{Kind: "llm", Status: scheduler.StatusOK, CompletionTokens: 2, Attempts: []scheduler.Attempt{a("http://b", "", false, false)}})
	s := r.Summarize(1).WithFailovers(map[string]int64{"http://a": 3, "http://c": 0})
	f := s.Faults
	want := FaultCounts{Attempts: 6, Retries: 3, CutStreams: 2, Timeouts: 1, Errors: 1, Failovers: 3}
	if f.FaultCounts != want {
		t.Errorf("totals %+v, want %+v", f.FaultCounts, want)
	}
	if got := *f.ByBackend["http://a"]; got != (FaultCounts{Attempts: 3, Retries: 2, CutStreams: 2, Errors: 1, Failovers: 3}) {
		t.Errorf("backend a: %+v", got)
	}
	if got := *f.ByBackend["unknown"]; got != (FaultCounts{Attempts: 1, Timeouts: 1}) {
		t.Errorf("no backend: %+v", got)
	}
	if _, ok := f.ByBackend["http://c"]; ok {
		t.Error("a backend with nothing to report is listed")
	}
	// The recorder's own totals are not changed by WithFailovers.
	if again := r.Summarize(1).Faults; again.Failovers != 0 || again.ByBackend["http://a"].Failovers != 0 {
		t.Errorf("WithFailovers changed the recorder: %+v", again)
	}
}

// TestSampler: gauges are averaged over samples; busy comes from the
// engine's busy-time counter when it has one, else from the samples with
// requests running; a server that cannot be read stays NaN.
func TestSampler(t *testing.T) {
	var mu sync.Mutex
	n := 0
	vllm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		n++
		running := n % 2 // running on every other scrape
		mu.Unlock()
		fmt.Fprintf(w, "vllm:num_requests_running{model_name=\"m\"} %d\nvllm:num_requests_waiting{model_name=\"m\"} 3\nvllm:gpu_cache_usage_perc{model_name=\"m\"} 0.5\n", running)
	}))
	defer vllm.Close()
	// Each engine remembers the counter values it served: a scrape that
	// Stop abandons mid-flight still raised the counter, so the expected
	// busy time is the last served value less the first, not a count of
	// the samples kept.
	busy, busyServed := 0.0, []float64{}
	engine := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		busy += 0.25
		b := busy
		busyServed = append(busyServed, b)
		mu.Unlock()
		fmt.Fprintf(w, "vllm:num_requests_running 1\nvllm:num_requests_waiting 0\nvllm:kv_cache_usage_perc 0.2\nwfsched_sim_busy_seconds_total %g\n", b)
	}))
	defer engine.Close()
	// An engine whose counter already stood at 100 s and which cannot be
	// read at the first scrape: its baseline is its first reading.
	lateBusy, lateScrapes, lateServed := 100.0, 0, []float64{}
	late := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if lateScrapes++; lateScrapes == 1 {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		lateBusy += 0.25
		lateServed = append(lateServed, lateBusy)
		fmt.Fprintf(w, "vllm:num_requests_running 1\nvllm:num_requests_waiting 0\nvllm:kv_cache_usage_perc 0.2\nwfsched_sim_busy_seconds_total %g\n", lateBusy)
	}))
	defer late.Close()
	s := StartSampler(context.Background(), http.DefaultClient, []string{vllm.URL, engine.URL, "http://127.0.0.1:1", late.URL}, 5*time.Millisecond, 0.5)
	time.Sleep(60 * time.Millisecond)
	// Only the scrape in flight at Stop can be abandoned: once the late
	// engine has served three, the first it served reached the sampler.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		n := len(lateServed)
		mu.Unlock()
		if n >= 3 || time.Now().After(deadline) {
			break
		}
	}
	u := s.Stop(context.Background(), 10)
	if u[0].BusyFrom != "samples" || u[0].Samples < 4 || u[0].KVUsageMean != 0.5 || u[0].WaitingMax != 3 ||
		math.Abs(float64(u[0].BusyFraction)-0.5) > 0.2 {
		t.Errorf("sampled server: %+v", u[0])
	}
	// Busy is the counter's rise from the first reading to the last (Stop's,
	// which always completes) over 10 s.
	mu.Lock()
	spread := func(v []float64) float64 { return v[len(v)-1] - v[0] }
	wantEngine, wantLate := spread(busyServed)/10, spread(lateServed)/10
	mu.Unlock()
	if want := wantEngine; u[1].BusyFrom != "engine counter" || math.Abs(float64(u[1].BusyFraction)-want) > 1e-9 {
		t.Errorf("engine: %+v, busy want %v", u[1], want)
	}
	if u[2].Samples != 0 || !math.IsNaN(float64(u[2].BusyFraction)) || u[2].BusyFrom != "" {
		t.Errorf("unreachable server: %+v", u[2])
	}
	if want := wantLate; u[3].BusyFrom != "engine counter" || math.Abs(float64(u[3].BusyFraction)-want) > 1e-9 {
		t.Errorf("engine unreadable at first: %+v, busy want %v", u[3], want)
	}
	// Timelines: one sample each time, in modeled seconds (scale 0.5: twice
	// the wall time), in order.
	tl := u[0].Timeline
	if len(tl) != u[0].Samples || tl[0].T < 0 || tl[len(tl)-1].T < 2*0.05 || tl[len(tl)-1].T > 2*5 {
		t.Fatalf("timeline of %d samples (of %d) from %v to %v s", len(tl), u[0].Samples, tl[0].T, tl[len(tl)-1].T)
	}
	for k := 1; k < len(tl); k++ {
		if tl[k].T < tl[k-1].T || tl[k].KVUsage != 0.5 || tl[k].Waiting != 3 {
			t.Fatalf("sample %d: %+v after %+v", k, tl[k], tl[k-1])
		}
	}
}

// TestTimelineThinning: a long run keeps at most maxTimeline samples per
// server, evenly spread.
func TestTimelineThinning(t *testing.T) {
	s := &Sampler{keep: 1, timeline: [][]UtilSample{make([]UtilSample, maxTimeline)}}
	for k := range s.timeline[0] {
		s.timeline[0][k].T = float64(k)
	}
	s.thin()
	if got := s.timeline[0]; len(got) != maxTimeline/2 || got[1].T != 2 || s.keep != 2 {
		t.Errorf("after thinning: %d samples, second at %v, keep %d", len(got), got[1].T, s.keep)
	}
}
