package replay

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/wfsched/wfsched/client"
	"github.com/wfsched/wfsched/dag"
	"github.com/wfsched/wfsched/internal/waitline"
	"github.com/wfsched/wfsched/metrics"
	"github.com/wfsched/wfsched/router"
	"github.com/wfsched/wfsched/scheduler"
	"github.com/wfsched/wfsched/sim"
	"github.com/wfsched/wfsched/tokenizer"
)

// VirtualConfig configures the embedded engines on the virtual clock.
type VirtualConfig struct {
	// Engine configures every engine (engine i is seeded Seed+i, as a
	// wall-clock cluster's are); its Clock and TimeScale are not used.
	Engine    sim.Config
	Instances int // 0: 1
	// Routing is the routing logic in front of the engines; "" means none
	// (one engine). Admission is the router's admission limit per engine
	// (0: none).
	Routing   string
	Admission int
	// MaxConns is the client's limit on calls in flight; more wait, by
	// priority then first come first served, the wait counted in their
	// TTFT (0: the client's default, client.DefaultMaxConns).
	MaxConns int
	// KeepText decodes each output into text (the live context needs it).
	KeepText bool
	// SampleEvery is the utilisation sampling interval in modeled time
	// (0: one second).
	SampleEvery time.Duration
}

// Virtual is the embedded engines on the virtual clock, with wfsched's
// routing in front when asked, and the client's connection limit: the
// server a virtual run's event loop drives. Every decision is made by the
// code the wall-clock path runs: the engine's steps (sim.Engine.Advance),
// the routing logic (router.Balancer), the chat template (tokenizer). What
// the wall path adds and this does not: HTTP, and so the network's and the
// proxy's latency (zero here) and injected HTTP faults.
type Virtual struct {
	engines  []*sim.Engine
	names    []string
	due      []time.Duration // each engine's next step end
	busy     []bool
	bal      *router.Balancer
	memo     *tokenizer.Memo
	keepText bool
	maxConns int
	conns    int
	queue    waitline.Line[*pending] // calls waiting for a connection
	now      time.Duration
	ids      []int
	msgs     []tokenizer.Message

	sampler    *metrics.Sampler
	every      time.Duration
	nextSample time.Duration
}

type pending struct {
	call scheduler.Call
	done func(scheduler.CallResult)
	sent time.Duration
}

var _ scheduler.VirtualServer = (*Virtual)(nil)

// NewVirtual returns the engines of cfg, idle at modeled time 0.
func NewVirtual(cfg VirtualConfig) (*Virtual, error) {
	n := max(1, cfg.Instances)
	if n > 1 && cfg.Routing == "" {
		return nil, fmt.Errorf("%d engines need a routing logic", n)
	}
	v := &Virtual{keepText: cfg.KeepText, maxConns: cfg.MaxConns, every: cfg.SampleEvery,
		due: make([]time.Duration, n), busy: make([]bool, n)}
	if v.maxConns == 0 {
		v.maxConns = client.DefaultMaxConns
	}
	if v.every == 0 {
		v.every = time.Second
	}
	for i := 0; i < n; i++ {
		ecfg := cfg.Engine
		ecfg.Seed += uint64(i)
		ecfg.Clock = sim.NewFakeClock(scheduler.VirtualEpoch)
		ecfg.TimeScale = 1
		e, err := sim.New(ecfg)
		if err != nil {
			return nil, err
		}
		v.engines = append(v.engines, e)
		v.names = append(v.names, fmt.Sprintf("engine-%d", i))
	}
	if cfg.Routing != "" {
		// The workflow table's times (last seen, TTL) are virtual too.
		now := func() time.Time { return scheduler.VirtualEpoch.Add(v.now) }
		bal, err := router.NewBalancer(router.Config{Backends: v.names, Logic: cfg.Routing, Now: now, Admission: cfg.Admission})
		if err != nil {
			return nil, err
		}
		v.bal = bal
	}
	v.memo = v.engines[0].Encoder().NewMemo(4096)
	v.sampler = metrics.NewSampler(v.names, func(_ context.Context, i int) (metrics.ServerCounters, metrics.ServerGauges, error) {
		c := v.engines[i].Counters()
		return EngineCounters(c), metrics.ServerGauges{Running: float64(c.Running), Waiting: float64(c.Waiting), KVUsage: c.KVUsage, Found: true}, nil
	})
	return v, nil
}

// EngineCounters are an embedded engine's counters as a scrape of its
// /metrics reads them.
func EngineCounters(c sim.Counters) metrics.ServerCounters {
	return metrics.ServerCounters{PrefixQueries: float64(c.PrefixQueries), PrefixHits: float64(c.PrefixHits), Preemptions: float64(c.Preemptions),
		PromptTokens: float64(c.PromptTokens), GenerationTokens: float64(c.GenerationTokens), Found: true, BusySeconds: c.BusySeconds, HasBusy: true}
}

// Names are the engines' names, as results and reports give them.
func (v *Virtual) Names() []string { return v.names }

// Balancer is the routing state, nil without routing.
func (v *Virtual) Balancer() *router.Balancer { return v.bal }

// Counters sums the engines' counters.
func (v *Virtual) Counters() metrics.ServerCounters {
	var sum metrics.ServerCounters
	for _, e := range v.engines {
		sum = sum.Add(EngineCounters(e.Counters()))
	}
	sum.Found = true
	return sum
}

// Utilisation returns each engine's figures over a run of durationS
// modeled seconds, from samples taken every SampleEvery of modeled time.
func (v *Virtual) Utilisation(durationS float64) []metrics.BackendUtil {
	return v.sampler.Stop(context.Background(), durationS)
}

// sample takes the samples due by now, before now's events change the
// state: between events nothing changes, so each is exact.
func (v *Virtual) sample(now time.Duration) {
	for v.nextSample <= now {
		v.sampler.Sample(context.Background(), v.nextSample.Seconds())
		v.nextSample += v.every
	}
	v.now = max(v.now, now)
}

// Send implements scheduler.VirtualServer.
func (v *Virtual) Send(now time.Duration, c scheduler.Call, done func(scheduler.CallResult)) {
	v.sample(now)
	p := &pending{call: c, done: done, sent: now}
	if v.conns >= v.maxConns {
		// Waiting calls go by priority (0 for all under fcfs), then in
		// the order they came, as the wall client's gate orders them.
		v.queue.Push(c.Priority, p)
		return
	}
	v.dispatch(p)
}

// Next implements scheduler.VirtualServer.
func (v *Virtual) Next() (time.Duration, bool) {
	at, ok := time.Duration(0), false
	for i, b := range v.busy {
		if b && (!ok || v.due[i] < at) {
			at, ok = v.due[i], true
		}
	}
	return at, ok
}

// Advance implements scheduler.VirtualServer: the engines due at now step,
// in order.
func (v *Virtual) Advance(now time.Duration) {
	v.sample(now)
	for i, e := range v.engines {
		if v.busy[i] && v.due[i] <= now {
			v.due[i], v.busy[i] = e.Advance(now)
		}
	}
}

// dispatch routes a call and submits it to its engine at v.now.
func (v *Virtual) dispatch(p *pending) {
	v.conns++
	c := &p.call
	i, wf := 0, ""
	if v.bal != nil {
		id := c.Workflow
		req := &router.Request{Session: id, Prompt: func() string { return promptText(c.Messages) }}
		if id != "" {
			req.Meta = &router.Metadata{WorkflowID: id, AgentID: c.Agent}
		}
		d := v.bal.Route(req)
		i = max(0, d.Backend) // every engine is healthy
		if d.Affinity != "" {
			wf = id
		}
		// Over the router's admission limit the call waits for a place
		// on its engine, as the proxy holds it.
		if ok, _ := v.bal.Admit(i, c.Priority, func() { v.submit(p, i, wf) }); !ok {
			return
		}
	}
	v.submit(p, i, wf)
}

// submit sends a routed (and admitted) call to engine i at v.now.
func (v *Virtual) submit(p *pending, i int, wf string) {
	c := &p.call
	if v.bal != nil {
		v.bal.Begin(i)
	}
	v.msgs = v.msgs[:0]
	for _, m := range c.Messages {
		v.msgs = append(v.msgs, tokenizer.Message{Role: m.Role, Content: m.Content, ToolCalls: dag.ChatToolCalls(m.ToolCalls)})
	}
	v.ids = v.memo.Chat(v.ids[:0], v.msgs, true)
	e := v.engines[i]
	r := sim.Request{Prompt: v.ids, MaxTokens: c.MaxTokens, MinTokens: c.MinTokens, IgnoreEOS: c.IgnoreEOS, Priority: c.Priority,
		OnDone: func(st *sim.Stream) { v.finished(p, i, wf, st) }}
	if c.Seed != nil {
		s := uint64(*c.Seed)
		r.Seed = &s
	}
	if _, err := e.SubmitAt(r, v.now); err != nil {
		v.release(i, wf, 0, 0)
		p.done(scheduler.CallResult{Start: scheduler.VirtualEpoch.Add(p.sent), Status: 400, TimeScale: 1,
			Err:      fmt.Errorf("status 400 from %s: %w", v.names[i], err),
			Attempts: []scheduler.Attempt{{Start: scheduler.VirtualEpoch.Add(p.sent), Status: 400, Err: err.Error(), Backend: v.names[i]}}})
		return
	}
	if !v.busy[i] {
		// An idle engine starts a step the moment a request arrives, as
		// vLLM's loop does: calls sent after it at the same instant wait
		// for the next step (on the wall clock they arrive microseconds
		// later, and so do they).
		v.due[i], v.busy[i] = e.Advance(v.now)
	}
}

// finished measures an ended call from its engine's record and hands its
// connection to the next call waiting.
func (v *Virtual) finished(p *pending, i int, wf string, st *sim.Stream) {
	_, times := st.Times()
	prompt, cached, completion := st.Usage()
	from := completion
	if v.keepText {
		from = 0
	}
	tokens, _, reason := st.Snapshot(from)
	cr := scheduler.CallResult{Start: scheduler.VirtualEpoch.Add(p.sent), PromptTokens: prompt, CompletionTokens: completion,
		UsageReported: true, CachedTokens: &cached, FinishReason: reason, Status: 200, TimeScale: 1}
	if len(times) > 0 {
		cr.TTFT, cr.E2E = times[0]-p.sent, times[len(times)-1]-p.sent
		cr.ITL = make([]time.Duration, len(times)-1)
		for k := 1; k < len(times); k++ {
			cr.ITL[k-1] = times[k] - times[k-1]
		}
	}
	if v.keepText {
		var b strings.Builder
		for _, t := range tokens {
			b.WriteString(v.engines[i].TokenText(t))
		}
		cr.Text = b.String()
	}
	cr.Attempts = []scheduler.Attempt{{Start: cr.Start, Duration: cr.E2E, Status: 200, Backend: v.names[i]}}
	v.release(i, wf, prompt, cached)
	p.done(cr)
}

// release gives back a call's connection and routing count; a call
// waiting for a connection takes it.
func (v *Virtual) release(i int, wf string, prompt, cached int) {
	v.conns--
	if v.bal != nil {
		v.bal.End(i)
		if wf != "" {
			v.bal.Finish(wf, i, prompt, cached, true)
		}
		v.bal.Unadmit(i)
	}
	if p, ok := v.queue.Pop(); ok {
		v.dispatch(p)
	}
}

// promptText is what routing by prefix reads of a call's messages.
func promptText(msgs []scheduler.Message) string {
	pm := make([]router.PromptMessage, len(msgs))
	for k, m := range msgs {
		pm[k] = router.PromptMessage{Role: m.Role, Content: m.Content}
	}
	return router.PromptText(pm, "")
}
