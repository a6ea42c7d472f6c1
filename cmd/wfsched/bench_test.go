package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// benchDir returns the only bench folder under out.
func benchJSON(t *testing.T, out string) string {
	t.Helper()
	p := filepath.Join(runDir(t, out), "bench.json")
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBenchGate plants a 20% slow-down in the engine: the gate fails it;
// an unchanged re-run passes.
func TestBenchGate(t *testing.T) {
	suite := filepath.Join("testdata", "bench", "gate.yaml")
	out := t.TempDir()
	code, stdout, stderr := run(t, "bench", "--suite", suite, "--out", out)
	if code != 0 || !strings.Contains(stdout, "| parallel |") {
		t.Fatalf("baseline: exit %d %s %s", code, stdout, stderr)
	}
	baseline := benchJSON(t, out)

	slow := t.TempDir()
	code, stdout, _ = run(t, "bench", "--suite", suite, "--baseline", baseline, "--max-regression", "10", "--fault-slow", "1.2", "--out", slow)
	if code != 1 || !strings.Contains(stdout, "REGRESSION") || !strings.Contains(stdout, "**FAILED**") {
		t.Errorf("planted slow-down: exit %d\n%s", code, stdout)
	}
	t.Logf("planted 20%% slow-down:\n%s", stdout)

	same := t.TempDir()
	code, stdout, _ = run(t, "bench", "--suite", suite, "--baseline", baseline, "--max-regression", "10", "--out", same)
	if code != 0 || !strings.Contains(stdout, "**passed**") {
		t.Errorf("unchanged re-run: exit %d\n%s", code, stdout)
	}
	t.Logf("unchanged re-run:\n%s", stdout)
	if b, err := os.ReadFile(filepath.Join(runDir(t, same), "summary.md")); err != nil || !strings.Contains(string(b), "Regression gate") {
		t.Errorf("summary.md: %v", err)
	}
}

func TestBenchErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("name: x\ncases:\n  - name: a\n    traces: [nope.json]\n"), 0o644)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"bench"}, "needs --suite"},
		{[]string{"bench", "--suite", bad}, "bad.yaml: line 4: cases[0].traces: nope.json"},
		{[]string{"bench", "--suite", filepath.Join("testdata", "bench", "gate.yaml"), "--baseline", filepath.Join(dir, "none.json")}, "none.json"},
	} {
		if code, _, errOut := run(t, tt.args...); code != 2 || !strings.Contains(errOut, tt.want) {
			t.Errorf("%v: exit %d %q, want 2 and %q", tt.args, code, errOut, tt.want)
		}
	}
}
