package router

import (
	"context"
	"flag"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wfsched/wfsched/client"
	"github.com/wfsched/wfsched/dag"
	"github.com/wfsched/wfsched/internal/testenv"
	"github.com/wfsched/wfsched/scheduler"
	"github.com/wfsched/wfsched/sim"
)

var replicaRounds = flag.Int("replica-rounds", 0, "rounds of TestReplicasAppWorld (0: skip it)")

// roundRobin sends each request to the next of several routers, as a
// Kubernetes Service spreads connections over a Deployment's pods: a
// workflow's calls reach every replica.
type roundRobinTransport struct {
	hosts []string // host:port
	next  atomic.Uint64
	base  http.RoundTripper
}

func (t *roundRobinTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.URL.Host = t.hosts[t.next.Add(1)%uint64(len(t.hosts))]
	r.Host = r.URL.Host
	return t.base.RoundTrip(r)
}

// arm is one run's figures: the prefix-cache hit rate, a router's stats
// and how far its view of the loads was off.
type arm struct {
	hit     float64
	st      Stats
	loadOff float64
}

// nodeSink keeps the prompt and cached tokens of every call.
type nodeSink struct {
	mu             sync.Mutex
	prompt, cached int
	calls          int
}

func (s *nodeSink) Node(r scheduler.NodeResult) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Kind == string(dag.KindLLM) && r.Status == scheduler.StatusOK {
		s.calls++
		s.prompt += r.PromptTokens
		if r.CachedTokens != nil {
			s.cached += *r.CachedTokens
		}
	}
	return nil
}

func (s *nodeSink) Workflow(scheduler.WorkflowResult) error { return nil }

// AppWorld steps x 64 on 4 engines, through one router and through three
// replicas sharing Redis behind a round-robin client: the replicas keep
// every workflow on the one home they agree on (no workflow is homed
// twice) and reach the one router's prefix-cache hit rate within 2 points.
func TestReplicasAppWorld(t *testing.T) {
	if *replicaRounds == 0 {
		t.Skip("run with -replica-rounds N (N interleaved rounds of a minute of wall-clock replay; .ci/run runs 3)")
	}
	gs, err := dag.ReadFile(testenv.SharedFile(t, "steps/appworld.json"), dag.Options{})
	if err != nil {
		t.Fatal(err)
	}
	testRedis(t)
	const workflows, engines, scale = 64, 4, 0.1
	// The engines run 10 times faster than real time: the replicas read
	// each other's loads at least as often, relative to the calls'
	// durations, as every 250 ms would on the real clock.
	defer func(d time.Duration) { loadEvery = d }(loadEvery)
	loadEvery = time.Duration(float64(250*time.Millisecond) * scale)
	run := func(replicas int, state string) arm {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		prof, err := sim.LoadProfile(sim.DefaultProfile)
		if err != nil {
			t.Fatal(err)
		}
		var urls []string
		for i := range engines {
			u, stop := simEngineWith(t, ctx, sim.Config{Profile: prof, TimeScale: scale, Seed: uint64(i + 1)})
			defer stop()
			urls = append(urls, u)
		}
		var hosts []string
		var rts []*Router
		for range replicas {
			rt, u, stop := startReplica(t, Config{Backends: urls, HealthInterval: time.Hour, State: state})
			defer stop()
			rts = append(rts, rt)
			hosts = append(hosts, u[len("http://"):])
		}
		tr := &http.Transport{MaxIdleConnsPerHost: 256}
		defer tr.CloseIdleConnections()
		cl, err := client.New(client.Config{BaseURL: "http://" + hosts[0], HTTPClient: &http.Client{Transport: &roundRobinTransport{hosts: hosts, base: tr}}})
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.Discover(ctx); err != nil {
			t.Fatal(err)
		}
		sink := &nodeSink{}
		// How far each replica's view of a backend's load (its own
		// requests in flight and the others' it read) is from the truth,
		// sampled while the run goes.
		stopSample := make(chan struct{})
		sampled := make(chan float64)
		go func() {
			var off, samples int64
			for {
				select {
				case <-stopSample:
					sampled <- float64(off) / float64(max(samples, 1))
					return
				case <-time.After(2 * time.Millisecond):
				}
				for i := range rts[0].list() {
					var truth int64
					for _, rt := range rts {
						truth += rt.list()[i].inFlight.Load()
					}
					for _, rt := range rts {
						d := rt.list()[i].load() - truth
						off += max(d, -d)
						samples++
					}
				}
			}
		}()
		res, err := scheduler.Run(ctx, scheduler.Config{Policy: scheduler.Parallel{}, Workflows: workflows, Concurrency: workflows, TimeScale: scale, Seed: 1}, gs, cl, sink)
		if err != nil || res.Outcome != scheduler.OutcomeCompleted {
			t.Fatalf("%d replicas: %v %+v", replicas, err, res)
		}
		close(stopSample)
		return arm{hit: float64(sink.cached) / float64(sink.prompt), st: rts[len(rts)-1].StatsNow(), loadOff: <-sampled}
	}
	// Interleaved rounds, compared by their medians: the machine's noise
	// moves one run's hit rate by a point or two.
	var ones, threes []float64
	homes := func(s Stats) (out []int64) {
		for _, b := range s.Backends {
			out = append(out, b.Workflows)
		}
		return out
	}
	for round := 0; round < *replicaRounds; round++ {
		one := run(1, "memory")
		three := run(3, testRedis(t))
		st := three.st
		ones, threes = append(ones, one.hit), append(threes, three.hit)
		t.Logf("round %d: hit rate one router %.2f%% (%d spills, homes %v), three replicas on Redis %.2f%% (%d spills, homes %v, load seen off by %.2f requests on average)",
			round+1, 100*one.hit, one.st.Spillovers, homes(one.st), 100*three.hit, st.Spillovers, homes(st), three.loadOff)
		if st.AffinityMisses != workflows || st.Migrations != 0 || st.ActiveWorkflows != workflows {
			t.Errorf("replicas homed %d times for %d workflows (%d migrations, %d tracked)", st.AffinityMisses, workflows, st.Migrations, st.ActiveWorkflows)
		}
	}
	median := func(v []float64) float64 {
		sort.Float64s(v)
		return v[len(v)/2]
	}
	one, three := median(ones), median(threes)
	t.Logf("median hit rate: one router %.2f%%, three replicas %.2f%% (%+.2f points)", 100*one, 100*three, 100*(three-one))
	if d := 100 * (one - three); d > 2 || d < -2 {
		t.Errorf("the replicas' hit rate is %.2f points from one router's", -d)
	}
}
