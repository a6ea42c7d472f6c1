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
	"github.com/wfsched/wfsched/report"
	"github.com/wfsched/wfsched/router"
	"github.com/wfsched/wfsched/scheduler"
	"github.com/wfsched/wfsched/sim"
)

type benchOptions struct {
	suite         string
	baseline      string
	maxRegression float64
	out           string
	endpoints     []string
	slow          float64
}

func newBenchCmd() *cobra.Command {
	var o benchOptions
	cmd := &cobra.Command{
		Use:   "bench --suite FILE [--baseline FILE] [--max-regression PCT] [--out DIR]",
		Short: "Run a benchmark suite and gate regressions against a baseline",
		Long: `Bench runs a suite (a YAML file naming traces, policies, routing logics, instances,
iterations and the figures to track; see README.md) on the embedded engines, or on the given
endpoints, and writes bench.json and summary.md (for a CI job summary or a pull-request
comment) in OUT/<id>-bench/. Given a baseline bench.json it compares every tracked figure
and exits 1 only on a regression that is both larger than --max-regression and significant
(Welch's t-test, p < 0.05).`,
		Example: `  wfsched bench --suite benchmarks/default.yaml
  wfsched bench --suite benchmarks/default.yaml --baseline benchmarks/baseline.json --max-regression 10`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runBench(cmd, &o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.suite, "suite", "", "suite file (required)")
	f.StringVar(&o.baseline, "baseline", "", "bench.json to compare with")
	f.Float64Var(&o.maxRegression, "max-regression", 10, "percent by which a figure may worsen before the gate fails (if significant)")
	f.StringVar(&o.out, "out", "results", "folder for the results")
	f.StringArrayVar(&o.endpoints, "endpoint", nil, "run on these servers instead of embedded engines")
	f.Float64Var(&o.slow, "fault-slow", 1, "plant a slow-down in the embedded engines (1.2 = every step 20% slower), to test the gate")
	return cmd
}

func runBench(cmd *cobra.Command, o *benchOptions) error {
	ctx := cmd.Context()
	stderr := cmd.ErrOrStderr()
	if o.suite == "" {
		return usageError("bench needs --suite FILE")
	}
	if o.maxRegression <= 0 || o.slow < 1 {
		return usageError("--max-regression must be positive and --fault-slow at least 1")
	}
	bench.KnownPolicies, bench.KnownLogics = scheduler.Policies(), router.Logics()
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
	dir, err := newRunDir(o.out, "bench-"+suite.Name)
	if err != nil {
		return err
	}
	res := &bench.Result{Suite: suite.Name, Created: time.Now(), Track: suite.Track,
		Env: map[string]string{"wfsched": version, "go": runtime.Version(), "cpus": fmt.Sprint(runtime.NumCPU())}}
	backendWord := fmt.Sprintf("embedded engines, profile %s, time scale %g", profileName(suite.Profile), suite.TimeScale)
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
			p := filepath.Join(suite.Dir, t)
			gs, err := dag.ReadFile(p, dag.Options{})
			if err != nil {
				return &cliError{code: exitUsage, err: err}
			}
			is, err := traceInfos(p, gs)
			if err != nil {
				return &cliError{code: exitUsage, err: err}
			}
			graphs, infos = append(graphs, gs...), append(infos, is...)
		}
		arms := c.Arms()
		summaries := map[string][]metrics.Summary{}
		for it := 0; it < suite.Warmup+suite.Iterations; it++ {
			for _, a := range arms {
				o2 := runOptions{seed: suite.Seed, timeout: 10 * time.Minute, attempts: 4, quiet: true, profile: profileName(suite.Profile),
					timeScale: suite.TimeScale, instances: c.Instances, routing: a.Logic, endpoints: o.endpoints, slow: o.slow}
				if len(o.endpoints) > 0 {
					o2.instances = 1
				}
				pol, _ := scheduler.PolicyByName(a.Policy)
				cfg := scheduler.Config{Policy: pol, MaxParallel: c.MaxParallel, Workflows: c.Workflows, Concurrency: c.Concurrency, Seed: suite.Seed}
				if cfg.MaxParallel == 0 {
					cfg.MaxParallel = scheduler.DefaultMaxParallel
				}
				if cfg.Workflows == 0 {
					cfg.Workflows = len(graphs)
				}
				if c.Rate > 0 {
					kind := scheduler.ArrivalPoisson
					if c.Burstiness != 1 {
						kind = scheduler.ArrivalGamma
					}
					cfg.Arrival = scheduler.Arrival{Kind: kind, Rate: c.Rate, Burstiness: c.Burstiness, MaxConcurrency: c.MaxConcurrency, Seed: suite.Seed}
				}
				label := fmt.Sprintf("%s-%d", strings.ReplaceAll(a.Label, "+", "_"), it+1)
				runDir := filepath.Join(dir, c.Name, label)
				if err := os.MkdirAll(runDir, 0o755); err != nil {
					return err
				}
				be, err := o2.startBackend(ctx, stderr)
				if err != nil {
					return err
				}
				rep, runErr := replay(ctx, stderr, runDir, &o2, cfg, graphs, infos, be, false)
				be.close()
				if runErr != nil || rep.Outcome != scheduler.OutcomeCompleted {
					return &cliError{code: exitFailure, err: fmt.Errorf("case %s, %s: %s %s %v", c.Name, label, rep.Outcome, rep.Reason, runErr)}
				}
				if it >= suite.Warmup {
					summaries[a.Label] = append(summaries[a.Label], rep.Summary)
				}
				fmt.Fprintf(stderr, "wfsched: bench %s: %s: makespan %.3g s\n", c.Name, label, float64(rep.Summary.Makespan.Mean))
			}
		}
		cr := bench.CaseResult{Name: c.Name}
		for _, a := range arms {
			ar := bench.ArmResult{Label: a.Label, Figures: map[string]metrics.Estimate{}}
			for _, f := range metrics.Figures {
				var vals []float64
				for _, s := range summaries[a.Label] {
					vals = append(vals, f.Get(s))
				}
				ar.Figures[f.Key] = metrics.Estimate95(vals)
			}
			cr.Arms = append(cr.Arms, ar)
		}
		res.Cases = append(res.Cases, cr)
	}
	if err := writeOut(nil, filepath.Join(dir, "bench.json"), func(w io.Writer) error { return report.WriteJSON(w, res) }); err != nil {
		return err
	}
	var checks []bench.Check
	if base != nil {
		checks = bench.Gate(base, res, o.maxRegression/100)
	}
	md := func(w io.Writer) error { return bench.WriteMarkdown(w, res, checks, o.maxRegression/100) }
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
