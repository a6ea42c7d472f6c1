package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/wfsched/wfsched/replay"
	"github.com/wfsched/wfsched/report"
	"github.com/wfsched/wfsched/router"
	"github.com/wfsched/wfsched/scheduler"
)

type compareOptions struct {
	run        runOptions
	policies   string
	logics     string
	iterations int
	warmup     int
	baseline   string
	png        bool
}

func newCompareCmd() *cobra.Command {
	var o compareOptions
	cmd := &cobra.Command{
		Use:   "compare (--dag PATH [--policies P,P,...] | policies|routing-logics --dag PATH | SAVED_RUN_DIR...)",
		Short: "Compare scheduling policies with confidence intervals, or compare saved runs",
		Long: `Compare replays the traces under each policy, interleaved (A B C A B C ...) so that every
policy sees the same conditions, each run on a fresh embedded engine (or on the given
endpoint, whose state then carries over). On the virtual clock (the embedded engines'
default) runs are exact: one iteration by default, iteration k with seed --seed + k - 1,
arms one per processor. It reports each figure's mean over the
iterations with a 95% confidence interval, each policy's speedup over the baseline with
its interval, and says when a difference is not significant. Warm-up rounds run first and
are left out of the figures.

Given folders instead of --dag, it compares saved runs (results/<run-id>) and saved
comparisons (their policies become arms), for instance a baseline against today.

Outputs, in OUT/<id>-compare/: a table on stdout and in comparison.txt, comparison.json, comparison.csv,
comparison.md, and report.html (self-contained: makespan bars with intervals, latency CDFs,
a timeline of each policy's first workflow with the critical path marked); --png also
writes the figures as PNG. Runs are kept under runs/.`,
		Example: `  wfsched compare --dag traces/fanout-12.json --iterations 3
  wfsched compare --dag traces/layered-60.json --policies dependency-aware,parallel --warmup 1 --png
  wfsched compare policies --dag traces/agents-40.json
  wfsched compare routing-logics --dag traces/agents-40.json --workflows 16 --concurrency 16
  wfsched compare results/20261123-101500-parallel results/20261124-093000-parallel`,
		RunE: func(cmd *cobra.Command, args []string) error {
			// "compare policies" and "compare routing-logics" (the design
			// card's words): every policy, or every routing logic, on --dag.
			if len(args) == 1 && (args[0] == "policies" || args[0] == "routing-logics") {
				if _, err := os.Stat(args[0]); err != nil {
					return compareAll(cmd, &o, args[0])
				}
			}
			if len(args) > 0 {
				if cmd.Flags().Changed("dag") {
					return usageError("give either --dag (to run a comparison) or saved folders, not both")
				}
				return compareSaved(cmd, &o, args)
			}
			return compareLive(cmd, &o)
		},
	}
	o.run.register(cmd.Flags(), false)
	f := cmd.Flags()
	f.StringVar(&o.policies, "policies", strings.Join([]string{"sequential", "dependency-aware", "parallel"}, ","), "policies to compare, in order")
	f.StringVar(&o.logics, "routing-logics", "", "compare routing logics instead (under one --policies, default parallel), e.g. roundrobin,least-loaded,prefix-aware,workflow-aware; use with --instances N or several --endpoint")
	f.IntVar(&o.iterations, "iterations", 3, "measured rounds of every policy (on the virtual clock 1 by default, and round k runs with --seed + k - 1)")
	f.IntVar(&o.warmup, "warmup", 0, "rounds run first and left out of the figures")
	f.StringVar(&o.baseline, "baseline", "sequential", "arm that speedups are measured against (by default sequential, roundrobin for --routing-logics, fcfs for --workflow-policies, the first for saved runs)")
	f.BoolVar(&o.png, "png", false, "also write the figures as PNG files")
	brief(f, map[string]string{
		"baseline":       "arm speedups are measured against (unset: set by the arms)",
		"iterations":     "measured rounds of each arm (on the virtual clock 1 by default)",
		"routing-logics": "compare these routing logics instead, e.g. roundrobin,workflow-aware",
	})
	return cmd
}

// compareAll compares every policy, or every routing logic (on
// --instances engines, 4 unless given, or the given endpoints).
func compareAll(cmd *cobra.Command, o *compareOptions, what string) error {
	if !cmd.Flags().Changed("dag") {
		return usageError("compare %s needs --dag PATH: the traces to replay under each", what)
	}
	if what == "policies" {
		if cmd.Flags().Changed("routing-logics") {
			return usageError("compare policies compares policies: leave out --routing-logics")
		}
		o.policies = strings.Join(scheduler.Policies(), ",")
		return compareLive(cmd, o)
	}
	if cmd.Flags().Changed("routing-logics") {
		return usageError("compare routing-logics compares every logic: leave out --routing-logics, or give it without the word")
	}
	o.logics = strings.Join(router.Logics(), ",")
	if !cmd.Flags().Changed("instances") && len(o.run.endpoints) == 0 {
		o.run.instances = 4
		fmt.Fprintln(cmd.ErrOrStderr(), "wfsched: comparing every routing logic on 4 embedded engines (--instances N to change)")
	}
	return compareLive(cmd, o)
}

func compareLive(cmd *cobra.Command, o *compareOptions) error {
	ctx := cmd.Context()
	stderr := cmd.ErrOrStderr()
	if o.iterations < 1 || o.warmup < 0 {
		return usageError("--iterations must be at least 1 and --warmup not negative")
	}
	if o.logics != "" && !cmd.Flags().Changed("baseline") {
		o.baseline = "roundrobin"
	}
	if o.run.workflowPolicies != "" && !cmd.Flags().Changed("baseline") {
		o.baseline = "fcfs"
	}
	arms, err := parseArms(cmd, &o.run, o.policies, o.logics)
	if err != nil {
		return err
	}
	o.run.policy = arms[0].Policy.Name()
	if _, err := o.run.config(cmd); err != nil {
		return err
	}
	clock, err := o.run.spec(cmd, nil).ResolveClock()
	if err != nil {
		return cliErr(err)
	}
	virtual := clock == replay.ClockVirtual
	if virtual && !cmd.Flags().Changed("iterations") {
		// An exact run repeated with its own seed gives the same figures:
		// one is enough.
		o.iterations = 1
	}
	graphs, infos, err := o.run.load()
	if err != nil {
		return err
	}
	dir, err := replay.NewRunDir(o.run.out, "compare")
	if err != nil {
		return err
	}
	doc := report.ComparisonDoc{ID: filepath.Base(dir), Created: time.Now(), Args: os.Args[1:], Iterations: o.iterations, Warmup: o.warmup, Traces: infos}
	doc.ArmsAre = "policies"
	if o.logics != "" {
		doc.ArmsAre = "routing-logics"
	}
	if o.run.workflowPolicies != "" {
		doc.ArmsAre = "workflow-policies"
	}
	for _, a := range arms {
		doc.Arms = append(doc.Arms, a.Label)
	}
	doc.Method = "interleaved, a fresh embedded engine for every run"
	if virtual {
		doc.Method = "a fresh embedded engine for every run, on the virtual clock (iteration k with seed + k - 1)"
	}
	if len(o.run.endpoints) > 0 {
		doc.Method = "interleaved, on the given endpoint (its cache carries over between runs)"
	}
	o.run.quiet = true
	total := (o.warmup + o.iterations) * len(arms)
	k := 0
	stopped := replay.Rounds(ctx, filepath.Join(dir, "runs"), arms, o.warmup, o.iterations,
		func(r replay.Round) (replay.Spec, replay.Job, error) {
			o.run.policy, o.run.routing = r.Arm.Policy.Name(), r.Arm.Logic
			if wp := r.Arm.WorkflowPolicy; wp != nil {
				o.run.workflowPolicy = wp.Name()
			}
			cfg, err := o.run.config(cmd)
			if err != nil {
				return replay.Spec{}, replay.Job{}, err
			}
			spec, job := o.run.spec(cmd, stderr), o.run.job("", cfg, graphs, infos)
			if virtual && r.Iteration > 1 {
				// Repeats of an exact run differ only by their seed.
				spec.Seed += uint64(r.Iteration - 1)
				job.Seed = spec.Seed
				job.Config.Seed, job.Config.Arrival.Seed = spec.Seed, spec.Seed
			}
			return spec, job, nil
		},
		func(r replay.Round, rep report.RunReport, info report.Backend) error {
			k++
			doc.Backend = info
			if rep.Outcome != scheduler.OutcomeInterrupted {
				doc.Runs = append(doc.Runs, report.RunRef{Dir: filepath.Join("runs", r.Label), Arm: r.Arm.Label, Iteration: r.Iteration, Warmup: r.Warmup})
			}
			fmt.Fprintf(stderr, "wfsched: run %d/%d: %s: %s, makespan %.3g s, %.1f s wall\n", k, total, r.Label, rep.Outcome, float64(rep.Summary.Makespan.Mean), rep.WallS)
			return nil
		})
	if err := finishComparison(cmd, dir, doc, o); err != nil {
		return err
	}
	if stopped != nil {
		if err := cliErr(stopped); err != stopped {
			return err
		}
		return &cliError{code: exitFailure, err: fmt.Errorf("comparison stopped early: %w; the finished runs are in %s", stopped, dir)}
	}
	return nil
}

// finishComparison writes comparison.json and loads the runs back to
// render every output from the files, as 'wfsched report' does.
func finishComparison(cmd *cobra.Command, dir string, doc report.ComparisonDoc, o *compareOptions) error {
	if err := writeOut(nil, filepath.Join(dir, "comparison.json"), func(w ioWriter) error { return report.WriteJSON(w, doc) }); err != nil {
		return err
	}
	d, runs, err := report.LoadComparison(dir)
	if err != nil {
		return err
	}
	report.Recompute(&d, runs, o.baseline)
	if err := report.WriteComparisonFiles(dir, d, runs, o.png); err != nil {
		return err
	}
	if err := report.WriteComparisonText(cmd.OutOrStdout(), d); err != nil {
		return err
	}
	_, err = fmt.Fprintf(cmd.OutOrStdout(), "Results: %s (comparison.json, .csv, .md, report.html)\n", dir)
	return err
}

// compareSaved compares saved runs and comparisons.
// sameWorkload refuses a run whose workload differs from the first one's:
// a speedup between different traces or loads measures nothing.
func sameWorkload(first *[2]string, dir, w string) error {
	if first[0] == "" {
		first[0], first[1] = w, dir
		return nil
	}
	if w != first[0] {
		return &cliError{code: exitUsage, err: fmt.Errorf("these runs replayed different workloads, so no speedup between them means anything:\n  %s: %s\n  %s: %s", first[1], first[0], dir, w),
			hint: "compare runs of the same traces, workflows and arrivals (different policies, routing logics or servers are what compare is for)"}
	}
	return nil
}

func compareSaved(cmd *cobra.Command, o *compareOptions, dirs []string) error {
	doc := report.ComparisonDoc{Created: time.Now(), Args: os.Args[1:], Method: "saved runs", Iterations: 1, ArmsAre: "runs"}
	seen := map[string]bool{}
	addArm := func(label string) string {
		base := label
		for k := 2; seen[label]; k++ {
			label = fmt.Sprintf("%s-%d", base, k)
		}
		seen[label] = true
		doc.Arms = append(doc.Arms, label)
		return label
	}
	var workload [2]string // the first run's workload and folder
	for _, d := range dirs {
		abs, err := filepath.Abs(d)
		if err != nil {
			return err
		}
		name := filepath.Base(filepath.Clean(d))
		if _, err := os.Stat(filepath.Join(d, "comparison.json")); err == nil {
			sub, runs, err := report.LoadComparison(d)
			if err != nil {
				return &cliError{code: exitUsage, err: err}
			}
			for _, arm := range sub.Arms {
				for _, rd := range runs[arm] {
					if err := sameWorkload(&workload, rd.Dir, rd.Report.Workload()); err != nil {
						return err
					}
				}
			}
			for _, arm := range sub.Arms {
				label := addArm(name + ":" + arm)
				for i, rd := range runs[arm] {
					p, _ := filepath.Abs(rd.Dir)
					doc.Runs = append(doc.Runs, report.RunRef{Dir: p, Arm: label, Iteration: i + 1})
				}
				doc.Iterations = max(doc.Iterations, len(runs[arm]))
			}
			doc.Traces, doc.Backend = sub.Traces, sub.Backend
			continue
		}
		rd, err := report.LoadRun(d)
		if err != nil {
			return &cliError{code: exitUsage, err: err, hint: "give folders written by 'wfsched run' or 'wfsched compare'"}
		}
		if err := sameWorkload(&workload, d, rd.Report.Workload()); err != nil {
			return err
		}
		label := addArm(name)
		doc.Runs = append(doc.Runs, report.RunRef{Dir: abs, Arm: label, Iteration: 1})
		doc.Traces, doc.Backend = rd.Report.Traces, rd.Report.Backend
	}
	if len(doc.Arms) < 2 {
		return usageError("compare needs at least two runs (or a comparison with two policies)")
	}
	dir, err := replay.NewRunDir(o.run.out, "compare")
	if err != nil {
		return err
	}
	doc.ID = filepath.Base(dir)
	baseline := o.baseline
	if !cmd.Flags().Changed("baseline") {
		baseline = doc.Arms[0]
	}
	o.baseline = baseline
	return finishComparison(cmd, dir, doc, o)
}

// parseArms reads --policies and --routing-logics into arms.
func parseArms(cmd *cobra.Command, o *runOptions, policyList, logics string) ([]replay.Arm, error) {
	if (logics != "" || o.workflowPolicies != "") && !cmd.Flags().Changed("policies") {
		policyList = "parallel"
	}
	if o.workflowPolicies != "" {
		if logics != "" {
			return nil, usageError("compare either --routing-logics or --workflow-policies, not both")
		}
		pol, err := scheduler.PolicyByName(strings.TrimSpace(policyList))
		if err != nil {
			return nil, usageError("--workflow-policies compares orders across workflows under one policy: give one --policies (%v)", err)
		}
		arms, err := replay.ParseWorkflowArms(strings.Split(o.workflowPolicies, ","), pol, o.routing)
		return arms, cliErr(err)
	}
	var ls []string
	if logics != "" {
		ls = strings.Split(logics, ",")
		if o.instances < 2 && len(o.endpoints) < 2 {
			return nil, usageError("--routing-logics needs several servers: --instances N (N > 1) or several --endpoint")
		}
	}
	arms, err := replay.ParseArms(strings.Split(policyList, ","), ls, o.routing)
	return arms, cliErr(err)
}
