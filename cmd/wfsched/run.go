package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/wfsched/wfsched/capture"
	"github.com/wfsched/wfsched/client"
	"github.com/wfsched/wfsched/dag"
	"github.com/wfsched/wfsched/metrics"
	"github.com/wfsched/wfsched/replay"
	"github.com/wfsched/wfsched/report"
	"github.com/wfsched/wfsched/router"
	"github.com/wfsched/wfsched/scheduler"
	"github.com/wfsched/wfsched/sim"
)

type runOptions struct {
	trace          traceFlags
	dagPath        string
	policy         string
	endpoints      []string
	model          string
	apiKey         string
	maxParallel    int
	maxTokens      int
	outTokens      int
	temperature    float64
	context        string
	onError        string
	workflows      int
	concurrency    int
	seed           uint64
	out            string
	toolLatency    time.Duration
	noIgnoreEOS    bool
	timeout        time.Duration
	waitReady      time.Duration
	attempts       int
	api            string
	capture        string
	captureContent string
	slo            string
	sloValue       metrics.SLO
	instances      int
	routing        string
	shared         bool
	slow           float64 // embedded engines' planted slow-down (bench --fault-slow)
	arrival        string
	rate           float64
	speed          float64 // --arrival replay
	burstiness     float64
	rampUp         time.Duration
	duration       time.Duration
	maxConc        int
	quiet          bool // no embedded-engine banner (compare prints its own)
	maxConns       int
	idle           map[string]float64 // traces' idle completion times, for slowdowns (sweep)
	loaded         *loadedTraces      // load's result, kept: config reads recorded starts from it
	// embedded engine
	profile   string
	timeScale float64
	clock     string
	// cross-workflow order
	workflowPolicy   string
	aging            time.Duration
	admission        int
	workflowPolicies string // compare and sweep: one arm each
	schedPolicy      string
}

func newRunCmd() *cobra.Command {
	var o runOptions
	cmd := &cobra.Command{
		Use:   "run --dag PATH [--policy P] [--endpoint URL] [flags]",
		Short: "Replay a workflow DAG against an LLM server under a scheduling policy",
		Long: `Run replays one or many workflows against an OpenAI-compatible server and measures every
call and every workflow. With no --endpoint it runs on the embedded engine in-process
(--profile), on the virtual clock: modeled time in an event loop, exact, the same every
time, as fast as the CPU goes. --clock wall (or --time-scale) serves the engines over HTTP
in wall-clock time instead, which exercises the client and router; times are modeled
seconds either way. Real servers (--endpoint) are always on the wall clock.

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
  wfsched run --dag traces/mast/appworld-steps.json.gz --workflows 30 --concurrency 8
  wfsched run --dag traces/agents-40.json --endpoint http://127.0.0.1:8000 --temperature 0`,
		Args: noArgs("--dag"),
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
	be, err := replay.Start(ctx, o.spec(cmd, stderr))
	if err != nil {
		return cliErr(err)
	}
	defer be.Close()
	dir, err := replay.NewRunDir(o.out, cfg.Policy.Name())
	if err != nil {
		return err
	}
	prog := newProgress(stderr, cfg.Workflows, replay.TotalNodes(graphs, cfg.Workflows))
	stopProgress := prog.start()
	rep, runErr := replay.Replay(ctx, be, o.job(dir, cfg, graphs, infos, prog))
	stopProgress()
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

// spec is the backend the flags ask for; log, if not nil, hears about
// embedded engines.
func (o *runOptions) spec(cmd *cobra.Command, log io.Writer) replay.Spec {
	if o.apiKey == "" {
		// Read here, not as the flag's default: --help would print it.
		o.apiKey = os.Getenv("WFSCHED_API_KEY")
	}
	s := replay.Spec{Endpoints: o.endpoints, Clock: o.clock, Instances: o.instances, Routing: o.routing, Profile: o.profile,
		SchedulingPolicy: o.schedPolicy, Admission: o.admission, Priorities: o.workflowPolicy != "" && o.workflowPolicy != "fcfs",
		TimeScale: o.timeScale, Slow: o.slow, Seed: o.seed, Model: o.model, APIKey: o.apiKey, Timeout: o.timeout, Attempts: o.attempts,
		MaxConns: o.maxConns, KeepText: o.context == string(scheduler.ContextLive), API: o.api, WaitReady: o.waitReady,
		Capture: o.capture, CaptureContent: o.captureContent}
	if !o.quiet {
		s.Log = log
	}
	// --time-scale paces the wall clock, and an API other than chat or a
	// capture goes over HTTP: given alone, either asks for it.
	if s.Clock == "" && (cmd.Flags().Changed("time-scale") || o.api != "" && o.api != client.APIChat || o.capture != "") {
		s.Clock = replay.ClockWall
	}
	return s
}

// job is the replay the flags ask for, into dir.
func (o *runOptions) job(dir string, cfg scheduler.Config, graphs []*dag.Graph, infos []report.TraceInfo, sinks ...scheduler.Sink) replay.Job {
	return replay.Job{Dir: dir, Config: cfg, Graphs: graphs, Traces: infos, SLO: o.sloValue, Idle: o.idle, Seed: o.seed, Args: os.Args[1:], Sinks: sinks}
}

// cliErr gives a library error its exit code and hint.
func cliErr(err error) error {
	var re *replay.Error
	if errors.As(err, &re) {
		code := exitFailure
		if re.Usage {
			code = exitUsage
		}
		return &cliError{code: code, err: re.Err, hint: re.Hint}
	}
	return err
}

// register adds the replay flags (and --policy when withPolicy, else
// --workflow-policies).
func (o *runOptions) register(f *pflag.FlagSet, withPolicy bool) {
	if !withPolicy {
		f.StringVar(&o.workflowPolicies, "workflow-policies", "", "compare orders across workflows instead (under one --policies, default parallel), e.g. fcfs,las,atlas,critical-path,srpt-oracle")
	}
	o.trace.register(f)
	f.StringVar(&o.dagPath, "dag", "", "trace file, multi-trace file or directory of traces (required)")
	if withPolicy {
		f.StringVar(&o.policy, "policy", "parallel", "scheduling policy: "+strings.Join(scheduler.Policies(), ", "))
	}
	f.StringArrayVar(&o.endpoints, "endpoint", nil, "OpenAI-compatible server URL (default: the embedded engine)")
	f.DurationVar(&o.waitReady, "wait-ready", replay.DefaultWaitReady, "wait this long for --endpoint to answer /health or /v1/models before giving up (0: do not wait)")
	f.StringVar(&o.model, "model", "", "model name (default: the server's first)")
	f.StringVar(&o.apiKey, "api-key", "", "bearer token sent to the server or router (default $WFSCHED_API_KEY)")
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
	f.StringVar(&o.api, "api", client.APIChat, "endpoint the calls go through: chat, completions (the messages as a transcript prompt) or responses (an agent's calls chained by previous_response_id); other than chat runs on the wall clock")
	f.StringVar(&o.capture, "capture", "", "record every call through wfsched's router (put in front for it) to a new file in this folder, as 'wfsched router --capture' does; wall clock")
	f.StringVar(&o.captureContent, "capture-content", capture.Hash, "what --capture keeps of texts: full, hash or none")
	f.IntVar(&o.attempts, "max-attempts", client.DefaultMaxAttempts, "tries per call (429, 5xx, connection errors and timeouts are retried)")
	f.StringVar(&o.arrival, "arrival", "", "workflow arrivals: closed (--concurrency at a time; the default), poisson or gamma (at --rate), or replay (each workflow at its recorded start, divided by --speed); --rate alone means poisson, with --burstiness other than 1 gamma")
	f.Float64Var(&o.rate, "rate", 0, "open-loop arrivals: workflows per (modeled) second")
	f.Float64Var(&o.speed, "speed", 1, "--arrival replay: compress (2 = twice as fast) or stretch (0.5) the recorded starts")
	f.Float64Var(&o.burstiness, "burstiness", 1, "gamma shape of the gaps between arrivals: 1 is Poisson, lower is burstier")
	f.DurationVar(&o.rampUp, "ramp-up", 0, "raise the arrival rate linearly from 0 over this (modeled) time")
	f.DurationVar(&o.duration, "duration", 0, "stop new arrivals after this (modeled) time (open loops; --workflows also stops them)")
	f.IntVar(&o.maxConc, "max-concurrency", 0, "open loops: most workflows in flight; later arrivals wait (queueing delay)")
	f.BoolVar(&o.shared, "shared-replays", false, "let replays of one trace share prompts (by default each starts with a line naming its workflow, so copies of one task do not hit each other's cache)")
	f.IntVar(&o.instances, "instances", 1, "embedded engines; more than one are served behind the router")
	f.StringVar(&o.routing, "routing-logic", "", "put wfsched's router in front of the engines or endpoints: "+strings.Join(router.Logics(), ", ")+" (default workflow-aware when several)")
	f.StringVar(&o.slo, "slo", "", "service-level objectives for goodput, in ms: ttft:MS,tpot:MS,e2el:MS (any subset)")
	f.StringVar(&o.profile, "profile", sim.DefaultProfile, "embedded engine: built-in profile, derived GPU-MODEL[-tpN][-bf16|fp8] (h200-llama3.1-70b-tp4-fp8), or a file")
	f.Float64Var(&o.timeScale, "time-scale", replay.DefaultEmbeddedScale, "embedded engine on the wall clock: wall seconds per modeled second")
	f.StringVar(&o.workflowPolicy, "workflow-policy", "fcfs", "order across workflows: "+strings.Join(scheduler.WorkflowPolicies(), ", ")+" (see docs/workflow-ordering.md); other than fcfs, calls carry priorities")
	f.IntVar(&o.admission, "admission", 0, "with wfsched's router: requests each engine or endpoint serves at once; more wait at the router, by priority then arrival (0: none)")
	f.DurationVar(&o.aging, "aging", 0, "workflow policies: a call at level L goes as if sent L times this later (first come first served with a handicap), so none waits forever; 0: by level alone")
	f.StringVar(&o.schedPolicy, "scheduling-policy", "", "embedded engines: fcfs or priority, as vLLM's (default: priority with a workflow policy other than fcfs, else fcfs)")
	f.StringVar(&o.clock, "clock", "", "virtual (the embedded engines in modeled time: exact and fast; the default without --endpoint) or wall (over HTTP in wall-clock time; always with --endpoint)")
	brief(f, map[string]string{
		"profile":           "engine: built-in, GPU-MODEL[-tpN][-bf16|fp8], or file",
		"wait-ready":        "wait this long for --endpoint to answer (0: do not wait)",
		"admission":         "router admission: requests each server serves at once (0: no limit)",
		"aging":             "workflow policies: a handicap per level, so no call waits forever",
		"api":               "API the calls use: chat, completions or responses",
		"arrival":           "arrivals: closed (default), poisson or gamma (--rate), replay (--speed)",
		"burstiness":        "gamma shape of the arrival gaps (1: Poisson; lower: burstier)",
		"capture":           "record every call through wfsched's router into this folder",
		"clock":             "virtual (modeled time, exact) or wall (over HTTP)",
		"duration":          "stop new arrivals after this modeled time (open loops)",
		"max-concurrency":   "open loops: most workflows in flight; later arrivals wait",
		"max-connections":   "most calls in flight to the server; more wait in wfsched",
		"max-tokens":        "cap each call's max_tokens (by default its reference output length)",
		"output-tokens":     "force every call's max_tokens to N, with ignore_eos",
		"routing-logic":     "put wfsched's router in front, with this routing logic",
		"scheduling-policy": "embedded engines' queue: fcfs or priority",
		"shared-replays":    "let replays of one trace share prompts, and so their cache",
		"slo":               "SLOs for goodput in ms, e.g. ttft:500,tpot:50,e2el:30000",
		"speed":             "--arrival replay: speed up (2) or slow down (0.5) the recorded starts",
		"temperature":       "sampling temperature, sent as given (unset: the server's default)",
		"workflow-policy":   "order across workflows: fcfs, las, atlas, critical-path...",
		"workflows":         "workflows to replay, cycling through the traces",
		"context":           "prompts: reference (the trace's texts) or live (this run's)",
	})
	if !withPolicy {
		brief(f, map[string]string{"workflow-policies": "compare orders across workflows instead, e.g. fcfs,las,atlas"})
	}
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
	if cmd.Flags().Changed("time-scale") && o.clock == replay.ClockVirtual {
		return scheduler.Config{}, usageError("--time-scale paces the wall clock; the virtual clock has none: leave out one of --time-scale and --clock virtual")
	}
	wp, err := scheduler.WorkflowPolicyByName(o.workflowPolicy)
	if err != nil {
		return scheduler.Config{}, usageError("--workflow-policy: %v", err)
	}
	cfg := scheduler.Config{
		Policy: pol, WorkflowPolicy: wp, Aging: o.aging, MaxParallel: o.maxParallel, OnError: scheduler.ErrorMode(o.onError), Context: scheduler.ContextMode(o.context),
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
	if o.instances < 1 {
		return cfg, usageError("--instances %d: want at least 1", o.instances)
	}
	switch kind := o.arrival; {
	case kind == scheduler.ArrivalReplay:
		if o.rate != 0 || o.rampUp != 0 || o.burstiness != 1 {
			return cfg, usageError("--arrival replay starts workflows at their recorded times: leave out --rate, --burstiness and --ramp-up (--speed compresses or stretches them)")
		}
		if o.workflows != 0 {
			return cfg, usageError("--arrival replay replays each recorded workflow once, at its start: leave out --workflows")
		}
		gs, _, err := o.load()
		if err != nil {
			return cfg, err
		}
		a, err := scheduler.ReplayArrival(gs, o.speed)
		if err != nil {
			return cfg, usageError("--arrival replay: %v; use poisson or gamma", err)
		}
		a.Duration, a.MaxConcurrency, a.Seed = o.duration, o.maxConc, o.seed
		cfg.Workflows, cfg.Arrival = len(gs), a
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

// loadedTraces are the traces load read.
type loadedTraces struct {
	graphs []*dag.Graph
	infos  []report.TraceInfo
}

// load reads the traces once: one file (all its traces unless one is
// chosen), every file of a directory, or a capture folder. With --arrival
// replay they are put in the order of their recorded starts.
func (o *runOptions) load() ([]*dag.Graph, []report.TraceInfo, error) {
	if o.loaded == nil {
		gs, infos, err := o.read()
		if err != nil {
			return nil, nil, err
		}
		if o.arrival == scheduler.ArrivalReplay {
			replay.ByStart(gs, infos)
		}
		o.loaded = &loadedTraces{gs, infos}
	}
	return o.loaded.graphs, o.loaded.infos, nil
}

// read reads the traces load keeps.
func (o *runOptions) read() ([]*dag.Graph, []report.TraceInfo, error) {
	st, err := os.Stat(o.dagPath)
	if err != nil {
		return nil, nil, err
	}
	var files []string
	if st.IsDir() && !dag.IsCaptureDir(o.dagPath) {
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
		is, err := replay.TraceInfos(f, gs)
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
