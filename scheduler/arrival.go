package scheduler

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/wfsched/wfsched/dag"
	"gonum.org/v1/gonum/stat/distuv"
)

// Arrival kinds.
const (
	ArrivalClosed  = "closed"  // Concurrency workflows in flight, the next as one ends
	ArrivalPoisson = "poisson" // Rate per second, exponential gaps
	ArrivalGamma   = "gamma"   // Rate per second, gamma gaps of shape Burstiness
	ArrivalReplay  = "replay"  // workflow i at Offsets[i] / Speed
)

// Arrival describes when workflows start. The zero value is the closed
// loop of Config.Concurrency.
type Arrival struct {
	Kind string
	// Rate is workflows per modeled second (open loops).
	Rate float64
	// Burstiness is the gamma shape: 1 is Poisson, lower is burstier
	// (the gaps' coefficient of variation is 1/sqrt(Burstiness)), as in
	// vLLM's benchmark.
	Burstiness float64
	// RampUp raises the rate linearly from 0 to Rate over this time.
	RampUp time.Duration
	// Duration stops new arrivals after this much modeled time (0: none;
	// Config.Workflows still bounds the count when set).
	Duration time.Duration
	// MaxConcurrency caps workflows in flight in open loops (0: none);
	// arrivals over the cap wait, and the wait counts as queueing delay.
	MaxConcurrency int
	Seed           uint64
	// Offsets are the recorded starts of the workflows, in modeled seconds
	// from the first, in order (replay); Speed compresses them (2: twice
	// as fast) or stretches them (0.5).
	Offsets []float64
	Speed   float64
}

// Validate checks the arrival process.
func (a Arrival) Validate() error {
	switch a.Kind {
	case "", ArrivalClosed:
		return nil
	case ArrivalPoisson, ArrivalGamma:
	case ArrivalReplay:
		if !(a.Speed > 0) || math.IsInf(a.Speed, 0) {
			return fmt.Errorf("speed %v: want a positive factor (1: as recorded)", a.Speed)
		}
		if len(a.Offsets) == 0 {
			return errors.New("replayed arrivals need the workflows' recorded starts")
		}
		for i, o := range a.Offsets {
			if !(o >= 0) || math.IsInf(o, 0) || i > 0 && o < a.Offsets[i-1] {
				return fmt.Errorf("recorded start %d (%v s): want non-negative starts in order", i, o)
			}
		}
		if a.Duration < 0 || a.MaxConcurrency < 0 {
			return errors.New("duration and max concurrency must not be negative")
		}
		return nil
	default:
		return fmt.Errorf("unknown arrival %q (want closed, poisson, gamma or replay)", a.Kind)
	}
	if !(a.Rate > 0) || math.IsInf(a.Rate, 0) {
		return fmt.Errorf("arrival rate %v: want a positive number of workflows per second", a.Rate)
	}
	if a.Kind == ArrivalGamma && (!(a.Burstiness > 0) || math.IsInf(a.Burstiness, 0)) {
		return fmt.Errorf("burstiness %v: want a positive gamma shape (1 is Poisson)", a.Burstiness)
	}
	if a.RampUp < 0 || a.Duration < 0 || a.MaxConcurrency < 0 {
		return errors.New("ramp-up, duration and max concurrency must not be negative")
	}
	return nil
}

// ReplayArrival is the arrival process that starts workflow i, running
// gs[i], at gs[i]'s recorded start (relative to gs[0]'s), divided by
// speed. gs must be in the order of their starts (see replay.ByStart); a
// graph without a start is an error that names it.
func ReplayArrival(gs []*dag.Graph, speed float64) (Arrival, error) {
	a := Arrival{Kind: ArrivalReplay, Speed: speed}
	for _, g := range gs {
		if g.Start.IsZero() {
			return a, fmt.Errorf("%s records no start time (the shared traces record none; captures, converted captures and OpenTelemetry traces do)", g.ID)
		}
		a.Offsets = append(a.Offsets, g.Start.Sub(gs[0].Start).Seconds())
	}
	return a, a.Validate()
}

// MeanRate is a replayed arrival's mean rate at speed 1, in workflows per
// second: the workflows after the first over the time they span (0 when
// they all start at once).
func (a Arrival) MeanRate() float64 {
	n := len(a.Offsets)
	if n < 2 || a.Offsets[n-1] <= 0 {
		return 0
	}
	return float64(n-1) / a.Offsets[n-1]
}

// Open reports whether workflows arrive on a clock rather than as others end.
func (a Arrival) Open() bool {
	return a.Kind == ArrivalPoisson || a.Kind == ArrivalGamma || a.Kind == ArrivalReplay
}

// arrivals generates the modeled arrival times of an open loop, seeded:
// a renewal process of unit rate (exponential or gamma gaps) mapped through
// the inverse of the cumulative rate, which is linear after the ramp-up.
type arrivals struct {
	a     Arrival
	rng   *rand.Rand
	gamma distuv.Gamma
	unit  float64 // position in the unit-rate process
	k     int     // replayed arrivals given
}

func newArrivals(a Arrival) *arrivals {
	rng := rand.New(rand.NewPCG(a.Seed, 0x61727269))
	g := &arrivals{a: a, rng: rng}
	if a.Kind == ArrivalGamma {
		g.gamma = distuv.Gamma{Alpha: a.Burstiness, Beta: a.Burstiness, Src: rng}
	}
	return g
}

// next returns the next arrival, in modeled seconds since the start.
func (g *arrivals) next() float64 {
	if g.a.Kind == ArrivalReplay {
		if g.k >= len(g.a.Offsets) {
			return math.Inf(1)
		}
		g.k++
		return g.a.Offsets[g.k-1] / g.a.Speed
	}
	if g.a.Kind == ArrivalGamma {
		g.unit += g.gamma.Rand() // mean 1, CV 1/sqrt(shape)
	} else {
		g.unit += g.rng.ExpFloat64()
	}
	return g.invert(g.unit / g.a.Rate)
}

// invert maps t in a constant-rate process to the ramped one: with the rate
// rising linearly to its full value over T, the cumulative rate is
// t²/(2T) before T and t - T/2 after.
func (g *arrivals) invert(u float64) float64 {
	ramp := g.a.RampUp.Seconds()
	if ramp == 0 {
		return u
	}
	if u < ramp/2 {
		return math.Sqrt(2 * ramp * u)
	}
	return u + ramp/2
}
