package replay

import (
	"runtime"

	"context"
	"fmt"
	"golang.org/x/sync/errgroup"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/wfsched/wfsched/dag"
	"github.com/wfsched/wfsched/report"
	"github.com/wfsched/wfsched/router"
	"github.com/wfsched/wfsched/scheduler"
)

// Arm is one side of a comparison, sweep or benchmark case: a policy, a
// routing logic under one policy, or a workflow policy under one policy.
type Arm struct {
	Label  string
	Logic  string // "" : the run's own routing
	Policy scheduler.Policy
	// WorkflowPolicy is the arm's order across workflows; nil: the run's.
	WorkflowPolicy scheduler.WorkflowPolicy
}

// ParseWorkflowArms makes one arm per workflow policy named, under the
// policy and routing given.
func ParseWorkflowArms(names []string, policy scheduler.Policy, routing string) ([]Arm, error) {
	var arms []Arm
	for _, n := range names {
		wp, err := scheduler.WorkflowPolicyByName(strings.TrimSpace(n))
		if err != nil {
			return nil, usage("--workflow-policies: %v", err)
		}
		arms = append(arms, Arm{Label: wp.Name(), Logic: routing, Policy: policy, WorkflowPolicy: wp})
	}
	return arms, nil
}

// ParseArms reads lists of policy names and routing-logic names into arms:
// one arm per policy (with routing, the run's), or, with logics, one arm
// per logic under the single policy given.
func ParseArms(policies []string, logics []string, routing string) ([]Arm, error) {
	var pols []scheduler.Policy
	for _, name := range policies {
		p, err := scheduler.PolicyByName(strings.TrimSpace(name))
		if err != nil {
			return nil, usage("--policies: %v", err)
		}
		pols = append(pols, p)
	}
	var arms []Arm
	if len(logics) == 0 {
		for _, p := range pols {
			arms = append(arms, Arm{Label: p.Name(), Logic: routing, Policy: p})
		}
		return arms, nil
	}
	if len(pols) != 1 {
		return nil, usage("--routing-logics compares logics under one policy: give one --policies")
	}
	for _, l := range logics {
		l = strings.TrimSpace(l)
		if err := router.CheckLogic(l); err != nil {
			return nil, usage("--routing-logics: %v", err)
		}
		arms = append(arms, Arm{Label: l, Logic: l, Policy: pols[0]})
	}
	return arms, nil
}

// Once starts a fresh backend from spec, replays job on it and stops it.
func Once(ctx context.Context, spec Spec, job Job) (report.RunReport, report.Backend, error) {
	be, err := Start(ctx, spec)
	if err != nil {
		return report.RunReport{}, report.Backend{}, err
	}
	defer be.Close()
	rep, err := Replay(ctx, be, job)
	return rep, be.Info, err
}

// Round is one run of an arm in Rounds.
type Round struct {
	Arm       Arm
	Iteration int  // 1-based among the measured rounds; warm-ups count apart
	Warmup    bool // left out of the figures
	Label     string
	Dir       string // the run folder, under Rounds' base
}

// Rounds runs warmup then measured rounds of every arm, interleaved (A B C
// A B C ...) so that every arm sees the same conditions, each on a fresh
// backend, into base/<label>. setup gives each round's backend and job
// (the job's Dir is set here); done sees each finished run, in order, and may
// stop the loop with an error. A run that fails or is interrupted stops the
// loop too, after done has seen it.
//
// Runs on the wall clock go one at a time, so that they do not slow each
// other's clocks. Runs on the virtual clock share nothing and measure no
// wall time, so they go at once, one per processor.
func Rounds(ctx context.Context, base string, arms []Arm, warmup, iterations int,
	setup func(Round) (Spec, Job, error), done func(Round, report.RunReport, report.Backend) error) error {
	type run struct {
		r    Round
		spec Spec
		job  Job
		rep  report.RunReport
		info report.Backend
		err  error
	}
	var runs []*run
	virtual := true
	for it := 0; it < warmup+iterations; it++ {
		for _, a := range arms {
			r := Round{Arm: a, Iteration: it - warmup + 1, Warmup: it < warmup}
			r.Label = fmt.Sprintf("%s-%d", safeLabel(a.Label), r.Iteration)
			if r.Warmup {
				r.Label = fmt.Sprintf("warmup-%s-%d", safeLabel(a.Label), it+1)
			}
			r.Dir = filepath.Join(base, r.Label)
			spec, job, err := setup(r)
			if err != nil {
				return err
			}
			clock, err := spec.ResolveClock()
			if err != nil {
				return err
			}
			virtual = virtual && clock == ClockVirtual
			job.Dir = r.Dir
			runs = append(runs, &run{r: r, spec: spec, job: job})
		}
	}
	exec := func(x *run) {
		if x.err = os.MkdirAll(x.r.Dir, 0o755); x.err == nil {
			x.rep, x.info, x.err = Once(ctx, x.spec, x.job)
		}
	}
	report := func(x *run) error {
		if x.rep.Dir == "" {
			return x.err
		}
		if err := done(x.r, x.rep, x.info); err != nil {
			return err
		}
		if x.err != nil {
			return fmt.Errorf("run %s: %w", x.r.Label, x.err)
		}
		if x.rep.Outcome == scheduler.OutcomeInterrupted {
			return fmt.Errorf("run %s %s: %s", x.r.Label, x.rep.Outcome, x.rep.Reason)
		}
		return nil
	}
	if !virtual {
		for _, x := range runs {
			exec(x)
			if err := report(x); err != nil {
				return err
			}
		}
		return nil
	}
	var g errgroup.Group
	g.SetLimit(runtime.GOMAXPROCS(0))
	for _, x := range runs {
		g.Go(func() error {
			exec(x)
			return nil
		})
	}
	g.Wait()
	for _, x := range runs {
		if err := report(x); err != nil {
			return err
		}
	}
	return nil
}

// safeLabel makes an arm's label a folder name.
func safeLabel(s string) string { return strings.NewReplacer("+", "_", "/", "_").Replace(s) }

// ByStart puts traces in the order of their recorded starts (stably; those
// without one first), keeping infos aligned: the order workflows replay in
// under scheduler.ReplayArrival.
func ByStart(gs []*dag.Graph, infos []report.TraceInfo) {
	idx := make([]int, len(gs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return gs[a].Start.Compare(gs[b].Start) })
	sg, si := make([]*dag.Graph, len(gs)), make([]report.TraceInfo, len(infos))
	for k, i := range idx {
		sg[k] = gs[i]
		if i < len(infos) {
			si[k] = infos[i]
		}
	}
	copy(gs, sg)
	copy(infos, si)
}
