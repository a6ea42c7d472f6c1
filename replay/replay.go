package replay

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"time"

	"github.com/wfsched/wfsched/dag"
	"github.com/wfsched/wfsched/metrics"
	"github.com/wfsched/wfsched/report"
	"github.com/wfsched/wfsched/router"
	"github.com/wfsched/wfsched/scheduler"
	"github.com/wfsched/wfsched/sim"
)

// Version is the wfsched version recorded in summaries (set by the
// command line).
var Version = "dev"

// Job is one replay: what to replay, how, and where its folder is.
type Job struct {
	Dir    string // the run folder, existing and empty
	Config scheduler.Config
	Graphs []*dag.Graph
	Traces []report.TraceInfo // one per graph
	SLO    metrics.SLO
	// Idle holds the traces' idle completion times, for slowdowns.
	Idle map[string]float64
	Seed uint64
	Args []string // the command line, recorded
	// Sinks see every result too (progress, idle-time recording).
	Sinks []scheduler.Sink
}

// workflowHook is a sink that sees only finished workflows.
type workflowHook func(scheduler.WorkflowResult)

func (f workflowHook) Node(scheduler.NodeResult) error { return nil }
func (f workflowHook) Workflow(w scheduler.WorkflowResult) error {
	f(w)
	return nil
}

// WorkflowHook returns a sink that calls f with each finished workflow.
func WorkflowHook(f func(scheduler.WorkflowResult)) scheduler.Sink { return workflowHook(f) }

// Replay runs j on be into j.Dir: nodes.jsonl and workflows.jsonl as
// results come, traces.json first, and summary.json at the start (saying
// the run is under way) and at the end, also when the run fails or is
// interrupted. The report's Dir is empty when nothing could be written.
func Replay(ctx context.Context, be *Backend, j Job) (report.RunReport, error) {
	dir := j.Dir
	folder, err := report.CreateRunFolder(dir, j.Graphs)
	if err != nil {
		return report.RunReport{}, err
	}
	defer folder.Close()
	cfg := j.Config
	if cfg.Workflows == 0 && !cfg.Arrival.Open() {
		cfg.Workflows = len(j.Graphs)
	}
	cfg.TimeScale = be.Info.TimeScale
	rec := &metrics.Recorder{SLO: j.SLO, Idle: j.Idle}
	sinks := metrics.Tee{folder.Results(), rec, workflowHook(func(w scheduler.WorkflowResult) { be.forget(w.Workflow) })}
	sinks = append(sinks, j.Sinks...)
	rep := report.RunReport{
		RunID: filepath.Base(dir), Dir: dir, Args: j.Args, Traces: j.Traces, Backend: be.Info,
		Versions: map[string]string{"wfsched": Version, "go": runtime.Version(), "sim": sim.Version},
		Config: report.RunConfig{Policy: cfg.Policy.Name(), WorkflowPolicy: workflowPolicyName(cfg.WorkflowPolicy), MaxParallel: cfg.MaxParallel, OnError: string(cfg.OnError), Context: string(cfg.Context),
			MaxTokens: cfg.MaxTokens, OutputTokens: cfg.OutputTokens, Temperature: cfg.Temperature, IgnoreEOS: !cfg.NoIgnoreEOS, ToolLatencyS: cfg.ToolLatency.Seconds(),
			Workflows: cfg.Workflows, Concurrency: cfg.Concurrency, Seed: j.Seed, SLO: j.SLO.String(), Arrival: DescribeArrival(cfg.Arrival)},
	}
	rep.PrefixShareBound, rep.PrefixAnyBound = weightedBounds(j.Traces, cfg.Workflows)
	// A summary saying the run is under way, replaced when it ends: a run
	// killed before then is still read back (report marks it incomplete).
	rep.Outcome, rep.Start = report.OutcomeRunning, time.Now()
	if err := folder.WriteSummary(rep); err != nil {
		return rep, err
	}
	before := be.counters(ctx)
	var res scheduler.RunResult
	var runErr error
	var util []metrics.BackendUtil
	if be.virtual != nil {
		res, runErr = scheduler.RunVirtual(ctx, cfg, j.Graphs, be.virtual, sinks)
		util = be.virtual.Utilisation(res.DurationS)
	} else {
		sampler := metrics.StartSampler(ctx, http.DefaultClient, be.serverURLs(ctx), metrics.DefaultSampleEvery, be.Info.TimeScale)
		res, runErr = scheduler.Run(ctx, cfg, j.Graphs, be.cl, sinks)
		util = sampler.Stop(context.WithoutCancel(ctx), res.DurationS)
	}
	if err := folder.CloseResults(); err != nil && runErr == nil {
		runErr = fmt.Errorf("writing results: %w", err)
	}
	after := be.counters(ctx)
	failovers := map[string]int64{}
	if st := be.routerStats(ctx); st != nil {
		be.Info.RouterStats = st
		rep.Backend = be.Info
		for _, b := range st.Backends {
			failovers[b.URL] = b.Failovers
		}
	}
	rep.Start, rep.End, rep.WallS = res.Start, res.End, res.End.Sub(res.Start).Seconds()
	rep.Outcome, rep.Reason = res.Outcome, res.Reason
	if runErr != nil {
		rep.Outcome, rep.Reason = scheduler.OutcomeFailed, runErr.Error()
	}
	rep.Summary = rec.Summarize(res.DurationS).WithServer(after.Sub(before)).WithFailovers(failovers)
	rep.Summary.Utilisation = util
	rep.Timing = be.timing(rep.Summary)
	if err := folder.WriteSummary(rep); err != nil {
		return rep, err
	}
	return rep, runErr
}

// routerStats are the router's figures: the virtual one's, the embedded
// one's, or those of a wfsched router given as the endpoint (any other
// server has none).
func (b *Backend) routerStats(ctx context.Context) *router.Stats {
	if b.virtual != nil {
		if b.virtual.bal == nil {
			return nil
		}
		st := b.virtual.bal.Stats()
		return &st
	}
	url := b.Info.Router
	if url == "" && b.Info.Kind == "endpoint" && len(b.Info.URLs) == 1 {
		url = b.Info.URLs[0]
	}
	if url == "" {
		return nil
	}
	st := RouterStats(ctx, url, b.apiKey)
	if st != nil {
		b.Info.Router = url
	}
	return st
}

// timing says how far the modeled times can be trusted: exact on the
// virtual clock; on the wall clock, the calls' mean latency as the client
// measured it against the embedded engines' own record of it (and their
// step lateness); unchecked for real servers.
func (b *Backend) timing(measured metrics.Summary) *report.Timing {
	t := &report.Timing{Clock: b.Info.Clock}
	switch {
	case b.virtual != nil:
		t.Verdict = report.TimingExact
		return t
	case b.cluster == nil:
		return nil // real servers: their clocks are real
	}
	var all []time.Duration
	var total time.Duration
	var c sim.Counters
	for _, srv := range b.cluster.Servers() {
		l := srv.Engine().Lateness()
		t.Steps += l.Steps
		t.LateSteps += l.LateSteps
		total += l.Total
		all = append(all, l.Sample...)
		ec := srv.Engine().Counters()
		c.TTFTSum, c.TTFTCount, c.E2ESum, c.E2ECount = c.TTFTSum+ec.TTFTSum, c.TTFTCount+ec.TTFTCount, c.E2ESum+ec.E2ESum, c.E2ECount+ec.E2ECount
	}
	sort.Slice(all, func(a, c int) bool { return all[a] < all[c] })
	pct := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		return all[int(math.Round(p*float64(len(all)-1)))].Seconds()
	}
	t.LateP50S, t.LateP99S, t.LateTotalS = pct(0.5), pct(0.99), total.Seconds()
	if c.E2ECount == 0 || measured.E2E.N == 0 {
		t.Verdict = report.TimingReliable
		return t
	}
	t.EngineE2ES, t.MeasuredE2ES = c.E2ESum/float64(c.E2ECount), float64(measured.E2E.Mean)
	t.Overstated = t.MeasuredE2ES/t.EngineE2ES - 1
	if c.TTFTCount > 0 && measured.TTFT.N > 0 {
		t.EngineTTFTS, t.MeasuredTTFTS = c.TTFTSum/float64(c.TTFTCount), float64(measured.TTFT.Mean)
		t.TTFTOverstated = t.MeasuredTTFTS/t.EngineTTFTS - 1
	}
	t.Verdict = report.TimingReliable
	if t.Overstated > report.MaxOverstated || t.TTFTOverstated > report.MaxTTFTOverstated {
		t.Verdict = report.TimingUnreliable
		t.Advice = fmt.Sprintf("this machine (its timers, HTTP, the router, the client, the engines falling behind) added more than %.0f%% to the latency the engines modeled, or %.0f%% to the time to first token, magnified by the time scale; use --clock virtual, or a larger --time-scale",
			100*report.MaxOverstated, 100*report.MaxTTFTOverstated)
	}
	return t
}

// workflowPolicyName is the name recorded for a workflow policy: "" for
// none or fcfs, so that summaries of runs without one stay as they were.
func workflowPolicyName(p scheduler.WorkflowPolicy) string {
	if p == nil || p.Name() == "fcfs" {
		return ""
	}
	return p.Name()
}

// DescribeArrival says how workflows arrived, "" for the closed loop.
func DescribeArrival(a scheduler.Arrival) string {
	if !a.Open() {
		return ""
	}
	d := fmt.Sprintf("%s at %g/s", a.Kind, a.Rate)
	if a.Kind == scheduler.ArrivalReplay {
		d = "at their recorded starts"
		if a.Speed != 1 {
			d += fmt.Sprintf(" at speed %g", a.Speed)
		}
	}
	if a.Kind == scheduler.ArrivalGamma {
		d += fmt.Sprintf(" (burstiness %g)", a.Burstiness)
	}
	if a.RampUp > 0 {
		d += ", ramp-up " + a.RampUp.String()
	}
	if a.Duration > 0 {
		d += ", for " + a.Duration.String()
	}
	if a.MaxConcurrency > 0 {
		d += fmt.Sprintf(", at most %d in flight", a.MaxConcurrency)
	}
	return d
}

// TraceInfos analyses the graphs read from path for reports.
func TraceInfos(path string, gs []*dag.Graph) ([]report.TraceInfo, error) {
	var infos []report.TraceInfo
	for _, g := range gs {
		t, err := dag.Analyze(g)
		if err != nil {
			return nil, fmt.Errorf("%s: trace %s: %w", path, g.ID, err)
		}
		s := dag.Summarize(g, t, dag.CostModel{})
		infos = append(infos, report.TraceInfo{ID: g.ID, Path: path, Format: g.Format, Nodes: s.Nodes, LLMCalls: s.ByKind[dag.KindLLM],
			SingleChain: s.SingleChain(), EstimatedSpanS: s.Span, PrefixShareBound: s.PrefixShareBound,
			PrefixAnyBound: s.PrefixShareAnyBound, PromptTokens: s.PromptTokens})
	}
	return infos, nil
}

// TotalNodes is the node count of the first workflows replays (cycling
// through gs).
func TotalNodes(gs []*dag.Graph, workflows int) int {
	n := 0
	for i := 0; i < workflows; i++ {
		n += len(gs[i%len(gs)].Nodes)
	}
	return n
}

// weightedBounds are the prefix-sharing bounds of the workflows a run
// replays (workflow i replays trace i mod len(infos)).
func weightedBounds(infos []report.TraceInfo, workflows int) (same, anyPrompt float64) {
	prompt := 0.0
	for i := 0; i < workflows; i++ {
		t := infos[i%len(infos)]
		same += t.PrefixShareBound * float64(t.PromptTokens)
		anyPrompt += t.PrefixAnyBound * float64(t.PromptTokens)
		prompt += float64(t.PromptTokens)
	}
	if prompt == 0 {
		return 0, 0
	}
	return same / prompt, anyPrompt / prompt
}

// NewRunDir makes OUT/<time>-<name>, unique.
func NewRunDir(out, name string) (string, error) {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", err
	}
	base := filepath.Join(out, time.Now().Format("20060102-150405")+"-"+name)
	dir := base
	for k := 2; ; k++ {
		err := os.Mkdir(dir, 0o755)
		if err == nil {
			return dir, nil
		}
		if !os.IsExist(err) {
			return "", err
		}
		dir = fmt.Sprintf("%s-%d", base, k)
	}
}
