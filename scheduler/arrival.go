package scheduler

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"gonum.org/v1/gonum/stat/distuv"
)

// Arrival kinds.
const (
	ArrivalClosed  = "closed"  // Concurrency workflows in flight, the next as one ends
	ArrivalPoisson = "poisson" // Rate per second, exponential gaps
	ArrivalGamma   = "gamma"   // Rate per second, gamma gaps of shape Burstiness
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
}

// Validate checks the arrival process.
func (a Arrival) Validate() error {
	switch a.Kind {
	case "", ArrivalClosed:
		return nil
	case ArrivalPoisson, ArrivalGamma:
	default:
		return fmt.Errorf("unknown arrival %q (want closed, poisson or gamma)", a.Kind)
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

// Open reports whether workflows arrive on a clock rather than as others end.
func (a Arrival) Open() bool { return a.Kind == ArrivalPoisson || a.Kind == ArrivalGamma }

// arrivals generates the modeled arrival times of an open loop, seeded:
// a renewal process of unit rate (exponential or gamma gaps) mapped through
// the inverse of the cumulative rate, which is linear after the ramp-up.
type arrivals struct {
	a     Arrival
	rng   *rand.Rand
	gamma distuv.Gamma
	unit  float64 // position in the unit-rate process
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
