package scheduler_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/wfsched/wfsched/client"
	"github.com/wfsched/wfsched/dag"
	"github.com/wfsched/wfsched/metrics"
	"github.com/wfsched/wfsched/scheduler"
	"github.com/wfsched/wfsched/sim"
)

// instant is a Completer that answers at once.
type instant struct{}

func (instant) Complete(_ context.Context, c scheduler.Call) scheduler.CallResult {
	return scheduler.CallResult{Start: time.Now(), CompletionTokens: c.MaxTokens, Text: "x"}
}

type discard struct{}

func (discard) Node(scheduler.NodeResult) error         { return nil }
func (discard) Workflow(scheduler.WorkflowResult) error { return nil }

// BenchmarkSchedulingOverhead measures wfsched's own cost per node:
// coordination, prompt building and result handling, with calls that
// return at once.
//
// layered-10000: 100 agents with 100 calls each, so every prompt resends a
// history of about 150 messages; fanout-10000: no histories, coordination
// alone.
func BenchmarkSchedulingOverhead(b *testing.B) {
	for _, shape := range []string{"layered", "fanout"} {
		g := gen(b, shape, 10_000)
		for _, name := range scheduler.Policies() {
			benchOverhead(b, shape+"-10000/"+name, g, name)
		}
	}
}

func benchOverhead(b *testing.B, label string, g *dag.Graph, name string) {
	{
		b.Run(label, func(b *testing.B) {
			cfg := scheduler.Config{Policy: policy(b, name), MaxParallel: 64}
			for b.Loop() {
				if _, err := scheduler.Run(context.Background(), cfg, []*dag.Graph{g}, instant{}, discard{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(g.Nodes)), "ns/node")
		})
	}
}

// BenchmarkMakespanVsCriticalPath replays generated fan-out and layered
// DAGs on the embedded engine (time scale 0.25, capacity not the limit)
// and reports makespan / critical-path bound (measured service times) for
// each policy (target for parallel: at most 1.05).
func BenchmarkMakespanVsCriticalPath(b *testing.B) {
	for _, shape := range []struct {
		name  string
		nodes int
	}{{"fanout", 32}, {"layered", 64}, {"mapreduce", 40}} {
		g := gen(b, shape.name, shape.nodes)
		for _, name := range scheduler.Policies() {
			b.Run(fmt.Sprintf("%s-%d/%s", shape.name, shape.nodes, name), func(b *testing.B) {
				c, err := sim.Start(context.Background(), sim.ClusterConfig{Engine: sim.Config{TimeScale: 0.25, Seed: 1}})
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				cl, err := client.New(client.Config{BaseURL: c.URLs()[0]})
				if err != nil {
					b.Fatal(err)
				}
				var rec *metrics.Recorder
				var res scheduler.RunResult
				for b.Loop() {
					rec = &metrics.Recorder{}
					res, err = scheduler.Run(context.Background(), scheduler.Config{Policy: policy(b, name), TimeScale: 0.25}, []*dag.Graph{g}, cl, rec)
					if err != nil || res.Outcome != scheduler.OutcomeCompleted {
						b.Fatalf("%v %s", err, res.Reason)
					}
				}
				s := rec.Summarize(res.DurationS)
				b.ReportMetric(float64(s.Makespan.Mean), "makespan-s")
				b.ReportMetric(float64(s.Critical.Mean), "cp-bound-s")
				b.ReportMetric(float64(s.Makespan.Mean)/float64(s.Critical.Mean), "makespan/bound")
			})
		}
	}
}
