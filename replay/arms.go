package replay

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/wfsched/wfsched/report"
	"github.com/wfsched/wfsched/router"
	"github.com/wfsched/wfsched/scheduler"
)

// Arm is one side of a comparison, sweep or benchmark case: a policy, or
// a routing logic under one policy.
type Arm struct {
	Label  string
	Logic  string // "" : the run's own routing
	Policy scheduler.Policy
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
// backend, into base/<label>. setup gives each arm's backend and job (the
// job's Dir is set here); done sees each finished run and may stop the
// loop with an error. A run that fails or is interrupted stops the loop
// too, after done has seen it.
func Rounds(ctx context.Context, base string, arms []Arm, warmup, iterations int,
	setup func(Arm) (Spec, Job, error), done func(Round, report.RunReport, report.Backend) error) error {
	for it := 0; it < warmup+iterations; it++ {
		for _, a := range arms {
			r := Round{Arm: a, Iteration: it - warmup + 1, Warmup: it < warmup}
			r.Label = fmt.Sprintf("%s-%d", safeLabel(a.Label), r.Iteration)
			if r.Warmup {
				r.Label = fmt.Sprintf("warmup-%s-%d", safeLabel(a.Label), it+1)
			}
			r.Dir = filepath.Join(base, r.Label)
			spec, job, err := setup(a)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(r.Dir, 0o755); err != nil {
				return err
			}
			job.Dir = r.Dir
			rep, info, runErr := Once(ctx, spec, job)
			if rep.Dir == "" {
				return runErr
			}
			if err := done(r, rep, info); err != nil {
				return err
			}
			if runErr != nil {
				return fmt.Errorf("run %s: %w", r.Label, runErr)
			}
			if rep.Outcome == scheduler.OutcomeInterrupted {
				return fmt.Errorf("run %s %s: %s", r.Label, rep.Outcome, rep.Reason)
			}
		}
	}
	return nil
}

// safeLabel makes an arm's label a folder name.
func safeLabel(s string) string { return strings.NewReplacer("+", "_", "/", "_").Replace(s) }
