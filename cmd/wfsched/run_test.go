package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wfsched/wfsched/report"
	"github.com/wfsched/wfsched/scheduler"

	"github.com/wfsched/wfsched/internal/testenv"
)

// runDir returns the only run folder under out.
func runDir(t testing.TB, out string) string {
	t.Helper()
	entries, err := os.ReadDir(out)
	if err != nil || len(entries) != 1 {
		t.Fatalf("run folders under %s: %v %v", out, entries, err)
	}
	return filepath.Join(out, entries[0].Name())
}

func readSummary(t *testing.T, dir string) report.RunReport {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r report.RunReport
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func countLines(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var r scheduler.NodeResult
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s line %d: %v", path, n+1, err)
		}
		n++
	}
	return n
}

func TestRunEmbedded(t *testing.T) {
	out := t.TempDir()
	code, stdout, stderr := run(t, "run", "--dag", example, "--out", out, "--time-scale", "0.05", "--temperature", "0")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"policy parallel", "embedded engine h100-llama3.1-8b", "completed", "10 llm ok, 3 tool ok", "prefix-cache hit rate"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	dir := runDir(t, out)
	if n := countLines(t, filepath.Join(dir, "nodes.jsonl")); n != 13 {
		t.Errorf("%d node lines, want 13", n)
	}
	r := readSummary(t, dir)
	if r.Outcome != scheduler.OutcomeCompleted || r.Backend.Kind != "embedded" || r.Backend.TimeScale != 0.05 || r.Summary.Requests != 10 ||
		r.Config.Temperature == nil || *r.Config.Temperature != 0 || r.Versions["go"] == "" {
		t.Errorf("summary %+v", r)
	}
	if e := float64(r.Summary.Efficiency); e < 0.8 || e > 1.0001 {
		t.Errorf("parallel efficiency %v", e)
	}
}

func TestRunErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"run"}, 2, "needs --dag"},
		{[]string{"run", "--dag", example, "--policy", "fastest"}, 2, `unknown policy "fastest"`},
		{[]string{"run", "--dag", example, "--on-error", "ignore"}, 2, "unknown on-error mode"},
		{[]string{"run", "--dag", example, "--context", "dream"}, 2, "unknown context"},
		{[]string{"run", "--dag", example, "--endpoint", "http://127.0.0.1:1", "--endpoint", "http://127.0.0.1:2", "--wait-ready", "200ms"}, 1, "no endpoint answers: cannot reach http://127.0.0.1:1"},
		{[]string{"run", "--dag", example, "--endpoint", "http://127.0.0.1:1/v1/chat/completions"}, 2, "give the server's base URL, http://127.0.0.1:1"},
		{[]string{"run", "--dag", example, "--endpoint", "127.0.0.1:1"}, 2, "want http://"},
		{[]string{"run", "--dag", "no/such/file.json"}, 2, "no such file"},
		{[]string{"run", "--dag", example, "--max-parallel", "0"}, 2, "--max-parallel"},
	} {
		code, _, stderr := run(t, tt.args...)
		if code != tt.code || !strings.Contains(stderr, tt.want) {
			t.Errorf("%v: exit %d, stderr %q (want %d, %q)", tt.args, code, stderr, tt.code, tt.want)
		}
	}
	// An unreachable endpoint, not waited for, fails fast, before any
	// results folder, saying nothing listens there.
	out := t.TempDir()
	start := time.Now()
	code, _, stderr := run(t, "run", "--dag", example, "--endpoint", "http://127.0.0.1:9", "--out", out, "--wait-ready", "0")
	if code != 1 || !strings.Contains(stderr, "cannot reach") || !strings.Contains(stderr, "nothing listens at 127.0.0.1:9: is the server running?") ||
		!strings.Contains(stderr, "wfsched sim") || time.Since(start) > 6*time.Second {
		t.Errorf("unreachable endpoint: exit %d after %v, stderr %q", code, time.Since(start), stderr)
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("results folder created for a run that never started: %v", entries)
	}
}

func TestRunInterruptedKeepsResults(t *testing.T) {
	out := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr testenv.Buffer
	done := make(chan int, 1)
	go func() {
		done <- execute(ctx, []string{"run", "--dag", "../../traces/agents-40.json", "--out", out, "--time-scale", "0.5",
			"--workflows", "4", "--concurrency", "2"}, &stdout, &stderr)
	}()
	// Interrupt once some nodes are done.
	deadline := time.Now().Add(20 * time.Second)
	for {
		entries, _ := os.ReadDir(out)
		if len(entries) == 1 {
			if b, _ := os.ReadFile(filepath.Join(out, entries[0].Name(), "nodes.jsonl")); strings.Count(string(b), "\n") >= 3 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no node finished in time")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	var code int
	select {
	case code = <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("run did not stop after the interrupt")
	}
	if code != 1 || !strings.Contains(stderr.String(), "interrupted") {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
	dir := runDir(t, out)
	r := readSummary(t, dir)
	lines := countLines(t, filepath.Join(dir, "nodes.jsonl"))
	s := r.Summary
	if r.Outcome != scheduler.OutcomeInterrupted || lines != s.Requests+s.ToolNodes+s.Failed+s.Skipped+s.Canceled || s.Requests == 0 {
		t.Errorf("outcome %s, %d node lines, summary %+v", r.Outcome, lines, s)
	}
}

// TestReportOfKilledRun: a run killed mid-way leaves a summary.json saying
// it was running (or, killed earlier still, none) and a nodes.jsonl whose
// last line may be cut; report rebuilds what it can and says incomplete.
func TestReportOfKilledRun(t *testing.T) {
	out := t.TempDir()
	if code, stdout, stderr := run(t, "run", "--dag", example, "--time-scale", "0.05", "--out", out); code != 0 {
		t.Fatalf("exit %d: %s %s", code, stdout, stderr)
	}
	dir := runDir(t, out)
	nodes, err := os.ReadFile(filepath.Join(dir, "nodes.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	whole := strings.Count(string(nodes), "\n")
	// Killed while writing its last node: the line is cut.
	os.WriteFile(filepath.Join(dir, "nodes.jsonl"), nodes[:len(nodes)-20], 0o644)
	sum, _ := os.ReadFile(filepath.Join(dir, "summary.json"))
	running := regexp.MustCompile(`"outcome": *"[a-z]+"`).ReplaceAll(sum, []byte(`"outcome": "running"`))
	t.Run("report page in a browser", func(t *testing.T) {
		if code, _, stderr := run(t, "report", dir); code != 0 {
			t.Fatal(stderr)
		}
		checkPage(t, filepath.Join(dir, "report.html"))
	})
	for name, summary := range map[string][]byte{"summary says running": running, "no summary": nil} {
		os.Remove(filepath.Join(dir, "summary.json"))
		if summary != nil {
			os.WriteFile(filepath.Join(dir, "summary.json"), summary, 0o644)
		}
		code, stdout, stderr := run(t, "report", dir)
		want := fmt.Sprintf("%d llm ok", whole-1-countTools(t, nodes))
		if code != 0 || !strings.Contains(stdout, "incomplete") || !strings.Contains(stdout, want) {
			t.Errorf("%s: exit %d, want %q in\n%s%s", name, code, want, stdout, stderr)
		}
	}
}

// countTools counts the tool nodes among whole lines of a nodes.jsonl,
// leaving out the last one.
func countTools(t *testing.T, nodes []byte) int {
	lines := strings.Split(strings.TrimSpace(string(nodes)), "\n")
	return strings.Count(strings.Join(lines[:len(lines)-1], "\n"), `"kind":"tool"`)
}

// TestRunNamesOnlyTheTracesItRan: a folder of traces with fewer workflows
// than traces runs the first ones, and names only them.
func TestRunNamesOnlyTheTracesItRan(t *testing.T) {
	out := t.TempDir()
	code, stdout, stderr := run(t, "run", "--dag", "../../traces", "--workflows", "1", "--time-scale", "0.05", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	r := readSummary(t, runDir(t, out))
	header, _, _ := strings.Cut(stdout, "\n")
	if len(r.Traces) != 1 || !strings.Contains(header, r.Traces[0].ID) || strings.Contains(header, "research-team") {
		t.Errorf("traces %+v, header %q", r.Traces, header)
	}
}
