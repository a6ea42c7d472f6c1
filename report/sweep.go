package report

import (
	"encoding/csv"
	"fmt"
	"html/template"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/wfsched/wfsched/metrics"
)

// SweepPoint is one run of a sweep: one arm at one offered rate.
type SweepPoint struct {
	Arm     string          `json:"arm"`
	Rate    float64         `json:"rate_per_s"` // offered workflows per modeled second
	Run     string          `json:"run"`        // the run's folder, relative to the sweep's
	Outcome string          `json:"outcome"`
	Summary metrics.Summary `json:"summary"`
}

// Saturation is where an arm saturated: the lowest swept rate at which it
// completed less than MinThroughput of the offered workflows inside the
// arrival window, or its median slowdown exceeded the threshold; and the
// highest rate below it that was judged not saturated.
type Saturation struct {
	Reached bool    `json:"reached"`
	Rate    float64 `json:"rate_per_s,omitempty"`
	Below   float64 `json:"last_unsaturated_rate_per_s,omitempty"`
	// Why says what showed saturation at Rate: "throughput" (the share
	// completed inside the arrival window is Completed) or "slowdown".
	Why       string  `json:"why,omitempty"`
	Completed float64 `json:"completed_share,omitempty"`
	// TooShort lists the rates whose runs were too short to judge: their
	// arrivals lasted less than ShortFactor times the traces' longest
	// idle completion time, so few workflows could finish inside the
	// window whatever the load (a small fixed --workflows count).
	TooShort []float64 `json:"too_short_rates_per_s,omitempty"`
	// PeakPerMin is the most workflows completed per minute while they
	// arrived, at any rate: the arm's measured capacity when the top rates
	// overload it.
	PeakPerMin float64 `json:"peak_workflows_per_min"`
}

// SweepDoc is a sweep: every arm at every rate, the idle completion times
// that slowdowns are measured against, and each arm's saturation point.
type SweepDoc struct {
	ID        string      `json:"id"`
	Created   time.Time   `json:"created"`
	Args      []string    `json:"args"`
	ArmsAre   string      `json:"arms_are"` // "policies" or "routing-logics"
	Arms      []string    `json:"arms"`
	Rates     []float64   `json:"rates_per_s"`
	Workflows int         `json:"workflows_per_run,omitempty"`
	DurationS float64     `json:"arrivals_for_s,omitempty"` // open loops stopped by time
	Arrival   string      `json:"arrival"`
	Traces    []TraceInfo `json:"traces"`
	Backend   Backend     `json:"backend"`
	// Idle maps arm, then trace, to the trace's completion time alone on
	// a fresh, idle server under that arm.
	Idle               map[string]map[string]float64 `json:"idle_completion_s"`
	SaturationSlowdown float64                       `json:"saturation_slowdown"`
	Saturation         map[string]Saturation         `json:"saturation"`
	// Answer says, in a sentence, where each arm saturates (computed by
	// Saturate); every output opens with it.
	Answer string       `json:"answer,omitempty"`
	Points []SweepPoint `json:"points"`
	// UnreliableTiming lists the runs whose wall clock fell behind the
	// model: their latencies are overstated.
	UnreliableTiming []string `json:"unreliable_timing,omitempty"`
}

// MinThroughput is the share of the offered workflows an arm must complete
// inside the arrival window not to count as saturated; ShortFactor how many
// times the longest idle completion time the arrival window must last for
// a run to be judged at all.
const (
	MinThroughput = 0.9
	ShortFactor   = 5
)

// Saturate fills d.Saturation from the points.
func (d *SweepDoc) Saturate() {
	d.Saturation = map[string]Saturation{}
	for _, arm := range d.Arms {
		idle := 0.0
		for _, v := range d.Idle[arm] {
			idle = max(idle, v)
		}
		var pts []SweepPoint
		for _, p := range d.Points {
			if p.Arm == arm {
				pts = append(pts, p)
			}
		}
		sort.Slice(pts, func(i, j int) bool { return pts[i].Rate < pts[j].Rate })
		var s Saturation
		for _, p := range pts {
			if v := float64(p.Summary.WindowPerMin); v > s.PeakPerMin {
				s.PeakPerMin = v
			}
		}
		for _, p := range pts {
			sd := p.Summary.Slowdown
			if sd != nil && sd.N > 0 && float64(sd.P50) > d.SaturationSlowdown {
				s.Reached, s.Rate, s.Why = true, p.Rate, "slowdown"
				break
			}
			win := float64(p.Summary.ArrivalWindowS)
			if win <= 0 || win < ShortFactor*idle {
				s.TooShort = append(s.TooShort, p.Rate)
				continue
			}
			offered := float64(p.Summary.WindowOfferedPerMin)
			if math.IsNaN(offered) || offered <= 0 {
				offered = 60 * p.Rate // summaries written before it was recorded
			}
			if share := float64(p.Summary.WindowPerMin) / offered; share < MinThroughput {
				s.Reached, s.Rate, s.Why, s.Completed = true, p.Rate, "throughput", share
				break
			}
			s.Below = p.Rate
		}
		d.Saturation[arm] = s
	}
	d.Answer = d.answer()
}

// answer is where each arm saturates, as one sentence.
func (d SweepDoc) answer() string {
	var parts []string
	for _, arm := range d.Arms {
		s := d.Saturation[arm]
		switch {
		case s.Reached && s.Below > 0:
			// Rates between the two that were too short to judge leave the
			// interval open there: the sentence says so, as the table does.
			var gap []float64
			for _, r := range s.TooShort {
				if r > s.Below && r < s.Rate {
					gap = append(gap, r)
				}
			}
			part := fmt.Sprintf("%s saturates between %.3g and %.3g workflows/s", arm, s.Below, s.Rate)
			if len(gap) > 0 {
				part += fmt.Sprintf(" (%s between them too short to judge: sweep with --duration to narrow it)", rateList(gap))
			}
			parts = append(parts, part)
		case s.Reached && len(s.TooShort) > 0:
			parts = append(parts, fmt.Sprintf("%s is saturated at %.3g workflows/s (lower rates too short to judge)", arm, s.Rate))
		case s.Reached:
			parts = append(parts, fmt.Sprintf("%s is saturated already at the lowest rate, %.3g workflows/s", arm, s.Rate))
		case s.Below > 0:
			parts = append(parts, fmt.Sprintf("%s does not saturate up to %.3g workflows/s", arm, s.Below))
		default:
			parts = append(parts, fmt.Sprintf("%s: cannot tell (runs too short; sweep with --duration)", arm))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return strings.Join(parts, "; ") + "."
}

func (d SweepDoc) title() string {
	ids := make([]string, 0, len(d.Traces))
	for _, t := range d.Traces {
		ids = append(ids, t.ID)
	}
	per := fmt.Sprintf("%d workflows per run", d.Workflows)
	if d.Workflows == 0 {
		per = fmt.Sprintf("arrivals for %gs per run", d.DurationS)
	} else if d.DurationS > 0 {
		per += fmt.Sprintf(" or arrivals for %gs", d.DurationS)
	}
	return fmt.Sprintf("Sweep %s: %d %s × %d rates, %s (%s); traces %s",
		d.ID, len(d.Arms), d.ArmsAre, len(d.Rates), per, d.Arrival, elide(ids, 3, 1))
}

func (d SweepDoc) rows() (header []string, rows [][]string) {
	wct := "completion p50/p90/p99 (s)"
	header = []string{"arm", "rate/s", "offered/min", "done/min while arriving", wct, "slowdown p50/p90", "queue p50 (s)", "wf hit", "goodput/min", "failed"}
	pct := func(v metrics.Float) string { return num(v*100, "%.1f%%") }
	f := num
	for _, p := range d.Points {
		s := p.Summary
		slow := "n/a"
		if s.Slowdown != nil && s.Slowdown.N > 0 {
			slow = f(s.Slowdown.P50, "%.2f") + " / " + f(s.Slowdown.P90, "%.2f")
		}
		failed := strconv.Itoa(s.Failed)
		if p.Outcome != "completed" {
			failed += " (" + p.Outcome + ")"
		}
		rows = append(rows, []string{p.Arm, strconv.FormatFloat(p.Rate, 'g', 4, 64), fmt.Sprintf("%.1f", 60*p.Rate), f(s.WindowPerMin, "%.1f"),
			f(s.Completion.P50, "%.2f") + " / " + f(s.Completion.P90, "%.2f") + " / " + f(s.Completion.P99, "%.2f"),
			slow, f(s.QueueDelay.P50, "%.2f"), pct(s.WorkflowHitRate.Mean), f(s.WorkflowGoodputMin, "%.1f"), failed})
	}
	return header, rows
}

func rateList(rs []float64) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = strconv.FormatFloat(r, 'g', 3, 64)
	}
	return strings.Join(parts, ", ")
}

func (d SweepDoc) saturationLines() []string {
	var out []string
	for _, arm := range d.Arms {
		s := d.Saturation[arm]
		peak := fmt.Sprintf("; at most %.1f workflows/min completed while they arrived", s.PeakPerMin)
		why := fmt.Sprintf("median slowdown above %gx at %.3g", d.SaturationSlowdown, s.Rate)
		if s.Why == "throughput" {
			why = fmt.Sprintf("at %.3g it completed %.0f%% of the offered workflows while they arrived, under %.0f%%", s.Rate, 100*s.Completed, 100*MinThroughput)
		}
		short := ""
		if len(s.TooShort) > 0 {
			short = fmt.Sprintf("; runs too short to judge at %s workflows/s (arrivals lasted less than %dx the longest idle completion time: sweep with --duration)", rateList(s.TooShort), ShortFactor)
		}
		switch {
		case !s.Reached && s.Below == 0:
			out = append(out, fmt.Sprintf("%s: cannot tell%s%s", arm, short, peak))
		case !s.Reached:
			out = append(out, fmt.Sprintf("%s: not saturated up to %.3g workflows/s (completed at least %.0f%% of the offered workflows while they arrived, median slowdown at most %gx)%s%s",
				arm, s.Below, 100*MinThroughput, d.SaturationSlowdown, short, peak))
		case s.Below == 0:
			out = append(out, fmt.Sprintf("%s: saturated already at the lowest rate judged, %.3g workflows/s (%s)%s%s", arm, s.Rate, why, short, peak))
		default:
			out = append(out, fmt.Sprintf("%s: saturates between %.3g and %.3g workflows/s (%s)%s%s", arm, s.Below, s.Rate, why, short, peak))
		}
	}
	return out
}

// WriteSweepText writes the sweep's table and saturation points.
func WriteSweepText(w io.Writer, d SweepDoc) error {
	header, rows := d.rows()
	if _, err := fmt.Fprintln(w, d.title()); err != nil {
		return err
	}
	if d.Answer != "" {
		if _, err := fmt.Fprintln(w, "Answer: "+d.Answer); err != nil {
			return err
		}
	}
	if err := Table(w, header, rows); err != nil {
		return err
	}
	if _, err := fmt.Fprintf(w, "Saturation:\n  %s\nTimes are %s.\n", strings.Join(d.saturationLines(), "\n  "), timesWord(d.Backend)); err != nil {
		return err
	}
	if len(d.UnreliableTiming) > 0 {
		_, err := fmt.Fprintln(w, ComparisonDoc{UnreliableTiming: d.UnreliableTiming}.timingWarning())
		return err
	}
	return nil
}

// WriteSweepMarkdown writes the sweep as Markdown, its plots first.
func WriteSweepMarkdown(w io.Writer, d SweepDoc) error {
	var b strings.Builder
	fmt.Fprintf(&b, "## %s\n\n", d.title())
	if d.Answer != "" {
		fmt.Fprintf(&b, "**%s**\n\n", d.Answer)
	}
	fmt.Fprintf(&b, "![completion time against offered load](sweep-completion.svg)\n\n![throughput against offered load](sweep-throughput.svg)\n\n")
	header, rows := d.rows()
	b.WriteString("| " + strings.Join(header, " | ") + " |\n|" + strings.Repeat("---|", len(header)) + "\n")
	for _, r := range rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	b.WriteString("\nSaturation:\n\n")
	for _, l := range d.saturationLines() {
		b.WriteString("- " + l + "\n")
	}
	fmt.Fprintf(&b, "\nSlowdown is each workflow's completion time over its trace's alone on an idle server. Times are %s.\n", timesWord(d.Backend))
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteSweepCSV writes one row per point.
func WriteSweepCSV(w io.Writer, d SweepDoc) error {
	cw := csv.NewWriter(w)
	head := []string{"arm", "rate_per_s", "outcome", "workflows", "completed", "failed", "workflows_per_min", "window_workflows_per_min", "goodput_per_min",
		"completion_p50_s", "completion_p90_s", "completion_p99_s", "slowdown_p50", "slowdown_p90", "queue_delay_p50_s", "workflow_hit_rate_mean", "ttft_p50_s", "run"}
	if err := cw.Write(head); err != nil {
		return err
	}
	num := csvNum
	for _, p := range d.Points {
		s := p.Summary
		slow50, slow90 := "", ""
		if s.Slowdown != nil {
			slow50, slow90 = num(s.Slowdown.P50), num(s.Slowdown.P90)
		}
		if err := cw.Write([]string{p.Arm, strconv.FormatFloat(p.Rate, 'g', 8, 64), p.Outcome, strconv.Itoa(s.Workflows), strconv.Itoa(s.Completed),
			strconv.Itoa(s.Failed), num(s.WorkflowsPerMin), num(s.WindowPerMin), num(s.WorkflowGoodputMin), num(s.Completion.P50), num(s.Completion.P90), num(s.Completion.P99),
			slow50, slow90, num(s.QueueDelay.P50), num(s.WorkflowHitRate.Mean), num(s.TTFT.P50), p.Run}); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// sweepFigures draws completion time (p50 solid, p99 dashed) and
// completed workflows per minute against the offered rate, a line per arm.
func sweepFigures(d SweepDoc) ([]Figure, error) {
	wct := plot.New()
	wct.Title.Text = "Workflow completion time against offered load (p50 solid, p99 dashed)"
	wct.X.Label.Text = "offered workflows per second"
	wct.Y.Label.Text = "seconds"
	thr := plot.New()
	thr.Title.Text = "Workflows completed per minute while they arrived, against offered load"
	thr.X.Label.Text = "offered workflows per second"
	thr.Y.Label.Text = "workflows per minute"
	for _, p := range []*plot.Plot{wct, thr} {
		p.X.Min, p.Y.Min = 0, 0
	}
	var maxRate float64
	var wctTips, thrTips []tip
	for i, arm := range d.Arms {
		var p50, p99, done plotter.XYs
		for _, p := range d.Points {
			if p.Arm != arm {
				continue
			}
			maxRate = math.Max(maxRate, p.Rate)
			s := p.Summary
			at := fmt.Sprintf("%s at %.3g workflows/s", arm, p.Rate)
			if v := float64(s.Completion.P50); !math.IsNaN(v) {
				p50 = append(p50, plotter.XY{X: p.Rate, Y: v})
				wctTips = append(wctTips, pointTip(p.Rate, v, fmt.Sprintf("%s: completion p50 %.2f s", at, v)))
			}
			if v := float64(s.Completion.P99); !math.IsNaN(v) {
				p99 = append(p99, plotter.XY{X: p.Rate, Y: v})
				wctTips = append(wctTips, pointTip(p.Rate, v, fmt.Sprintf("%s: completion p99 %.2f s", at, v)))
			}
			if v := float64(s.WindowPerMin); !math.IsNaN(v) {
				done = append(done, plotter.XY{X: p.Rate, Y: v})
				thrTips = append(thrTips, pointTip(p.Rate, v, fmt.Sprintf("%s: %.1f of %.1f offered per minute completed while they arrived", at, v, 60*p.Rate)))
			}
		}
		col := palette[i%len(palette)]
		for _, l := range []struct {
			p      *plot.Plot
			xy     plotter.XYs
			dashed bool
			legend string
		}{{wct, p50, false, arm}, {wct, p99, true, ""}, {thr, done, false, arm}} {
			if len(l.xy) == 0 {
				continue
			}
			line, points, err := plotter.NewLinePoints(l.xy)
			if err != nil {
				return nil, err
			}
			line.Color, points.Color = col, col
			line.Width = vg.Points(1.5)
			if l.dashed {
				line.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
			}
			l.p.Add(line, points)
			if l.legend != "" {
				l.p.Legend.Add(l.legend, line)
			}
		}
	}
	// The offered load itself, for reference: a system keeping up sits on it.
	ideal, err := plotter.NewLine(plotter.XYs{{X: 0, Y: 0}, {X: maxRate, Y: 60 * maxRate}})
	if err != nil {
		return nil, err
	}
	ideal.Color = palette[len(palette)-1]
	ideal.Dashes = []vg.Length{vg.Points(2), vg.Points(2)}
	thr.Add(ideal)
	thr.Legend.Add("offered", ideal)
	return []Figure{
		{Name: "sweep-completion", Title: wct.Title.Text, plot: wct, w: vg.Points(pageWidth), h: vg.Points(320), tips: wctTips},
		{Name: "sweep-throughput", Title: thr.Title.Text, plot: thr, w: vg.Points(pageWidth), h: vg.Points(320), tips: thrTips},
	}, nil
}

var sweepPage = template.Must(template.Must(pageStyle.Clone()).New("sweep").Parse(`<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>{{.Title}}</title>
{{template "style"}}</head>
<body>
<h1>{{.Title}}</h1>
{{if .Answer}}<p class="answer">{{.Answer}}</p>{{end}}
{{range .Figures}}<h2>{{.Title}}</h2>
<figure>{{.SVG}}</figure>
{{end}}<ul>{{range .Saturation}}<li>{{.}}</li>{{end}}</ul>
<table>
<tr>{{range .Header}}<th>{{.}}</th>{{end}}</tr>
{{range .Rows}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>
{{end}}</table>
<p class="meta">Slowdown is each workflow's completion time over its trace's alone on an idle server; percentiles are numpy's linear definition. Times are {{.Times}}.</p>
</body></html>
`))

// WriteSweepFiles writes sweep.json, sweep.csv, sweep.md, report.html and
// the plots as SVG (and PNG when png is set) into dir.
func WriteSweepFiles(dir string, d SweepDoc, png bool) error {
	figs, err := sweepFigures(d)
	if err != nil {
		return err
	}
	header, rows := d.rows()
	view := struct {
		Title, Times, Answer string
		Figures              []figureView
		Saturation           []string
		Header               []string
		Rows                 [][]string
	}{Title: d.title(), Times: timesWord(d.Backend), Answer: d.Answer, Saturation: d.saturationLines(), Header: header, Rows: rows}
	for _, f := range figs {
		svg, err := f.Render("svg", false) // a file of its own: with its title
		if err != nil {
			return fmt.Errorf("render %s: %w", f.Name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, f.Name+".svg"), svg, 0o644); err != nil {
			return err
		}
		if svg, err = f.Render("svg", true); err != nil {
			return fmt.Errorf("render %s: %w", f.Name, err)
		}
		view.Figures = append(view.Figures, figureView{Title: f.Title, SVG: inlineSVG(svg)})
		if png {
			b, err := f.Render("png", false)
			if err != nil {
				return fmt.Errorf("render %s: %w", f.Name, err)
			}
			if err := os.WriteFile(filepath.Join(dir, f.Name+".png"), b, 0o644); err != nil {
				return err
			}
		}
	}
	for _, f := range []struct {
		name string
		fn   func(io.Writer) error
	}{
		{"sweep.json", func(w io.Writer) error { return WriteJSON(w, d) }},
		{"sweep.csv", func(w io.Writer) error { return WriteSweepCSV(w, d) }},
		{"sweep.md", func(w io.Writer) error { return WriteSweepMarkdown(w, d) }},
		{"report.html", func(w io.Writer) error { return sweepPage.Execute(w, view) }},
	} {
		if err := WriteFile(filepath.Join(dir, f.name), f.fn); err != nil {
			return fmt.Errorf("write %s: %w", f.name, err)
		}
	}
	return nil
}
