package router

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
)

// metricNames scrapes url's /metrics and returns the series names it
// exports (a histogram's _bucket, _sum and _count too).
func metricNames(t *testing.T, url string) map[string]bool {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	names := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ := strings.Cut(line, "{")
		name, _, _ = strings.Cut(name, " ")
		names[name] = true
	}
	return names
}

// Every query of the Grafana dashboard names a metric the router or the
// engine (under vLLM's names) really exports.
func TestGrafanaDashboardMetricsExist(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	eng, stop := simEngine(t, ctx, 1)
	defer stop()
	_, url := startRouter(t, Config{Backends: []string{eng}})
	// One request of each kind, so labeled series exist.
	if status, _, body := send(t, "POST", url+"/v1/chat/completions",
		`{"messages":[{"role":"user","content":"hello"}],"max_tokens":3,"stream":true,"stream_options":{"include_usage":true},"workflow_metadata":{"workflow_id":"w","agent_id":"a"}}`); status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	have := metricNames(t, url)
	for n := range metricNames(t, eng) {
		have[n] = true
	}
	b, err := os.ReadFile("../deploy/grafana/wfsched-router.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	metric := regexp.MustCompile(`\b(wfsched_[a-z0-9_]+|vllm:[a-z0-9_:]+)`)
	queries := 0
	for _, p := range dash.Panels {
		for _, q := range p.Targets {
			queries++
			names := metric.FindAllString(q.Expr, -1)
			if len(names) == 0 {
				t.Errorf("panel %q: query %q names no metric", p.Title, q.Expr)
			}
			for _, n := range names {
				if !have[n] {
					t.Errorf("panel %q: %s is not exported by the router or the engine", p.Title, n)
				}
			}
		}
	}
	if queries < 10 {
		t.Errorf("%d queries in the dashboard", queries)
	}
}
