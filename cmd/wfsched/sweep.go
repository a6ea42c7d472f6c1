package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wfsched/wfsched/dag"
	"github.com/wfsched/wfsched/replay"
	"github.com/wfsched/wfsched/report"
	"github.com/wfsched/wfsched/scheduler"
)

// DefaultSweepWorkflows is how many workflows each sweep run replays when
// neither --workflows nor --duration is given.
const DefaultSweepWorkflows = 40

type sweepOptions struct {
	run        runOptions
	rates      string
	policies   string
	logics     string
	saturation float64
	idleAtOnce int
	png        bool
}

func newSweepCmd() *cobra.Command {
	var o sweepOptions
	cmd := &cobra.Command{
		Use:   "sweep --dag PATH --rates R,R,...|auto [--policies P,...|--routing-logics L,...] [flags]",
		Short: "Measure workflow completion time and throughput against offered load",
		Long: `Sweep replays the traces under open-loop arrivals (Poisson, or gamma with --burstiness) at
each offered rate, once per policy or routing logic, each run on fresh embedded engines, and
draws workflow completion time (p50, p99) and workflows completed per minute against the
offered rate. Rates are workflows per modeled second.

First, every trace is replayed alone on an idle server under each arm; each workflow's
slowdown is its completion time over that idle time. An arm saturates at the lowest rate
whose median slowdown exceeds --saturation-slowdown (default 2).

--rates auto starts at one workflow per mean idle completion time (about one workflow in
flight) and doubles until every arm saturates, at most 8 rates.

On the virtual clock (the embedded engines' default) every point is exact and the idle runs
go one per processor; --clock wall runs them over HTTP.

Outputs, in OUT/<id>-sweep/: a table on stdout, sweep.json, sweep.csv, sweep.md,
report.html, sweep-completion.svg and sweep-throughput.svg (--png: PNGs too); every run's
files under runs/.`,
		Example: `  wfsched sweep --dag traces/research-team.json --rates 0.05,0.1,0.2,0.4 --workflows 30
  wfsched sweep --dag traces/mast/appworld-steps.json.gz --instances 4 \
      --routing-logics roundrobin,workflow-aware --rates auto`,
		Args: noArgs("--dag"),
		RunE: func(cmd *cobra.Command, _ []string) error { return runSweep(cmd, &o) },
	}
	o.run.register(cmd.Flags(), false)
	f := cmd.Flags()
	f.StringVar(&o.rates, "rates", "", "offered rates in workflows per modeled second, e.g. 0.5,1,2,4, or auto (required)")
	f.StringVar(&o.policies, "policies", "parallel", "policies to sweep")
	f.StringVar(&o.logics, "routing-logics", "", "sweep routing logics instead (under one --policies), e.g. roundrobin,workflow-aware; with --instances N or several --endpoint")
	f.Float64Var(&o.saturation, "saturation-slowdown", 2, "median slowdown over idle above which an arm counts as saturated")
	f.IntVar(&o.idleAtOnce, "idle-parallel", 1, "embedded engines: idle reference runs at once, each on its own engines (on the wall clock more is faster but, on few cores, slows the modeled clock; on the virtual clock one per processor by default)")
	f.BoolVar(&o.png, "png", false, "also write the plots as PNG")
	brief(f, map[string]string{
		"idle-parallel":  "idle reference runs at once",
		"rates":          "offered rates in workflows per modeled second, e.g. 0.5,1,2, or auto",
		"routing-logics": "sweep these routing logics instead, e.g. roundrobin,workflow-aware",
	})
	return cmd
}

// parseRates reads a list of positive rates, sorted and without repeats;
// nil for auto.
func parseRates(s string) ([]float64, error) {
	if strings.TrimSpace(s) == "auto" {
		return nil, nil
	}
	if strings.TrimSpace(s) == "" {
		return nil, usageError("sweep needs --rates, e.g. --rates 0.5,1,2,4 (workflows per second) or --rates auto")
	}
	var out []float64
	for _, f := range strings.Split(s, ",") {
		r, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || !(r > 0 && r <= 1e6) {
			return nil, usageError("--rates: %q is not a rate; give positive workflows per second, e.g. 0.5,1,2,4", strings.TrimSpace(f))
		}
		out = append(out, r)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func runSweep(cmd *cobra.Command, o *sweepOptions) error {
	ctx := cmd.Context()
	stderr := cmd.ErrOrStderr()
	rates, err := parseRates(o.rates)
	if err != nil {
		return err
	}
	recorded := o.run.arrival == scheduler.ArrivalReplay
	if recorded && (cmd.Flags().Changed("speed") || o.run.workflows != 0 || o.run.duration != 0) {
		return usageError("sweep --arrival replay replays every recorded workflow at the speed that makes each rate of --rates its mean arrival rate: leave out --speed, --workflows and --duration")
	}
	if cmd.Flags().Changed("rate") || o.run.arrival == scheduler.ArrivalClosed {
		return usageError("sweep sets the rate itself (--rates) and needs an open loop: leave out --rate, and --arrival other than poisson or gamma")
	}
	if o.idleAtOnce < 1 {
		return usageError("--idle-parallel %d: want at least 1", o.idleAtOnce)
	}
	if _, err := o.run.spec(cmd, nil).ResolveClock(); err != nil {
		return cliErr(err)
	}
	if o.saturation <= 1 {
		return usageError("--saturation-slowdown %g: want more than 1", o.saturation)
	}
	if o.run.workflows == 0 && o.run.duration == 0 && !recorded {
		o.run.workflows = DefaultSweepWorkflows
	}
	arms, err := parseArms(cmd, &o.run, o.policies, o.logics)
	if err != nil {
		return err
	}
	// Validate the open-loop flags once with a placeholder rate.
	o.run.policy = arms[0].Policy.Name()
	if !recorded {
		o.run.rate = 1
	}
	cfg0, err := o.run.config(cmd)
	if err != nil {
		return err
	}
	graphs, infos, err := o.run.load()
	if err != nil {
		return err
	}
	if recorded && cfg0.Arrival.MeanRate() == 0 {
		return usageError("sweep --arrival replay: the recorded workflows start at once (or there is one): there is no arrival rate to scale")
	}
	seen := map[string]int{}
	for _, g := range graphs {
		if seen[g.ID]++; seen[g.ID] == 2 {
			fmt.Fprintf(stderr, "wfsched: warning: traces share the id %q; slowdowns use the last one's idle time\n", g.ID)
		}
	}
	dir, err := replay.NewRunDir(o.run.out, "sweep")
	if err != nil {
		return err
	}
	doc := report.SweepDoc{ID: filepath.Base(dir), Created: time.Now(), Args: os.Args[1:], ArmsAre: "policies", Workflows: o.run.workflows,
		Traces: infos, Idle: map[string]map[string]float64{}, SaturationSlowdown: o.saturation, Arrival: cfg0.Arrival.Kind,
		DurationS: o.run.duration.Seconds()}
	if cfg0.Arrival.Kind == scheduler.ArrivalGamma {
		doc.Arrival += fmt.Sprintf(" burstiness %g", cfg0.Arrival.Burstiness)
	}
	if recorded {
		doc.Workflows = len(graphs)
		doc.Arrival = fmt.Sprintf("recorded starts (%d workflows, mean %.3g/s at speed 1), sped to each rate", len(graphs), cfg0.Arrival.MeanRate())
	}
	if cfg0.Arrival.RampUp > 0 {
		doc.Arrival += fmt.Sprintf(", ramp-up %s", cfg0.Arrival.RampUp)
	}
	if o.logics != "" {
		doc.ArmsAre = "routing-logics"
	}
	if o.run.workflowPolicies != "" {
		doc.ArmsAre = "workflow-policies"
	}
	for _, a := range arms {
		doc.Arms = append(doc.Arms, a.Label)
	}
	o.run.quiet = true
	clock, _ := o.run.spec(cmd, nil).ResolveClock()
	plan := replay.SweepPlan{Dir: dir, Doc: doc, Arms: arms, Rates: rates, Graphs: graphs, Traces: infos, IdleAtOnce: o.idleAtOnce,
		Embedded: len(o.run.endpoints) == 0,
		Log:      func(format string, args ...any) { fmt.Fprintf(stderr, "wfsched: "+format+"\n", args...) },
		// Each run works on a copy of the options, so runs may go
		// concurrently.
		Setup: func(a replay.Arm, rate float64, gs []*dag.Graph, is []report.TraceInfo) (replay.Spec, replay.Job, error) {
			ro := o.run
			ro.policy, ro.routing = a.Policy.Name(), a.Logic
			if wp := a.WorkflowPolicy; wp != nil {
				ro.workflowPolicy = wp.Name()
			}
			switch {
			case rate == 0:
				ro.arrival, ro.rate, ro.rampUp, ro.duration, ro.maxConc = scheduler.ArrivalClosed, 0, 0, 0, 0
				ro.workflows, ro.concurrency = len(gs), 1
			case recorded:
				// The recorded arrivals, sped up or slowed down to arrive
				// at this mean rate.
				ro.speed = rate / cfg0.Arrival.MeanRate()
			default:
				ro.rate = rate
			}
			cfg, err := ro.config(cmd)
			if err != nil {
				return replay.Spec{}, replay.Job{}, err
			}
			return ro.spec(cmd, stderr), ro.job("", cfg, gs, is), nil
		}}
	if clock == replay.ClockVirtual && !cmd.Flags().Changed("idle-parallel") {
		// Virtual runs do not slow each other's clocks.
		plan.IdleAtOnce = runtime.GOMAXPROCS(0)
	}
	doc, stopped := replay.Sweep(ctx, plan)
	// What has been measured is written, also when the sweep stopped
	// early.
	doc.Saturate()
	if err := report.WriteSweepFiles(dir, doc, o.png); err != nil {
		return errors.Join(stopped, err)
	}
	if len(doc.Points) > 0 {
		if err := report.WriteSweepText(cmd.OutOrStdout(), doc); err != nil {
			return err
		}
	}
	fmt.Fprintf(cmd.OutOrStdout(), "Results: %s (sweep.json, .csv, .md, report.html, sweep-*.svg)\n", dir)
	if stopped != nil {
		if ce := cliErr(stopped); ce != stopped {
			return ce
		}
		return &cliError{code: exitFailure, err: fmt.Errorf("sweep stopped early: %w; the finished runs are in %s", stopped, dir)}
	}
	return nil
}
