package client

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wfsched/wfsched/sim"
)

// BenchmarkMeasuredVsEngine sends requests one at a time to an engine on
// the wall clock and compares, request by request, the client's TTFT and
// E2E (converted to modeled time) with what the engine recorded (target:
// within 1 ms, or 1%).
func BenchmarkMeasuredVsEngine(b *testing.B) {
	for _, tc := range []struct {
		scale float64
		spin  time.Duration
	}{{1, 0}, {1, 1500 * time.Microsecond}, {0.25, 0}} {
		b.Run(fmt.Sprintf("scale=%g/spin=%v", tc.scale, tc.spin), func(b *testing.B) {
			var mu sync.Mutex
			engine := map[int]sim.Finished{} // by prompt length
			c, err := sim.Start(context.Background(), sim.ClusterConfig{Engine: sim.Config{TimeScale: tc.scale, Spin: tc.spin, Seed: 1,
				OnFinish: func(f sim.Finished) {
					mu.Lock()
					engine[f.PromptTokens] = f
					mu.Unlock()
				}}})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			cl, err := New(Config{BaseURL: c.URLs()[0]})
			if err != nil {
				b.Fatal(err)
			}
			var ttftErr, e2eRel []float64
			for i := 0; b.Loop(); i++ {
				call := userCall(strings.Repeat("word ", 100+37*i), 40) // a distinct prompt length each time
				r := cl.Complete(context.Background(), call)
				if r.Err != nil {
					b.Fatal(r.Err)
				}
				mu.Lock()
				f, ok := engine[r.PromptTokens]
				mu.Unlock()
				if !ok {
					b.Fatalf("engine has no record of a %d-token prompt", r.PromptTokens)
				}
				wantTTFT, wantE2E := f.FirstToken-f.Arrival, f.End-f.Arrival
				gotTTFT := time.Duration(float64(r.TTFT) / tc.scale)
				gotE2E := time.Duration(float64(r.E2E) / tc.scale)
				ttftErr = append(ttftErr, math.Abs(float64(gotTTFT-wantTTFT))/1e6)
				e2eRel = append(e2eRel, math.Abs(float64(gotE2E-wantE2E))/float64(wantE2E))
			}
			sort.Float64s(ttftErr)
			sort.Float64s(e2eRel)
			b.ReportMetric(ttftErr[len(ttftErr)/2], "ttft-abs-err-ms-p50")
			b.ReportMetric(ttftErr[len(ttftErr)-1], "ttft-abs-err-ms-max")
			b.ReportMetric(100*e2eRel[len(e2eRel)/2], "e2e-err-%-p50")
			b.ReportMetric(100*e2eRel[len(e2eRel)-1], "e2e-err-%-max")
		})
	}
}
