package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wfsched/wfsched/replay"
	"github.com/wfsched/wfsched/report"
)

func readSweep(t *testing.T, out string) (string, report.SweepDoc) {
	t.Helper()
	dir := runDir(t, out)
	b, err := os.ReadFile(filepath.Join(dir, "sweep.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d report.SweepDoc
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	return dir, d
}

// An automatic sweep climbs from about one workflow in flight until the
// median slowdown passes the threshold, and the curve rises with load.
func TestSweepAuto(t *testing.T) {
	out := t.TempDir()
	code, stdout, stderr := run(t, "sweep", "--dag", "../../traces/fanout-12.json", "--rates", "auto", "--workflows", "12",
		"--time-scale", "0.05", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, stdout, stderr)
	}
	dir, d := readSweep(t, out)
	idle := d.Idle["parallel"]
	if len(idle) != 1 || len(d.Points) < 1 || len(d.Points) > replay.MaxAutoRates {
		t.Fatalf("idle %v, %d points", idle, len(d.Points))
	}
	first, last := d.Points[0].Summary, d.Points[len(d.Points)-1].Summary
	if len(d.Points) == 1 {
		// Only when the machine is so busy that the first rate saturates.
		if !d.Saturation["parallel"].Reached {
			t.Fatalf("one point and not saturated: %+v", d.Saturation)
		}
		t.Skip("saturated at the first rate: the machine is too busy for the trend checks")
	}
	// Modeled times at this small time scale stretch when the machine is
	// busy (tests run in parallel, under -race), so only the trend is
	// asserted: slowdowns are near 1 or above and grow with load.
	if first.Slowdown == nil || last.Slowdown == nil || float64(first.Slowdown.P50) < 0.8 || float64(last.Slowdown.P50) <= float64(first.Slowdown.P50) {
		t.Errorf("slowdown %+v at the lowest rate, %+v at the highest: want at least about 1, growing with load", first.Slowdown, last.Slowdown)
	}
	if float64(last.Completion.P50) <= float64(first.Completion.P50) {
		t.Errorf("completion p50 %v at the highest rate, %v at the lowest: want it to grow with load", last.Completion.P50, first.Completion.P50)
	}
	// Auto stops at the first saturated rate, saturated by slowdown or by
	// throughput inside the arrival window, or after its most rates.
	sat := d.Saturation["parallel"]
	lastRate := d.Points[len(d.Points)-1].Rate
	switch {
	case !sat.Reached && len(d.Points) != replay.MaxAutoRates:
		t.Errorf("stopped after %d rates without saturating: %+v", len(d.Points), sat)
	case sat.Reached && sat.Rate != lastRate:
		t.Errorf("saturated at %v but went on to %v", sat.Rate, lastRate)
	case sat.Why == "slowdown" && float64(last.Slowdown.P50) <= d.SaturationSlowdown,
		sat.Why == "throughput" && float64(last.WindowPerMin) >= report.MinThroughput*float64(last.WindowOfferedPerMin):
		t.Errorf("saturation %+v does not follow from the last point (slowdown %v, %v/min done while %v/min arrived)", sat, last.Slowdown.P50, last.WindowPerMin, last.WindowOfferedPerMin)
	}
	t.Run("in a browser", func(t *testing.T) { checkPage(t, filepath.Join(dir, "report.html")) })
	for _, f := range []string{"sweep.csv", "sweep.md", "report.html", "sweep-completion.svg", "sweep-throughput.svg"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	if !strings.Contains(stdout, "Saturation:") || !strings.Contains(stdout, "slowdown p50/p90") {
		t.Errorf("stdout:\n%s", stdout)
	}
}

func TestSweepArms(t *testing.T) {
	out := t.TempDir()
	code, stdout, stderr := run(t, "sweep", "--dag", example, "--rates", "1,0.2", "--workflows", "6", "--policies", "sequential,parallel",
		"--time-scale", "0.02", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, stdout, stderr)
	}
	dir, d := readSweep(t, out)
	if len(d.Points) != 4 || d.Rates[0] != 0.2 || d.Points[0].Arm != "sequential" || d.Points[1].Arm != "parallel" {
		t.Fatalf("rates %v points %+v", d.Rates, d.Points)
	}
	// Each arm has its own idle reference, keyed by trace id. (Which arm
	// is faster is left to the policy tests: at this time scale a busy
	// machine can reorder them.)
	if len(d.Idle) != 2 || d.Idle["parallel"]["research-team"] <= 0 || d.Idle["sequential"]["research-team"] <= 0 {
		t.Errorf("idle completion %v", d.Idle)
	}
	for _, p := range d.Points {
		if p.Summary.Slowdown == nil || p.Summary.Slowdown.N != p.Summary.Completed {
			t.Errorf("%s at %g: slowdown %+v for %d completed workflows", p.Arm, p.Rate, p.Summary.Slowdown, p.Summary.Completed)
		}
	}
	csv, err := os.ReadFile(filepath.Join(dir, "sweep.csv"))
	if err != nil || strings.Count(string(csv), "\n") != 5 {
		t.Errorf("sweep.csv: %v\n%s", err, csv)
	}
	for _, args := range [][]string{
		{"sweep", "--dag", example},
		{"sweep", "--dag", example, "--rates", "1,x"},
		{"sweep", "--dag", example, "--rates", "0"},
		{"sweep", "--dag", example, "--rates", "1", "--rate", "2"},
		{"sweep", "--dag", example, "--rates", "1", "--arrival", "closed"},
		{"sweep", "--dag", example, "--rates", "1", "--saturation-slowdown", "1"},
		{"sweep", "--dag", example, "--rates", "1", "--routing-logics", "roundrobin"},
	} {
		if code, _, errOut := run(t, args...); code != 2 {
			t.Errorf("%v: exit %d %s", args, code, errOut)
		}
	}
}

// TestReportSweep: report renders a sweep folder again, file for file as
// the sweep wrote it, and the files are readable by others (they were
// made 0600).
func TestReportSweep(t *testing.T) {
	out := t.TempDir()
	if code, stdout, stderr := run(t, "sweep", "--dag", example, "--rates", "0.5,1", "--workflows", "4", "--out", out); code != 0 {
		t.Fatalf("exit %d: %s %s", code, stdout, stderr)
	}
	dir, _ := readSweep(t, out)
	names := []string{"sweep.json", "sweep.csv", "sweep.md", "report.html", "sweep-completion.svg"}
	before := map[string][]byte{}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		before[n] = b
		if n != "sweep.json" { // what report reads
			os.Remove(filepath.Join(dir, n))
		}
	}
	code, stdout, stderr := run(t, "report", dir)
	if code != 0 || !strings.Contains(stdout, "report.html") {
		t.Fatalf("report of a sweep folder: exit %d: %s %s", code, stdout, stderr)
	}
	for _, n := range names {
		p := filepath.Join(dir, n)
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(b, before[n]) {
			t.Errorf("%s: rendered again otherwise than the sweep wrote it (%v)", n, err)
		}
		if st, err := os.Stat(p); err != nil || st.Mode().Perm()&0o044 != 0o044 {
			t.Errorf("%s: mode %v, want readable by group and others", n, st.Mode())
		}
	}
}
