package sim

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wfsched/wfsched/tokenizer"
)

// BenchmarkEngineStep measures engine steps per CPU second with 256
// sequences decoding (the engine must never be what limits a run: target
// at least 20,000 steps/s). Prefill steps and resubmission are not timed.
func BenchmarkEngineStep(b *testing.B) {
	e, _, _ := newTestEngine(b, nil)
	fill := func(round int) {
		for i := 0; i < 256; i++ {
			if _, err := e.Submit(Request{Prompt: prompt(1000, round*256+i), MaxTokens: 400, IgnoreEOS: true}); err != nil {
				b.Fatal(err)
			}
		}
		for len(e.waiting) > 0 || len(e.inbox) > 0 || e.prefilling() {
			e.Step()
		}
	}
	fill(0)
	round := 1
	b.ResetTimer()
	for b.Loop() {
		info, ran := e.Step()
		if !ran || info.Seqs < 200 {
			b.StopTimer()
			for ran {
				_, ran = e.Step() // finish the stragglers
			}
			fill(round)
			round++
			b.StartTimer()
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "steps/s")
}

func (e *Engine) prefilling() bool {
	for _, s := range e.running {
		if s.computed < s.nPrompt {
			return true
		}
	}
	return false
}

// streamOnce sends one streaming chat request and reads it to the end,
// returning the wall time to the first content chunk and to the end, and
// the number of content chunks.
func streamOnce(ctx context.Context, hc *http.Client, url, body string) (ttft, e2e time.Duration, chunks int, err error) {
	req, _ := http.NewRequestWithContext(ctx, "POST", url+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		return 0, 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return 0, 0, 0, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	done := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "data: [DONE]":
			done = true
		case strings.HasPrefix(line, "data: ") && strings.Contains(line, `"content":" `):
			if chunks == 0 {
				ttft = time.Since(start)
			}
			chunks++
		}
	}
	e2e = time.Since(start)
	if err := sc.Err(); err != nil {
		return 0, 0, 0, err
	}
	if !done {
		return 0, 0, 0, fmt.Errorf("stream ended without [DONE]")
	}
	return ttft, e2e, chunks, nil
}

// serveConcurrent starts one engine at the given time scale and sends n
// streaming requests at once; it returns the errors seen and the wall time.
func serveConcurrent(t testing.TB, n int, scale float64) (errs []error, wall time.Duration, c *Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := Start(ctx, ClusterConfig{Engine: Config{TimeScale: scale, Seed: 1}})
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: 0}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			body := fmt.Sprintf(`{"messages": [{"role": "user", "content": "Request %d: tell me about the weather in a city you like, at some length."}], "max_tokens": 50, "ignore_eos": true, "stream": true}`, i)
			_, _, chunks, err := streamOnce(ctx, hc, c.URLs()[0], body)
			if err == nil && chunks != 50 {
				err = fmt.Errorf("%d content chunks, want 50", chunks)
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}(i)
	}
	wg.Wait()
	return errs, time.Since(start), c
}

func TestServeManyConcurrentStreams(t *testing.T) {
	errs, _, c := serveConcurrent(t, 300, 0.05)
	defer c.Close()
	if len(errs) > 0 {
		t.Fatalf("%d of 300 streams failed, first: %v", len(errs), errs[0])
	}
	if got := c.Servers()[0].Engine().Counters().Finished[FinishLength]; got != 300 {
		t.Errorf("engine finished %d requests, want 300", got)
	}
}

// BenchmarkServe2000Streams serves 2,000 concurrent streaming requests at
// time scale 0.1 and reports failures (target: none) and the engine's lag.
func BenchmarkServe2000Streams(b *testing.B) {
	for b.Loop() {
		errs, wall, c := serveConcurrent(b, 2000, 0.1)
		e := c.Servers()[0].Engine()
		cnt := e.Counters()
		c.Close()
		if len(errs) > 0 {
			b.Fatalf("%d of 2000 streams failed, first: %v", len(errs), errs[0])
		}
		b.ReportMetric(float64(len(errs)), "errors")
		b.ReportMetric(wall.Seconds(), "wall-s")
		b.ReportMetric(float64(cnt.Finished[FinishLength]), "finished")
		b.ReportMetric(e.now.Seconds(), "modeled-s")
	}
}

// BenchmarkServedTiming compares client-measured TTFT and TPOT, converted
// back to modeled time, with the model's values, one request at a time
// (target: within 2%).
func BenchmarkServedTiming(b *testing.B) {
	for _, tc := range []struct {
		scale float64
		spin  time.Duration
	}{{1, 0}, {0.25, 0}, {0.1, 0}, {1, 1500 * time.Microsecond}, {0.1, 1500 * time.Microsecond}} {
		scale := tc.scale
		b.Run(fmt.Sprintf("scale=%g/spin=%v", scale, tc.spin), func(b *testing.B) {
			ctx := context.Background()
			c, err := Start(ctx, ClusterConfig{Engine: Config{TimeScale: scale, Seed: 1, Spin: tc.spin}})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			e := c.Servers()[0].Engine()
			hc := &http.Client{}
			const outTokens = 100
			request := func(i int) (string, int) {
				content := fmt.Sprintf("w%d ", i) + strings.Repeat("word ", 2000) // fresh, so nothing is cached
				msgs := []tokenizer.Message{{Role: "user", Content: content}}
				body, _ := json.Marshal(map[string]any{"messages": msgs2JSON(msgs), "max_tokens": outTokens, "ignore_eos": true, "stream": true})
				return string(body), e.enc.ChatCount(msgs, true)
			}
			warm, _ := request(-1) // connection and tokenizer cache
			if _, _, _, err := streamOnce(ctx, hc, c.URLs()[0], warm); err != nil {
				b.Fatal(err)
			}
			p := e.Profile()
			var ttftErr, tpotErr []float64
			for i := 0; b.Loop(); i++ {
				body, plen := request(i)
				ttft, e2e, chunks, err := streamOnce(ctx, hc, c.URLs()[0], body)
				if err != nil || chunks != outTokens {
					b.Fatalf("%v (%d chunks)", err, chunks)
				}
				wantTTFT := p.StepTime(plen, plen, 1)
				var decode time.Duration
				for k := 1; k < outTokens; k++ {
					decode += p.StepTime(1, plen+k, 1)
				}
				wantTPOT := decode / (outTokens - 1)
				gotTTFT := time.Duration(float64(ttft) / scale)
				gotTPOT := time.Duration(float64(e2e-ttft) / scale / (outTokens - 1))
				ttftErr = append(ttftErr, relErr(gotTTFT, wantTTFT))
				tpotErr = append(tpotErr, relErr(gotTPOT, wantTPOT))
			}
			b.ReportMetric(100*median(ttftErr), "ttft-err-%")
			b.ReportMetric(100*median(tpotErr), "tpot-err-%")
		})
	}
}

func msgs2JSON(msgs []tokenizer.Message) []map[string]string {
	out := make([]map[string]string, len(msgs))
	for i, m := range msgs {
		out[i] = map[string]string{"role": m.Role, "content": m.Content}
	}
	return out
}

func relErr(got, want time.Duration) float64 { return float64(got-want) / float64(want) }

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}
