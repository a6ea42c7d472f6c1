package metrics

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
)

// ServerCounters are the vLLM counters wfsched reads from a server's
// /metrics, summed over label sets.
type ServerCounters struct {
	PrefixQueries, PrefixHits, Preemptions, PromptTokens, GenerationTokens float64
	// Found reports whether the server exposed the prefix-cache counters.
	Found bool
	// BusySeconds is wfsched's engine's busy time (modeled seconds spent
	// running steps); HasBusy is false for servers without that counter.
	BusySeconds float64 `json:"busy_seconds,omitempty"`
	HasBusy     bool    `json:"-"`
}

// ServerGauges are a server's instant state: requests running and waiting,
// and the fraction of its KV cache in use (vLLM's kv_cache_usage_perc, or
// gpu_cache_usage_perc before it was renamed), averaged over label sets.
type ServerGauges struct {
	Running, Waiting, KVUsage float64
	// Found reports whether the server exposed them.
	Found bool
}

// Sub returns c - before.
func (c ServerCounters) Sub(before ServerCounters) ServerCounters {
	return ServerCounters{
		PrefixQueries: c.PrefixQueries - before.PrefixQueries, PrefixHits: c.PrefixHits - before.PrefixHits,
		Preemptions: c.Preemptions - before.Preemptions, PromptTokens: c.PromptTokens - before.PromptTokens,
		GenerationTokens: c.GenerationTokens - before.GenerationTokens, Found: c.Found && before.Found,
		BusySeconds: c.BusySeconds - before.BusySeconds, HasBusy: c.HasBusy && before.HasBusy,
	}
}

// Add returns c + o.
func (c ServerCounters) Add(o ServerCounters) ServerCounters {
	return ServerCounters{
		PrefixQueries: c.PrefixQueries + o.PrefixQueries, PrefixHits: c.PrefixHits + o.PrefixHits,
		Preemptions: c.Preemptions + o.Preemptions, PromptTokens: c.PromptTokens + o.PromptTokens,
		GenerationTokens: c.GenerationTokens + o.GenerationTokens, Found: c.Found || o.Found,
		BusySeconds: c.BusySeconds + o.BusySeconds, HasBusy: c.HasBusy || o.HasBusy,
	}
}

// HitRate is hits over queries, NaN without queries.
func (c ServerCounters) HitRate() Float {
	if c.PrefixQueries <= 0 {
		return Float(nan())
	}
	return Float(c.PrefixHits / c.PrefixQueries)
}

// Scrape reads a server's counters from baseURL/metrics.
func Scrape(ctx context.Context, hc *http.Client, baseURL string) (ServerCounters, error) {
	c, _, err := ScrapeAll(ctx, hc, baseURL)
	return c, err
}

// ScrapeAll reads a server's counters and gauges from baseURL/metrics.
func ScrapeAll(ctx context.Context, hc *http.Client, baseURL string) (ServerCounters, ServerGauges, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", strings.TrimSuffix(strings.TrimSuffix(baseURL, "/"), "/v1")+"/metrics", nil)
	if err != nil {
		return ServerCounters{}, ServerGauges{}, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return ServerCounters{}, ServerGauges{}, fmt.Errorf("scrape %s: %w", baseURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ServerCounters{}, ServerGauges{}, fmt.Errorf("scrape %s/metrics: status %d", baseURL, resp.StatusCode)
	}
	return parseExposition(resp.Body)
}

// ParseCounters reads Prometheus text exposition. Python vLLM exposes
// counters with a _total suffix; some servers that mimic it use the bare
// name: both are accepted (the _total sample wins when both appear).
func ParseCounters(r io.Reader) (ServerCounters, error) {
	c, _, err := parseExposition(r)
	return c, err
}

func parseExposition(r io.Reader) (ServerCounters, ServerGauges, error) {
	vals := map[string]float64{}
	sets := map[string]int{} // label sets seen per name
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest := line, ""
		if k := strings.IndexAny(line, "{ "); k >= 0 {
			name, rest = line[:k], line[k:]
		}
		if !strings.HasPrefix(name, "vllm:") && name != "wfsched_sim_busy_seconds_total" {
			continue
		}
		if strings.HasPrefix(rest, "{") {
			end := labelsEnd(rest)
			if end < 0 {
				continue
			}
			rest = rest[end+1:]
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		vals[name] += v
		sets[name]++
	}
	if err := sc.Err(); err != nil {
		return ServerCounters{}, ServerGauges{}, err
	}
	get := func(base string) (float64, bool) {
		if v, ok := vals[base+"_total"]; ok {
			return v, true
		}
		v, ok := vals[base]
		return v, ok
	}
	var c ServerCounters
	var q, h bool
	c.PrefixQueries, q = get("vllm:prefix_cache_queries")
	c.PrefixHits, h = get("vllm:prefix_cache_hits")
	c.Found = q && h
	c.Preemptions, _ = get("vllm:num_preemptions")
	c.PromptTokens, _ = get("vllm:prompt_tokens")
	c.GenerationTokens, _ = get("vllm:generation_tokens")
	c.BusySeconds, c.HasBusy = vals["wfsched_sim_busy_seconds_total"]
	var g ServerGauges
	var run, wait bool
	g.Running, run = vals["vllm:num_requests_running"]
	g.Waiting, wait = vals["vllm:num_requests_waiting"]
	for _, name := range []string{"vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"} {
		if n := sets[name]; n > 0 {
			g.KVUsage = vals[name] / float64(n)
			g.Found = run && wait
			break
		}
	}
	return c, g, nil
}

// labelsEnd returns the index of the '}' closing a label set, skipping
// quoted values.
func labelsEnd(s string) int {
	quoted := false
	for i := 1; i < len(s); i++ {
		switch {
		case s[i] == '\\' && quoted:
			i++
		case s[i] == '"':
			quoted = !quoted
		case s[i] == '}' && !quoted:
			return i
		}
	}
	return -1
}
func nan() float64 { return math.NaN() }
