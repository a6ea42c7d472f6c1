package report

import (
	"bytes"
	"fmt"
	"html"
	"image/color"
	"math"
	"regexp"
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
	// tips are what hovering over the data shows on a page: a point, bar
	// or node and its value.
	tips []tip
}

// tip is a hover text over a rectangle in data coordinates (a point when
// the corners coincide).
type tip struct {
	x0, y0, x1, y1 float64
	text           string
}

// pointTip is a tip over one point.
func pointTip(x, y float64, text string) tip { return tip{x, y, x, y, text} }

// Render writes the figure as "svg" or "png". The legend is drawn in a
// column beside the data, never over it. For a page (onPage, SVG) the
// title is left out (the page heads the figure), the text takes the
// page's font, and every tip becomes an SVG <title> over its point, bar or
// node, which browsers show on hover with no script.
func (f Figure) Render(format string, onPage bool) ([]byte, error) {
	p := *f.plot // a copy: the figure renders again in other formats
	legend := p.Legend
	p.Legend = plot.NewLegend()
	if onPage {
		p.Title.Text = ""
	}
	cw, err := draw.NewFormattedCanvas(f.w, f.h, format)
	if err != nil {
		return nil, err
	}
	c := draw.New(cw)
	area := c
	legend.Top, legend.Left = true, false
	if width := legend.Rectangle(c).Size().X; width > 0 {
		const gap = 8
		area.Max.X -= width + 2*gap
		col := c
		col.Min.X = area.Max.X + gap
		if p.Title.Text != "" { // level with the data, under the title
			col.Max.Y -= p.Title.TextStyle.Height(p.Title.Text) + p.Title.Padding
		}
		legend.Draw(col)
	}
	p.Draw(area)
	var overlay bytes.Buffer
	if onPage && format == "svg" && len(f.tips) > 0 {
		da := p.DataCanvas(area)
		tx, ty := p.Transforms(&da)
		overlay.WriteString(`<g fill="transparent" stroke="none">` + "\n")
		for _, t := range f.tips {
			x0, x1 := min(tx(t.x0), tx(t.x1)), max(tx(t.x0), tx(t.x1))
			y0, y1 := min(ty(t.y0), ty(t.y1)), max(ty(t.y0), ty(t.y1))
			if x1-x0 < 6 { // a point or a sliver: something to hover on
				mid := (x0 + x1) / 2
				x0, x1 = mid-3, mid+3
			}
			if y1-y0 < 6 {
				mid := (y0 + y1) / 2
				y0, y1 = mid-3, mid+3
			}
			fmt.Fprintf(&overlay, `<rect x="%.2f" y="%.2f" width="%.2f" height="%.2f"><title>%s</title></rect>`+"\n",
				x0.Points(), y0.Points(), (x1 - x0).Points(), (y1 - y0).Points(), html.EscapeString(t.text))
		}
		overlay.WriteString("</g>\n")
	}
	var b bytes.Buffer
	if _, err := cw.WriteTo(&b); err != nil {
		return nil, err
	}
	out := b.Bytes()
	if onPage && format == "svg" {
		out = fontFamily.ReplaceAll(out, []byte("font-family:inherit"))
		// The overlay goes inside the group that puts the origin at the
		// bottom left, as the data's coordinates expect.
		if k := bytes.LastIndex(out, []byte("</g>")); k >= 0 && overlay.Len() > 0 {
			out = append(out[:k:k], append(overlay.Bytes(), out[k:]...)...)
		}
	}
	return out, nil
}

var fontFamily = regexp.MustCompile(`font-family:[^;"]*`)

// maxTips bounds the tooltips of one series of a dense figure (a CDF's
// arm, a server's timeline), so that a page stays light.
const maxTips = 200

// pageWidth is the width figures are drawn at, in points: about the
// report page's text width, so that on the page their text is the size of
// the page's (pages never scale a figure up).
const pageWidth = 760

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
	var tips []tip
	for i, a := range d.Comparison.Arms {
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
		text := fmt.Sprintf("%s: %.3g s", a.Label, m)
		if !math.IsNaN(float64(e.Lo)) {
			text += fmt.Sprintf(" (95%% CI %.3g to %.3g s)", float64(e.Lo), float64(e.Hi))
		}
		tips = append(tips, tip{float64(i) - 0.3, 0, float64(i) + 0.3, m, text})
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
	return Figure{Name: "makespan", Title: p.Title.Text, plot: p, w: vg.Points(min(pageWidth, 200+110*float64(len(labels)))), h: vg.Points(260), tips: tips}, nil
}

// cdfFigure draws the empirical CDF of a per-request figure for each arm.
func cdfFigure(name, title string, arms []string, samples map[string][]float64) (Figure, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "milliseconds"
	p.Y.Label.Text = "fraction of requests"
	p.Y.Min, p.Y.Max = 0, 1
	p.X.Min = 0 // latencies from zero, so that gaps look as large as they are
	var tips []tip
	for i, arm := range arms {
		xs := append([]float64(nil), samples[arm]...)
		if len(xs) == 0 {
			continue
		}
		sort.Float64s(xs)
		// A tip on every request, or on maxTips evenly spread ones when
		// there are more (a page must stay light).
		step := max(1, (len(xs)+maxTips-1)/maxTips)
		for k := 0; k < len(xs); k += step {
			q := float64(k+1) / float64(len(xs))
			tips = append(tips, pointTip(1000*xs[k], q, fmt.Sprintf("%s: %.1f ms; %.1f%% of requests at most this", arm, 1000*xs[k], 100*q)))
		}
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
	return Figure{Name: name, Title: title, plot: p, w: vg.Points(pageWidth), h: vg.Points(300), tips: tips}, nil
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
	var tips []tip
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
		text := fmt.Sprintf("%s (%s, %s): %.2f to %.2f s", n.Node, n.Kind, agent, n.StartS, n.EndS)
		if critical[n.Node] {
			text += ", on the critical path"
		}
		tips = append(tips, tip{n.StartS, float64(l) - 0.35, n.EndS, float64(l) + 0.35, text})
	}
	g.lanes = len(names)
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "seconds since the run started"
	p.X.Min = 0
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
	h := vg.Points(90 + 22*float64(len(names)))
	return Figure{Name: name, Title: title, plot: p, w: vg.Points(pageWidth), h: h, tips: tips}, true, nil
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
		tl, err := timelineFigures(fmt.Sprintf("backends-%d", i), arm, runs[arm][0])
		if err != nil {
			return nil, err
		}
		out = append(out, tl...)
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

// timelineFigures draws, for a run on several servers, each server's state
// over time: requests running (solid) and waiting (dashed), then KV-cache
// use (solid) and the prefix-cache hit rate of each interval (dashed), a
// colour per server, so that a reader sees why one routing logic wins.
func timelineFigures(name, arm string, rd RunData) ([]Figure, error) {
	util := rd.Report.Summary.Utilisation
	if len(util) < 2 {
		return nil, nil
	}
	load, cache := plot.New(), plot.New()
	load.Title.Text = "Requests running (solid) and waiting (dashed) per server: " + arm
	load.Y.Label.Text = "requests"
	cache.Title.Text = "KV-cache use (solid) and prefix-cache hit rate (dashed) per server: " + arm
	cache.Y.Label.Text = "fraction"
	cache.Y.Max = 1
	var loadTips, cacheTips []tip
	for _, p := range []*plot.Plot{load, cache} {
		p.X.Label.Text = "seconds since the run started"
		p.X.Min, p.Y.Min = 0, 0
	}
	for i, u := range util {
		if len(u.Timeline) == 0 {
			continue
		}
		col := palette[i%len(palette)]
		server := fmt.Sprintf("server %d (%s)", i+1, u.URL)
		var run, wait, kv, hit plotter.XYs
		for k, smp := range u.Timeline {
			run = append(run, plotter.XY{X: smp.T, Y: smp.Running})
			wait = append(wait, plotter.XY{X: smp.T, Y: smp.Waiting})
			kv = append(kv, plotter.XY{X: smp.T, Y: smp.KVUsage})
			if !math.IsNaN(float64(smp.HitRate)) {
				hit = append(hit, plotter.XY{X: smp.T, Y: float64(smp.HitRate)})
			}
			if k%max(1, (len(u.Timeline)+maxTips-1)/maxTips) == 0 { // at most maxTips times per server
				loadTips = append(loadTips, pointTip(smp.T, smp.Running, fmt.Sprintf("%s at %.1f s: %.0f running, %.0f waiting", server, smp.T, smp.Running, smp.Waiting)))
				text := fmt.Sprintf("%s at %.1f s: KV cache %.0f%% used", server, smp.T, 100*smp.KVUsage)
				if !math.IsNaN(float64(smp.HitRate)) {
					text += fmt.Sprintf(", %.0f%% of prompt tokens cached since the last sample", 100*float64(smp.HitRate))
				}
				cacheTips = append(cacheTips, pointTip(smp.T, smp.KVUsage, text))
			}
		}
		for _, l := range []struct {
			p      *plot.Plot
			xy     plotter.XYs
			dashed bool
		}{{load, run, false}, {load, wait, true}, {cache, kv, false}, {cache, hit, true}} {
			if len(l.xy) == 0 {
				continue
			}
			line, err := plotter.NewLine(l.xy)
			if err != nil {
				return nil, err
			}
			line.Color, line.Width = col, vg.Points(1.2)
			if l.dashed {
				line.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
			} else {
				l.p.Legend.Add(fmt.Sprintf("server %d", i+1), line)
			}
			l.p.Add(line)
		}
	}
	return []Figure{
		{Name: name + "-load", Title: load.Title.Text, plot: load, w: vg.Points(pageWidth), h: vg.Points(260), tips: loadTips},
		{Name: name + "-cache", Title: cache.Title.Text, plot: cache, w: vg.Points(pageWidth), h: vg.Points(260), tips: cacheTips},
	}, nil
}
