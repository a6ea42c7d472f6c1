package metrics

import (
	"fmt"
	"strconv"
	"strings"
)

// SLO is a service-level objective per request, in seconds; a zero field
// is not checked. A request is good when every set objective holds
// (vLLM's goodput definition).
type SLO struct {
	TTFT, TPOT, E2EL float64
	// Workflow bounds a workflow's completion time (arrival to last node),
	// for workflow goodput.
	Workflow float64
}

// IsZero reports whether no objective is set.
func (s SLO) IsZero() bool { return s == SLO{} }

// ParseSLO reads "ttft:MS,tpot:MS,e2el:MS,wct:MS" (milliseconds; any
// subset; wct is the workflow completion time).
func ParseSLO(v string) (SLO, error) {
	var s SLO
	if strings.TrimSpace(v) == "" {
		return s, nil
	}
	for _, part := range strings.Split(v, ",") {
		key, val, ok := strings.Cut(strings.TrimSpace(part), ":")
		ms, err := strconv.ParseFloat(val, 64)
		if !ok || err != nil || ms <= 0 {
			return s, fmt.Errorf("SLO %q: want NAME:MILLISECONDS with a positive number (names: ttft, tpot, e2el, wct)", part)
		}
		switch key {
		case "ttft":
			s.TTFT = ms / 1000
		case "tpot":
			s.TPOT = ms / 1000
		case "e2el":
			s.E2EL = ms / 1000
		case "wct":
			s.Workflow = ms / 1000
		default:
			return s, fmt.Errorf("SLO %q: unknown objective %q (want ttft, tpot, e2el or wct)", part, key)
		}
	}
	return s, nil
}

// String writes the SLO back in ParseSLO's form.
func (s SLO) String() string {
	var parts []string
	for _, o := range []struct {
		name string
		v    float64
	}{{"ttft", s.TTFT}, {"tpot", s.TPOT}, {"e2el", s.E2EL}, {"wct", s.Workflow}} {
		if o.v > 0 {
			parts = append(parts, fmt.Sprintf("%s:%g", o.name, o.v*1000))
		}
	}
	return strings.Join(parts, ",")
}

// good reports whether a request meets every objective. A request with
// one output token has no TPOT and meets that objective.
func (s SLO) good(ttft, tpot, e2e float64, hasTPOT bool) bool {
	if s.TTFT == 0 && s.TPOT == 0 && s.E2EL == 0 {
		return true
	}
	return (s.TTFT == 0 || ttft <= s.TTFT) && (s.TPOT == 0 || !hasTPOT || tpot <= s.TPOT) && (s.E2EL == 0 || e2e <= s.E2EL)
}
