package dag

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/wfsched/wfsched/internal/testenv"
)

// sharedFiles lists every trace file under the shared folder, by format.
func sharedFiles(t *testing.T) map[string][]string {
	dir := testenv.SharedTraces(t)
	files := map[string][]string{}
	for format, pattern := range map[string]string{
		"dag-json":     "dag-json/*/*.json",
		"appworld-log": "appworld-raw/*.txt",
		"steps":        "steps/*.json",
		"chatdev-log":  "other/chatdev_*.txt",
		"metagpt-run":  "other/metagpt_run_*.json",
	} {
		m, err := filepath.Glob(filepath.Join(dir, pattern))
		if err != nil || len(m) == 0 {
			t.Fatalf("shared traces: no %s files (%v)", pattern, err)
		}
		files[format] = m
	}
	return files
}

// TestSharedTracesImport reads every record of every shared trace file,
// checks the format detected, and that each graph sorts, has LLM calls, and
// has a critical path.
func TestSharedTracesImport(t *testing.T) {
	wantRecords := map[string]int{"appworld.json": 30, "ag2.json": 597, "metagpt.json": 230, "openmanus.json": 30, "hyperagent.json": 28}
	total := 0
	for format, files := range sharedFiles(t) {
		for _, f := range files {
			gs, err := ReadFile(f, Options{})
			if err != nil {
				t.Errorf("%s: %v", f, err)
				continue
			}
			if want, ok := wantRecords[filepath.Base(f)]; ok && len(gs) != want {
				t.Errorf("%s: %d traces, want %d", f, len(gs), want)
			}
			for i, g := range gs {
				if g.Format != format {
					t.Errorf("%s: detected %s, want %s", f, g.Format, format)
				}
				topo, err := Analyze(g)
				if err != nil {
					t.Errorf("%s: trace %d (%s): %v", f, i, g.ID, err)
					continue
				}
				s := Summarize(g, topo, CostModel{})
				if s.ByKind[KindLLM] == 0 || s.PromptTokens == 0 || s.Span <= 0 {
					t.Errorf("%s: trace %d (%s): %d LLM calls, %d prompt tokens, span %v", f, i, g.ID, s.ByKind[KindLLM], s.PromptTokens, s.Span)
				}
				if s.PrefixShareBound < 0 || s.PrefixShareBound >= 1 {
					t.Errorf("%s: trace %s: prefix bound %v out of [0,1)", f, g.ID, s.PrefixShareBound)
				}
				total++
			}
		}
	}
	t.Logf("%d traces imported", total)
}

func llmByAgent(g *Graph) map[string]int {
	m := map[string]int{}
	for _, n := range g.Nodes {
		if n.Kind == KindLLM {
			m[n.Agent]++
		}
	}
	return m
}

func TestAppWorldRawLog(t *testing.T) {
	path := testenv.SharedFile(t, "appworld-raw/b119b1f_2.txt")
	g, err := ReadOne(path, Options{}, Selector{})
	if err != nil {
		t.Fatal(err)
	}
	if g.ID != "b119b1f_2" || g.Format != "appworld-log" {
		t.Errorf("id %q format %q", g.ID, g.Format)
	}
	if diff := cmp.Diff(map[string]int{"Supervisor": 9, "spotify": 20}, llmByAgent(g)); diff != "" {
		t.Errorf("LLM calls by agent (-want +got):\n%s", diff)
	}
	// The first call is the Supervisor's and received the task; the first
	// spotify call received the Supervisor's message through a message edge
	// from its code execution.
	first := g.Nodes[0]
	if first.Agent != "Supervisor" || len(first.Inputs) != 1 || !strings.HasPrefix(first.Inputs[0].Text, "Keep going to the next song") {
		t.Errorf("first node %+v", first)
	}
	if !strings.HasPrefix(first.Output, "# First, I need to interact with the Spotify agent") || first.Line != 5 {
		t.Errorf("first output %q at line %d", first.Output, first.Line)
	}
	var sp *Node
	for _, n := range g.Nodes {
		if n.Agent == "spotify" && n.Kind == KindLLM {
			sp = n
			break
		}
	}
	if sp == nil || len(sp.Inputs) != 1 || sp.Inputs[0].Text != "What song is currently playing?" {
		t.Fatalf("first spotify call %+v", sp)
	}
	var from []Edge
	for _, e := range g.Edges {
		if e.To == sp.ID {
			from = append(from, e)
		}
	}
	if len(from) != 1 || from[0].Type != EdgeMessage || g.Node(from[0].From).Kind != KindTool {
		t.Errorf("edges into the first spotify call: %+v", from)
	}
	// One AppWorld run is a total order: no two nodes can overlap.
	topo, err := Analyze(g)
	if err != nil {
		t.Fatal(err)
	}
	if s := Summarize(g, topo, CostModel{}); !s.SingleChain() || len(s.CriticalPath) != len(g.Nodes) {
		t.Errorf("widest level %d, critical path %d of %d nodes", s.WidestLevel, len(s.CriticalPath), len(g.Nodes))
	}
}

// structure renders a graph's nodes and edges by position, so graphs read
// from different formats (with different ids) compare equal when they are
// the same workflow.
func structure(g *Graph) []string {
	idx := g.Index()
	var out []string
	for _, n := range g.Nodes {
		out = append(out, fmt.Sprintf("%s %s inputs=%d prompt=%d out=%d", n.Kind, n.Agent, len(n.Inputs), n.InputTokens.N, n.OutputTokens.N))
	}
	for _, e := range g.Edges {
		out = append(out, fmt.Sprintf("%d->%d %s", idx[e.From], idx[e.To], e.Type))
	}
	return out
}

// shipped names each MAST trace the project ships (traces/mast, gzip) and
// its original under the shared traces.
var shipped = map[string]string{
	"appworld-steps.json.gz":                               "steps/appworld.json",
	"b119b1f_2.txt.gz":                                     "appworld-raw/b119b1f_2.txt",
	"dag-json/AppWorld/692c77d_1_dag.json.gz":              "dag-json/AppWorld/692c77d_1_dag.json",
	"dag-json/AppWorld/82e2fac_1_dag.json.gz":              "dag-json/AppWorld/82e2fac_1_dag.json",
	"dag-json/AppWorld/aa8502b_1_dag.json.gz":              "dag-json/AppWorld/aa8502b_1_dag.json",
	"dag-json/AppWorld/ccb4494_1_dag.json.gz":              "dag-json/AppWorld/ccb4494_1_dag.json",
	"dag-json/AppWorld/cf6abd2_1_dag.json.gz":              "dag-json/AppWorld/cf6abd2_1_dag.json",
	"dag-json/HyperAgent/django__django-10924_dag.json.gz": "dag-json/HyperAgent/django__django-10924_dag.json",
}

// mast is the path of a shipped MAST trace.
func mast(name string) string { return filepath.Join("..", "traces", "mast", name) }

// TestShippedMAST: every shipped trace reads (formats detected through
// gzip), and, with the shared traces, reads exactly as its original.
func TestShippedMAST(t *testing.T) {
	files, err := filepath.Glob(mast("*.gz"))
	more, _ := filepath.Glob(mast("dag-json/*/*.gz"))
	if err != nil || len(files)+len(more) < 15 {
		t.Fatalf("%d shipped traces (%v), want 15", len(files)+len(more), err)
	}
	for _, f := range append(files, more...) {
		gs, err := ReadFile(f, Options{})
		if err != nil || len(gs) == 0 || len(gs[0].Nodes) == 0 {
			t.Errorf("%s: %d graphs, %v", f, len(gs), err)
		}
	}
	dir := os.Getenv(testenv.SharedTracesVar)
	if dir == "" {
		t.Logf("%s unset: not compared with the originals", testenv.SharedTracesVar)
		return
	}
	for name, orig := range shipped {
		got, err := ReadFile(mast(name), Options{})
		if err != nil {
			t.Fatal(err)
		}
		want, err := ReadFile(testenv.SharedFile(t, orig), Options{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d graphs, the original %d", name, len(got), len(want))
		}
		for i := range got {
			if got[i].ID != want[i].ID || !cmp.Equal(structure(got[i]), structure(want[i])) {
				t.Errorf("%s: graph %d (%s) differs from the original's (%s)", name, i, got[i].ID, want[i].ID)
			}
		}
	}
}

// TestAppWorldFormatsAgree checks that the same AppWorld task read from two
// formats gives the same graph: the LLM-call counts the dataset documents,
// and node for node the same kinds, agents, inputs, token counts and edges.
// It reads the shipped copies (traces/mast), so it runs from a fresh clone.
func TestAppWorldFormatsAgree(t *testing.T) {
	steps, err := ReadFile(mast("appworld-steps.json.gz"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]*Graph{}
	for _, g := range steps {
		if _, dup := byID[g.ID]; !dup {
			byID[g.ID] = g
		}
	}
	tests := []struct {
		file  string
		calls int
	}{
		{"dag-json/AppWorld/692c77d_1_dag.json.gz", 11},
		{"dag-json/AppWorld/82e2fac_1_dag.json.gz", 19},
		{"dag-json/AppWorld/ccb4494_1_dag.json.gz", 50},
		{"dag-json/AppWorld/cf6abd2_1_dag.json.gz", 25},
		{"b119b1f_2.txt.gz", 29},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.file), func(t *testing.T) {
			g, err := ReadOne(mast(tt.file), Options{}, Selector{})
			if err != nil {
				t.Fatal(err)
			}
			s := byID[g.ID]
			if s == nil {
				t.Fatalf("no step-list record %s", g.ID)
			}
			for name, x := range map[string]*Graph{"file": g, "steps": s} {
				n := 0
				for _, c := range llmByAgent(x) {
					n += c
				}
				if n != tt.calls {
					t.Errorf("%s: %d LLM calls, want %d", name, n, tt.calls)
				}
			}
			if diff := cmp.Diff(structure(g), structure(s)); diff != "" {
				t.Errorf("graphs differ (-%s +steps):\n%s", g.Format, diff)
			}
		})
	}
}

func TestChatDevExactTokens(t *testing.T) {
	g, err := ReadOne(testenv.SharedFile(t, "other/chatdev_round_3.head.txt"), Options{}, Selector{})
	if err != nil {
		t.Fatal(err)
	}
	// The head of the log holds two calls, with the counts the log records.
	want := []string{
		"llm Chief Product Officer/DemandAnalysis inputs=1 prompt=465 out=60",
		"llm Chief Executive Officer/DemandAnalysis inputs=1 prompt=565 out=52",
		"0->1 message",
	}
	if diff := cmp.Diff(want, structure(g)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, n := range g.Nodes {
		if !n.InputTokens.Exact || !n.OutputTokens.Exact {
			t.Errorf("node %s: counts not marked exact", n.ID)
		}
	}
	if g.ID != "TheCrossword" || !strings.HasPrefix(g.Nodes[0].Output, "Given the task of implementing a crossword puzzle") {
		t.Errorf("id %q, first output %q", g.ID, g.Nodes[0].Output)
	}
	topo, _ := Analyze(g)
	if s := Summarize(g, topo, CostModel{}); !s.TokensExact {
		t.Error("stats do not report exact tokens")
	}
}

func TestMetaGPTRun(t *testing.T) {
	g, err := ReadOne(testenv.SharedFile(t, "other/metagpt_run_1.json"), Options{}, Selector{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]int{"SimpleCoder": 1, "SimpleTester": 2, "SimpleReviewer": 2}, llmByAgent(g)); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	// 14:37:42.009 to 14:38:04.829.
	if got := g.Nodes[0].Meta["recorded_s"]; got != "22.820" {
		t.Errorf("first call recorded_s = %q, want 22.820", got)
	}
	if !strings.HasPrefix(g.Nodes[0].Output, "```python") || g.Nodes[0].Inputs[0].Text != "write playable 2048 game" {
		t.Errorf("first node %+v", g.Nodes[0])
	}
}

func TestDAGJSONFileEdges(t *testing.T) {
	path := testenv.SharedFile(t, "dag-json/AppWorld/692c77d_1_dag.json")
	g, err := ReadOne(path, Options{Edges: EdgesFile}, Selector{})
	if err != nil {
		t.Fatal(err)
	}
	rebuilt, err := ReadOne(path, Options{}, Selector{})
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	var f djFile
	if err := unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	if len(g.Nodes) != len(f.Nodes) || len(g.Edges) != len(f.Edges) {
		t.Errorf("file edges: %d nodes %d edges, want the file's %d and %d", len(g.Nodes), len(g.Edges), len(f.Nodes), len(f.Edges))
	}
	for _, e := range g.Edges {
		if e.Type != EdgeExplicit {
			t.Fatalf("edge %+v is not explicit", e)
		}
	}
	if llmByAgent(g)["Supervisor"] != llmByAgent(rebuilt)["Supervisor"] {
		t.Errorf("file-edge graph lost LLM nodes: %v vs %v", llmByAgent(g), llmByAgent(rebuilt))
	}
	if _, err := Analyze(g); err != nil {
		t.Errorf("file-edge graph: %v", err)
	}
}

// TestStepsSelection checks choosing one trace of a multi-trace file.
func TestStepsSelection(t *testing.T) {
	path := testenv.SharedFile(t, "steps/appworld.json")
	g, err := ReadOne(path, Options{}, Selector{TraceID: "692c77d_1"})
	if err != nil || g.ID != "692c77d_1" {
		t.Fatalf("by id: %v, %v", g, err)
	}
	g, err = ReadOne(path, Options{}, Selector{Index: 0, ByIndex: true})
	if err != nil || g.ID != "b119b1f_2" {
		t.Fatalf("by index: %v, %v", g, err)
	}
	for _, sel := range []Selector{{}, {TraceID: "df61dc5_2"}, {TraceID: "nope"}, {Index: 30, ByIndex: true}} {
		if _, err := ReadOne(path, Options{}, sel); err == nil {
			t.Errorf("selector %+v: no error", sel)
		}
	}
}

func TestStepsGroupChat(t *testing.T) {
	// An AG2 MathChat record: the proxy's first message is the task, its
	// later messages run the assistant's code.
	data := []byte(`[{"steps": [
	  {"agent": "mathproxyagent", "content": "Solve 2+2 with Python.", "kind": "message"},
	  {"agent": "assistant", "content": "print(2+2)", "kind": "tool_call"},
	  {"agent": "mathproxyagent", "content": "4", "kind": "tool_result"},
	  {"agent": "assistant", "content": "The answer is 4.", "kind": "message"}
	], "metadata": {"trace_id": 7, "mas_name": "AG2"}}]`)
	gs, err := Parse(data, Options{})
	if err != nil {
		t.Fatal(err)
	}
	g := gs[0]
	want := []string{
		"llm assistant inputs=1 prompt=0 out=0",
		"tool assistant inputs=0 prompt=0 out=0",
		"llm assistant inputs=1 prompt=0 out=0",
		"0->1 observation", "0->2 history", "1->2 observation",
	}
	if diff := cmp.Diff(want, structure(g)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if g.ID != "7" || g.Meta["mas_name"] != "AG2" {
		t.Errorf("id %q meta %v", g.ID, g.Meta)
	}
}

// TestOpenManusToolCalls: OpenManus's tool_call steps become the calls'
// recorded tool calls, and each tool_result answers one by id at the
// agent's next call; AppWorld's, which are code in messages, stay text.
func TestOpenManusToolCalls(t *testing.T) {
	gs, err := ReadFile(testenv.SharedFile(t, "steps/openmanus.json"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	calls, answered := 0, 0
	for _, g := range gs {
		ids := map[string]string{} // call id -> the node that made it
		for _, n := range g.Nodes {
			for _, c := range n.ToolCalls {
				if c.Name == "" || c.Arguments != "" && !json.Valid([]byte(c.Arguments)) || ids[c.ID] != "" {
					t.Fatalf("%s: tool call %+v", g.ID, c)
				}
				ids[c.ID] = n.ID
				calls++
			}
		}
		prev := PreviousCalls(g)
		for i, n := range g.Nodes {
			for _, in := range n.Inputs {
				if in.ToolCallID == "" {
					continue
				}
				answered++
				// It answers a call of the same agent's previous call.
				if j := prev[i]; j < 0 || ids[in.ToolCallID] != g.Nodes[j].ID {
					t.Errorf("%s/%s: input answers %s, made by %q", g.ID, n.ID, in.ToolCallID, ids[in.ToolCallID])
				}
			}
		}
	}
	if calls < 100 || answered < calls*9/10 {
		t.Errorf("%d tool calls in %d traces, %d answered", calls, len(gs), answered)
	}
	t.Logf("%d tool calls, %d answered, in %d traces", calls, answered, len(gs))
	aw, err := ReadFile(testenv.SharedFile(t, "steps/appworld.json"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range aw {
		for _, n := range g.Nodes {
			if len(n.ToolCalls) > 0 {
				t.Fatalf("AppWorld %s/%s has structured tool calls: its calls are code in text", g.ID, n.ID)
			}
		}
	}
}

// TestGzipInputs: a compressed trace file and a folder of compressed
// capture files read as their plain copies do.
func TestGzipInputs(t *testing.T) {
	dir := t.TempDir()
	pack := func(src, dst string) {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		var z bytes.Buffer
		w := gzip.NewWriter(&z)
		w.Write(data)
		w.Close()
		if err := os.WriteFile(dst, z.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	capDir := filepath.Join(dir, "captures")
	os.Mkdir(capDir, 0o755)
	pack("testdata/agents/capture.jsonl", filepath.Join(capDir, "a.jsonl.gz"))
	pack("../traces/research-team.json", filepath.Join(dir, "research-team.json.gz"))
	for plain, packed := range map[string]string{"testdata/agents/capture.jsonl": capDir, "../traces/research-team.json": filepath.Join(dir, "research-team.json.gz")} {
		want, err := ReadFile(plain, Options{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := ReadFile(packed, Options{})
		if err != nil {
			t.Fatalf("%s: %v", packed, err)
		}
		if len(got) != len(want) || len(got) == 0 {
			t.Fatalf("%s: %d graphs, the plain file %d", packed, len(got), len(want))
		}
		for i := range got {
			if got[i].ID != want[i].ID || !cmp.Equal(structure(got[i]), structure(want[i])) {
				t.Errorf("%s: graph %d (%s) differs from the plain file's (%s)", packed, i, got[i].ID, want[i].ID)
			}
		}
	}
}
