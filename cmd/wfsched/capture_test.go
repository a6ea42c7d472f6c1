package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/wfsched/wfsched/dag"
)

// canonical names a graph's nodes by agent, kind and rank among that
// agent's nodes of that kind (the ids of a converted capture are not the
// trace's), and lists its edges under those names.
func canonical(g *dag.Graph) (names map[string]string, edges []string) {
	names = map[string]string{}
	count := map[string]int{}
	for _, n := range g.Nodes {
		k := n.Agent + "/" + string(n.Kind)
		count[k]++
		names[n.ID] = fmt.Sprintf("%s%d", k, count[k])
	}
	for _, e := range g.Edges {
		edges = append(edges, fmt.Sprintf("%s -%s-> %s", names[e.From], e.Type, names[e.To]))
	}
	slices.Sort(edges)
	return names, edges
}

// TestCaptureRoundTrip replays a shipped trace through the router with
// capture on, converts the capture, and checks the rebuilt DAG is the
// trace's (nodes, agents, edges and their kinds, output tokens, the prompt
// tokens the replay sent, tool durations), in both content modes that keep
// what the rebuild needs; then replays the capture itself.
func TestCaptureRoundTrip(t *testing.T) {
	orig, err := dag.ReadFile(example, dag.Options{})
	if err != nil {
		t.Fatal(err)
	}
	origNames, origEdges := canonical(orig[0])
	for _, mode := range []string{"full", "hash"} {
		t.Run(mode, func(t *testing.T) {
			capDir, out := t.TempDir(), t.TempDir()
			code, _, stderr := run(t, "run", "--dag", example, "--capture", capDir, "--capture-content", mode, "--context", "live",
				"--instances", "2", "--time-scale", "0.25", "--out", out)
			if code != 0 {
				t.Fatalf("run with --capture: exit %d: %s", code, stderr)
			}
			conv := filepath.Join(t.TempDir(), "trace.json")
			if code, _, stderr := run(t, "convert", capDir, "-o", conv); code != 0 {
				t.Fatalf("convert: exit %d: %s", code, stderr)
			}
			got, err := dag.ReadFile(conv, dag.Options{})
			if err != nil || len(got) != 1 {
				t.Fatalf("converted capture: %d graphs, %v", len(got), err)
			}
			g := got[0]
			names, edges := canonical(g)
			if !slices.Equal(edges, origEdges) {
				t.Errorf("edges differ:\n got  %q\n want %q", edges, origEdges)
			}
			if g.Start.IsZero() {
				t.Error("the converted workflow has no start time")
			}
			// What the replay sent, per node, from its nodes.jsonl.
			sent := map[string][2]int{}
			f, err := os.Open(filepath.Join(runDir(t, out), "nodes.jsonl"))
			if err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(f)
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				var r struct {
					Node             string `json:"node"`
					PromptTokens     int    `json:"prompt_tokens"`
					CompletionTokens int    `json:"completion_tokens"`
				}
				json.Unmarshal(sc.Bytes(), &r)
				sent[r.Node] = [2]int{r.PromptTokens, r.CompletionTokens}
			}
			f.Close()
			byName := map[string]*dag.Node{}
			for _, n := range g.Nodes {
				byName[names[n.ID]] = n
			}
			for _, n := range orig[0].Nodes {
				c := byName[origNames[n.ID]]
				if c == nil {
					t.Errorf("node %s (%s) missing from the capture", n.ID, origNames[n.ID])
					continue
				}
				switch n.Kind {
				case dag.KindLLM:
					if c.InputTokens.N != sent[n.ID][0] || c.OutputTokens.N != n.OutputTokens.N || !c.InputTokens.Exact {
						t.Errorf("%s: captured %d/%d tokens, the replay sent %d and the trace says %d out", n.ID, c.InputTokens.N, c.OutputTokens.N, sent[n.ID][0], n.OutputTokens.N)
					}
				case dag.KindTool:
					// The gap between the calls, in modeled time: the tool's
					// duration plus the replay's overhead.
					if d := c.Duration.D() - n.Duration.D(); d < 0 || d > n.Duration.D()/4 {
						t.Errorf("%s: captured duration %v, recorded %v", n.ID, c.Duration.D(), n.Duration.D())
					}
				}
			}
			if len(g.Nodes) != len(orig[0].Nodes) {
				t.Errorf("%d nodes, the trace has %d", len(g.Nodes), len(orig[0].Nodes))
			}
			// The capture replays, from the folder as from the converted file.
			if code, stdout, stderr := run(t, "run", "--dag", capDir, "--out", t.TempDir()); code != 0 {
				t.Errorf("run --dag CAPTURE: exit %d: %s %s", code, stdout, stderr)
			}
		})
	}
}

// readWorkflows reads a run's workflows.jsonl.
func readWorkflows(t *testing.T, dir string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "workflows.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b map[string]any) int { return cmpFloat(a["arrival_s"].(float64), b["arrival_s"].(float64)) })
	return out
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Recorded arrivals: workflows captured arriving open-loop replay at their
// recorded starts (in modeled time), compressed by --speed, and a think
// time in a converted trace delays its call by as much on the virtual clock.
func TestRecordedArrivals(t *testing.T) {
	capDir, out := t.TempDir(), t.TempDir()
	// Time scale 0.5: a check in modeled seconds magnifies the wall
	// clock's noise by its inverse (at 0.1 a 42 ms stall of a loaded CI
	// machine running the race detector read as 0.42 s).
	code, _, stderr := run(t, "run", "--dag", example, "--capture", capDir, "--context", "live", "--instances", "2",
		"--time-scale", "0.5", "--arrival", "poisson", "--rate", "0.5", "--workflows", "3", "--out", out)
	if code != 0 {
		t.Fatalf("capture: exit %d: %s", code, stderr)
	}
	rec := readWorkflows(t, runDir(t, out))
	gs, err := dag.ReadFile(capDir, dag.Options{})
	if err != nil || len(gs) != len(rec) {
		t.Fatalf("the capture holds %d workflows (%v), the run had %d", len(gs), err, len(rec))
	}
	slices.SortFunc(gs, func(a, b *dag.Graph) int { return a.Start.Compare(b.Start) })
	for i, g := range gs {
		// The capture records when each workflow's first call reached the
		// router: when the run started it (its start_s: the scheduled
		// arrival plus any wait to dispatch).
		want := rec[i]["start_s"].(float64) - rec[0]["start_s"].(float64)
		if d := g.Start.Sub(gs[0].Start).Seconds() - want; d < -0.3 || d > 0.3 {
			t.Errorf("workflow %d: captured start %.3f s, scheduled %.3f s", i, g.Start.Sub(gs[0].Start).Seconds(), want)
		}
	}
	for _, speed := range []float64{1, 2} {
		rout := t.TempDir()
		if code, _, stderr := run(t, "run", "--dag", capDir, "--arrival", "replay", "--speed", fmt.Sprint(speed), "--out", rout); code != 0 {
			t.Fatalf("replay at speed %v: exit %d: %s", speed, code, stderr)
		}
		got := readWorkflows(t, runDir(t, rout))
		if len(got) != len(gs) {
			t.Fatalf("speed %v: %d workflows replayed, %d recorded", speed, len(got), len(gs))
		}
		for i := range got {
			// On the virtual clock, exactly the recorded starts over the speed.
			want := gs[i].Start.Sub(gs[0].Start).Seconds() / speed
			if d := got[i]["arrival_s"].(float64) - want; d < -1e-6 || d > 1e-6 {
				t.Errorf("speed %v, workflow %d: arrives at %.6f s, recorded start %.6f s", speed, i, got[i]["arrival_s"], want)
			}
		}
	}
	if code, _, stderr := run(t, "run", "--dag", capDir, "--arrival", "replay", "--workflows", "5"); code != 2 || !strings.Contains(stderr, "each recorded workflow once") {
		t.Errorf("replay with --workflows: exit %d: %s", code, stderr)
	}
}

// sweep --arrival replay scales the recorded starts so that each rate is
// their mean arrival rate.
func TestSweepRecordedArrivals(t *testing.T) {
	fixture := "../../dag/testdata/agents/capture.jsonl"
	gs, err := dag.ReadFile(fixture, dag.Options{})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(gs, func(a, b *dag.Graph) int { return a.Start.Compare(b.Start) })
	span := gs[len(gs)-1].Start.Sub(gs[0].Start).Seconds()
	base := float64(len(gs)-1) / span
	out := t.TempDir()
	if code, _, stderr := run(t, "sweep", "--dag", fixture, "--arrival", "replay", "--rates", "0.5,2", "--out", out); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	dir := runDir(t, out)
	for _, rate := range []float64{0.5, 2} {
		wfs := readWorkflows(t, filepath.Join(dir, "runs", fmt.Sprintf("parallel-r%g", rate)))
		if len(wfs) != len(gs) {
			t.Fatalf("rate %g: %d workflows", rate, len(wfs))
		}
		for i, w := range wfs {
			want := gs[i].Start.Sub(gs[0].Start).Seconds() * base / rate
			if d := w["arrival_s"].(float64) - want; d < -1e-6 || d > 1e-6 {
				t.Errorf("rate %g, workflow %d: arrives at %.6f s, want %.6f s", rate, i, w["arrival_s"], want)
			}
		}
	}
}
