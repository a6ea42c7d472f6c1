package main

import (
	"strings"
	"testing"
)

func TestRunOpenLoop(t *testing.T) {
	out := t.TempDir()
	code, stdout, stderr := run(t, "run", "--dag", example, "--rate", "4", "--burstiness", "0.5", "--duration", "4s",
		"--max-concurrency", "3", "--time-scale", "0.05", "--slo", "wct:3000", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, stdout, stderr)
	}
	r := readSummary(t, runDir(t, out))
	s := r.Summary
	if !strings.HasPrefix(r.Config.Arrival, "gamma at 4/s (burstiness 0.5)") || s.Workflows < 4 || s.Completion.N != s.Completed ||
		float64(s.WorkflowsPerMin) <= 0 || float64(s.WorkflowGoodputMin) > float64(s.WorkflowsPerMin) {
		t.Errorf("arrival %q, summary %+v", r.Config.Arrival, s)
	}
	if !strings.Contains(stdout, "workflow completion time p50") || !strings.Contains(stdout, "arriving gamma") {
		t.Errorf("stdout:\n%s", stdout)
	}
	for _, args := range [][]string{
		{"run", "--dag", example, "--arrival", "replay"},
		{"run", "--dag", example, "--arrival", "storm", "--rate", "1"},
		{"run", "--dag", example, "--duration", "5s"},
		{"run", "--dag", example, "--rate", "-1"},
		{"run", "--dag", example, "--rate", "1", "--workflows", "0"},
	} {
		if code, _, errOut := run(t, args...); code != 2 {
			t.Errorf("%v: exit %d %s", args, code, errOut)
		}
	}
}
