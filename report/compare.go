package report

import (
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/wfsched/wfsched/metrics"
)

// RunRef places a run in a comparison.
type RunRef struct {
	Dir       string `json:"dir"` // relative to the comparison folder when inside it
	Arm       string `json:"arm"`
	Iteration int    `json:"iteration"`
	Warmup    bool   `json:"warmup,omitempty"`
}

// ComparisonDoc is comparison.json: how a comparison was made and what it
// found.
type ComparisonDoc struct {
	ID         string    `json:"id"`
	Created    time.Time `json:"created"`
	Args       []string  `json:"args"`
	Arms       []string  `json:"arms"`
	Iterations int       `json:"iterations"`
	// ArmsAre says what differs between arms: "policies" or
	// "routing-logics" (or "runs" for saved runs).
	ArmsAre    string             `json:"arms_are,omitempty"`
	Warmup     int                `json:"warmup"`
	Method     string             `json:"method"`
	Runs       []RunRef           `json:"runs"`
	Traces     []TraceInfo        `json:"traces"`
	Backend    Backend            `json:"backend"`
	Comparison metrics.Comparison `json:"comparison"`
	// SingleChain is set when every trace compared is a single chain: no
	// policy can shorten one workflow, and differences are noise.
	SingleChain bool   `json:"single_chain"`
	Note        string `json:"note,omitempty"`
	// UnreliableTiming lists the runs whose wall clock fell behind the
	// model (summary.json's timing verdict): their latencies are overstated.
	UnreliableTiming []string `json:"unreliable_timing,omitempty"`
	// Seed is the first run's seed.
	Seed uint64 `json:"seed,omitempty"`
	// Answer is what the comparison found, in a sentence or two, computed
	// from the figures (see FillAnswer); every output opens with it.
	Answer string `json:"answer,omitempty"`
}

// FillAnswer sets Answer: the best arm's makespan speedup over the
// baseline with its interval (or that no arm differs significantly, or that
// one iteration gives no interval), and how the latency users feel (TTFT
// p50), or for routing logics the prefix-cache hit rate, moved with it.
// Nothing is claimed for traces that are single chains (see Note).
func (d *ComparisonDoc) FillAnswer() {
	c := d.Comparison
	var base, best *metrics.ArmResult
	for i := range c.Arms {
		a := &c.Arms[i]
		switch {
		case a.Label == c.Baseline:
			base = a
		case !math.IsNaN(float64(a.Speedup.Mean)) && (best == nil || a.Speedup.Mean > best.Speedup.Mean):
			best = a
		}
	}
	d.Answer = ""
	if base == nil || best == nil {
		return // one arm: nothing compared
	}
	sp := best.Speedup
	x := float64(sp.Mean)
	var first string
	switch {
	case d.SingleChain && d.ArmsAre == "policies":
		d.Answer = "No policy can shorten these workflows: every trace compared is a single chain."
		return
	case sp.N < 2 || math.IsNaN(float64(sp.Lo)):
		first = fmt.Sprintf("%s finished workflows %.2fx as fast as %s in one iteration (no interval: run --iterations 3 before trusting it).", best.Label, x, base.Label)
		if d.ArmsAre == "runs" {
			first = fmt.Sprintf("%s finished workflows %.2fx as fast as %s, one saved run each (no interval).", best.Label, x, base.Label)
		} else if d.Backend.Clock == "virtual" {
			first = fmt.Sprintf("%s finished workflows %.2fx as fast as %s, exactly, for seed %d (--iterations 3 repeats it with other seeds for an interval).", best.Label, x, base.Label, d.Seed)
		}
	case !best.Significant:
		first = fmt.Sprintf("No arm differs significantly from %s in makespan (the best, %s, %.2fx, 95%% CI %.2f-%.2f).", base.Label, best.Label, x, float64(sp.Lo), float64(sp.Hi))
	case x > 1:
		first = fmt.Sprintf("%s finishes workflows %.2fx faster than %s (95%% CI %.2f-%.2f).", best.Label, x, base.Label, float64(sp.Lo), float64(sp.Hi))
	default:
		first = fmt.Sprintf("No arm beats %s: the best, %s, is %.2fx its speed (95%% CI %.2f-%.2f).", base.Label, best.Label, x, float64(sp.Lo), float64(sp.Hi))
	}
	key := "ttft_p50_s"
	if d.ArmsAre == "routing-logics" {
		key = "cache_hit_rate"
	}
	for _, f := range metrics.Figures {
		if f.Key != key {
			continue
		}
		from, to := float64(base.Figures[key].Mean), float64(best.Figures[key].Mean)
		if math.IsNaN(from) || math.IsNaN(to) {
			break
		}
		verb := "rises"
		if to < from {
			verb = "falls"
		}
		if fmtValue(f, from) == fmtValue(f, to) {
			first += fmt.Sprintf(" %s stays at %s.", f.Label, fmtValue(f, to))
			break
		}
		first += fmt.Sprintf(" %s %s from %s to %s.", f.Label, verb, fmtValue(f, from), fmtValue(f, to))
	}
	d.Answer = first
}

// FillNote sets SingleChain and the note that says what the comparison can
// and cannot show.
func (d *ComparisonDoc) FillNote() {
	d.SingleChain = len(d.Traces) > 0
	for _, t := range d.Traces {
		d.SingleChain = d.SingleChain && t.SingleChain
	}
	switch {
	case d.SingleChain && d.ArmsAre == "routing-logics":
		d.Note = "Every trace compared is a single chain, so no schedule shortens one workflow alone; differences between routing logics come from prefix-cache reuse and load across the concurrent workflows."
	case d.SingleChain:
		d.Note = "Every trace compared is a single chain: its critical path is all of its work, so no policy can make one workflow faster; differences in makespan are noise, whatever their intervals say."
	case d.Iterations < 2 && d.ArmsAre == "runs":
		d.Note = "Each arm is one saved run: no confidence intervals; 'wfsched compare --dag TRACE --iterations 3' measures arms with them."
	case d.Iterations < 2 && d.Backend.Clock != "virtual":
		d.Note = "One iteration: no confidence intervals; run --iterations 3 or more before trusting a difference."
	}
}

func fmtValue(f metrics.Figure, v float64) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	switch f.Unit {
	case "s":
		if math.Abs(v) < 1 {
			return fmt.Sprintf("%.1f ms", 1000*v)
		}
		if math.Abs(v) >= 1000 {
			return fmt.Sprintf("%.0f s", v)
		}
		return human(v) + " s"
	case "%":
		return fmt.Sprintf("%.1f%%", 100*v)
	case "/s":
		return human(v) + "/s"
	case "/min":
		return human(v) + "/min"
	}
	return human(v)
}

// human writes v with three significant digits, in the form a reader
// takes in at a glance: a k, M or G suffix from a thousand up (5.11k), and
// never an exponent (7.63e-06 is 0.00000763).
func human(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Sprint(v)
	}
	suffix := ""
	for _, u := range []struct {
		div float64
		s   string
	}{{1e9, "G"}, {1e6, "M"}, {1e3, "k"}} {
		if math.Abs(v) >= u.div {
			v, suffix = v/u.div, u.s
			break
		}
	}
	s := strconv.FormatFloat(v, 'g', 3, 64)
	if strings.Contains(s, "e") {
		if math.Abs(v) >= 1 { // 999.6 rounds to 1e+03
			s = strconv.FormatFloat(v, 'f', 0, 64)
		} else {
			s = strconv.FormatFloat(v, 'f', int(math.Ceil(-math.Log10(math.Abs(v))))+2, 64)
		}
	}
	return s + suffix
}

func fmtEstimate(f metrics.Figure, e metrics.Estimate) string {
	s := fmtValue(f, float64(e.Mean))
	if e.N > 1 && !math.IsNaN(float64(e.Lo)) {
		s += " ± " + fmtValue(f, float64(e.Hi-e.Mean))
	}
	return s
}

func fmtSpeedup(e metrics.Estimate) string {
	if math.IsNaN(float64(e.Mean)) {
		return "n/a"
	}
	if e.N > 1 && !math.IsNaN(float64(e.Lo)) {
		return fmt.Sprintf("%.2f× [%.2f, %.2f]", float64(e.Mean), float64(e.Lo), float64(e.Hi))
	}
	return fmt.Sprintf("%.2f×", float64(e.Mean))
}

// comparisonRows is the table every text format shows.
func comparisonRows(d ComparisonDoc) (header []string, rows [][]string) {
	header = []string{"figure"}
	for _, a := range d.Comparison.Arms {
		header = append(header, a.Label)
	}
	for _, f := range metrics.Figures {
		row := []string{f.Label}
		shown := false
		for _, a := range d.Comparison.Arms {
			e := a.Figures[f.Key]
			row = append(row, fmtEstimate(f, e))
			shown = shown || e.N > 0
		}
		if shown {
			rows = append(rows, row)
		}
	}
	sp := []string{"speedup vs " + d.Comparison.Baseline + " (makespan)"}
	for _, a := range d.Comparison.Arms {
		if a.Speedup.N > 1 && !math.IsNaN(float64(a.Speedup.Lo)) {
			sp[0] += ", 95% CI" // shown only where there is one
			break
		}
	}
	sig := []string{"significant?"}
	for _, a := range d.Comparison.Arms {
		sp = append(sp, fmtSpeedup(a.Speedup))
		switch {
		case a.Label == d.Comparison.Baseline:
			sig = append(sig, "baseline")
		case d.SingleChain && d.ArmsAre != "routing-logics":
			sig = append(sig, "no (single chain)")
		case math.IsNaN(float64(a.Speedup.Lo)) && d.Backend.Clock == "virtual" && d.ArmsAre != "runs":
			sig = append(sig, fmt.Sprintf("exact for seed %d", d.Seed))
		case math.IsNaN(float64(a.Speedup.Lo)):
			sig = append(sig, "unknown (one run)")
		case a.Significant:
			sig = append(sig, "yes")
		default:
			sig = append(sig, "no: the interval includes 1")
		}
	}
	return header, append(rows, sp, sig)
}

func comparisonTitle(d ComparisonDoc) string {
	ids := make([]string, 0, len(d.Traces))
	for _, t := range d.Traces {
		ids = append(ids, t.ID)
	}
	warm := ""
	if d.Warmup > 0 {
		warm = fmt.Sprintf(" (+%d warm-up)", d.Warmup)
	}
	return fmt.Sprintf("Comparison %s: %d arms × %d iteration(s)%s, %s; traces %s", d.ID, len(d.Arms), d.Iterations, warm, d.Method, elide(ids, 3, 1))
}

// WriteComparisonText writes the comparison table.
func WriteComparisonText(w io.Writer, d ComparisonDoc) error {
	if _, err := fmt.Fprintln(w, comparisonTitle(d)); err != nil {
		return err
	}
	if d.Answer != "" {
		if _, err := fmt.Fprintln(w, "Answer: "+d.Answer); err != nil {
			return err
		}
	}
	header, rows := comparisonRows(d)
	if err := Table(w, header, rows); err != nil {
		return err
	}
	if d.Note != "" {
		if _, err := fmt.Fprintln(w, "Note: "+d.Note); err != nil {
			return err
		}
	}
	if t := d.timingWarning(); t != "" {
		if _, err := fmt.Fprintln(w, t); err != nil {
			return err
		}
	}
	return nil
}

// timingWarning says which runs' timing was unreliable, "" if none.
func (d ComparisonDoc) timingWarning() string {
	if len(d.UnreliableTiming) == 0 {
		return ""
	}
	return fmt.Sprintf("Timing: UNRELIABLE in %d run(s) (%s): the machine added more than 1%% to the latencies the engines modeled; use --clock virtual or a larger --time-scale.",
		len(d.UnreliableTiming), elide(d.UnreliableTiming, 3, 1))
}

// WriteComparisonMarkdown writes the comparison as Markdown.
func WriteComparisonMarkdown(w io.Writer, d ComparisonDoc) error {
	header, rows := comparisonRows(d)
	var b strings.Builder
	fmt.Fprintf(&b, "## %s\n\n", comparisonTitle(d))
	if d.Answer != "" {
		fmt.Fprintf(&b, "**%s**\n\n", d.Answer)
	}
	b.WriteString("| " + strings.Join(header, " | ") + " |\n|" + strings.Repeat("---|", len(header)) + "\n")
	for _, r := range rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	if d.Note != "" {
		fmt.Fprintf(&b, "\n%s\n", d.Note)
	}
	if t := d.timingWarning(); t != "" {
		fmt.Fprintf(&b, "\n**%s**\n", t)
	}
	fmt.Fprintf(&b, "\nMeans over iterations with 95%% confidence intervals (Student's t). Times are %s.\n", timesWord(d.Backend))
	_, err := io.WriteString(w, b.String())
	return err
}

func timesWord(b Backend) string {
	if b.Clock == "virtual" {
		return "modeled seconds (virtual clock, exact)"
	}
	if b.TimeScale != 1 {
		return fmt.Sprintf("modeled seconds (time scale %g)", b.TimeScale)
	}
	return "measured seconds"
}

// WriteComparisonCSV writes one row per arm and figure.
func WriteComparisonCSV(w io.Writer, d ComparisonDoc) error {
	cw := csv.NewWriter(w)
	if err := cw.Write([]string{"arm", "figure", "unit", "n", "mean", "ci95_low", "ci95_high"}); err != nil {
		return err
	}
	num := csvNum
	for _, a := range d.Comparison.Arms {
		for _, f := range metrics.Figures {
			e := a.Figures[f.Key]
			if err := cw.Write([]string{a.Label, f.Key, f.Unit, strconv.Itoa(e.N), num(e.Mean), num(e.Lo), num(e.Hi)}); err != nil {
				return err
			}
		}
		e := a.Speedup
		if err := cw.Write([]string{a.Label, "speedup", "x", strconv.Itoa(e.N), num(e.Mean), num(e.Lo), num(e.Hi)}); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// csvNum writes a figure for CSV: empty when undefined.
func csvNum(f metrics.Float) string {
	if math.IsNaN(float64(f)) {
		return ""
	}
	return strconv.FormatFloat(float64(f), 'g', 8, 64)
}
