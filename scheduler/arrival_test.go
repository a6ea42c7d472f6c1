package scheduler

import (
	"math"
	"testing"
	"time"

	"gonum.org/v1/gonum/stat"
)

// gaps draws n inter-arrival gaps.
func gaps(a Arrival, n int) []float64 {
	g := newArrivals(a)
	prev, out := 0.0, make([]float64, n)
	for i := range out {
		t := g.next()
		out[i], prev = t-prev, t
	}
	return out
}

func TestArrivalProcesses(t *testing.T) {
	const n = 200_000
	for _, tt := range []struct {
		a      Arrival
		wantCV float64
	}{
		{Arrival{Kind: ArrivalPoisson, Rate: 4, Seed: 1}, 1},
		{Arrival{Kind: ArrivalGamma, Rate: 2, Burstiness: 1, Seed: 2}, 1},
		{Arrival{Kind: ArrivalGamma, Rate: 2, Burstiness: 0.25, Seed: 3}, 2}, // 1/sqrt(0.25)
		{Arrival{Kind: ArrivalGamma, Rate: 10, Burstiness: 4, Seed: 4}, 0.5}, // smoother
	} {
		g := gaps(tt.a, n)
		mean, sd := stat.MeanStdDev(g, nil)
		if rate := 1 / mean; math.Abs(rate-tt.a.Rate)/tt.a.Rate > 0.02 {
			t.Errorf("%+v: rate %.4f, want %v within 2%%", tt.a, rate, tt.a.Rate)
		}
		if cv := sd / mean; math.Abs(cv-tt.wantCV)/tt.wantCV > 0.03 {
			t.Errorf("%+v: CV %.4f, want %v within 3%%", tt.a, cv, tt.wantCV)
		}
	}
	// The same seed gives the same times; another seed others.
	a := Arrival{Kind: ArrivalPoisson, Rate: 1, Seed: 9}
	x, y := gaps(a, 50), gaps(a, 50)
	a.Seed = 10
	z := gaps(a, 50)
	if x[7] != y[7] || x[7] == z[7] {
		t.Error("arrivals are not seeded")
	}
}

func TestRampUp(t *testing.T) {
	// Rate 10/s reached after a 100 s ramp: about 500 arrivals during the
	// ramp, and the full rate after it.
	g := newArrivals(Arrival{Kind: ArrivalPoisson, Rate: 10, RampUp: 100 * time.Second, Seed: 5})
	during, after := 0, 0
	for {
		tm := g.next()
		if tm > 200 {
			break
		}
		if tm < 100 {
			during++
		} else {
			after++
		}
	}
	if math.Abs(float64(during)-500)/500 > 0.1 || math.Abs(float64(after)-1000)/1000 > 0.1 {
		t.Errorf("%d arrivals during the ramp (want about 500), %d after (want about 1000)", during, after)
	}
}

func TestArrivalValidate(t *testing.T) {
	for _, a := range []Arrival{{Kind: "storm"}, {Kind: ArrivalPoisson}, {Kind: ArrivalGamma, Rate: 1}, {Kind: ArrivalPoisson, Rate: 1, RampUp: -1}} {
		if a.Validate() == nil {
			t.Errorf("%+v accepted", a)
		}
	}
}
