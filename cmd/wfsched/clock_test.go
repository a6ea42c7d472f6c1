package main

import (
	"strings"
	"testing"

	"github.com/wfsched/wfsched/report"
	"github.com/wfsched/wfsched/scheduler"
)

// TestClockVirtualByDefault: the embedded engines run on the virtual
// clock unless asked otherwise, and the run says so in its header, its
// timing row and summary.json.
func TestClockVirtualByDefault(t *testing.T) {
	out := t.TempDir()
	code, stdout, stderr := run(t, "run", "--dag", example, "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"virtual clock: times are modeled, exactly", "exact (virtual clock)"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	r := readSummary(t, runDir(t, out))
	if r.Backend.Clock != "virtual" || r.Timing == nil || r.Timing.Verdict != report.TimingExact || r.Outcome != scheduler.OutcomeCompleted {
		t.Errorf("backend %+v timing %+v outcome %s", r.Backend, r.Timing, r.Outcome)
	}
}

// TestClockFlags: combinations that mean nothing are refused with exit 2.
func TestClockFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--clock", "virtual", "--time-scale", "1"}, "--time-scale paces the wall clock"},
		{[]string{"--clock", "virtual", "--endpoint", "http://127.0.0.1:9"}, "a real server (--endpoint) runs on the wall clock"},
		{[]string{"--clock", "sundial"}, "want virtual or wall"},
	} {
		args := append([]string{"run", "--dag", example, "--out", t.TempDir()}, tt.args...)
		code, _, stderr := run(t, args...)
		if code != exitUsage || !strings.Contains(stderr, tt.want) {
			t.Errorf("%v: exit %d, stderr %q (want %q)", tt.args, code, stderr, tt.want)
		}
	}
}

// TestWallTimingUnreliable: at a thousandth of real time a modeled step
// lasts microseconds, far below what timers can sleep, so the engine
// falls behind; the run must say its timing is unreliable rather than
// print the late figures as if they were fine.
func TestWallTimingUnreliable(t *testing.T) {
	out := t.TempDir()
	code, stdout, stderr := run(t, "run", "--dag", example, "--time-scale", "0.001", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	r := readSummary(t, runDir(t, out))
	if r.Backend.Clock != "wall" || r.Timing == nil || r.Timing.Verdict != report.TimingUnreliable || r.Timing.Overstated <= report.MaxOverstated {
		t.Fatalf("clock %q timing %+v", r.Backend.Clock, r.Timing)
	}
	if !strings.Contains(stdout, "UNRELIABLE") || !strings.Contains(stdout, "--clock virtual") {
		t.Errorf("table does not flag the timing:\n%s", stdout)
	}
}

// TestWorkflowPolicyOverHTTP: a workflow policy works on the wall clock
// through the router: the engines run priority scheduling, the client
// sends each call's priority and the router passes it on (an engine under
// fcfs would refuse it with a 400, failing the run).
func TestWorkflowPolicyOverHTTP(t *testing.T) {
	out := t.TempDir()
	code, stdout, stderr := run(t, "run", "--dag", "../../traces/agents-40.json", "--workflows", "4", "--concurrency", "4", "--instances", "2",
		"--workflow-policy", "las", "--max-connections", "4", "--time-scale", "0.05", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, stderr, stdout)
	}
	r := readSummary(t, runDir(t, out))
	if r.Config.WorkflowPolicy != "las" || r.Outcome != scheduler.OutcomeCompleted || r.Backend.Clock != "wall" || r.Backend.Routing == "" {
		t.Errorf("config %+v, outcome %s, backend %+v", r.Config, r.Outcome, r.Backend)
	}
	// And under fcfs engines the same calls are refused at once.
	code, _, stderr = run(t, "run", "--dag", "../../traces/research-team.json", "--workflow-policy", "las", "--scheduling-policy", "fcfs", "--out", t.TempDir())
	if code != exitUsage || !strings.Contains(stderr, "--scheduling-policy priority") {
		t.Errorf("las on fcfs engines: exit %d, %s", code, stderr)
	}
}
