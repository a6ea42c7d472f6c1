package sim

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// FaultHeader names the per-request fault header, e.g. "error=503", "hang",
// "cut=5" (end the stream abruptly after 5 chunks) or "slow=3" (write this
// stream's chunks three times slower). Several may be joined with commas.
const FaultHeader = "X-Wfsched-Fault"

// Faults injects failures, for reliability tests. Rates are per request,
// drawn from a generator seeded by Seed. The zero value injects none.
type Faults struct {
	ErrorRate   float64 // answer with ErrorStatus instead of serving
	ErrorStatus int     // 429, 500 or 503 (default 503); 429 carries Retry-After: 1
	HangRate    float64 // accept and never answer
	CutRate     float64 // end a stream abruptly after CutAfter chunks
	CutAfter    int     // default 3
	Seed        uint64
}

// Validate checks rates and status.
func (f Faults) Validate() error {
	for name, r := range map[string]float64{"error rate": f.ErrorRate, "hang rate": f.HangRate, "cut rate": f.CutRate} {
		if !(r >= 0 && r <= 1) {
			return fmt.Errorf("fault %s %v: want a fraction from 0 to 1", name, r)
		}
	}
	switch f.ErrorStatus {
	case 0, 429, 500, 503:
	default:
		return fmt.Errorf("fault error status %d: want 429, 500 or 503", f.ErrorStatus)
	}
	if f.CutAfter < 0 {
		return fmt.Errorf("fault cut-after %d is negative", f.CutAfter)
	}
	return nil
}

// fault is what happens to one request.
type fault struct {
	status   int     // 0: none
	hang     bool    //
	cutAfter int     // -1: none
	slow     float64 // 0 or 1: none
}

type faultSource struct {
	mu  sync.Mutex
	cfg Faults
	rng *rand.Rand
}

func newFaultSource(f Faults) *faultSource {
	if f.ErrorStatus == 0 {
		f.ErrorStatus = 503
	}
	if f.CutAfter == 0 {
		f.CutAfter = 3
	}
	return &faultSource{cfg: f, rng: rand.New(rand.NewPCG(f.Seed, 0x6661756c74))}
}

// draw decides one request's fault from the rates and its header.
func (s *faultSource) draw(r *http.Request) (fault, error) {
	f := fault{cutAfter: -1}
	s.mu.Lock()
	if s.cfg.ErrorRate > 0 && s.rng.Float64() < s.cfg.ErrorRate {
		f.status = s.cfg.ErrorStatus
	}
	if s.cfg.HangRate > 0 && s.rng.Float64() < s.cfg.HangRate {
		f.hang = true
	}
	if s.cfg.CutRate > 0 && s.rng.Float64() < s.cfg.CutRate {
		f.cutAfter = s.cfg.CutAfter
	}
	s.mu.Unlock()
	h := r.Header.Get(FaultHeader)
	if h == "" {
		return f, nil
	}
	for _, part := range strings.Split(h, ",") {
		key, val, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch key {
		case "error":
			code, err := strconv.Atoi(val)
			if err != nil || code < 400 || code > 599 {
				return f, fmt.Errorf("%s: error=%q: want an HTTP error status", FaultHeader, val)
			}
			f.status = code
		case "hang":
			f.hang = true
		case "cut":
			n, err := strconv.Atoi(val)
			if err != nil || n < 0 {
				return f, fmt.Errorf("%s: cut=%q: want a number of chunks", FaultHeader, val)
			}
			f.cutAfter = n
		case "slow":
			x, err := strconv.ParseFloat(val, 64)
			if err != nil || x < 1 {
				return f, fmt.Errorf("%s: slow=%q: want a factor of at least 1", FaultHeader, val)
			}
			f.slow = x
		default:
			return f, fmt.Errorf("%s: unknown fault %q (want error=CODE, hang, cut=N or slow=F)", FaultHeader, key)
		}
	}
	return f, nil
}
