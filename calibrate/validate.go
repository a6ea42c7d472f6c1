package calibrate

import (
	"context"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/wfsched/wfsched/scheduler"
	"github.com/wfsched/wfsched/sim"
)

// Validation compares a held-out request stream on the server with the
// same stream on the engine's virtual clock under the fitted profile.
type Validation struct {
	Requests int     `json:"requests"`
	Rate     float64 `json:"rate_per_s"` // modeled arrivals per second
	// Per metric (ttft, itl, e2e): the real and simulated mean and p90 in
	// modeled ms and their absolute percentage errors (BLIS reports the
	// median of these over its experiments), and the median over requests
	// of each request's own error (which a step's quantum dominates: a
	// request that joins the next step waits one more).
	Metrics map[string]*MetricError `json:"metrics"`
}

// MetricError is one metric's comparison.
type MetricError struct {
	RealMean, SimMean, RealP90, SimP90 float64 // ms
	MeanErr, P90Err                    float64 // percent
	MedianRequestErr                   float64 // percent
}

// Worst is the largest error of a metric's mean or p90.
func (v *Validation) Worst() (string, float64) {
	name, worst := "", -1.0
	for _, k := range []string{"ttft", "itl", "e2e"} {
		m := v.Metrics[k]
		if m == nil {
			continue
		}
		if e := max(m.MeanErr, m.P90Err); e > worst {
			name, worst = k, e
		}
	}
	return name, worst
}

type heldOut struct {
	at            time.Duration // modeled arrival
	prompt, out   int
	ttft, itl, e2 float64 // real, modeled ms
}

// validate sends a Poisson stream of requests of mixed lengths at a rate
// that keeps several in flight, and replays it on the virtual clock.
func validate(ctx context.Context, m *measurer, p sim.Profile, overheadUS float64) (*Validation, error) {
	n := m.cfg.ValidationRequests
	reqs := make([]heldOut, n)
	meanPrompt, meanOut := 0, 0
	for i := range reqs {
		reqs[i].prompt = 128 + m.rng.IntN(1920)
		reqs[i].out = 16 + m.rng.IntN(80)
		meanPrompt += reqs[i].prompt
		meanOut += reqs[i].out
	}
	meanPrompt, meanOut = meanPrompt/n, meanOut/n
	// About four requests in flight: a lone request's time over four.
	alone := p.StepTime(meanPrompt, meanPrompt, 1) + time.Duration(meanOut)*p.TPOT(meanPrompt)
	rate := 4 / alone.Seconds()
	at := time.Duration(0)
	for i := range reqs {
		at += time.Duration(m.rng.ExpFloat64() / rate * float64(time.Second))
		reqs[i].at = at
	}
	scale, err := m.cfg.Client.Health(ctx)
	if err != nil || scale <= 0 {
		scale = 1
	}
	if m.cfg.Progress != nil {
		m.cfg.Progress(fmt.Sprintf("validation: %d requests at %.2f/s (modeled), replayed on the server and on the virtual clock", n, rate))
	}
	// The server.
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range reqs {
		r := &reqs[i]
		text := m.prompt(r.prompt)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if d := time.Until(start.Add(time.Duration(float64(r.at) * scale))); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					errs[i] = ctx.Err()
					return
				}
			}
			res := m.cfg.Client.Complete(ctx, scheduler.Call{Messages: []scheduler.Message{{Role: "user", Content: text}}, MaxTokens: r.out, IgnoreEOS: true})
			if res.Err != nil {
				errs[i] = res.Err
				return
			}
			s := res.TimeScale
			if s <= 0 {
				s = 1
			}
			ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / s }
			r.prompt, r.ttft, r.e2 = res.PromptTokens, ms(res.TTFT), ms(res.E2E)
			if len(res.ITL) > 0 {
				var sum time.Duration
				for _, g := range res.ITL {
					sum += g
				}
				r.itl = ms(sum) / float64(len(res.ITL))
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("validation: %w", err)
		}
	}
	// The virtual clock.
	simTTFT, simITL, simE2E, err := simulate(p, reqs, overheadUS)
	if err != nil {
		return nil, err
	}
	v := &Validation{Requests: n, Rate: rate, Metrics: map[string]*MetricError{}}
	server := func(f func(heldOut) float64) []float64 {
		out := make([]float64, n)
		for i, r := range reqs {
			out[i] = f(r)
		}
		return out
	}
	v.Metrics["ttft"] = compare(server(func(r heldOut) float64 { return r.ttft }), simTTFT)
	v.Metrics["itl"] = compare(server(func(r heldOut) float64 { return r.itl }), simITL)
	v.Metrics["e2e"] = compare(server(func(r heldOut) float64 { return r.e2 }), simE2E)
	return v, nil
}

// simulate runs the stream on one engine with profile p on the virtual
// clock, times in ms. Each request reaches the engine the measured
// overhead after it was sent (its HTTP round trip and tokenizing come
// before the engine sees it), so it joins the step it joins on the server.
func simulate(p sim.Profile, reqs []heldOut, overheadUS float64) (ttft, itl, e2e []float64, err error) {
	e, err := sim.New(sim.Config{Profile: p, Clock: sim.NewFakeClock(time.Unix(0, 0))})
	if err != nil {
		return nil, nil, nil, err
	}
	streams := make([]*sim.Stream, len(reqs))
	over := time.Duration(overheadUS * float64(time.Microsecond))
	now, due, busy := time.Duration(0), time.Duration(0), false
	next := 0
	tok := 1000
	for next < len(reqs) || busy {
		if next < len(reqs) && (!busy || reqs[next].at+over <= due) {
			r := reqs[next]
			now = max(now, r.at+over)
			prompt := make([]int, r.prompt)
			for i := range prompt {
				prompt[i] = tok // distinct tokens: no prefix shared
				tok++
			}
			if streams[next], err = e.SubmitAt(sim.Request{Prompt: prompt, MaxTokens: r.out, IgnoreEOS: true}, now+over); err != nil {
				return nil, nil, nil, err
			}
			if !busy {
				due, busy = e.Advance(now)
			}
			next++
			continue
		}
		now = due
		due, busy = e.Advance(now)
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	for i, s := range streams {
		_, times := s.Times()
		if len(times) == 0 {
			return nil, nil, nil, fmt.Errorf("validation: a simulated request gave no output")
		}
		ttft = append(ttft, ms(times[0]-reqs[i].at))
		e2e = append(e2e, ms(times[len(times)-1]-reqs[i].at))
		gap := 0.0
		if len(times) > 1 {
			gap = ms(times[len(times)-1]-times[0]) / float64(len(times)-1)
		}
		itl = append(itl, gap)
	}
	return ttft, itl, e2e, nil
}

func compare(measured, simulated []float64) *MetricError {
	ape := make([]float64, len(measured))
	for i := range measured {
		ape[i] = 100 * math.Abs(simulated[i]-measured[i]) / math.Max(measured[i], 1e-9)
	}
	e := &MetricError{RealMean: mean(measured), SimMean: mean(simulated), RealP90: p90(measured), SimP90: p90(simulated), MedianRequestErr: median(ape)}
	e.MeanErr = 100 * math.Abs(e.SimMean-e.RealMean) / math.Max(e.RealMean, 1e-9)
	e.P90Err = 100 * math.Abs(e.SimP90-e.RealP90) / math.Max(e.RealP90, 1e-9)
	return e
}

func p90(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[min(len(s)-1, int(math.Ceil(0.9*float64(len(s))))-1)]
}
