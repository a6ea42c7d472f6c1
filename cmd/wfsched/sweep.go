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
	"sync"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/wfsched/wfsched/dag"
	"github.com/wfsched/wfsched/replay"
	"github.com/wfsched/wfsched/report"
	"github.com/wfsched/wfsched/scheduler"
)

// DefaultSweepWorkflows is how many workflows each sweep run replays when
// neither --workflows nor --duration is given.
const DefaultSweepWorkflows = 40

// maxAutoRates bounds --rates auto.
const maxAutoRates = 8

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

Outputs, in OUT/<id>-sweep/: a table on stdout, sweep.json, sweep.csv, sweep.md,
report.html, sweep-completion.svg and sweep-throughput.svg (--png: PNGs too); every run's
files under runs/.`,
		Example: `  wfsched sweep --dag traces/research-team.json --rates 0.05,0.1,0.2,0.4 --workflows 30
  wfsched sweep --dag ../shared/traces/steps/appworld.json --instances 4 \
      --routing-logics roundrobin,workflow-aware --rates auto`,
		Args: cobra.NoArgs,
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
	if cmd.Flags().Changed("rate") || o.run.arrival == scheduler.ArrivalClosed || o.run.arrival == "replay" {
		return usageError("sweep sets the rate itself (--rates) and needs an open loop: leave out --rate, and --arrival other than poisson or gamma")
	}
	if o.idleAtOnce < 1 {
		return usageError("--idle-parallel %d: want at least 1", o.idleAtOnce)
	}
	if clock, err := o.run.spec(cmd, nil).ResolveClock(); err != nil {
		return cliErr(err)
	} else if clock == replay.ClockVirtual && !cmd.Flags().Changed("idle-parallel") {
		// Virtual runs do not slow each other's clocks.
		o.idleAtOnce = runtime.GOMAXPROCS(0)
	}
	if o.saturation <= 1 {
		return usageError("--saturation-slowdown %g: want more than 1", o.saturation)
	}
	if o.run.workflows == 0 && o.run.duration == 0 {
		o.run.workflows = DefaultSweepWorkflows
	}
	arms, err := parseArms(cmd, &o.run, o.policies, o.logics)
	if err != nil {
		return err
	}
	// Validate the open-loop flags once with a placeholder rate.
	o.run.policy, o.run.rate = arms[0].Policy.Name(), 1
	cfg0, err := o.run.config(cmd)
	if err != nil {
		return err
	}
	graphs, infos, err := o.run.load()
	if err != nil {
		return err
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
	if cfg0.Arrival.RampUp > 0 {
		doc.Arrival += fmt.Sprintf(", ramp-up %s", cfg0.Arrival.RampUp)
	}
	if o.logics != "" {
		doc.ArmsAre = "routing-logics"
	}
	for _, a := range arms {
		doc.Arms = append(doc.Arms, a.Label)
	}
	o.run.quiet = true
	// finish writes what has been measured so far; a failed or interrupted
	// sweep keeps its finished points.
	finish := func(stopped error) error {
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
			return &cliError{code: exitFailure, err: fmt.Errorf("sweep stopped early: %w; the finished runs are in %s", stopped, dir)}
		}
		return nil
	}

	// runOne runs arm a over gs into runs/label: open loop at rate, or,
	// with rate 0, each of gs once, one at a time (the idle reference). It
	// works on a copy of the options, so runs may go concurrently.
	var unreliable sync.Mutex
	runOne := func(a replay.Arm, rate float64, gs []*dag.Graph, is []report.TraceInfo, label string, extra ...scheduler.Sink) (report.RunReport, report.Backend, error) {
		ro := o.run
		ro.policy, ro.routing = a.Policy.Name(), a.Logic
		if rate == 0 {
			ro.arrival, ro.rate, ro.rampUp, ro.duration, ro.maxConc = scheduler.ArrivalClosed, 0, 0, 0, 0
			ro.workflows, ro.concurrency, ro.idle = len(gs), 1, nil
		} else {
			ro.rate, ro.idle = rate, doc.Idle[a.Label]
		}
		cfg, err := ro.config(cmd)
		if err != nil {
			return report.RunReport{}, report.Backend{}, err
		}
		runDir := filepath.Join(dir, "runs", label)
		if err := os.MkdirAll(runDir, 0o755); err != nil {
			return report.RunReport{}, report.Backend{}, err
		}
		rep, info, runErr := replay.Once(ctx, ro.spec(cmd, stderr), ro.job(runDir, cfg, gs, is, extra...))
		if t := rep.Timing; t != nil && t.Verdict == report.TimingUnreliable {
			unreliable.Lock()
			doc.UnreliableTiming = append(doc.UnreliableTiming, label)
			unreliable.Unlock()
		}
		if runErr == nil && rep.Dir != "" && rep.Outcome != scheduler.OutcomeCompleted {
			runErr = fmt.Errorf("run %s %s: %s", label, rep.Outcome, rep.Reason)
		}
		return rep, info, cliErr(runErr)
	}

	var idleSum float64
	var idleN int
	for _, a := range arms {
		idle, err := idleTimes(a, graphs, infos, len(o.run.endpoints) == 0, o.idleAtOnce, runOne)
		if err != nil {
			return finish(err)
		}
		doc.Idle[a.Label] = idle
		var sum float64
		for _, v := range idle {
			sum += v
		}
		idleSum, idleN = idleSum+sum, idleN+len(idle)
		fmt.Fprintf(stderr, "wfsched: idle %s: %d traces, mean completion %.3g s\n", a.Label, len(idle), sum/float64(max(1, len(idle))))
	}
	auto := rates == nil
	if auto {
		if idleN == 0 || idleSum <= 0 {
			return finish(errors.New("--rates auto: no idle completion time to start from"))
		}
		// Rounded to two significant figures so the rates read well.
		start, _ := strconv.ParseFloat(strconv.FormatFloat(float64(idleN)/idleSum, 'g', 2, 64), 64)
		rates = []float64{start}
	}
	for k := 0; k < len(rates); k++ {
		rate := rates[k]
		doc.Rates = append(doc.Rates, rate)
		for _, a := range arms {
			label := fmt.Sprintf("%s-r%s", a.Label, strconv.FormatFloat(rate, 'g', 4, 64))
			rep, info, err := runOne(a, rate, graphs, infos, label)
			doc.Backend = info
			if rep.Dir != "" {
				doc.Points = append(doc.Points, report.SweepPoint{Arm: a.Label, Rate: rate, Run: filepath.Join("runs", label), Outcome: string(rep.Outcome), Summary: rep.Summary})
			}
			if err != nil {
				return finish(err)
			}
			fmt.Fprintf(stderr, "wfsched: %s at %g/s: completion p50 %.3g s, %.1f workflows/min\n", a.Label, rate,
				float64(rep.Summary.Completion.P50), float64(rep.Summary.WorkflowsPerMin))
		}
		if auto {
			doc.Saturate()
			all := true
			for _, a := range arms {
				all = all && doc.Saturation[a.Label].Reached
			}
			if !all && len(rates) < maxAutoRates {
				rates = append(rates, 2*rate)
			}
		}
	}
	return finish(nil)
}

// idleTimes measures each trace's completion time alone on an idle server
// under arm a, keyed by trace name. On embedded engines every trace gets
// its own fresh engines and atOnce run at once; on endpoints, which are
// shared, the traces run one after another in one run.
func idleTimes(a replay.Arm, graphs []*dag.Graph, infos []report.TraceInfo, embedded bool, atOnce int,
	runOne func(replay.Arm, float64, []*dag.Graph, []report.TraceInfo, string, ...scheduler.Sink) (report.RunReport, report.Backend, error)) (map[string]float64, error) {
	type job struct {
		gs    []*dag.Graph
		is    []report.TraceInfo
		label string
	}
	jobs := []job{{graphs, infos, "idle-" + a.Label}}
	if embedded && len(graphs) > 1 && len(infos) == len(graphs) {
		jobs = jobs[:0]
		for i, g := range graphs {
			jobs = append(jobs, job{[]*dag.Graph{g}, []report.TraceInfo{infos[i]}, fmt.Sprintf("idle-%s/%03d", a.Label, i)})
		}
	}
	var mu sync.Mutex
	idle := map[string]float64{}
	record := replay.WorkflowHook(func(w scheduler.WorkflowResult) {
		if w.Outcome == scheduler.OutcomeCompleted {
			mu.Lock()
			idle[w.Trace] = w.CompletionS
			mu.Unlock()
		}
	})
	var eg errgroup.Group
	eg.SetLimit(atOnce)
	for _, j := range jobs {
		eg.Go(func() error {
			_, _, err := runOne(a, 0, j.gs, j.is, j.label, record)
			return err
		})
	}
	return idle, eg.Wait()
}
