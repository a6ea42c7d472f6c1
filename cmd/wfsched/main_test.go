package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/wfsched/wfsched/dag"
	"github.com/wfsched/wfsched/internal/testenv"
	"github.com/wfsched/wfsched/report"
)

var update = flag.Bool("update", false, "rewrite golden files")

// run executes the command line with buffers.
func run(t testing.TB, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = execute(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	goldenFile(t, filepath.Join("testdata", name+".golden"), got)
}

// goldenFile holds got to the file at path, or with -update writes it.
func goldenFile(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s differs from what the code gives now; if the change is meant, go test -update rewrites it (-want +got):\n%s", path, diff)
	}
}

const example = "../../traces/research-team.json"

func TestInspectGolden(t *testing.T) {
	for _, tt := range []struct{ name, file, out string }{
		{"inspect-research-table", example, "table"},
		{"inspect-research-json", example, "json"},
		{"inspect-research-dot", example, "dot"},
		{"inspect-research-mermaid", example, "mermaid"},
		{"inspect-fanout-table", "../../traces/fanout-12.json", "table"},
		{"inspect-chain-table", "../../traces/chain-16.json", "table"},
		{"inspect-multi-table", "testdata/multi.json", "table"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(t, "inspect", tt.file, "-o", tt.out)
			if code != 0 || errOut != "" {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			golden(t, tt.name, out)
		})
	}
}

func TestInspectSharedAppWorld(t *testing.T) {
	dir := testenv.SharedTraces(t)
	code, out, errOut := run(t, "inspect", filepath.Join(dir, "steps", "appworld.json"), "--trace-id", "b119b1f_2")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"29, tool 22", "Supervisor", "spotify", "single chain", "prefix-sharing bound"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = run(t, "inspect", filepath.Join(dir, "steps", "appworld.json"))
	if code != 0 || !strings.Contains(out, "holds 30 traces") || strings.Count(out, "\n") < 30 {
		t.Errorf("multi-trace listing (exit %d):\n%s", code, out)
	}
}

// fileWriter writes files into dir, returning each one's path.
func fileWriter(t *testing.T, dir string) func(name, data string) string {
	return func(name, data string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
}

func TestErrors(t *testing.T) {
	dir := t.TempDir()
	write := fileWriter(t, dir)
	malformed := write("bad.json", "{\n \"format\": \"wfsched-dag\",\n \"version\": 1,\n \"nodes\": [}\n")
	cycle := write("cycle.json", `{"format": "wfsched-dag", "version": 1, "id": "c",
	 "nodes": [{"id": "a", "kind": "llm"}, {"id": "b", "kind": "llm"}],
	 "edges": [{"from": "a", "to": "b", "type": "message"}, {"from": "b", "to": "a", "type": "message"}]}`)
	unknown := write("unknown.json", `{"format": "wfsched-dag", "version": 1, "id": "u",
	 "nodes": [{"id": "a", "kind": "llm"}], "edges": [{"from": "a", "to": "ghost", "type": "message"}]}`)
	dup := write("dup.json", `{"format": "wfsched-dag", "version": 1, "id": "d", "nodes": [{"id": "a", "kind": "llm"}, {"id": "a", "kind": "tool"}], "edges": []}`)
	empty := write("empty.json", "")
	// wfsched's own results, given as traces: the mistakes people make
	// first, with a run's folder at hand.
	summary := write("summary.json", `{"run_id": "20261207-233140-parallel", "dir": "results/x", "config": {}, "backend": {"kind": "embedded"}, "traces": []}`)
	nodes := write("nodes.jsonl", `{"workflow":"wf-00005","trace":"t","node":"s1","kind":"llm","agent":"A","status":"ok","ready_s":0,"start_s":0,"end_s":0.38}`+"\n")
	otelBad := write("spans.json", `{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":3}]}]}]}`)
	tests := []struct {
		name string
		args []string
		code int
		want []string // substrings of stderr
	}{
		{"missing file", []string{"inspect", filepath.Join(dir, "nope.json")}, 2, []string{"wfsched: error:", "no such file"}},
		{"malformed JSON", []string{"inspect", malformed}, 2, []string{"bad.json", "line 4, column 12", "wfsched: hint:"}},
		{"cycle", []string{"inspect", cycle}, 2, []string{"dependency cycle: a -> b -> a", "remove one edge"}},
		{"edge to unknown node", []string{"inspect", unknown}, 2, []string{`edge 0 ("a" -> "ghost"): unknown target node "ghost"`}},
		{"duplicate ids", []string{"inspect", dup}, 2, []string{`node 1 ("a"): duplicate id`}},
		{"empty file", []string{"inspect", empty}, 2, []string{"empty trace"}},
		{"too large", []string{"inspect", example, "--max-bytes", "64"}, 2, []string{"over the 64-byte limit", "--max-bytes"}},
		{"multi-trace needs a choice", []string{"inspect", "testdata/multi.json", "-o", "dot"}, 2, []string{"holds 2 traces", "--trace-id"}},
		{"no such trace", []string{"inspect", "testdata/multi.json", "--trace-id", "zzz"}, 2, []string{`no trace with id "zzz"`}},
		{"both selectors", []string{"inspect", "testdata/multi.json", "--trace-id", "a", "--index", "0"}, 2, []string{"give one"}},
		{"bad output", []string{"inspect", example, "-o", "yaml"}, 2, []string{`--output "yaml"`}},
		{"bad format", []string{"inspect", example, "--format", "csv"}, 2, []string{`unknown format "csv"`}},
		{"file edges on native", []string{"inspect", example, "--edges", "sideways"}, 2, []string{"unknown edge source"}},
		{"unknown flag", []string{"inspect", example, "--frobnicate"}, 2, []string{"unknown flag", "see 'wfsched inspect --help'"}},
		{"a typo'd flag", []string{"run", "--dag", example, "--polcy", "sequential"}, 2, []string{"unknown flag: --polcy", "did you mean --policy?", "wfsched run --help"}},
		{"a typo'd flag of sweep", []string{"sweep", "--dag", example, "--rats", "1"}, 2, []string{"did you mean --rate", "wfsched sweep --help"}},
		{"unknown command", []string{"frobnicate"}, 2, []string{"unknown command"}},
		{"missing argument", []string{"inspect"}, 2, []string{"wfsched inspect needs a trace file", "usage: wfsched inspect FILE"}},
		{"two arguments", []string{"inspect", example, example}, 2, []string{"takes one argument", "got 2"}},
		{"report without a folder", []string{"report"}, 2, []string{"wfsched report needs a folder wfsched wrote"}},
		{"run given the trace as an argument", []string{"run", example}, 2, []string{"wfsched run takes no arguments", "give the trace with --dag: wfsched run --dag " + example}},
		{"sweep given the trace as an argument", []string{"sweep", example}, 2, []string{"give the trace with --dag: wfsched sweep --dag"}},
		{"router given an argument", []string{"router", "http://127.0.0.1:8000"}, 2, []string{"wfsched router takes no arguments", "flags start with --"}},
		{"a run's summary as a trace", []string{"run", "--dag", summary}, 2, []string{"this is a run's summary (summary.json), written by wfsched, not a trace", "wfsched report FOLDER", "traces.json"}},
		{"a run's nodes as a trace", []string{"inspect", nodes}, 2, []string{"a run's per-call results (nodes.jsonl)"}},
		{"OTLP with a wrong type", []string{"inspect", "--format", "otel", otelBad}, 2, []string{"line 1, column", "resourceSpans.scopeSpans.spans.name: want a string, found JSON number"}},
		{"convert without -o", []string{"convert", example}, 2, []string{"needs -o"}},
		{"gen bad shape", []string{"gen", "--shape", "star"}, 2, []string{`unknown shape "star"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tt.code, errOut)
			}
			if out != "" {
				t.Errorf("stdout not empty on error: %q", out)
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q lacks %q", errOut, w)
				}
			}
			if strings.Contains(errOut, "goroutine ") || strings.Contains(errOut, "panic") {
				t.Errorf("stack trace on stderr: %s", errOut)
			}
			if strings.Contains(errOut, "dag.") || strings.Contains(errOut, "struct {") {
				t.Errorf("a Go type on stderr: %s", errOut)
			}
		})
	}
}

func TestConvertRoundTrip(t *testing.T) {
	out := filepath.Join(t.TempDir(), "rt.json")
	code, _, errOut := run(t, "convert", example, "-o", out)
	if code != 0 {
		t.Fatalf("convert: exit %d: %s", code, errOut)
	}
	_, a, _ := run(t, "inspect", example, "-o", "json")
	code, b, errOut := run(t, "inspect", out, "-o", "json")
	if code != 0 {
		t.Fatalf("inspect converted: exit %d: %s", code, errOut)
	}
	// Same statistics; only the path differs.
	a = strings.Replace(a, example, "X", 1)
	b = strings.Replace(b, out, "X", 1)
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("converted trace inspects differently:\n%s", diff)
	}
	if _, err := os.Stat(out + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary file left behind: %v", err)
	}
}

func TestConvertSharedRawLog(t *testing.T) {
	src := testenv.SharedFile(t, "appworld-raw/b119b1f_2.txt")
	out := filepath.Join(t.TempDir(), "b119b1f_2.json")
	if code, _, errOut := run(t, "convert", src, "-o", out); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	_, a, _ := run(t, "inspect", src)
	_, b, _ := run(t, "inspect", out)
	a = strings.Replace(a, "(appworld-log)", "(F)", 1)
	b = strings.Replace(b, "(native)", "(F)", 1)
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("converted log inspects differently:\n%s", diff)
	}
}

func TestGen(t *testing.T) {
	_, a, _ := run(t, "gen", "--shape", "mapreduce", "--nodes", "20", "--seed", "4")
	_, b, _ := run(t, "gen", "--shape", "mapreduce", "--nodes", "20", "--seed", "4")
	if a == "" || a != b {
		t.Fatal("gen is not deterministic or wrote nothing")
	}
	p := filepath.Join(t.TempDir(), "g.json")
	if code, _, errOut := run(t, "gen", "--shape", "layered", "--nodes", "30", "-o", p); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	code, out, _ := run(t, "inspect", p)
	if code != 0 || !strings.Contains(out, "30 (llm 30") {
		t.Errorf("inspect of generated file (exit %d):\n%s", code, out)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := run(t, "--version")
	if code != 0 || !strings.Contains(out, "wfsched version") {
		t.Errorf("exit %d: %q", code, out)
	}
}

// TestHostileInputs: numbers that are not numbers, sizes past what the
// tool can load, folders where files belong: a clear error and exit 2.
func TestHostileInputs(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"gen", "--shape", "fanout", "--nodes", "9223372036854775807"}, "want 3 to 250000"},
		{[]string{"gen", "--shape", "mapreduce", "--nodes", "100000000000"}, "want 3 to 250000"},
		{[]string{"gen", "--shape", "agents", "--nodes", "100", "--width", "1000000000"}, "width"},
		{[]string{"run", "--dag", example, "--temperature", "NaN"}, "--temperature NaN: want a finite number"},
		{[]string{"run", "--dag", example, "--time-scale", "1e-300"}, "want 0.001 to 1000"},
		{[]string{"run", "--dag", example, "--time-scale", "NaN"}, "want a finite number"},
		{[]string{"run", "--dag", example, "--time-scale", "Inf"}, "want a finite number"},
		{[]string{"run", "--dag", example, "--burstiness", "0"}, "go with an open loop"},
		{[]string{"run", "--dag", example, "--rate", "NaN", "--workflows", "2"}, "want a finite number"},
		{[]string{"sweep", "--dag", example, "--rates", "NaN,1"}, "is not a rate"},
		{[]string{"sim", "--fault-cut-rate", "NaN"}, "want a finite number"},
		{[]string{"router", "--backends", "http://127.0.0.1:1", "--load-factor", "Inf"}, "want a finite number"},
		{[]string{"router", "--backends", "http://127.0.0.1:1", "--state", "redis://127.0.0.1:1/0"}, "Redis at 127.0.0.1:1 does not answer"},
		{[]string{"router", "--backends", "http://127.0.0.1:1", "--state", "etcd://x"}, "want memory or redis://HOST:PORT/DB"},
		{[]string{"inspect", dir}, "is a folder"},
		{[]string{"convert", dir, "-o", filepath.Join(dir, "x.json")}, "is a folder"},
		{[]string{"convert", example, "-o", dir}, "is a folder: give a file name"},
	} {
		code, _, stderr := run(t, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) || strings.Contains(stderr, "goroutine") {
			t.Errorf("%v: exit %d, stderr %q (want 2 and %q)", tc.args, code, stderr, tc.want)
		}
	}
	if left, _ := filepath.Glob(dir + "*.tmp"); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}

// TestInspectBatches: inspect --batches lists levels whose nodes depend
// only on earlier levels, and an order that puts every parent first, in
// the table and in JSON.
func TestInspectBatches(t *testing.T) {
	code, stdout, stderr := run(t, "inspect", example, "--batches", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var in report.Inspection
	if err := json.Unmarshal([]byte(stdout), &in); err != nil {
		t.Fatal(err)
	}
	g, err := dag.ReadOne(example, dag.Options{}, dag.Selector{})
	if err != nil {
		t.Fatal(err)
	}
	level, pos := map[string]int{}, map[string]int{}
	n := 0
	for l, ids := range in.Batches {
		for _, id := range ids {
			level[id] = l
			n++
		}
	}
	for k, id := range in.Order {
		pos[id] = k
	}
	if n != len(g.Nodes) || len(in.Order) != len(g.Nodes) || len(in.Batches) != in.Stats.Depth {
		t.Fatalf("%d nodes in %d batches, %d in the order; the trace has %d nodes, depth %d", n, len(in.Batches), len(in.Order), len(g.Nodes), in.Stats.Depth)
	}
	for _, e := range g.Edges {
		if level[e.From] >= level[e.To] || pos[e.From] >= pos[e.To] {
			t.Errorf("edge %s -> %s: levels %d, %d; positions %d, %d", e.From, e.To, level[e.From], level[e.To], pos[e.From], pos[e.To])
		}
	}
	code, stdout, _ = run(t, "inspect", example, "--batches")
	if code != 0 || !strings.Contains(stdout, "Execution batches (7):") || !strings.Contains(stdout, "  1: a-search b-search c-search") ||
		!strings.Contains(stdout, "Topological order: plan ") {
		t.Errorf("table:\n%s", stdout)
	}
}

// TestHelpDefaults: no flag's help says its default when the flag prints
// it already (help showed "(default 5s) (default 5s)").
func TestHelpDefaults(t *testing.T) {
	root := newRootCmd(io.Discard, io.Discard)
	var visit func(c *cobra.Command)
	n := 0
	visit = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			n++
			zero := f.DefValue == "" || f.DefValue == "0" || f.DefValue == "false" || f.DefValue == "[]" || f.DefValue == "0s"
			if !zero && strings.Contains(f.Usage, "(default") {
				t.Errorf("%s --%s: its help says its default (%q), which is printed after it anyway", c.CommandPath(), f.Name, f.Usage)
			}
		})
		for _, sub := range c.Commands() {
			visit(sub)
		}
	}
	visit(root)
	if n < 100 {
		t.Fatalf("only %d flags visited", n)
	}
}

// TestAPIKeyNotInHelp: a key in $WFSCHED_API_KEY is read when the command
// runs, never shown as a flag's default by --help.
func TestAPIKeyNotInHelp(t *testing.T) {
	t.Setenv("WFSCHED_API_KEY", "sk-secret-in-env")
	for _, cmd := range []string{"run", "compare", "sweep", "router"} {
		code, out, _ := run(t, cmd, "--help")
		if code != 0 || strings.Contains(out, "sk-secret-in-env") || !strings.Contains(out, "$WFSCHED_API_KEY") {
			t.Errorf("%s --help: exit %d; shows the key or does not name the variable", cmd, code)
		}
	}
}
