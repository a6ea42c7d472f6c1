package metrics

import (
	"math"
	"math/rand/v2"
)

// SampleCap bounds the values a Recorder keeps per figure: below it every
// value is kept and percentiles are exact; beyond it a uniform random sample
// of SampleCap values is kept (reservoir sampling), so memory stays bounded
// however long a run is. Counts and means are always exact.
const SampleCap = 100_000

// sample accumulates one figure's values within SampleCap.
type sample struct {
	vals []float64
	n    int
	sum  float64
	rng  *rand.Rand
}

func (s *sample) add(v float64) {
	s.n++
	s.sum += v
	if len(s.vals) < SampleCap {
		s.vals = append(s.vals, v)
		return
	}
	if s.rng == nil {
		s.rng = rand.New(rand.NewPCG(uint64(s.n), 0x72657376))
	}
	if j := s.rng.IntN(s.n); j < SampleCap {
		s.vals[j] = v
	}
}

// describe is Describe over the kept values, with the exact count and mean.
func (s *sample) describe() Dist {
	d := Describe(s.vals)
	if s.n > len(s.vals) {
		d.N = s.n
		d.Mean = Float(s.sum / float64(s.n))
	}
	return d
}

func (s *sample) mean() float64 {
	if s.n == 0 {
		return math.NaN()
	}
	return s.sum / float64(s.n)
}
