package replay

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/wfsched/wfsched/capture"
	"github.com/wfsched/wfsched/client"
	"github.com/wfsched/wfsched/metrics"
	"github.com/wfsched/wfsched/report"
	"github.com/wfsched/wfsched/router"
	"github.com/wfsched/wfsched/scheduler"
	"github.com/wfsched/wfsched/sim"
)

// Clocks.
const (
	// ClockVirtual replays the embedded engines in modeled time, in an
	// event loop: exact, deterministic, as fast as the CPU goes.
	ClockVirtual = "virtual"
	// ClockWall replays over HTTP in wall-clock time: the client, the
	// router and the engines (or real servers) as they run.
	ClockWall = "wall"
)

// DefaultEmbeddedScale is the time scale of the embedded engine on the
// wall clock: four times faster than the modeled GPU. Smaller scales make
// modeled decode steps shorter than the ~1 ms timers can sleep here, so
// tokens arrive in bursts and inter-token latencies stop being faithful.
const DefaultEmbeddedScale = 0.25

// Spec says what serves a run: real servers (Endpoints) or the embedded
// engines, on either clock, with wfsched's router in front when Routing is
// set or there are several servers.
type Spec struct {
	Endpoints []string // empty: the embedded engines
	Clock     string   // ClockVirtual or ClockWall; "": virtual for the embedded engines, wall for endpoints
	Instances int      // embedded engines (0: 1)
	Routing   string   // routing logic; "" with several servers: router.DefaultLogic
	// Admission is the router's admission limit per backend (0: none).
	Admission int
	// Embedded engines.
	Profile   string  // built-in name or JSON file ("": sim.DefaultProfile)
	TimeScale float64 // wall clock: wall seconds per modeled second (0: DefaultEmbeddedScale)
	Slow      float64 // planted step slow-down (0 or 1: none)
	// SchedulingPolicy is the engines' (sim.SchedulingFCFS or
	// SchedulingPriority); "": priority when Priorities, else fcfs.
	SchedulingPolicy string
	Seed             uint64
	// Priorities says the calls carry priorities (a workflow policy other
	// than fcfs): the embedded engines then schedule by priority, and an
	// endpoint must accept the field (checked at start).
	Priorities bool
	// The client.
	Model    string
	APIKey   string
	Timeout  time.Duration
	Attempts int
	MaxConns int
	// Capture, when set, is a folder the router in front records every
	// call to (a router is put in front for it), its texts kept as
	// CaptureContent says (capture.Hash when ""). Wall clock only.
	Capture, CaptureContent string
	// API is the endpoint calls go through over HTTP: client.APIChat
	// ("" too), APICompletions or APIResponses (wall clock only).
	API string
	// KeepText keeps outputs' text (the live context needs it).
	KeepText bool
	// WaitReady is how long to wait for the endpoints to answer before
	// giving up (0: not at all; the commands default to
	// DefaultWaitReady), so that a server started just before is waited
	// for rather than refused.
	WaitReady time.Duration
	// Log receives a line describing the embedded engines (nil: none).
	Log io.Writer
}

// ResolveClock returns the clock s runs on, or a usage error.
func (s Spec) ResolveClock() (string, error) {
	if err := client.CheckAPI(s.API); err != nil {
		return "", usage("--api: %v", err)
	}
	if s.Capture != "" && s.Clock == ClockVirtual {
		return "", usage("--capture records the HTTP calls through wfsched's router: the virtual clock makes none; use --clock wall (or leave --clock out)")
	}
	if s.Clock == ClockVirtual && s.API != "" && s.API != client.APIChat {
		return "", usage("--api %s goes over HTTP: the virtual clock drives the engines directly; use --clock wall (or leave --clock out)", s.API)
	}
	switch s.Clock {
	case "":
		if len(s.Endpoints) > 0 {
			return ClockWall, nil
		}
		return ClockVirtual, nil
	case ClockWall:
		return ClockWall, nil
	case ClockVirtual:
		if len(s.Endpoints) > 0 {
			return "", usage("--clock virtual models the embedded engines: a real server (--endpoint) runs on the wall clock")
		}
		return ClockVirtual, nil
	}
	return "", usage("--clock %q: want virtual or wall", s.Clock)
}

// Backend is a started backend; Close stops what it started.
type Backend struct {
	Info    report.Backend
	cl      *client.Client // wall clock
	virtual *Virtual       // virtual clock
	cluster *sim.Cluster   // embedded engines on the wall clock
	rt      *router.Router // embedded router on the wall clock
	closers []func()
	apiKey  string
}

// Close stops the router and engines the backend started.
func (b *Backend) Close() {
	for k := len(b.closers) - 1; k >= 0; k-- {
		b.closers[k]()
	}
	b.closers = nil
}

// forget drops a finished workflow's state in the router in front, so its
// memory follows the workflows in flight.
func (b *Backend) forget(id string) {
	switch {
	case b.rt != nil:
		b.rt.Forget(id)
	case b.virtual != nil && b.virtual.bal != nil:
		b.virtual.bal.Forget(id)
	}
}

// Start starts a backend with fresh state: the embedded engines (on the
// virtual clock, or serving HTTP on loopback), or checks the endpoints;
// then the router in front when asked. The server the client talks to
// answers before Start returns.
func Start(ctx context.Context, s Spec) (*Backend, error) {
	clock, err := s.ResolveClock()
	if err != nil {
		return nil, err
	}
	be := &Backend{Info: report.Backend{Kind: "endpoint", URLs: s.Endpoints, TimeScale: 1, Clock: clock, API: s.API}, apiKey: s.APIKey}
	fail := func(err error) (*Backend, error) {
		be.Close()
		return nil, err
	}
	n := max(1, s.Instances)
	if s.Instances < 0 {
		return nil, usage("--instances %d: want at least 1", s.Instances)
	}
	if len(s.Endpoints) > 0 && n > 1 {
		return nil, usage("--instances starts embedded engines: leave it out with --endpoint")
	}
	routing := s.Routing
	if routing == "" && (n > 1 || len(s.Endpoints) > 1 || s.Capture != "") {
		routing = router.DefaultLogic
	}
	if routing != "" {
		if err := router.CheckLogic(routing); err != nil {
			return nil, usage("--routing-logic: %v", err)
		}
	}
	if s.Admission < 0 {
		return nil, usage("--admission %d: want 0 (none) or more", s.Admission)
	}
	if s.Admission > 0 && routing == "" {
		return nil, usage("--admission holds requests at wfsched's router: give --routing-logic (or several servers)")
	}
	targets := s.Endpoints
	if len(s.Endpoints) == 0 {
		name := s.Profile
		if name == "" {
			name = sim.DefaultProfile
		}
		prof, err := sim.LoadProfile(name)
		if err != nil {
			return nil, usage("--profile: %v", err)
		}
		scale := s.TimeScale
		if scale == 0 {
			scale = DefaultEmbeddedScale
		}
		if err := sim.CheckTimeScale(scale); err != nil {
			return nil, usage("--time-scale: %v", err)
		}
		policy := s.SchedulingPolicy
		if policy == "" && s.Priorities {
			policy = sim.SchedulingPriority
		}
		if s.Priorities && policy != sim.SchedulingPriority {
			return nil, usage("a workflow policy other than fcfs sets calls' priorities: the engines need --scheduling-policy priority")
		}
		ecfg := sim.Config{Profile: prof, Seed: s.Seed, SlowFactor: s.Slow, SchedulingPolicy: policy}
		if err := ecfg.Validate(); err != nil {
			return nil, usage("--scheduling-policy: %v", err)
		}
		if clock == ClockVirtual {
			v, err := NewVirtual(VirtualConfig{Engine: ecfg, Instances: n, Routing: routing, Admission: s.Admission, MaxConns: s.MaxConns, KeepText: s.KeepText})
			if err != nil {
				return nil, usage("%v", err)
			}
			be.virtual = v
			be.Info = report.Backend{Kind: "embedded", URLs: v.Names(), Profile: prof.Name, TimeScale: 1, Clock: clock, Model: v.engines[0].Model()}
			if v.bal != nil {
				be.Info.Routing, be.Info.Router = v.bal.Logic(), "virtual"
			}
			if s.Log != nil {
				fmt.Fprintf(s.Log, "wfsched: %d embedded engine(s), profile %s, virtual clock (times reported are modeled)\n", n, prof.Name)
			}
			return be, nil
		}
		ecfg.TimeScale = scale
		c, err := sim.Start(context.WithoutCancel(ctx), sim.ClusterConfig{Instances: n, Engine: ecfg})
		if err != nil {
			return nil, err
		}
		be.cluster = c
		be.closers = append(be.closers, func() { c.Close() })
		targets = c.URLs()
		be.Info = report.Backend{Kind: "embedded", URLs: c.URLs(), Profile: prof.Name, TimeScale: scale, Clock: clock, API: s.API}
		if s.Log != nil {
			fmt.Fprintf(s.Log, "wfsched: %d embedded engine(s), profile %s, wall clock at time scale %g (times reported are modeled)\n", n, prof.Name, scale)
		}
	}
	base := targets[0]
	if routing != "" && len(s.Endpoints) > 0 {
		// Name the endpoints that do not answer, rather than the router;
		// go on once one does.
		var clients []*client.Client
		for _, u := range s.Endpoints {
			c, err := client.New(client.Config{BaseURL: u})
			if err != nil {
				return fail(usage("--endpoint: %v", err))
			}
			clients = append(clients, c)
		}
		var down []string
		err := waitReady(ctx, strings.Join(s.Endpoints, ", "), s.WaitReady, s.Log, func(ctx context.Context) error {
			down = down[:0]
			var first error
			for i, c := range clients {
				if _, err := c.Health(ctx); err != nil {
					down = append(down, s.Endpoints[i])
					if first == nil {
						first = err
					}
				}
			}
			if len(down) == len(clients) {
				return fmt.Errorf("no endpoint answers: %w", first)
			}
			return nil
		})
		if err != nil {
			return fail(err)
		}
		if len(down) > 0 && s.Log != nil {
			fmt.Fprintf(s.Log, "wfsched: warning: not answering, left to the router's health checks: %s\n", strings.Join(down, ", "))
		}
	}
	if routing != "" {
		rcfg := router.Config{Backends: targets, Logic: routing, Admission: s.Admission, CaptureContent: s.CaptureContent}
		if s.Capture != "" {
			if s.CaptureContent != "" {
				if err := capture.CheckMode(s.CaptureContent); err != nil {
					return fail(usage("--capture-content: %v", err))
				}
			}
			w, err := capture.Create(s.Capture)
			if err != nil {
				return fail(usage("--capture: %v", err))
			}
			be.closers = append(be.closers, func() { w.Close() })
			be.Info.Capture = w.Path()
			rcfg.Capture = w
		}
		rt, err := router.New(rcfg)
		if err != nil {
			return fail(usage("--routing-logic: %v", err))
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fail(err)
		}
		rctx, stop := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan struct{})
		go func() {
			defer close(done)
			rt.Serve(rctx, ln)
		}()
		be.closers = append(be.closers, func() {
			stop()
			<-done
		})
		be.rt = rt
		base = "http://" + ln.Addr().String()
		be.Info.Routing, be.Info.Router = rt.Logic(), base
	}
	cl, err := client.New(client.Config{BaseURL: base, Model: s.Model, APIKey: s.APIKey, Timeout: s.Timeout, MaxAttempts: s.Attempts, Seed: s.Seed, MaxConns: s.MaxConns, API: s.API})
	if err != nil {
		return fail(usage("--endpoint: %v", err))
	}
	wait := s.WaitReady
	if len(s.Endpoints) == 0 || routing != "" {
		wait = 0 // in-process, or endpoints already waited for
	}
	var scale float64
	err = waitReady(ctx, base, wait, s.Log, func(ctx context.Context) error {
		var err error
		if scale, err = cl.Health(ctx); err == nil {
			err = cl.Discover(ctx)
		}
		return err
	})
	if err != nil {
		return fail(err)
	}
	if be.Info.Kind == "embedded" {
		scale = be.Info.TimeScale
	}
	be.Info.TimeScale, be.Info.Model = scale, cl.Model()
	be.cl = cl
	if s.Priorities && len(s.Endpoints) > 0 {
		// A server that does not schedule by priority refuses the field
		// (vLLM without --scheduling-policy priority): find out now, with
		// one token, rather than fail every call.
		pctx, cancel := context.WithTimeout(ctx, time.Minute)
		r := cl.Complete(pctx, scheduler.Call{Messages: []scheduler.Message{{Role: "user", Content: "ping"}}, MaxTokens: 1, Priority: 1})
		cancel()
		if r.Err != nil {
			return fail(&Error{Err: fmt.Errorf("the server refuses a call with a priority (%v)", r.Err),
				Hint: "the workflow policy sets priorities, which vLLM takes only when started with --scheduling-policy priority; or use --workflow-policy fcfs"})
		}
	}
	return be, nil
}

// serverURLs are the servers that do the work: the engines, the endpoints,
// or those behind a wfsched router given as the one endpoint.
func (b *Backend) serverURLs(ctx context.Context) []string {
	urls := b.Info.URLs
	if b.Info.Kind == "endpoint" && len(urls) == 1 {
		urls = behindRouter(ctx, urls[0], b.apiKey)
	}
	return urls
}

// counters sums the counters of every server of the backend; Found is
// false when any could not be read.
func (b *Backend) counters(ctx context.Context) metrics.ServerCounters {
	if b.virtual != nil {
		return b.virtual.Counters()
	}
	var sum metrics.ServerCounters
	found := true
	urls := b.serverURLs(ctx)
	for _, u := range urls {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		c, err := metrics.Scrape(sctx, http.DefaultClient, u)
		cancel()
		found = found && err == nil && c.Found
		sum = sum.Add(c)
	}
	sum.Found = found && len(urls) > 0
	return sum
}

// RouterStats reads a wfsched router's /v1/workflows/stats (nil if none),
// with the API key if there is one.
func RouterStats(ctx context.Context, url, apiKey string) *router.Stats {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(sctx, "GET", strings.TrimSuffix(strings.TrimSuffix(url, "/"), "/v1")+"/v1/workflows/stats", nil)
	if apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+apiKey)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var st router.Stats
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&st) != nil {
		return nil
	}
	return &st
}

// behindRouter returns the servers behind a wfsched router at url (from
// its /v1/workflows/stats), or url itself for any other server.
func behindRouter(ctx context.Context, url, apiKey string) []string {
	st := RouterStats(ctx, url, apiKey)
	if st == nil || len(st.Backends) == 0 {
		return []string{url}
	}
	var out []string
	for _, b := range st.Backends {
		out = append(out, b.URL)
	}
	return out
}
