package report

import (
	"bytes"
	"fmt"
	"image/color"
	"math"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/wfsched/wfsched/dag"
	"github.com/wfsched/wfsched/scheduler"
)

// Figure is a rendered plot.
type Figure struct {
	Name  string // file name without extension
	Title string
	plot  *plot.Plot
	w, h  vg.Length
}

// Render writes the figure as "svg" or "png".
func (f Figure) Render(format string) ([]byte, error) {
	wt, err := f.plot.WriterTo(f.w, f.h, format)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if _, err := wt.WriteTo(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

var palette = []color.RGBA{{76, 120, 168, 255}, {245, 133, 24, 255}, {84, 162, 75, 255}, {228, 87, 86, 255}, {114, 183, 178, 255}, {178, 121, 162, 255}}

var kindColor = map[string]color.RGBA{"llm": {76, 120, 168, 255}, "tool": {245, 133, 24, 255}, "other": {160, 160, 160, 255}}

// makespanFigure draws each arm's mean makespan with its 95% interval.
func makespanFigure(d ComparisonDoc) (Figure, error) {
	p := plot.New()
	p.Title.Text = "Makespan per workflow (mean, 95% CI)"
	p.Y.Label.Text = "seconds"
	var vals plotter.Values
	var errs plotter.YErrors
	var labels []string
	for _, a := range d.Comparison.Arms {
		e := a.Figures["makespan_s"]
		m := float64(e.Mean)
		if math.IsNaN(m) {
			m = 0
		}
		vals = append(vals, m)
		lo, hi := 0.0, 0.0
		if !math.IsNaN(float64(e.Lo)) {
			lo, hi = m-float64(e.Lo), float64(e.Hi)-m
		}
		errs = append(errs, struct{ Low, High float64 }{lo, hi})
		labels = append(labels, a.Label)
	}
	bars, err := plotter.NewBarChart(vals, vg.Points(36))
	if err != nil {
		return Figure{}, err
	}
	bars.Color = palette[0]
	bars.LineStyle.Width = 0
	p.Add(bars)
	pts := make(plotter.XYs, len(vals))
	for i, v := range vals {
		pts[i] = plotter.XY{X: float64(i), Y: v}
	}
	eb, err := plotter.NewYErrorBars(struct {
		plotter.XYer
		plotter.YErrorer
	}{pts, errs})
	if err != nil {
		return Figure{}, err
	}
	eb.LineStyle.Width = vg.Points(1.5)
	p.Add(eb)
	p.NominalX(labels...)
	p.Y.Min = 0
	return Figure{Name: "makespan", Title: p.Title.Text, plot: p, w: vg.Points(120 + 90*float64(len(labels))), h: vg.Points(260)}, nil
}

// cdfFigure draws the empirical CDF of a per-request figure for each arm.
func cdfFigure(name, title string, arms []string, samples map[string][]float64) (Figure, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "milliseconds"
	p.Y.Label.Text = "fraction of requests"
	p.Y.Min, p.Y.Max = 0, 1
	p.Legend.Top = false
	p.Legend.Left = false
	for i, arm := range arms {
		xs := append([]float64(nil), samples[arm]...)
		if len(xs) == 0 {
			continue
		}
		sort.Float64s(xs)
		pts := make(plotter.XYs, 0, 2*len(xs))
		for k, x := range xs {
			pts = append(pts, plotter.XY{X: 1000 * x, Y: float64(k) / float64(len(xs))}, plotter.XY{X: 1000 * x, Y: float64(k+1) / float64(len(xs))})
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return Figure{}, err
		}
		l.Color = palette[i%len(palette)]
		l.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(arm, l)
	}
	return Figure{Name: name, Title: title, plot: p, w: vg.Points(460), h: vg.Points(280)}, nil
}

// gantt is a plotter of node bars: a lane per agent, colour by kind, the
// critical path outlined in red.
type gantt struct {
	bars  []ganttBar
	lanes int
}

type ganttBar struct {
	lane       int
	start, end float64
	kind       string
	critical   bool
}

func (g *gantt) Plot(c draw.Canvas, plt *plot.Plot) {
	tx, ty := plt.Transforms(&c)
	for _, b := range g.bars {
		x0, x1 := tx(b.start), tx(b.end)
		if x1-x0 < vg.Points(0.8) {
			x1 = x0 + vg.Points(0.8)
		}
		y0, y1 := ty(float64(b.lane)-0.35), ty(float64(b.lane)+0.35)
		rect := []vg.Point{{X: x0, Y: y0}, {X: x1, Y: y0}, {X: x1, Y: y1}, {X: x0, Y: y1}}
		col, ok := kindColor[b.kind]
		if !ok {
			col = kindColor["other"]
		}
		c.FillPolygon(col, rect)
		if b.critical {
			c.StrokeLines(draw.LineStyle{Color: color.RGBA{200, 0, 0, 255}, Width: vg.Points(1.5)}, append(rect, rect[0]))
		}
	}
}

func (g *gantt) DataRange() (xmin, xmax, ymin, ymax float64) {
	xmin, xmax = math.Inf(1), math.Inf(-1)
	for _, b := range g.bars {
		xmin, xmax = math.Min(xmin, b.start), math.Max(xmax, b.end)
	}
	if len(g.bars) == 0 {
		xmin, xmax = 0, 1
	}
	return xmin, xmax, -0.5, float64(g.lanes) - 0.5
}

// ganttFigure draws workflow wf of a run: its nodes' dispatch to end.
func ganttFigure(name, title string, rd RunData, wf string) (Figure, bool, error) {
	var nodes []scheduler.NodeResult
	for _, n := range rd.Nodes {
		if n.Workflow == wf && n.Status != scheduler.StatusSkipped {
			nodes = append(nodes, n)
		}
	}
	if len(nodes) == 0 {
		return Figure{}, false, nil
	}
	critical := criticalNodes(rd, wf, nodes)
	lanes := map[string]int{}
	var names []string
	g := &gantt{}
	for _, n := range nodes {
		agent := n.Agent
		if agent == "" {
			agent = "(none)"
		}
		l, ok := lanes[agent]
		if !ok {
			l = len(names)
			lanes[agent] = l
			names = append(names, agent)
		}
		g.bars = append(g.bars, ganttBar{lane: l, start: n.StartS, end: n.EndS, kind: n.Kind, critical: critical[n.Node]})
	}
	g.lanes = len(names)
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "seconds since the run started"
	p.Add(g)
	p.NominalY(names...)
	llm, _ := plotter.NewPolygon(plotter.XYs{})
	llm.Color = kindColor["llm"]
	tool, _ := plotter.NewPolygon(plotter.XYs{})
	tool.Color = kindColor["tool"]
	cp, _ := plotter.NewPolygon(plotter.XYs{})
	cp.Color = color.White
	cp.LineStyle = draw.LineStyle{Color: color.RGBA{200, 0, 0, 255}, Width: vg.Points(1.5)}
	p.Legend.Add("LLM call", llm)
	p.Legend.Add("tool", tool)
	p.Legend.Add("critical path", cp)
	p.Legend.Top = true
	h := vg.Points(90 + 22*float64(len(names)))
	return Figure{Name: name, Title: title, plot: p, w: vg.Points(720), h: h}, true, nil
}

// criticalNodes marks the nodes on the heaviest chain of measured service
// times, when the run saved its traces.
func criticalNodes(rd RunData, wf string, nodes []scheduler.NodeResult) map[string]bool {
	out := map[string]bool{}
	var g *dag.Graph
	for _, cand := range rd.Graphs {
		if cand.ID == nodes[0].Trace {
			g = cand
			break
		}
	}
	if g == nil {
		return out
	}
	topo, err := dag.Analyze(g)
	if err != nil {
		return out
	}
	service := make([]float64, len(g.Nodes))
	idx := g.Index()
	for _, n := range nodes {
		if v, ok := idx[n.Node]; ok {
			service[v] = n.Service()
		}
	}
	path, _ := dag.CriticalPath(topo, service)
	for _, v := range path.Nodes {
		out[g.Nodes[v].ID] = true
	}
	return out
}

// figures builds every plot of a comparison: makespan bars, TTFT and E2E
// CDFs, and a Gantt timeline of the first workflow of each arm's first run.
func figures(d ComparisonDoc, runs map[string][]RunData) ([]Figure, error) {
	var out []Figure
	if len(d.Comparison.Arms) > 1 {
		f, err := makespanFigure(d)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	ttft, e2e := map[string][]float64{}, map[string][]float64{}
	for _, arm := range d.Arms {
		for _, rd := range runs[arm] {
			for _, n := range rd.Nodes {
				if n.Kind == "llm" && n.Status == scheduler.StatusOK {
					ttft[arm] = append(ttft[arm], n.TTFTS)
					e2e[arm] = append(e2e[arm], n.E2ES)
				}
			}
		}
	}
	for _, c := range []struct {
		name, title string
		s           map[string][]float64
	}{{"cdf-ttft", "Time to first token (CDF)", ttft}, {"cdf-e2e", "End-to-end latency (CDF)", e2e}} {
		f, err := cdfFigure(c.name, c.title, d.Arms, c.s)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	for i, arm := range d.Arms {
		if len(runs[arm]) == 0 {
			continue
		}
		f, ok, err := ganttFigure(fmt.Sprintf("gantt-%d", i), "Timeline: "+arm+", workflow wf-00000", runs[arm][0], "wf-00000")
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, f)
		}
	}
	return out, nil
}
