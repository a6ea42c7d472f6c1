package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/wfsched/wfsched/client"
	"github.com/wfsched/wfsched/dag"
	"github.com/wfsched/wfsched/metrics"
	"github.com/wfsched/wfsched/report"
	"github.com/wfsched/wfsched/router"
	"github.com/wfsched/wfsched/scheduler"
	"github.com/wfsched/wfsched/sim"
)

// DefaultEmbeddedScale is the time scale of the embedded engine in runs:
// four times faster than the modeled GPU. Smaller scales make modeled
// decode steps shorter than the ~1 ms timers can sleep here, so tokens
// arrive in bursts and inter-token latencies stop being faithful.
const DefaultEmbeddedScale = 0.25

type runOptions struct {
	trace       traceFlags
	dagPath     string
	policy      string
	endpoints   []string
	model       string
	apiKey      string
	maxParallel int
	maxTokens   int
	outTokens   int
	temperature float64
	context     string
	onError     string
	workflows   int
	concurrency int
	seed        uint64
	out         string
	toolLatency time.Duration
	noIgnoreEOS bool
	timeout     time.Duration
	attempts    int
	slo         string
	sloValue    metrics.SLO
	instances   int
	routing     string
	shared      bool
	slow        float64 // embedded engines' planted slow-down (bench --fault-slow)
	arrival     string
	rate        float64
	burstiness  float64
	rampUp      time.Duration
	duration    time.Duration
	maxConc     int
	quiet       bool // no embedded-engine banner (compare prints its own)
	maxConns    int
	idle        map[string]float64 // traces' idle completion times, for slowdowns (sweep)
	// embedded engine
	profile   string
	timeScale float64
}

func newRunCmd() *cobra.Command {
	var o runOptions
	cmd := &cobra.Command{
		Use:   "run --dag PATH [--policy P] [--endpoint URL] [flags]",
		Short: "Replay a workflow DAG against an LLM server under a scheduling policy",
		Long: `Run replays one or many workflows against an OpenAI-compatible server and measures every
call and every workflow. With no --endpoint it starts the embedded engine in-process
(--profile, --time-scale; times are then reported in modeled seconds).

Policies: sequential (one node at a time, the baseline), dependency-aware (level by level
with a barrier between levels), parallel (each node as soon as its parents finish, longest
remaining critical path first), at most --max-parallel nodes in flight per workflow.

LLM nodes send the prompt the agent saw in the original run (--context reference) or with
this run's outputs in place of the recorded ones (--context live), with max_tokens the
node's reference output length (capped by --max-tokens, or set for every call by
--output-tokens) and ignore_eos, so the original load is reproduced. Tool nodes wait their
recorded duration (or --tool-latency).

Results go to OUT/<run-id>/: nodes.jsonl and workflows.jsonl, written as each completes,
and summary.json at the end (also when interrupted by Ctrl-C).`,
		Example: `  wfsched run --dag traces/research-team.json
  wfsched run --dag traces/fanout-12.json --policy sequential
  wfsched run --dag ../shared/traces/steps/appworld.json --workflows 30 --concurrency 8
  wfsched run --dag traces/agents-40.json --endpoint http://127.0.0.1:8000 --temperature 0`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runRun(cmd, &o) },
	}
	o.register(cmd.Flags(), true)
	return cmd
}

func runRun(cmd *cobra.Command, o *runOptions) error {
	ctx := cmd.Context()
	stderr := cmd.ErrOrStderr()
	cfg, err := o.config(cmd)
	if err != nil {
		return err
	}
	graphs, infos, err := o.load()
	if err != nil {
		return err
	}
	if cfg.Workflows == 0 && !cfg.Arrival.Open() {
		cfg.Workflows = len(graphs)
	}
	be, err := o.startBackend(ctx, stderr)
	if err != nil {
		return err
	}
	defer be.close()
	dir, err := newRunDir(o.out, cfg.Policy.Name())
	if err != nil {
		return err
	}
	rep, runErr := replay(ctx, stderr, dir, o, cfg, graphs, infos, be, true)
	if rep.Dir == "" {
		return runErr
	}
	if err := report.WriteRunText(cmd.OutOrStdout(), rep); err != nil {
		return err
	}
	switch {
	case runErr != nil:
		return runErr
	case rep.Outcome == scheduler.OutcomeInterrupted:
		return &cliError{code: exitFailure, err: errors.New("interrupted: the results completed so far are in " + dir)}
	case rep.Outcome == scheduler.OutcomeFailed:
		return &cliError{code: exitFailure, err: errors.New("run failed: " + rep.Reason), hint: "see the failed nodes' errors in " + filepath.Join(dir, "nodes.jsonl")}
	}
	return nil
}

// backend is what serves a run: the embedded engine or an endpoint.
type backend struct {
	info  report.Backend
	cl    *client.Client
	close func()
	// forget, with wfsched's router in front, drops a finished workflow's
	// state there, so memory follows the workflows in flight.
	forget func(workflow string)
	apiKey string // sent to the server or router
}

// workflowHook is a sink that sees only finished workflows.
type workflowHook func(scheduler.WorkflowResult)

func (f workflowHook) Node(scheduler.NodeResult) error { return nil }
func (f workflowHook) Workflow(w scheduler.WorkflowResult) error {
	f(w)
	return nil
}

// startBackend starts the embedded engines (fresh state) or checks the
// endpoints, and the router in front of them when asked; the server the
// client talks to must answer now.
func (o *runOptions) startBackend(ctx context.Context, stderr io.Writer) (*backend, error) {
	be := &backend{info: report.Backend{Kind: "endpoint", URLs: o.endpoints, TimeScale: 1}, close: func() {}, apiKey: o.apiKey}
	closers := []func(){}
	be.close = func() {
		for k := len(closers) - 1; k >= 0; k-- {
			closers[k]()
		}
	}
	fail := func(err error) (*backend, error) {
		be.close()
		return nil, err
	}
	if o.instances < 1 {
		return nil, usageError("--instances %d: want at least 1", o.instances)
	}
	if len(o.endpoints) > 0 && o.instances > 1 {
		return nil, usageError("--instances starts embedded engines: leave it out with --endpoint")
	}
	routing := o.routing
	if routing == "" && (o.instances > 1 || len(o.endpoints) > 1) {
		routing = router.DefaultLogic
	}
	targets := o.endpoints
	if len(o.endpoints) == 0 {
		prof, err := sim.LoadProfile(o.profile)
		if err != nil {
			return nil, usageError("--profile: %v", err)
		}
		if err := sim.CheckTimeScale(o.timeScale); err != nil {
			return nil, usageError("--time-scale: %v", err)
		}
		c, err := sim.Start(context.WithoutCancel(ctx), sim.ClusterConfig{Instances: o.instances, Engine: sim.Config{Profile: prof, TimeScale: o.timeScale, Seed: o.seed, SlowFactor: o.slow}})
		if err != nil {
			return nil, err
		}
		closers = append(closers, func() { c.Close() })
		targets = c.URLs()
		be.info = report.Backend{Kind: "embedded", URLs: c.URLs(), Profile: prof.Name, TimeScale: o.timeScale}
		if !o.quiet {
			fmt.Fprintf(stderr, "wfsched: %d embedded engine(s), profile %s, time scale %g (times reported are modeled)\n", o.instances, prof.Name, o.timeScale)
		}
	}
	base := targets[0]
	if routing != "" && len(o.endpoints) > 0 {
		// Name the endpoints that do not answer, rather than the router.
		var down []string
		var first error
		for _, u := range o.endpoints {
			c, err := client.New(client.Config{BaseURL: u})
			if err != nil {
				return fail(usageError("--endpoint: %v", err))
			}
			hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err = c.Health(hctx)
			cancel()
			if err != nil {
				down = append(down, u)
				if first == nil {
					first = err
				}
			}
		}
		if len(down) == len(o.endpoints) {
			return fail(&cliError{code: exitFailure, err: fmt.Errorf("no endpoint answers: %w", first), hint: "is the server running? scripts/setup_vllm.sh status"})
		}
		if len(down) > 0 {
			fmt.Fprintf(stderr, "wfsched: warning: not answering, left to the router's health checks: %s\n", strings.Join(down, ", "))
		}
	}
	if routing != "" {
		rt, err := router.New(router.Config{Backends: targets, Logic: routing})
		if err != nil {
			return fail(usageError("--routing-logic: %v", err))
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fail(err)
		}
		rctx, stop := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan struct{})
		go func() {
			defer close(done)
			rt.Serve(rctx, ln)
		}()
		closers = append(closers, func() {
			stop()
			<-done
		})
		be.forget = func(id string) { rt.Forget(id) }
		base = "http://" + ln.Addr().String()
		be.info.Routing, be.info.Router = rt.Logic(), base
	}
	cl, err := client.New(client.Config{BaseURL: base, Model: o.model, APIKey: o.apiKey, Timeout: o.timeout, MaxAttempts: o.attempts, Seed: o.seed, MaxConns: o.maxConns})
	if err != nil {
		return fail(usageError("--endpoint: %v", err))
	}
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	scale, err := cl.Health(hctx)
	if err == nil {
		err = cl.Discover(hctx)
	}
	cancel()
	if err != nil {
		return fail(&cliError{code: exitFailure, err: err, hint: "is the server running? 'wfsched sim' starts a local one; leave out --endpoint to use the embedded engine"})
	}
	if be.info.Kind == "embedded" {
		scale = o.timeScale
	}
	be.info.TimeScale, be.info.Model = scale, cl.Model()
	be.cl = cl
	return be, nil
}

// serverURLs are the servers that do the work: the engines, the endpoints,
// or those behind a wfsched router given as the one endpoint.
func (be *backend) serverURLs(ctx context.Context) []string {
	urls := be.info.URLs
	if be.info.Kind == "endpoint" && len(urls) == 1 {
		urls = behindRouter(ctx, urls[0], be.apiKey)
	}
	return urls
}

// scrapeAll sums the counters of every server of the backend; Found is
// false when any could not be read.
func (be *backend) scrapeAll(ctx context.Context) metrics.ServerCounters {
	var sum metrics.ServerCounters
	found := true
	urls := be.serverURLs(ctx)
	for _, u := range urls {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		c, err := metrics.Scrape(sctx, http.DefaultClient, u)
		cancel()
		found = found && err == nil && c.Found
		sum = sum.Add(c)
	}
	sum.Found = found && len(urls) > 0
	return sum
}

// routerStats reads a wfsched router's /v1/workflows/stats (nil if none),
// with the run's API key if it has one.
func routerStats(ctx context.Context, url, apiKey string) *router.Stats {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(sctx, "GET", strings.TrimSuffix(strings.TrimSuffix(url, "/"), "/v1")+"/v1/workflows/stats", nil)
	if apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+apiKey)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var st router.Stats
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&st) != nil {
		return nil
	}
	return &st
}

// behindRouter returns the servers behind a wfsched router at url (from
// its /v1/workflows/stats), or url itself for any other server.
func behindRouter(ctx context.Context, url, apiKey string) []string {
	st := routerStats(ctx, url, apiKey)
	if st == nil || len(st.Backends) == 0 {
		return []string{url}
	}
	var out []string
	for _, b := range st.Backends {
		out = append(out, b.URL)
	}
	return out
}

// replay runs cfg into dir: nodes.jsonl and workflows.jsonl as results
// come, then summary.json and traces.json; extra sinks see every result
// too. The report's Dir is empty when nothing could be written.
func replay(ctx context.Context, stderr io.Writer, dir string, o *runOptions, cfg scheduler.Config, graphs []*dag.Graph,
	infos []report.TraceInfo, be *backend, showProgress bool, extra ...scheduler.Sink) (report.RunReport, error) {
	nodesF, err := os.Create(filepath.Join(dir, "nodes.jsonl"))
	if err != nil {
		return report.RunReport{}, err
	}
	defer nodesF.Close()
	wfF, err := os.Create(filepath.Join(dir, "workflows.jsonl"))
	if err != nil {
		return report.RunReport{}, err
	}
	defer wfF.Close()
	if err := writeOut(nil, filepath.Join(dir, "traces.json"), func(w io.Writer) error { return dag.WriteJSON(w, graphs...) }); err != nil {
		return report.RunReport{}, err
	}
	cfg.TimeScale = be.info.TimeScale
	rec := &metrics.Recorder{SLO: o.sloValue, Idle: o.idle}
	sinks := metrics.Tee{metrics.NewJSONL(nodesF, wfF), rec}
	if be.forget != nil {
		sinks = append(sinks, workflowHook(func(w scheduler.WorkflowResult) { be.forget(w.Workflow) }))
	}
	sinks = append(sinks, extra...)
	stopProgress := func() {}
	if showProgress {
		prog := newProgress(stderr, cfg.Workflows, totalNodes(graphs, cfg.Workflows))
		sinks = append(sinks, prog)
		stopProgress = prog.start()
	}
	rep := report.RunReport{
		RunID: filepath.Base(dir), Dir: dir, Args: os.Args[1:], Traces: infos, Backend: be.info,
		Versions: map[string]string{"wfsched": version, "go": runtime.Version(), "sim": sim.Version},
		Config: report.RunConfig{Policy: cfg.Policy.Name(), MaxParallel: cfg.MaxParallel, OnError: string(cfg.OnError), Context: string(cfg.Context),
			MaxTokens: cfg.MaxTokens, OutputTokens: cfg.OutputTokens, Temperature: cfg.Temperature, IgnoreEOS: !cfg.NoIgnoreEOS, ToolLatencyS: cfg.ToolLatency.Seconds(),
			Workflows: cfg.Workflows, Concurrency: cfg.Concurrency, Seed: o.seed, SLO: o.sloValue.String(), Arrival: describeArrival(cfg.Arrival)},
	}
	rep.PrefixShareBound, rep.PrefixAnyBound = weightedBounds(infos, cfg.Workflows)
	// A summary saying the run is under way, replaced when it ends: a run
	// killed before then is still read back (report marks it incomplete).
	rep.Outcome, rep.Start = report.OutcomeRunning, time.Now()
	if err := writeOut(nil, filepath.Join(dir, "summary.json"), func(w io.Writer) error { return report.WriteJSON(w, rep) }); err != nil {
		return rep, fmt.Errorf("write summary: %w", err)
	}
	before := be.scrapeAll(ctx)
	sampler := metrics.StartSampler(ctx, http.DefaultClient, be.serverURLs(ctx), metrics.DefaultSampleEvery, be.info.TimeScale)
	res, runErr := scheduler.Run(ctx, cfg, graphs, be.cl, sinks)
	stopProgress()
	util := sampler.Stop(context.WithoutCancel(ctx), res.DurationS)
	after := be.scrapeAll(ctx)
	// The router's figures: the embedded one's, or those of a wfsched
	// router given as the endpoint (any other server has none).
	routerURL := be.info.Router
	if routerURL == "" && be.info.Kind == "endpoint" && len(be.info.URLs) == 1 {
		routerURL = be.info.URLs[0]
	}
	failovers := map[string]int64{}
	var st *router.Stats
	if routerURL != "" {
		st = routerStats(ctx, routerURL, be.apiKey)
	}
	if st != nil {
		be.info.Router, be.info.RouterStats = routerURL, st
		rep.Backend = be.info
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
	if err := writeOut(nil, filepath.Join(dir, "summary.json"), func(w io.Writer) error { return report.WriteJSON(w, rep) }); err != nil {
		return rep, fmt.Errorf("write summary: %w", err)
	}
	return rep, runErr
}

// register adds the replay flags (and --policy when withPolicy).
func (o *runOptions) register(f *pflag.FlagSet, withPolicy bool) {
	o.trace.register(f)
	f.StringVar(&o.dagPath, "dag", "", "trace file, multi-trace file or directory of traces (required)")
	if withPolicy {
		f.StringVar(&o.policy, "policy", "parallel", "scheduling policy: "+strings.Join(scheduler.Policies(), ", "))
	}
	f.StringArrayVar(&o.endpoints, "endpoint", nil, "OpenAI-compatible server URL (default: the embedded engine)")
	f.StringVar(&o.model, "model", "", "model name (default: the server's first)")
	f.StringVar(&o.apiKey, "api-key", os.Getenv("WFSCHED_API_KEY"), "bearer token sent to the server or router (default $WFSCHED_API_KEY)")
	f.IntVar(&o.maxParallel, "max-parallel", scheduler.DefaultMaxParallel, "most nodes of one workflow in flight")
	f.IntVar(&o.maxTokens, "max-tokens", 0, "cap each call's max_tokens, which is by default its node's reference output length (as the prototype's --max-tokens)")
	f.IntVar(&o.outTokens, "output-tokens", 0, "force every call's max_tokens to exactly N instead (with ignore_eos, every output is N tokens)")
	f.Float64Var(&o.temperature, "temperature", 0, "sampling temperature, sent as given (0 included); unset: the server's default")
	f.StringVar(&o.context, "context", string(scheduler.ContextReference), "prompts: reference (the trace's texts) or live (this run's outputs)")
	f.StringVar(&o.onError, "on-error", string(scheduler.SkipDependents), "a failed node: "+scheduler.ErrorModes())
	f.IntVar(&o.workflows, "workflows", 0, "workflows to replay, cycling through the traces (default: one per trace)")
	f.IntVar(&o.concurrency, "concurrency", 1, "workflows in flight at once")
	f.Uint64Var(&o.seed, "seed", 1, "seed of the embedded engine and of retry jitter")
	f.StringVar(&o.out, "out", "results", "folder for the run's results")
	f.DurationVar(&o.toolLatency, "tool-latency", 0, "modeled time of tool nodes with no recorded duration")
	f.BoolVar(&o.noIgnoreEOS, "no-ignore-eos", false, "do not send ignore_eos (outputs may end before the reference length)")
	f.DurationVar(&o.timeout, "timeout", client.DefaultTimeout, "per-attempt timeout of a call")
	f.IntVar(&o.maxConns, "max-connections", client.DefaultMaxConns, "most connections (calls in flight) to the server or router; more calls wait in wfsched, the wait counted in their TTFT")
	f.IntVar(&o.attempts, "max-attempts", client.DefaultMaxAttempts, "tries per call (429, 5xx, connection errors and timeouts are retried)")
	f.StringVar(&o.arrival, "arrival", "", "workflow arrivals: closed (--concurrency at a time; the default), poisson or gamma (at --rate); --rate alone means poisson, with --burstiness other than 1 gamma")
	f.Float64Var(&o.rate, "rate", 0, "open-loop arrivals: workflows per (modeled) second")
	f.Float64Var(&o.burstiness, "burstiness", 1, "gamma shape of the gaps between arrivals: 1 is Poisson, lower is burstier")
	f.DurationVar(&o.rampUp, "ramp-up", 0, "raise the arrival rate linearly from 0 over this (modeled) time")
	f.DurationVar(&o.duration, "duration", 0, "stop new arrivals after this (modeled) time (open loops; --workflows also stops them)")
	f.IntVar(&o.maxConc, "max-concurrency", 0, "open loops: most workflows in flight; later arrivals wait (queueing delay)")
	f.BoolVar(&o.shared, "shared-replays", false, "let replays of one trace share prompts (by default each starts with a line naming its workflow, so copies of one task do not hit each other's cache)")
	f.IntVar(&o.instances, "instances", 1, "embedded engines; more than one are served behind the router")
	f.StringVar(&o.routing, "routing-logic", "", "put wfsched's router in front of the engines or endpoints: "+strings.Join(router.Logics(), ", ")+" (default workflow-aware when several)")
	f.StringVar(&o.slo, "slo", "", "service-level objectives for goodput, in ms: ttft:MS,tpot:MS,e2el:MS (any subset)")
	f.StringVar(&o.profile, "profile", sim.DefaultProfile, "embedded engine: built-in profile or JSON file")
	f.Float64Var(&o.timeScale, "time-scale", DefaultEmbeddedScale, "embedded engine: wall seconds per modeled second")
}

// config validates the flags into a scheduler configuration.
func (o *runOptions) config(cmd *cobra.Command) (scheduler.Config, error) {
	if o.dagPath == "" {
		return scheduler.Config{}, usageError("run needs --dag PATH (a trace file, a multi-trace file or a directory)")
	}
	pol, err := scheduler.PolicyByName(o.policy)
	if err != nil {
		return scheduler.Config{}, usageError("--policy: %v", err)
	}
	cfg := scheduler.Config{
		Policy: pol, MaxParallel: o.maxParallel, OnError: scheduler.ErrorMode(o.onError), Context: scheduler.ContextMode(o.context),
		MaxTokens: o.maxTokens, OutputTokens: o.outTokens, NoIgnoreEOS: o.noIgnoreEOS, ToolLatency: o.toolLatency, Workflows: o.workflows,
		Concurrency: o.concurrency, Seed: o.seed, SharedReplays: o.shared,
	}
	if cmd.Flags().Changed("temperature") {
		t := o.temperature
		cfg.Temperature = &t
	}
	if o.maxParallel < 1 {
		return cfg, usageError("--max-parallel %d: want at least 1", o.maxParallel)
	}
	if o.concurrency < 1 {
		return cfg, usageError("--concurrency %d: want at least 1", o.concurrency)
	}
	switch kind := o.arrival; {
	case kind == "replay":
		return cfg, usageError("--arrival replay: the shared traces record no start times to replay; use poisson or gamma")
	case kind == "" && o.rate == 0, kind == scheduler.ArrivalClosed:
		if o.rate != 0 || o.rampUp != 0 || o.duration != 0 || o.maxConc != 0 || o.burstiness != 1 {
			return cfg, usageError("--rate, --burstiness, --ramp-up, --duration and --max-concurrency go with an open loop (--arrival poisson or gamma)")
		}
	default:
		if kind == "" {
			kind = scheduler.ArrivalPoisson
			if o.burstiness != 1 {
				kind = scheduler.ArrivalGamma
			}
		}
		cfg.Arrival = scheduler.Arrival{Kind: kind, Rate: o.rate, Burstiness: o.burstiness, RampUp: o.rampUp, Duration: o.duration,
			MaxConcurrency: o.maxConc, Seed: o.seed}
	}
	if o.sloValue, err = metrics.ParseSLO(o.slo); err != nil {
		return cfg, usageError("--slo: %v", err)
	}
	if o.attempts < 1 || o.timeout <= 0 || o.maxConns < 1 {
		return cfg, usageError("--max-attempts and --max-connections must be at least 1 and --timeout positive")
	}
	if err := cfg.Validate(); err != nil {
		return cfg, usageError("%v", err)
	}
	return cfg, nil
}

// load reads the traces: one file (all its traces unless one is chosen) or
// every file of a directory.
func (o *runOptions) load() ([]*dag.Graph, []report.TraceInfo, error) {
	st, err := os.Stat(o.dagPath)
	if err != nil {
		return nil, nil, err
	}
	var files []string
	if st.IsDir() {
		entries, err := os.ReadDir(o.dagPath)
		if err != nil {
			return nil, nil, err
		}
		for _, e := range entries {
			if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
				files = append(files, filepath.Join(o.dagPath, e.Name()))
			}
		}
		sort.Strings(files)
		if len(files) == 0 {
			return nil, nil, &cliError{code: exitUsage, err: fmt.Errorf("%s holds no trace file", o.dagPath)}
		}
	} else {
		files = []string{o.dagPath}
	}
	var graphs []*dag.Graph
	var infos []report.TraceInfo
	for _, f := range files {
		var gs []*dag.Graph
		if o.trace.chosen() {
			g, _, err := o.trace.readOne(f)
			if err != nil {
				return nil, nil, err
			}
			gs = []*dag.Graph{g}
		} else {
			opt, err := o.trace.options()
			if err != nil {
				return nil, nil, err
			}
			if gs, err = dag.ReadFile(f, opt); err != nil {
				return nil, nil, err
			}
		}
		is, err := traceInfos(f, gs)
		if err != nil {
			return nil, nil, err
		}
		graphs, infos = append(graphs, gs...), append(infos, is...)
	}
	// Workflows cycle through the traces: with fewer workflows than
	// traces, only the first ones run, and only they are the run's.
	if n := o.workflows; n > 0 && n < len(graphs) {
		graphs, infos = graphs[:n], infos[:n]
	}
	return graphs, infos, nil
}

// describeArrival says how workflows arrived, "" for the closed loop.
func describeArrival(a scheduler.Arrival) string {
	if !a.Open() {
		return ""
	}
	d := fmt.Sprintf("%s at %g/s", a.Kind, a.Rate)
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

// traceInfos analyses the graphs read from path for reports.
func traceInfos(path string, gs []*dag.Graph) ([]report.TraceInfo, error) {
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

func totalNodes(gs []*dag.Graph, workflows int) int {
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

// newRunDir makes OUT/<time>-<policy>, unique.
func newRunDir(out, policy string) (string, error) {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", err
	}
	base := filepath.Join(out, time.Now().Format("20060102-150405")+"-"+policy)
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

// progress reports on stderr: a bar redrawn in place on a terminal,
// otherwise a plain line every few seconds.
type progress struct {
	w            io.Writer
	tty          bool
	workflows    int
	nodes        int
	doneN, doneW atomic.Int64
	failed       atomic.Int64
	began        time.Time
}

func newProgress(w io.Writer, workflows, nodes int) *progress {
	p := &progress{w: w, workflows: workflows, nodes: nodes}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progress) Node(r scheduler.NodeResult) error {
	p.doneN.Add(1)
	if r.Status == scheduler.StatusFailed {
		p.failed.Add(1)
	}
	return nil
}

func (p *progress) Workflow(scheduler.WorkflowResult) error {
	p.doneW.Add(1)
	return nil
}

func (p *progress) line() string {
	n, w := p.doneN.Load(), p.doneW.Load()
	return fmt.Sprintf("%d/%d nodes, %d/%d workflows, %d failed, %.0f s", n, p.nodes, w, p.workflows, p.failed.Load(), time.Since(p.began).Seconds())
}

// start prints until the returned function is called.
func (p *progress) start() (stop func()) {
	p.began = time.Now()
	every := 5 * time.Second
	if p.tty {
		every = 200 * time.Millisecond
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				if p.tty {
					fmt.Fprintf(p.w, "\r%s %s\n", bar(float64(p.doneN.Load())/float64(max(p.nodes, 1))), p.line())
				}
				return
			case <-t.C:
				if p.tty {
					fmt.Fprintf(p.w, "\r%s %s", bar(float64(p.doneN.Load())/float64(max(p.nodes, 1))), p.line())
				} else {
					fmt.Fprintf(p.w, "wfsched: progress: %s\n", p.line())
				}
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

func bar(frac float64) string {
	const width = 30
	n := int(min(1, max(0, frac)) * width)
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "]"
}
