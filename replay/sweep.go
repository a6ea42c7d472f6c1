package replay

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/wfsched/wfsched/dag"
	"github.com/wfsched/wfsched/report"
	"github.com/wfsched/wfsched/scheduler"
)

// MaxAutoRates bounds a sweep's automatic rates.
const MaxAutoRates = 8

// SweepPlan is a sweep of offered load: each arm's idle reference, then an
// open loop at each rate, arms interleaved at every rate.
type SweepPlan struct {
	Dir    string          // the sweep's folder; runs go under Dir/runs
	Doc    report.SweepDoc // the header (id, arms, traces, arrival...); Sweep fills the rest
	Arms   []Arm           //
	Rates  []float64       // nil: automatic, from about one workflow in flight, doubling until every arm saturates
	Graphs []*dag.Graph    //
	Traces []report.TraceInfo
	// IdleAtOnce is how many idle reference runs go at once; Embedded
	// gives each trace its own fresh engines for it (endpoints are shared,
	// so there the traces run one after another in one run).
	IdleAtOnce int
	Embedded   bool
	// Setup gives arm a's backend and job at rate, or, with rate 0, the
	// idle reference over gs: each workflow alone. Sweep sets the job's
	// folder, its slowdown reference and its sinks.
	Setup func(a Arm, rate float64, gs []*dag.Graph, is []report.TraceInfo) (Spec, Job, error)
	// Log, if set, hears of each idle reference and point.
	Log func(format string, args ...any)
}

// Sweep runs p. The document it returns holds every point finished, also
// when a run fails or the sweep is interrupted (the error says why).
func Sweep(ctx context.Context, p SweepPlan) (report.SweepDoc, error) {
	doc := p.Doc
	doc.Idle = map[string]map[string]float64{}
	logf := p.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	var mu sync.Mutex
	one := func(a Arm, rate float64, gs []*dag.Graph, is []report.TraceInfo, label string, sinks ...scheduler.Sink) (report.RunReport, report.Backend, error) {
		spec, job, err := p.Setup(a, rate, gs, is)
		if err != nil {
			return report.RunReport{}, report.Backend{}, err
		}
		job.Dir = filepath.Join(p.Dir, "runs", label)
		if err := os.MkdirAll(job.Dir, 0o755); err != nil {
			return report.RunReport{}, report.Backend{}, err
		}
		if rate > 0 {
			job.Idle = doc.Idle[a.Label]
		}
		job.Sinks = append(job.Sinks, sinks...)
		rep, info, err := Once(ctx, spec, job)
		if t := rep.Timing; t != nil && t.Verdict == report.TimingUnreliable {
			mu.Lock()
			doc.UnreliableTiming = append(doc.UnreliableTiming, label)
			mu.Unlock()
		}
		if err == nil && rep.Dir != "" && rep.Outcome != scheduler.OutcomeCompleted {
			err = fmt.Errorf("run %s %s: %s", label, rep.Outcome, rep.Reason)
		}
		return rep, info, err
	}

	var idleSum float64
	var idleN int
	for _, a := range p.Arms {
		idle, err := p.idleTimes(a, one)
		if err != nil {
			return doc, err
		}
		doc.Idle[a.Label] = idle
		var sum float64
		for _, v := range idle {
			sum += v
		}
		idleSum, idleN = idleSum+sum, idleN+len(idle)
		logf("idle %s: %d traces, mean completion %.3g s", a.Label, len(idle), sum/float64(max(1, len(idle))))
	}
	rates := p.Rates
	auto := rates == nil
	if auto {
		if idleN == 0 || idleSum <= 0 {
			return doc, errors.New("--rates auto: no idle completion time to start from")
		}
		// Rounded to two significant figures so the rates read well.
		start, _ := strconv.ParseFloat(strconv.FormatFloat(float64(idleN)/idleSum, 'g', 2, 64), 64)
		rates = []float64{start}
	}
	for k := 0; k < len(rates); k++ {
		rate := rates[k]
		doc.Rates = append(doc.Rates, rate)
		for _, a := range p.Arms {
			label := fmt.Sprintf("%s-r%s", a.Label, strconv.FormatFloat(rate, 'g', 4, 64))
			rep, info, err := one(a, rate, p.Graphs, p.Traces, label)
			doc.Backend = info
			if rep.Dir != "" {
				doc.Points = append(doc.Points, report.SweepPoint{Arm: a.Label, Rate: rate, Run: filepath.Join("runs", label), Outcome: string(rep.Outcome), Summary: rep.Summary})
			}
			if err != nil {
				return doc, err
			}
			logf("%s at %g/s: completion p50 %.3g s, %.1f workflows/min", a.Label, rate, float64(rep.Summary.Completion.P50), float64(rep.Summary.WorkflowsPerMin))
		}
		if auto {
			doc.Saturate()
			all := true
			for _, a := range p.Arms {
				all = all && doc.Saturation[a.Label].Reached
			}
			if !all && len(rates) < MaxAutoRates {
				rates = append(rates, 2*rate)
			}
		}
	}
	return doc, nil
}

// idleTimes measures each trace's completion time alone on an idle server
// under arm a, keyed by trace name.
func (p SweepPlan) idleTimes(a Arm, one func(Arm, float64, []*dag.Graph, []report.TraceInfo, string, ...scheduler.Sink) (report.RunReport, report.Backend, error)) (map[string]float64, error) {
	type job struct {
		gs    []*dag.Graph
		is    []report.TraceInfo
		label string
	}
	jobs := []job{{p.Graphs, p.Traces, "idle-" + a.Label}}
	if p.Embedded && len(p.Graphs) > 1 && len(p.Traces) == len(p.Graphs) {
		jobs = jobs[:0]
		for i, g := range p.Graphs {
			jobs = append(jobs, job{[]*dag.Graph{g}, []report.TraceInfo{p.Traces[i]}, fmt.Sprintf("idle-%s/%03d", a.Label, i)})
		}
	}
	var mu sync.Mutex
	idle := map[string]float64{}
	record := WorkflowHook(func(w scheduler.WorkflowResult) {
		if w.Outcome == scheduler.OutcomeCompleted {
			mu.Lock()
			idle[w.Trace] = w.CompletionS
			mu.Unlock()
		}
	})
	var eg errgroup.Group
	eg.SetLimit(max(1, p.IdleAtOnce))
	for _, j := range jobs {
		eg.Go(func() error {
			_, _, err := one(a, 0, j.gs, j.is, j.label, record)
			return err
		})
	}
	return idle, eg.Wait()
}
