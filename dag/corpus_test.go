package dag

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/wfsched/wfsched/capture"
	"github.com/wfsched/wfsched/internal/gzfile"
	"github.com/wfsched/wfsched/tokenizer"
)

// The capture corpus (testdata/corpus, recorded by scripts/record-corpus.sh
// from real programs of four JavaScript frameworks, each writing its own
// ground truth): every program's rebuilt graph must be its true structure.

// corpusScale is the time scale of the engines the corpus was recorded on
// (scripts/record-corpus.sh): spans carry their wall times only.
const corpusScale = 0.2

type truthNode struct {
	Ref       string   `json:"ref"`
	Kind      string   `json:"kind"`
	Context   string   `json:"context"`
	Agent     string   `json:"agent"`
	ToolCalls []string `json:"tool_calls"`
	Name      string   `json:"name"`
	RunMS     float64  `json:"run_ms"`
	GapMS     *float64 `json:"gap_ms"`
}

type truthWorkflow struct {
	Workflow  string      `json:"workflow"`
	Program   string      `json:"program"`
	Framework string      `json:"framework"`
	API       string      `json:"api"`
	AgentIDs  bool        `json:"agentIds"`
	Nodes     []truthNode `json:"nodes"`
	Edges     [][2]string `json:"edges"`
}

func readTruth(t *testing.T, path string) []truthWorkflow {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []truthWorkflow
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var w truthWorkflow
		if err := json.Unmarshal(sc.Bytes(), &w); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, w)
	}
	return out
}

// corpusScore is how much of a workflow's true structure a rebuild got.
type corpusScore struct {
	nodes, nodesOK, edges, edgesOK int
	problems                       []string
}

func (s *corpusScore) add(o corpusScore) {
	s.nodes += o.nodes
	s.nodesOK += o.nodesOK
	s.edges += o.edges
	s.edgesOK += o.edgesOK
	s.problems = append(s.problems, o.problems...)
}

// compareTruth scores graph g against the truth. LLM nodes are matched by
// request id; a tool node by the calls before and after it. A node is
// rebuilt exactly when it is there, in the right conversation (agents
// named as the truth names them where names were sent, else the same
// grouping) and, for a tool, with its duration within 10% of what the
// program saw (the gap between the calls for a capture, the tool's own run
// for spans, which time it).
func compareTruth(w truthWorkflow, g *Graph, named, spans bool) corpusScore {
	var s corpusScore
	bad := func(f string, a ...any) { s.problems = append(s.problems, w.Workflow+": "+fmt.Sprintf(f, a...)) }
	// Keys: an LLM node's request id; a tool's "tool:PRED>SUCC#k".
	key := map[string]string{}
	for _, n := range g.Nodes {
		if n.Kind == KindLLM {
			key[n.ID] = n.Meta["request_id"]
		}
	}
	toolKey := func(pred, succ string, seen map[string]int) string {
		k := "tool:" + pred + ">" + succ
		seen[k]++
		return fmt.Sprintf("%s#%d", k, seen[k])
	}
	seen := map[string]int{}
	var rebuiltTools = map[string]*Node{}
	for _, n := range g.Nodes {
		if n.Kind != KindTool {
			continue
		}
		var pred, succ string
		for _, e := range g.Edges {
			if e.To == n.ID {
				pred = key[e.From]
			}
			if e.From == n.ID {
				succ = key[e.To]
			}
		}
		key[n.ID] = toolKey(pred, succ, seen)
		rebuiltTools[key[n.ID]] = n
	}
	truthKey := map[string]string{}
	seen = map[string]int{}
	for _, n := range w.Nodes {
		if n.Kind == "llm" {
			truthKey[n.Ref] = n.Ref
		}
	}
	for _, n := range w.Nodes {
		if n.Kind != "tool" {
			continue
		}
		var pred, succ string
		for _, e := range w.Edges {
			if e[1] == n.Ref {
				pred = e[0]
			}
			if e[0] == n.Ref {
				succ = e[1]
			}
		}
		truthKey[n.Ref] = toolKey(pred, succ, seen)
	}
	byReq := map[string]*Node{}
	for _, n := range g.Nodes {
		if n.Kind == KindLLM {
			byReq[n.Meta["request_id"]] = n
		}
	}
	// Conversations: the truth's context to the rebuilt agent, one to one.
	ctxTo, agentFrom := map[string]string{}, map[string]string{}
	for _, tn := range w.Nodes {
		s.nodes++
		k := truthKey[tn.Ref]
		var n *Node
		if tn.Kind == "llm" {
			n = byReq[k]
		} else {
			n = rebuiltTools[k]
		}
		if n == nil {
			bad("%s node %s (%s, %s) not rebuilt", tn.Kind, short(k), tn.Context, tn.Name)
			continue
		}
		ok := true
		if named && n.Agent != tn.Context {
			bad("node %s: agent %q, want %q", short(k), n.Agent, tn.Context)
			ok = false
		}
		if a, seen := ctxTo[tn.Context]; seen && a != n.Agent || agentFrom[n.Agent] != "" && agentFrom[n.Agent] != tn.Context {
			bad("node %s: conversation %q rebuilt as %q (with %q's calls)", short(k), tn.Context, n.Agent, agentFrom[n.Agent])
			ok = false
		}
		ctxTo[tn.Context], agentFrom[n.Agent] = n.Agent, tn.Context
		if tn.Kind == "tool" {
			want := tn.RunMS
			if !spans && tn.GapMS != nil {
				want = *tn.GapMS
			}
			got := n.Duration.D().Seconds() * corpusScale * 1000
			if math.Abs(got-want) > 0.1*want {
				bad("tool %s: %.1f ms, want %.1f ms within 10%%", short(k), got, want)
				ok = false
			}
		}
		if ok {
			s.nodesOK++
		}
	}
	if extra := len(g.Nodes) - len(w.Nodes); extra > 0 {
		bad("%d nodes more than the program ran", extra)
	}
	truthEdges := map[[2]string]bool{}
	for _, e := range w.Edges {
		truthEdges[[2]string{truthKey[e[0]], truthKey[e[1]]}] = true
	}
	got := map[[2]string]bool{}
	for _, e := range g.Edges {
		got[[2]string{key[e.From], key[e.To]}] = true
	}
	s.edges = len(truthEdges)
	for e := range truthEdges {
		if got[e] {
			s.edgesOK++
		} else {
			bad("edge %s -> %s missing", short(e[0]), short(e[1]))
		}
	}
	for e := range got {
		if !truthEdges[e] {
			bad("edge %s -> %s is not in the program", short(e[0]), short(e[1]))
			s.edgesOK-- // a wrong edge costs as much as a missing one
		}
	}
	s.edgesOK = max(s.edgesOK, 0)
	return s
}

func short(k string) string {
	if len(k) > 24 {
		return k[:24] + "…"
	}
	return k
}

// TestCorpus rebuilds each program of the capture corpus from its capture
// (full, hash and none modes) and its spans, and compares with the ground
// truth the program wrote. full, hash and spans must be exact; none keeps
// no texts (its limits are in the README), so it is scored, not required.
func TestCorpus(t *testing.T) {
	type result struct {
		mode, framework string
		corpusScore
	}
	// WFSCHED_CORPUS: a corpus recorded now (scripts/record-corpus.sh DIR,
	// as CI does where Node.js is installed) instead of the committed one.
	root := cmp.Or(os.Getenv("WFSCHED_CORPUS"), filepath.Join("testdata", "corpus"))
	var results []result
	for _, mode := range []string{"full", "hash", "none", "spans"} {
		dir := filepath.Join(root, mode)
		file := filepath.Join(dir, "capture.jsonl.gz")
		if mode == "spans" {
			dir = filepath.Join(root, "full")
			file = filepath.Join(dir, "spans.jsonl.gz")
		}
		truth := readTruth(t, filepath.Join(dir, "truth.jsonl"))
		var gs []*Graph
		var err error
		if mode == "spans" {
			gs, err = ReadFile(file, Options{TimeScale: corpusScale})
		} else {
			var recs []capture.Record
			f, ferr := gzfile.Open(file)
			if ferr != nil {
				t.Fatal(ferr)
			}
			recs, err = capture.Read(f, file)
			f.Close()
			if err == nil {
				gs, err = FromCapture(recs)
			}
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		byWF := map[string]*Graph{}
		for _, g := range gs {
			byWF[g.ID] = g
		}
		per := map[string]*result{}
		for _, w := range truth {
			if mode == "spans" && w.Framework == "ai-sdk" {
				continue // the OpenInference instrumentation is of the openai client, which the AI SDK does not use
			}
			r := per[w.Framework]
			if r == nil {
				r = &result{mode: mode, framework: w.Framework}
				per[w.Framework] = r
			}
			g := byWF[w.Workflow]
			if g == nil {
				r.add(corpusScore{nodes: len(w.Nodes), edges: len(w.Edges), problems: []string{w.Workflow + ": not in the " + mode + " rebuild"}})
				continue
			}
			if _, err := Analyze(g); err != nil {
				t.Errorf("%s %s: %v", mode, w.Workflow, err)
			}
			r.add(compareTruth(w, g, w.AgentIDs || mode == "spans", mode == "spans"))
		}
		for _, fw := range slices.Sorted(maps.Keys(per)) {
			results = append(results, *per[fw])
		}
	}
	var table strings.Builder
	fmt.Fprintf(&table, "%-6s %-14s %12s %12s\n", "mode", "framework", "nodes exact", "edges exact")
	total := map[string]*corpusScore{}
	for i, r := range results {
		fmt.Fprintf(&table, "%-6s %-14s %7d/%-4d %7d/%-4d\n", r.mode, r.framework, r.nodesOK, r.nodes, r.edgesOK, r.edges)
		if total[r.mode] == nil {
			total[r.mode] = &corpusScore{}
		}
		total[r.mode].add(corpusScore{nodes: r.nodes, nodesOK: r.nodesOK, edges: r.edges, edgesOK: r.edgesOK})
		if t := total[r.mode]; i == len(results)-1 || results[i+1].mode != r.mode {
			fmt.Fprintf(&table, "%-6s %-14s %7d/%-4d %7d/%-4d\n", r.mode, "all", t.nodesOK, t.nodes, t.edgesOK, t.edges)
		}
		sort.Strings(r.problems)
		for _, p := range r.problems {
			if r.mode == "none" {
				if testing.Verbose() {
					t.Logf("none (not required): %s", p)
				}
				continue
			}
			t.Errorf("%s: %s", r.mode, p)
		}
	}
	t.Logf("the corpus (%s) rebuilt against its ground truth:\n%s", root, table.String())
}

// TestTaskFromLatestPasser: a sub-agent's prompt that is a string some
// earlier calls passed as a tool-call argument gets one edge, from the
// latest of them (a one-word task recurs in other calls' arguments by
// chance; recorded so in a CI run of the corpus).
func TestTaskFromLatestPasser(t *testing.T) {
	enc := tokenizer.MustDefault()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, mode := range []string{capture.Full, capture.Hash} {
		msg := func(role, text string, calls ...capture.ToolCall) capture.Message {
			return capture.NewMessage(role, text, calls, "", mode, enc)
		}
		rec := func(id, agent string, at int, msgs []capture.Message, out capture.Message) capture.Record {
			start := t0.Add(time.Duration(at) * time.Second)
			return capture.Record{V: capture.Version, Workflow: "w", Agent: agent, RequestID: id, Status: 200,
				Arrival: start, End: start.Add(500 * time.Millisecond), Content: mode, Messages: msgs, Output: out}
		}
		lookup := msg("assistant", "", capture.ToolCall{ID: "c1", Name: "lookup", Arguments: `{"topic": "data"}`})
		ask := msg("assistant", "", capture.ToolCall{ID: "c2", Name: "ask_editor", Arguments: `{"input": "data"}`})
		gs, err := FromCapture([]capture.Record{
			rec("r1", "researcher", 0, []capture.Message{msg("user", "Find the growth figures.")}, lookup),
			rec("m1", "manager", 1, []capture.Message{msg("user", "How fast did it grow?")}, ask),
			rec("e1", "editor", 2, []capture.Message{msg("system", "Rewrite clearly."), msg("user", "data")}, msg("assistant", "The data, rewritten.")),
		})
		if err != nil {
			t.Fatal(err)
		}
		var into []string
		for _, e := range gs[0].Edges {
			if e.To == "editor/1" {
				into = append(into, e.From)
			}
		}
		if !slices.Equal(into, []string{"manager/1"}) {
			t.Errorf("%s: the editor's task comes from %v, want [manager/1]", mode, into)
		}
	}
}
