package calibrate

import (
	"bufio"
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// running watches vLLM's vllm:num_requests_running gauge at /metrics
// while a probe runs, so a batch the server capped (its max_num_seqs) is
// measured as the batch it really ran, not the one sent.
type running struct {
	url  string
	http *http.Client
}

// newRunning returns a watcher when the server at base serves the gauge.
func newRunning(ctx context.Context, base string) *running {
	r := &running{url: base + "/metrics", http: &http.Client{Timeout: 2 * time.Second}}
	if _, ok := r.read(ctx); !ok {
		return nil
	}
	return r
}

// read sums the gauge over its label sets.
func (r *running) read(ctx context.Context) (int, bool) {
	req, err := http.NewRequestWithContext(ctx, "GET", r.url, nil)
	if err != nil {
		return 0, false
	}
	resp, err := r.http.Do(req)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, false
	}
	n, found := 0.0, false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "vllm:num_requests_running") {
			continue
		}
		if i := strings.LastIndexByte(line, ' '); i > 0 {
			if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
				n, found = n+v, true
			}
		}
	}
	return int(n), found
}

// watch polls the gauge every interval until stop is closed, and returns
// the most requests it saw running at once.
func (r *running) watch(ctx context.Context, every time.Duration) (stop func() int) {
	var mu sync.Mutex
	most := 0
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if n, ok := r.read(ctx); ok {
				mu.Lock()
				most = max(most, n)
				mu.Unlock()
			}
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() int {
		close(done)
		<-finished
		mu.Lock()
		defer mu.Unlock()
		return most
	}
}
