package scheduler

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/wfsched/wfsched/dag"
	"github.com/wfsched/wfsched/internal/heap"
	"github.com/wfsched/wfsched/tokenizer"
)

// ErrorMode says what a node's failure does to the rest of the run.
type ErrorMode string

const (
	// SkipDependents (the default) skips the failed node's descendants and
	// reports them; other branches and workflows go on.
	SkipDependents ErrorMode = "skip-dependents"
	// FailFast stops the whole run at the first failure.
	FailFast ErrorMode = "fail-fast"
	// Continue runs the descendants as if the node had succeeded.
	Continue ErrorMode = "continue"
)

// Config configures a replay. The zero value of each field but Policy means
// its default.
type Config struct {
	Policy      Policy
	MaxParallel int         // nodes in flight per workflow; 0: DefaultMaxParallel
	OnError     ErrorMode   // "": SkipDependents
	Context     ContextMode // "": ContextReference
	// MaxTokens, when positive, caps each LLM node's max_tokens (its
	// reference output length) as the prototype's --max-tokens does;
	// OutputTokens, when positive, sets every call's max_tokens to exactly
	// that instead (with ignore_eos, every output is then that long).
	MaxTokens    int
	OutputTokens int
	Temperature  *float64 // nil: the server's default
	// NoIgnoreEOS stops sending ignore_eos, so outputs end where the model
	// (or the engine's draw) ends them instead of at the reference length.
	NoIgnoreEOS bool
	// ToolLatency is the modeled time of tool nodes with no recorded
	// duration.
	ToolLatency time.Duration
	// Workflows is how many workflows to replay, cycling through the
	// traces; 0 means one per trace. Concurrency is how many run at once
	// (0: 1).
	Workflows, Concurrency int
	// TimeScale is the server's wall seconds per modeled second (0: 1):
	// tool waits are scaled by it and every time reported is divided by it.
	TimeScale float64
	// Arrival is when workflows start: by default a closed loop of
	// Concurrency; open loops (Poisson, gamma) start them on a clock.
	Arrival Arrival
	// SharedReplays lets replays of one trace share prompts. By default,
	// when a run replays a trace more than once, each workflow's prompts
	// start with a line naming it, so that they share no cached prefix with
	// other replays of the same trace: real workflows run different tasks.
	SharedReplays bool
	Seed          uint64
	Encoder       *tokenizer.Encoder // nil: tokenizer.Default()
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.Policy == nil {
		return errors.New("no policy")
	}
	switch c.OnError {
	case "", SkipDependents, FailFast, Continue:
	default:
		return fmt.Errorf("unknown on-error mode %q (want skip-dependents, fail-fast or continue)", c.OnError)
	}
	switch c.Context {
	case "", ContextReference, ContextLive:
	default:
		return fmt.Errorf("unknown context %q (want reference or live)", c.Context)
	}
	if c.MaxParallel < 0 || c.MaxTokens < 0 || c.OutputTokens < 0 || c.ToolLatency < 0 || c.Workflows < 0 || c.Concurrency < 0 || !(c.TimeScale >= 0) || math.IsInf(c.TimeScale, 0) {
		return errors.New("limits, counts, latencies and the time scale must not be negative")
	}
	if err := c.Arrival.Validate(); err != nil {
		return err
	}
	if c.Arrival.Open() && c.Workflows == 0 && c.Arrival.Duration == 0 {
		return errors.New("an open arrival process needs a number of workflows or a duration to stop")
	}
	if t := c.Temperature; t != nil && !(*t >= 0 && *t <= 2) {
		return fmt.Errorf("temperature %v: want 0 to 2", *c.Temperature)
	}
	return nil
}

// Sink receives results as they complete. The runner serializes calls.
type Sink interface {
	Node(NodeResult) error
	Workflow(WorkflowResult) error
}

// RunResult is how a replay ended.
type RunResult struct {
	Outcome   string    // OutcomeCompleted, OutcomeFailed or OutcomeInterrupted
	Start     time.Time // wall
	End       time.Time
	DurationS float64 // modeled seconds
	Workflows int     // finished (any outcome)
	Completed int
	Failed    int
	Cut       int // interrupted workflows
	Nodes     int // node results delivered
	Planned   int // workflows asked for (0: as many as arrived in the duration)
	Reason    string
}

// trace is a graph prepared for replay, shared by its workflows.
type trace struct {
	g      *dag.Graph
	topo   *dag.Topology
	rank   []float64
	pos    []int
	levels []int // nodes per level
	prompt *prompter
}

type runner struct {
	cfg      Config
	tagged   bool // start prompts with the workflow's id
	c        Completer
	t0       time.Time
	scale    float64
	cancel   context.CancelFunc
	failFast sync.Once
	reason   string

	sinkMu  sync.Mutex
	sink    Sink
	sinkErr error
	nodes   int
}

// Run replays cfg.Workflows workflows over the traces with the completer,
// delivering every node's and workflow's result to sink as it completes.
// A canceled ctx stops dispatching, cancels the calls in flight and returns
// once they have ended; results already delivered are never lost. The error
// is non-nil only for run-fatal problems (bad input, a failing sink).
func Run(ctx context.Context, cfg Config, traces []*dag.Graph, c Completer, sink Sink) (RunResult, error) {
	if err := cfg.Validate(); err != nil {
		return RunResult{}, err
	}
	if len(traces) == 0 {
		return RunResult{}, errors.New("no trace to replay")
	}
	if cfg.MaxParallel == 0 {
		cfg.MaxParallel = DefaultMaxParallel
	}
	if cfg.OnError == "" {
		cfg.OnError = SkipDependents
	}
	if cfg.Context == "" {
		cfg.Context = ContextReference
	}
	if cfg.Workflows == 0 && !cfg.Arrival.Open() {
		cfg.Workflows = len(traces)
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 1
	}
	if cfg.TimeScale == 0 {
		cfg.TimeScale = 1
	}
	enc := cfg.Encoder
	if enc == nil {
		var err error
		if enc, err = tokenizer.Default(); err != nil {
			return RunResult{}, err
		}
	}
	prepared := make([]*trace, len(traces))
	for i, g := range traces {
		t, err := prepare(g, enc, cfg.Context)
		if err != nil {
			return RunResult{}, err
		}
		prepared[i] = t
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	r := &runner{cfg: cfg, c: c, t0: time.Now(), scale: cfg.TimeScale, cancel: cancel, sink: sink,
		tagged: (cfg.Workflows > len(traces) || cfg.Workflows == 0) && !cfg.SharedReplays}
	res := RunResult{Start: r.t0}
	var mu sync.Mutex
	var g errgroup.Group
	start := func(i int, arrival time.Time, slot chan struct{}) {
		t := prepared[i%len(prepared)]
		g.Go(func() error {
			if slot != nil {
				defer func() { <-slot }()
			}
			wr := r.workflow(runCtx, i, t, arrival)
			r.deliver(func() error { return sink.Workflow(wr) })
			mu.Lock()
			defer mu.Unlock()
			res.Workflows++
			switch wr.Outcome {
			case OutcomeCompleted:
				res.Completed++
			case OutcomeFailed:
				res.Failed++
			default:
				res.Cut++
			}
			return nil
		})
	}
	if !cfg.Arrival.Open() {
		g.SetLimit(cfg.Concurrency)
		for i := 0; i < cfg.Workflows && runCtx.Err() == nil; i++ {
			start(i, time.Now(), nil)
		}
	} else {
		// Open loop: each workflow arrives at its time; over the cap it
		// waits for a slot, and the wait is queueing delay.
		gen := newArrivals(cfg.Arrival)
		var slots chan struct{}
		if cfg.Arrival.MaxConcurrency > 0 {
			slots = make(chan struct{}, cfg.Arrival.MaxConcurrency)
		}
		timer := time.NewTimer(0)
		<-timer.C
		for i := 0; (cfg.Workflows == 0 || i < cfg.Workflows) && runCtx.Err() == nil; i++ {
			at := gen.next()
			if d := cfg.Arrival.Duration; d > 0 && at > d.Seconds() {
				break
			}
			arrival := r.t0.Add(time.Duration(at * r.scale * float64(time.Second)))
			timer.Reset(time.Until(arrival))
			select {
			case <-timer.C:
			case <-runCtx.Done():
			}
			if slots != nil {
				select {
				case slots <- struct{}{}:
				case <-runCtx.Done():
				}
			}
			if runCtx.Err() != nil {
				break
			}
			start(i, arrival, slots)
		}
		timer.Stop()
	}
	res.Planned = cfg.Workflows
	g.Wait()
	res.End = time.Now()
	res.DurationS = since(res.End, r.t0, r.scale)
	res.Nodes = r.nodes
	switch {
	case r.sinkErr != nil:
		return res, fmt.Errorf("writing results: %w", r.sinkErr)
	case ctx.Err() != nil:
		res.Outcome, res.Reason = OutcomeInterrupted, "interrupted: "+ctx.Err().Error()
	case r.reason != "":
		res.Outcome, res.Reason = OutcomeFailed, r.reason
	case res.Failed > 0 || res.Cut > 0 || cfg.Workflows > 0 && res.Workflows < cfg.Workflows:
		res.Outcome, res.Reason = OutcomeFailed, fmt.Sprintf("%d of %d workflows failed", res.Failed+res.Cut, cfg.Workflows)
	default:
		res.Outcome = OutcomeCompleted
	}
	return res, nil
}

func prepare(g *dag.Graph, enc *tokenizer.Encoder, mode ContextMode) (*trace, error) {
	topo, err := dag.Analyze(g)
	if err != nil {
		return nil, fmt.Errorf("trace %s: %w", g.ID, err)
	}
	_, rank := dag.CriticalPath(topo, dag.CostModel{}.Costs(g))
	t := &trace{g: g, topo: topo, rank: rank, pos: make([]int, len(g.Nodes)), levels: make([]int, len(topo.Levels))}
	for k, v := range topo.Order {
		t.pos[v] = k
	}
	for l, vs := range topo.Levels {
		t.levels[l] = len(vs)
	}
	t.prompt = newPrompter(g, topo, enc, mode)
	return t, nil
}

// deliver calls the sink under the lock, keeping the first error; a failing
// sink stops the run.
func (r *runner) deliver(f func() error) {
	r.sinkMu.Lock()
	defer r.sinkMu.Unlock()
	if r.sinkErr != nil {
		return
	}
	if err := f(); err != nil {
		r.sinkErr = err
		r.cancel()
	}
}

func (r *runner) stopRun(reason string) {
	r.failFast.Do(func() {
		r.reason = reason
		r.cancel()
	})
}

// done is a finished node, by position.
type done struct {
	v   int
	res NodeResult
}

// workflow replays one workflow: this goroutine owns its state; workers run
// the nodes and hand results back on a channel sized to the node count, so
// none ever blocks.
func (r *runner) workflow(ctx context.Context, idx int, t *trace, arrival time.Time) WorkflowResult {
	g := t.g
	n := len(g.Nodes)
	id := fmt.Sprintf("wf-%05d", idx)
	pol := r.cfg.Policy
	st := &State{Graph: g, Topo: t.topo, Rank: t.rank, Pos: t.pos}
	limit := max(1, pol.Limit(r.cfg.MaxParallel))

	indeg := make([]int, n)
	status := make([]string, n)
	readyAt := make([]time.Time, n)
	left := append([]int(nil), t.levels...)
	ready := heap.New(func(a, b int) bool { return pol.Less(st, a, b) }, 0)
	now := time.Now()
	for v := 0; v < n; v++ {
		indeg[v] = len(t.topo.Parents(v))
		if indeg[v] == 0 {
			ready.Push(v)
			readyAt[v] = now
		}
	}
	generated := map[int]string{}
	results := make(chan done, n)
	var workers errgroup.Group
	workers.SetLimit(limit)
	inFlight := 0
	wr := WorkflowResult{Workflow: id, Trace: g.ID, Nodes: n}
	var all []NodeResult

	finish := func(v int, res NodeResult) {
		status[v] = res.Status
		all = append(all, res)
		r.deliver(func() error {
			r.nodes++
			return r.sink.Node(res)
		})
		left[t.topo.Level[v]]--
		for st.Level < len(left)-1 && left[st.Level] == 0 {
			st.Level++
		}
	}
	var skip func(v int, cause string)
	skip = func(v int, cause string) {
		for _, c := range t.topo.Children(v) {
			if status[c] != "" {
				continue
			}
			nd := g.Nodes[c]
			finish(int(c), NodeResult{Workflow: id, Trace: g.ID, Node: nd.ID, Kind: string(nd.Kind), Agent: nd.Agent,
				Status: StatusSkipped, Error: "not run: " + cause})
			skip(int(c), cause)
		}
	}

	for {
		for ctx.Err() == nil && inFlight < limit && ready.Len() > 0 && pol.Admit(st, ready.Top()) {
			v := ready.Pop()
			{
				inFlight++
				status[v] = "running"
				msgs := r.prepareCall(t, v, generated, id)
				readyTime := readyAt[v]
				workers.Go(func() error {
					results <- done{v, r.execute(ctx, id, t, v, msgs, readyTime)}
					return nil
				})
			}
		}
		if inFlight == 0 {
			break
		}
		d := <-results
		inFlight--
		res := d.res
		if res.Status == StatusOK && res.Text != "" {
			generated[d.v] = res.Text
		}
		finish(d.v, res)
		failed := res.Status == StatusFailed
		if failed {
			switch r.cfg.OnError {
			case SkipDependents:
				skip(d.v, fmt.Sprintf("%s failed", res.Node))
				continue
			case FailFast:
				r.stopRun(fmt.Sprintf("fail-fast: workflow %s node %s failed: %s", id, res.Node, res.Error))
				continue
			}
		}
		if res.Status != StatusOK && !failed {
			continue // canceled: the run is stopping
		}
		at := time.Now()
		for _, c := range t.topo.Children(d.v) {
			indeg[c]--
			if indeg[c] == 0 && status[c] == "" {
				ready.Push(int(c))
				readyAt[c] = at
			}
		}
	}
	workers.Wait()
	wr.ArrivalS = since(arrival, r.t0, r.scale)
	return r.summarize(wr, t, all)
}

// prepareCall builds node v's messages in the coordinator, which owns the
// generated outputs of the live context.
func (r *runner) prepareCall(t *trace, v int, generated map[int]string, wf string) []Message {
	if t.g.Nodes[v].Kind != dag.KindLLM {
		return nil
	}
	tag := ""
	if r.tagged {
		tag = "Workflow " + wf + "."
	}
	return t.prompt.messages(v, func(u int) (string, bool) {
		s, ok := generated[u]
		return s, ok
	}, tag)
}

// execute runs one node.
func (r *runner) execute(ctx context.Context, wf string, t *trace, v int, msgs []Message, ready time.Time) NodeResult {
	nd := t.g.Nodes[v]
	start := time.Now()
	res := NodeResult{Workflow: wf, Trace: t.g.ID, Node: nd.ID, Kind: string(nd.Kind), Agent: nd.Agent, Status: StatusOK,
		ReadyS: since(ready, r.t0, r.scale), StartS: since(start, r.t0, r.scale)}
	res.QueueWaitS = res.StartS - res.ReadyS
	switch nd.Kind {
	case dag.KindLLM:
		maxTokens := max(1, nd.OutputTokens.N)
		if r.cfg.MaxTokens > 0 {
			maxTokens = min(maxTokens, r.cfg.MaxTokens)
		}
		if r.cfg.OutputTokens > 0 {
			maxTokens = r.cfg.OutputTokens
		}
		call := Call{
			Messages: msgs, MaxTokens: maxTokens, IgnoreEOS: !r.cfg.NoIgnoreEOS, Temperature: r.cfg.Temperature,
			Extra:   map[string]any{"workflow_metadata": map[string]any{"workflow_id": wf, "agent_id": nd.Agent, "workflow_priority": 1.0}},
			Headers: map[string]string{"X-Workflow-Id": wf, "X-Agent-Id": nd.Agent},
		}
		cr := r.c.Complete(ctx, call)
		res.TTFTS, res.E2ES = cr.TTFT.Seconds()/r.scale, cr.E2E.Seconds()/r.scale
		res.ITLS = make([]float64, len(cr.ITL))
		for k, d := range cr.ITL {
			res.ITLS[k] = d.Seconds() / r.scale
		}
		res.PromptTokens, res.CompletionTokens, res.CachedTokens = cr.PromptTokens, cr.CompletionTokens, cr.CachedTokens
		res.UsageReported, res.FinishReason, res.HTTPStatus, res.Attempts = cr.UsageReported, cr.FinishReason, cr.Status, cr.Attempts
		res.Text = cr.Text
		if cr.Err != nil {
			res.Status, res.Error = StatusFailed, cr.Err.Error()
			if ctx.Err() != nil {
				res.Status = StatusCanceled
			}
		}
	case dag.KindTool:
		d := nd.Duration.D()
		if d == 0 {
			d = r.cfg.ToolLatency
		}
		timer := time.NewTimer(time.Duration(float64(d) * r.scale))
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			res.Status, res.Error = StatusCanceled, ctx.Err().Error()
		}
	}
	res.EndS = since(time.Now(), r.t0, r.scale)
	return res
}

// summarize computes a workflow's figures from its node results.
func (r *runner) summarize(wr WorkflowResult, t *trace, all []NodeResult) WorkflowResult {
	service := make([]float64, len(t.g.Nodes))
	idx := map[string]int{}
	for v, n := range t.g.Nodes {
		idx[n.ID] = v
	}
	first, last, busy := 0.0, 0.0, 0.0
	started := false
	wr.CachedKnown = true
	llm := 0
	for _, res := range all {
		switch res.Status {
		case StatusOK:
			wr.OK++
		case StatusFailed:
			wr.Failed++
		case StatusSkipped:
			wr.Skipped++
			continue
		case StatusCanceled:
			wr.Canceled++
		}
		if !started || res.StartS < first {
			first = res.StartS
		}
		started = true
		last = max(last, res.EndS)
		service[idx[res.Node]] = res.Service()
		busy += res.Service()
		if res.Kind == string(dag.KindLLM) {
			llm++
			wr.PromptTokens += res.PromptTokens
			wr.CompletionTokens += res.CompletionTokens
			if res.CachedTokens != nil {
				wr.CachedTokens += *res.CachedTokens
			} else {
				wr.CachedKnown = false
			}
		}
	}
	if llm == 0 {
		wr.CachedKnown = false
	}
	wr.NotRun = wr.Nodes - len(all)
	wr.StartS, wr.EndS = first, last
	wr.MakespanS = last - first
	if started {
		wr.QueueDelayS = max(0, first-wr.ArrivalS)
		wr.CompletionS = last - wr.ArrivalS
	}
	path, _ := dag.CriticalPath(t.topo, service)
	wr.CriticalPathS = path.Length
	if wr.MakespanS > 0 {
		wr.Efficiency = wr.CriticalPathS / wr.MakespanS
		wr.Parallelism = busy / wr.MakespanS
	}
	switch {
	case wr.Canceled > 0 || wr.NotRun > 0:
		wr.Outcome = OutcomeInterrupted
	case wr.Failed > 0 || wr.Skipped > 0:
		wr.Outcome = OutcomeFailed
	default:
		wr.Outcome = OutcomeCompleted
	}
	return wr
}

// ErrorModes lists the on-error modes.
func ErrorModes() string {
	return strings.Join([]string{string(SkipDependents), string(FailFast), string(Continue)}, ", ")
}
