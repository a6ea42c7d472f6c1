package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"time"

	"gonum.org/v1/gonum/stat"
	"gonum.org/v1/gonum/stat/distuv"

	"github.com/wfsched/wfsched/metrics"
)

// Result is bench.json: a suite's figures, per case and arm.
type Result struct {
	Suite   string            `json:"suite"`
	Created time.Time         `json:"created"`
	Env     map[string]string `json:"env"`
	Options map[string]string `json:"options,omitempty"` // e.g. a planted fault
	Track   []string          `json:"track"`
	Cases   []CaseResult      `json:"cases"`
}

// CaseResult is one case's arms.
type CaseResult struct {
	Name string `json:"name"`
	// Clock is the case's clock; "virtual" figures are exact ("" in
	// results written before virtual time: wall).
	Clock string      `json:"clock,omitempty"`
	Arms  []ArmResult `json:"arms"`
}

// ArmResult is one arm's estimates of every figure.
type ArmResult struct {
	Label   string                      `json:"label"`
	Figures map[string]metrics.Estimate `json:"figures"`
}

// NewArmResult estimates every figure of an arm from its runs' summaries.
func NewArmResult(label string, runs []metrics.Summary) ArmResult {
	ar := ArmResult{Label: label, Figures: map[string]metrics.Estimate{}}
	for _, f := range metrics.Figures {
		var vals []float64
		for _, s := range runs {
			vals = append(vals, f.Get(s))
		}
		ar.Figures[f.Key] = metrics.Estimate95(vals)
	}
	return ar
}

// ReadResult reads a bench.json.
func ReadResult(path string) (*Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// Verdicts of a figure against its baseline.
const (
	Unchanged   = "ok"         // within the threshold
	Regression  = "REGRESSION" // worse beyond the threshold, significantly
	Improvement = "improved"   // better beyond the threshold, significantly
	NotSig      = "not significant"
	Changed     = "changed"  // an exact figure measured on one side only
	Untested    = "untested" // fewer than two values on a side, or missing
)

// Check compares one figure with its baseline.
type Check struct {
	Case, Arm, Figure string
	Base, Current     float64
	Change            float64 // relative, signed: (current - base) / base
	P                 float64 // Welch's two-sided p-value, NaN if untested
	Verdict           string
	Exact             bool // a virtual-clock figure, compared directly
	worse, big        bool
}

// DefaultTolerance is the change an exact (virtual-clock) figure may show
// before the gate reports it.
const DefaultTolerance = 0.005

// Gate compares cur with base figure by figure. A figure of a case run on
// the virtual clock, here and in the baseline, is exact: any change beyond
// tolerance (a fraction) is reported, a regression when worse. Otherwise a
// tracked figure regresses when it is worse (by its direction) by more
// than maxRegression (a fraction) and Welch's t-test finds the difference
// significant at 5% after a Bonferroni correction over all the figures
// tested (p < 0.05/m): a suite tracks dozens of figures, and without the
// correction one of them would cross 5% by chance in most unchanged runs.
func Gate(base, cur *Result, maxRegression, tolerance float64) []Check {
	var out []Check
	baseArms := map[string]ArmResult{}
	baseClock := map[string]string{}
	for _, c := range base.Cases {
		baseClock[c.Name] = c.Clock
		for _, a := range c.Arms {
			baseArms[c.Name+"/"+a.Label] = a
		}
	}
	var exact []Check
	for _, c := range cur.Cases {
		for _, a := range c.Arms {
			b, ok := baseArms[c.Name+"/"+a.Label]
			if c.Clock == ClockVirtual && baseClock[c.Name] == ClockVirtual {
				for _, key := range cur.Track {
					exact = append(exact, exactCheck(c.Name, a, b, ok, key, tolerance))
				}
				continue
			}
			for _, key := range cur.Track {
				f, _ := FigureByKey(key)
				ch := Check{Case: c.Name, Arm: a.Label, Figure: key, Current: float64(a.Figures[key].Mean), Base: math.NaN(), P: math.NaN(), Verdict: Untested}
				if ok {
					be, ce := b.Figures[key], a.Figures[key]
					ch.Base = float64(be.Mean)
					ch.Change = (ch.Current - ch.Base) / ch.Base
					worse := ch.Change > 0
					if !f.LowerIsBetter {
						worse = ch.Change < 0
					}
					ch.P = welch(floats(be.Vals), floats(ce.Vals))
					ch.worse, ch.big = worse, math.Abs(ch.Change) > maxRegression
				}
				out = append(out, ch)
			}
		}
	}
	tested := 0
	for _, ch := range out {
		if !math.IsNaN(ch.P) {
			tested++
		}
	}
	alpha := 0.05 / float64(max(tested, 1))
	for i := range out {
		ch := &out[i]
		switch {
		case math.IsNaN(ch.Base) || math.IsNaN(ch.P) || math.IsNaN(ch.Change):
			ch.Verdict = Untested
		case math.Abs(ch.Change) < 1e-9:
			ch.Verdict, ch.P = Unchanged, 1
		case ch.P >= alpha:
			ch.Verdict = NotSig
		case ch.worse && ch.big:
			ch.Verdict = Regression
		case !ch.worse && ch.big:
			ch.Verdict = Improvement
		default:
			ch.Verdict = Unchanged // significant but within the threshold
		}
	}
	return append(out, exact...)
}

// exactCheck compares an exact figure with its baseline.
func exactCheck(name string, a, b ArmResult, ok bool, key string, tolerance float64) Check {
	f, _ := FigureByKey(key)
	ch := Check{Case: name, Arm: a.Label, Figure: key, Current: float64(a.Figures[key].Mean), Base: math.NaN(), P: math.NaN(), Verdict: Untested, Exact: true}
	if !ok {
		return ch
	}
	ch.Base = float64(b.Figures[key].Mean)
	switch {
	case math.IsNaN(ch.Base) && math.IsNaN(ch.Current):
		ch.Verdict = Unchanged
		return ch
	case math.IsNaN(ch.Base) || math.IsNaN(ch.Current):
		ch.Verdict = Changed
		return ch
	case ch.Base == ch.Current:
		ch.Verdict = Unchanged
		return ch
	}
	ch.Change = (ch.Current - ch.Base) / math.Abs(ch.Base)
	worse := ch.Change > 0
	if !f.LowerIsBetter {
		worse = ch.Change < 0
	}
	switch {
	case math.Abs(ch.Change) <= tolerance:
		ch.Verdict = Unchanged
	case worse:
		ch.Verdict = Regression
	default:
		ch.Verdict = Improvement
	}
	return ch
}

// Alpha is the per-figure significance level Gate used: 0.05 over the
// number of figures tested.
func Alpha(checks []Check) float64 {
	tested := 0
	for _, c := range checks {
		if !math.IsNaN(c.P) {
			tested++
		}
	}
	return 0.05 / float64(max(tested, 1))
}

func floats(v []metrics.Float) []float64 {
	out := make([]float64, 0, len(v))
	for _, x := range v {
		if !math.IsNaN(float64(x)) {
			out = append(out, float64(x))
		}
	}
	return out
}

// welch is the two-sided p-value of Welch's t-test, NaN with fewer than two
// values on a side.
func welch(a, b []float64) float64 {
	if len(a) < 2 || len(b) < 2 {
		return math.NaN()
	}
	ma, va := stat.MeanVariance(a, nil)
	mb, vb := stat.MeanVariance(b, nil)
	sa, sb := va/float64(len(a)), vb/float64(len(b))
	if sa+sb == 0 {
		if ma == mb {
			return 1
		}
		return 0
	}
	t := (ma - mb) / math.Sqrt(sa+sb)
	df := (sa + sb) * (sa + sb) / (sa*sa/float64(len(a)-1) + sb*sb/float64(len(b)-1))
	return 2 * distuv.StudentsT{Mu: 0, Sigma: 1, Nu: df}.CDF(-math.Abs(t))
}

// Failed reports whether any check is a regression.
func Failed(checks []Check) bool {
	for _, c := range checks {
		if c.Verdict == Regression {
			return true
		}
	}
	return false
}

// WriteMarkdown writes a summary fit for a CI job summary or a pull
// request comment: each case's tracked figures and, with a baseline, the
// change and verdict.
func WriteMarkdown(w io.Writer, cur *Result, checks []Check, maxRegression, tolerance float64) error {
	var b strings.Builder
	fmt.Fprintf(&b, "## wfsched bench: %s\n\n", cur.Suite)
	keys := make([]string, 0, len(cur.Env))
	for k := range cur.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var env []string
	for _, k := range keys {
		env = append(env, k+" "+cur.Env[k])
	}
	fmt.Fprintf(&b, "%s. Virtual-clock cases run once and are exact; wall-clock cases give means over iterations with 95%% confidence intervals.\n", strings.Join(env, ", "))
	for k, v := range cur.Options {
		fmt.Fprintf(&b, "Option: %s = %s.\n", k, v)
	}
	if checks == nil {
		for _, c := range cur.Cases {
			clock := c.Clock
			if clock == "" {
				clock = ClockWall
			}
			fmt.Fprintf(&b, "\n### %s (%s clock)\n\n| arm | %s |\n|---|%s\n", c.Name, clock, strings.Join(cur.Track, " | "), strings.Repeat("---|", len(cur.Track)))
			for _, a := range c.Arms {
				row := []string{a.Label}
				for _, k := range cur.Track {
					row = append(row, fmtEst(k, a.Figures[k]))
				}
				fmt.Fprintf(&b, "| %s |\n", strings.Join(row, " | "))
			}
		}
	} else {
		verdict := "**passed**"
		if Failed(checks) {
			verdict = "**FAILED**"
		}
		var rules []string
		exact, wall := false, false
		for _, c := range checks {
			exact, wall = exact || c.Exact, wall || !c.Exact
		}
		if exact {
			rules = append(rules, fmt.Sprintf("virtual clock: any change beyond %.1f%% is reported, worse fails", 100*tolerance))
		}
		if wall {
			rules = append(rules, fmt.Sprintf("wall clock: worse by more than %.0f%% and significant, Welch's t-test, p < 0.05 over %d figures = %.2g",
				100*maxRegression, int(math.Round(0.05/Alpha(checks))), Alpha(checks)))
		}
		fmt.Fprintf(&b, "\nRegression gate (%s): %s\n\n", strings.Join(rules, "; "), verdict)
		b.WriteString("| case | arm | figure | baseline | current | change | p | verdict |\n|---|---|---|---|---|---|---|---|\n")
		for _, c := range checks {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", c.Case, c.Arm, c.Figure, fmtNum(c.Figure, c.Base), fmtNum(c.Figure, c.Current),
				pct(c.Change), pval(c.P), c.Verdict)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func fmtNum(key string, v float64) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	f, _ := FigureByKey(key)
	switch f.Unit {
	case "s":
		if v < 1 {
			return fmt.Sprintf("%.1f ms", 1000*v)
		}
		return fmt.Sprintf("%.3g s", v)
	case "%":
		return fmt.Sprintf("%.1f%%", 100*v)
	}
	return fmt.Sprintf("%.3g", v)
}

func fmtEst(key string, e metrics.Estimate) string {
	s := fmtNum(key, float64(e.Mean))
	if !math.IsNaN(float64(e.Lo)) {
		s += " ± " + fmtNum(key, float64(e.Hi-e.Mean))
	}
	return s
}

func pct(x float64) string {
	if math.IsNaN(x) {
		return "n/a"
	}
	return fmt.Sprintf("%+.1f%%", 100*x)
}

func pval(p float64) string {
	if math.IsNaN(p) {
		return "n/a"
	}
	return fmt.Sprintf("%.3f", p)
}
