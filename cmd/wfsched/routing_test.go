package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wfsched/wfsched/report"

	"github.com/wfsched/wfsched/internal/testenv"
)

func TestRunBehindEmbeddedRouter(t *testing.T) {
	out := t.TempDir()
	code, stdout, stderr := run(t, "run", "--dag", "../../traces/agents-40.json", "--instances", "3", "--routing-logic", "workflow_aware",
		"--workflows", "6", "--concurrency", "6", "--time-scale", "0.1", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, stdout, stderr)
	}
	r := readSummary(t, runDir(t, out))
	st := r.Backend.RouterStats
	if r.Backend.Routing != "workflow-aware" || len(r.Backend.URLs) != 3 || st == nil || st.AffinityMisses != 6 || st.ActiveWorkflows != 0 {
		// Each workflow is forgotten at the router as it ends: none is left.
		t.Fatalf("backend %+v stats %+v", r.Backend, st)
	}
	// Served through the router, counted on the engines behind it.
	if r.Summary.Requests == 0 || r.Summary.ServerHitRate != r.Summary.CacheHitRate {
		t.Errorf("hit rates: responses %v, servers %v", r.Summary.CacheHitRate, r.Summary.ServerHitRate)
	}
	// Each engine's utilisation, its busy time from its own counter.
	if len(r.Summary.Utilisation) != 3 {
		t.Fatalf("utilisation of %d backends, want 3", len(r.Summary.Utilisation))
	}
	for _, u := range r.Summary.Utilisation {
		if u.BusyFrom != "engine counter" || !(u.BusyFraction > 0 && u.BusyFraction <= 1) || u.Samples == 0 || !(u.KVUsageMax > 0 && u.KVUsageMax <= 1) {
			t.Errorf("utilisation %+v", u)
		}
	}
}

func TestCompareRoutingLogics(t *testing.T) {
	out := t.TempDir()
	code, stdout, stderr := run(t, "compare", "--dag", "../../traces/agents-40.json", "--instances", "2", "--routing-logics", "roundrobin,workflow-aware",
		"--workflows", "4", "--concurrency", "4", "--iterations", "1", "--time-scale", "0.1", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "speedup vs roundrobin") || !strings.Contains(stdout, "workflow-aware") {
		t.Errorf("stdout:\n%s", stdout)
	}
	b, _ := os.ReadFile(filepath.Join(runDir(t, out), "comparison.json"))
	var d report.ComparisonDoc
	if err := json.Unmarshal(b, &d); err != nil || d.ArmsAre != "routing-logics" || len(d.Arms) != 2 {
		t.Errorf("comparison %+v %v", d, err)
	}
	for _, args := range [][]string{
		{"compare", "--dag", example, "--routing-logics", "roundrobin,workflow-aware"},
		{"compare", "--dag", example, "--instances", "2", "--routing-logics", "fastest"},
		{"run", "--dag", example, "--instances", "2", "--endpoint", "http://127.0.0.1:1"},
		{"run", "--dag", example, "--instances", "2", "--routing-logic", "random"},
	} {
		if code, _, errOut := run(t, args...); code != 2 {
			t.Errorf("%v: exit %d %s", args, code, errOut)
		}
	}
}

func TestRouterCommand(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var simOut, out, errOut testenv.Buffer
	simDone := make(chan int, 1)
	go func() {
		simDone <- execute(ctx, []string{"sim", "--listen", "127.0.0.1:0", "--instances", "2", "--time-scale", "0.05"}, &simOut, &errOut)
	}()
	urlRE := regexp.MustCompile(`http://127\.0\.0\.1:\d+`)
	waitFor := func(b *testenv.Buffer, n int) []string {
		deadline := time.Now().Add(10 * time.Second)
		for {
			if u := urlRE.FindAllString(b.String(), -1); len(u) >= n {
				return u
			}
			if time.Now().After(deadline) {
				t.Fatalf("no URL printed: %q %q", b.String(), errOut.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	engines := waitFor(&simOut, 2)
	done := make(chan int, 1)
	go func() {
		done <- execute(ctx, []string{"router", "--static-backends", strings.Join(engines, ","), "--routing-logic", "workflow_aware",
			"--listen", "127.0.0.1:0", "--workflow-ttl", "3600"}, &out, &errOut)
	}()
	rt := waitFor(&out, 1)[0]
	resp, err := http.Get(rt + "/health")
	if err != nil || resp.StatusCode != 200 || resp.Header.Get("X-Wfsched-Time-Scale") != "0.05" {
		t.Fatalf("router health: %v %v", resp, err)
	}
	resp.Body.Close()
	outDir := t.TempDir()
	code, stdout, stderr := run(t, "run", "--dag", example, "--endpoint", rt, "--out", outDir)
	if code != 0 || !strings.Contains(stdout, "completed") {
		t.Fatalf("run through the router: exit %d %s %s", code, stdout, stderr)
	}
	if r := readSummary(t, runDir(t, outDir)); r.Summary.ServerHitRate != r.Summary.CacheHitRate || r.Backend.TimeScale != 0.05 {
		t.Errorf("summary through the router: scale %v, hit rates %v %v", r.Backend.TimeScale, r.Summary.CacheHitRate, r.Summary.ServerHitRate)
	}
	cancel()
	for _, c := range []chan int{done, simDone} {
		select {
		case code := <-c:
			if code != 0 {
				t.Errorf("exit %d: %s", code, errOut.String())
			}
		case <-time.After(10 * time.Second):
			t.Fatal("did not stop")
		}
	}
	if code, _, errOut := run(t, "router"); code != 2 || !strings.Contains(errOut, "--backends") {
		t.Errorf("no backends: exit %d %s", code, errOut)
	}
}

// The router's soft memory limit: its ceiling, or nine tenths of its
// container's memory limit when that is lower.
func TestSoftMemoryLimit(t *testing.T) {
	dir := t.TempDir()
	file := fileWriter(t, dir)
	const ceiling = 1147 << 20
	missing := filepath.Join(dir, "missing")
	for _, tt := range []struct {
		files []string
		want  int64
	}{
		{nil, ceiling},
		{[]string{missing}, ceiling},
		{[]string{file("v2-max", "max\n")}, ceiling},
		{[]string{file("v2-1g", "1073741824\n")}, 1073741824 / 10 * 9},
		{[]string{missing, file("v1-1g", "1073741824\n")}, 1073741824 / 10 * 9},
		{[]string{file("v1-none", "9223372036854771712\n")}, ceiling},
		{[]string{file("v2-4g", "4294967296")}, ceiling},
	} {
		if got := softMemoryLimit(ceiling, tt.files...); got != tt.want {
			t.Errorf("%v: %d, want %d", tt.files, got, tt.want)
		}
	}
}
