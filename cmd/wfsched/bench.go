package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/wfsched/wfsched/bench"
	"github.com/wfsched/wfsched/dag"
	"github.com/wfsched/wfsched/metrics"
	"github.com/wfsched/wfsched/replay"
	"github.com/wfsched/wfsched/report"
	"github.com/wfsched/wfsched/scheduler"
	"github.com/wfsched/wfsched/sim"
)

type benchOptions struct {
	suite         string
	baseline      string
	maxRegression float64
	tolerance     float64
	out           string
	endpoints     []string
	waitReady     time.Duration
	slow          float64
	clock         string
}

func newBenchCmd() *cobra.Command {
	var o benchOptions
	cmd := &cobra.Command{
		Use:   "bench --suite FILE [--baseline FILE] [--max-regression PCT] [--out DIR]",
		Short: "Run a benchmark suite and gate regressions against a baseline",
		Long: `Bench runs a suite (a YAML file naming traces, policies, routing logics, instances,
iterations and the figures to track; see docs/bench.md) on the embedded engines, or on the given
endpoints, and writes bench.json and summary.md (for a CI job summary or a pull-request
comment) in OUT/<id>-bench/. Cases run on the virtual clock unless the suite or the case says
clock: wall (or --endpoint is given); a virtual case runs once, its figures exact. Given a
baseline bench.json it compares every tracked figure: an exact figure that changes by more than
--tolerance is reported, and fails the gate if worse; a wall-clock figure fails the gate
only on a regression that is both larger than --max-regression and significant
(Welch's t-test, p < 0.05).`,
		Example: `  wfsched bench --suite benchmarks/default.yaml
  wfsched bench --suite benchmarks/default.yaml --baseline benchmarks/baseline.json --max-regression 10`,
		Args: noArgs(""),
		RunE: func(cmd *cobra.Command, _ []string) error { return runBench(cmd, &o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.suite, "suite", "", "suite file (required)")
	f.StringVar(&o.baseline, "baseline", "", "bench.json to compare with")
	f.Float64Var(&o.maxRegression, "max-regression", 10, "wall-clock cases: percent by which a figure may worsen before the gate fails (if significant)")
	f.Float64Var(&o.tolerance, "tolerance", 100*bench.DefaultTolerance, "virtual-clock cases: percent of change past which a figure is reported (and fails the gate if worse)")
	f.StringVar(&o.out, "out", "results", "folder for the results")
	f.StringArrayVar(&o.endpoints, "endpoint", nil, "run on these servers instead of embedded engines")
	f.DurationVar(&o.waitReady, "wait-ready", replay.DefaultWaitReady, "wait this long for --endpoint to answer /health or /v1/models before giving up (0: do not wait)")
	f.StringVar(&o.clock, "clock", "", "run every case on this clock, virtual or wall (default: each case's own, virtual unless it says wall)")
	f.Float64Var(&o.slow, "fault-slow", 1, "plant a slow-down in the embedded engines (1.2 = every step 20% slower), to test the gate")
	brief(f, map[string]string{
		"clock":          "run every case on this clock, virtual or wall (default: each case's own)",
		"fault-slow":     "plant a slow-down in the engines (1.2: steps 20% slower) to test the gate",
		"max-regression": "wall-clock cases: percent a figure may worsen before the gate fails",
		"tolerance":      "virtual-clock cases: percent of change reported (failing if worse)",
		"wait-ready":     "wait this long for --endpoint to answer (0: do not wait)",
	})
	return cmd
}

func runBench(cmd *cobra.Command, o *benchOptions) error {
	ctx := cmd.Context()
	stderr := cmd.ErrOrStderr()
	if o.suite == "" {
		return usageError("bench needs --suite FILE")
	}
	switch o.clock {
	case "", replay.ClockVirtual, replay.ClockWall:
	default:
		return usageError("--clock %q: want virtual or wall", o.clock)
	}
	if o.clock == replay.ClockVirtual && len(o.endpoints) > 0 {
		return usageError("--clock virtual models the embedded engines: a real server (--endpoint) runs on the wall clock")
	}
	if o.maxRegression <= 0 || o.slow < 1 || o.tolerance < 0 {
		return usageError("--max-regression must be positive, --tolerance not negative and --fault-slow at least 1")
	}
	suite, err := bench.Load(o.suite)
	if err != nil {
		return &cliError{code: exitUsage, err: err}
	}
	var base *bench.Result
	if o.baseline != "" {
		if base, err = bench.ReadResult(o.baseline); err != nil {
			return &cliError{code: exitUsage, err: err}
		}
	}
	dir, err := replay.NewRunDir(o.out, "bench-"+suite.Name)
	if err != nil {
		return err
	}
	res := &bench.Result{Suite: suite.Name, Created: time.Now(), Track: suite.Track,
		Env: map[string]string{"wfsched": version, "go": runtime.Version(), "cpus": fmt.Sprint(runtime.NumCPU())}}
	backendWord := fmt.Sprintf("embedded engines, profile %s, time scale %g on the wall clock", profileName(suite.Profile), suite.TimeScale)
	if len(o.endpoints) > 0 {
		backendWord = "endpoints " + strings.Join(o.endpoints, ", ")
	}
	res.Env["backend"] = backendWord
	if o.slow != 1 {
		res.Options = map[string]string{"fault-slow": fmt.Sprint(o.slow)}
	}
	for _, c := range suite.Cases {
		var graphs []*dag.Graph
		var infos []report.TraceInfo
		for _, t := range c.Traces {
			p := suite.TracePath(t)
			gs, err := dag.ReadFile(p, dag.Options{})
			if err != nil {
				return &cliError{code: exitUsage, err: err}
			}
			is, err := replay.TraceInfos(p, gs)
			if err != nil {
				return &cliError{code: exitUsage, err: err}
			}
			graphs, infos = append(graphs, gs...), append(infos, is...)
		}
		if c.ReplaySpeed > 0 {
			replay.ByStart(graphs, infos)
		}
		var arms []replay.Arm
		for _, a := range c.Arms() {
			pol, _ := scheduler.PolicyByName(a.Policy)
			arms = append(arms, replay.Arm{Label: a.Label, Logic: a.Logic, Policy: pol})
		}
		if o.clock != "" {
			c.Clock = o.clock
		}
		if len(o.endpoints) > 0 {
			c.Clock = replay.ClockWall
		}
		clock := c.Clock
		summaries := map[string][]metrics.Summary{}
		warmup, iterations := suite.Runs(c)
		err := replay.Rounds(ctx, filepath.Join(dir, c.Name), arms, warmup, iterations,
			func(r replay.Round) (replay.Spec, replay.Job, error) {
				a := r.Arm
				spec := replay.Spec{Endpoints: o.endpoints, Clock: clock, Instances: c.Instances, Routing: a.Logic, Profile: profileName(suite.Profile),
					TimeScale: suite.TimeScale, Slow: o.slow, Seed: suite.Seed, Timeout: 10 * time.Minute, Attempts: 4, WaitReady: o.waitReady}
				if len(o.endpoints) > 0 {
					spec.Instances = 1
				}
				cfg := scheduler.Config{Policy: a.Policy, MaxParallel: c.MaxParallel, Workflows: c.Workflows, Concurrency: c.Concurrency, Seed: suite.Seed}
				if cfg.MaxParallel == 0 {
					cfg.MaxParallel = scheduler.DefaultMaxParallel
				}
				if c.Rate > 0 {
					kind := scheduler.ArrivalPoisson
					if c.Burstiness != 1 {
						kind = scheduler.ArrivalGamma
					}
					cfg.Arrival = scheduler.Arrival{Kind: kind, Rate: c.Rate, Burstiness: c.Burstiness, MaxConcurrency: c.MaxConcurrency, Seed: suite.Seed}
				}
				if c.ReplaySpeed > 0 {
					a, err := scheduler.ReplayArrival(graphs, c.ReplaySpeed)
					if err != nil {
						return replay.Spec{}, replay.Job{}, fmt.Errorf("case %s: replay_speed: %w", c.Name, err)
					}
					a.MaxConcurrency, a.Seed = c.MaxConcurrency, suite.Seed
					cfg.Workflows, cfg.Arrival = len(graphs), a
				}
				return spec, replay.Job{Config: cfg, Graphs: graphs, Traces: infos, Seed: suite.Seed, Args: os.Args[1:]}, nil
			},
			func(r replay.Round, rep report.RunReport, _ report.Backend) error {
				if rep.Outcome != scheduler.OutcomeCompleted {
					return fmt.Errorf("case %s, %s: %s %s", c.Name, r.Label, rep.Outcome, rep.Reason)
				}
				if !r.Warmup {
					summaries[r.Arm.Label] = append(summaries[r.Arm.Label], rep.Summary)
				}
				fmt.Fprintf(stderr, "wfsched: bench %s: %s (%s clock): makespan %.3g s, %.2f s wall\n", c.Name, r.Label, clock, float64(rep.Summary.Makespan.Mean), rep.WallS)
				return nil
			})
		if err != nil {
			if ce := cliErr(err); ce != err {
				return ce
			}
			return &cliError{code: exitFailure, err: err}
		}
		cr := bench.CaseResult{Name: c.Name, Clock: clock}
		for _, a := range c.Arms() {
			cr.Arms = append(cr.Arms, bench.NewArmResult(a.Label, summaries[a.Label]))
		}
		res.Cases = append(res.Cases, cr)
	}
	if err := writeOut(nil, filepath.Join(dir, "bench.json"), func(w io.Writer) error { return report.WriteJSON(w, res) }); err != nil {
		return err
	}
	var checks []bench.Check
	if base != nil {
		checks = bench.Gate(base, res, o.maxRegression/100, o.tolerance/100)
	}
	md := func(w io.Writer) error {
		return bench.WriteMarkdown(w, res, checks, o.maxRegression/100, o.tolerance/100)
	}
	if err := writeOut(nil, filepath.Join(dir, "summary.md"), md); err != nil {
		return err
	}
	if err := md(cmd.OutOrStdout()); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "\nResults: %s (bench.json, summary.md)\n", dir)
	if bench.Failed(checks) {
		return &cliError{code: exitFailure, err: fmt.Errorf("regression against %s (see %s)", o.baseline, filepath.Join(dir, "summary.md"))}
	}
	return nil
}

func profileName(p string) string {
	if p == "" {
		return sim.DefaultProfile
	}
	return p
}
