package metrics

import (
	"math"
	"sort"

	"gonum.org/v1/gonum/stat"
)

// Percentile returns the p-quantile (p from 0 to 1) of sorted by linear
// interpolation between order statistics: with h = (n-1)p, the value
// x[floor h] + (h - floor h)(x[floor h + 1] - x[floor h]). This is numpy's
// default (R's type 7) and what vLLM's benchmark reports; gonum's LinInterp
// is R's type 4, so it is not used here. NaN for no data.
func Percentile(sorted []float64, p float64) float64 {
	n := len(sorted)
	if n == 0 {
		return math.NaN()
	}
	h := float64(n-1) * p
	lo := int(math.Floor(h))
	if lo >= n-1 {
		return sorted[n-1]
	}
	return sorted[lo] + (h-float64(lo))*(sorted[lo+1]-sorted[lo])
}

// Dist describes a sample: its size, mean, standard deviation, extremes and
// the p50, p90 and p99 percentiles (see Percentile). Empty samples have
// N = 0 and NaN elsewhere (written as null in JSON).
type Dist struct {
	N    int   `json:"n"`
	Mean Float `json:"mean"`
	Std  Float `json:"std"`
	Min  Float `json:"min"`
	P50  Float `json:"p50"`
	P90  Float `json:"p90"`
	P99  Float `json:"p99"`
	Max  Float `json:"max"`
}

// Describe summarizes xs; it sorts a copy.
func Describe(xs []float64) Dist {
	if len(xs) == 0 {
		nan := Float(math.NaN())
		return Dist{Mean: nan, Std: nan, Min: nan, P50: nan, P90: nan, P99: nan, Max: nan}
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	d := Dist{N: len(s), Mean: Float(stat.Mean(s, nil)), Min: Float(s[0]), Max: Float(s[len(s)-1]),
		P50: Float(Percentile(s, 0.5)), P90: Float(Percentile(s, 0.9)), P99: Float(Percentile(s, 0.99))}
	d.Std = Float(math.NaN())
	if len(s) > 1 {
		d.Std = Float(stat.StdDev(s, nil))
	}
	return d
}

// Float is a float64 written as null in JSON when it is NaN or infinite.
type Float float64

// MarshalJSON writes null for NaN and infinities.
func (f Float) MarshalJSON() ([]byte, error) {
	v := float64(f)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return []byte("null"), nil
	}
	return []byte(formatFloat(v)), nil
}

// UnmarshalJSON reads a number or null (NaN).
func (f *Float) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*f = Float(math.NaN())
		return nil
	}
	var v float64
	if err := jsonUnmarshal(b, &v); err != nil {
		return err
	}
	*f = Float(v)
	return nil
}
