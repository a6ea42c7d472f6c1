package scheduler

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
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
	Policy Policy
	// WorkflowPolicy orders the calls of different workflows (nil: FCFS).
	WorkflowPolicy WorkflowPolicy
	// Aging, when positive, bounds how long a workflow policy's levels can
	// hold a call back: a call's priority is then the time it was sent, in
	// milliseconds since the run's start, plus its level times Aging, so a
	// call at level L goes as if it had come L*Aging later (first come
	// first served with a handicap) and none waits forever behind
	// newcomers. Zero orders by level alone.
	Aging       time.Duration
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
	if c.Aging < 0 {
		return errors.New("aging must not be negative")
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
	// ahead[v] is the most LLM calls on any chain of dependencies from v
	// (v included) to the end: the workflow's remaining critical path, in
	// calls, once v is ready.
	ahead  []int
	prompt *prompter
}

// runner is what a replay's two drivers share: the configuration, the
// prepared traces, the sink and the tally of finished workflows. The wall
// driver (Run) runs workflows on goroutines and calls over HTTP; the
// virtual driver (RunVirtual) runs them in one event loop on modeled time.
// Both decide through flow, the decision core.
type runner struct {
	cfg      Config
	tagged   bool // start prompts with the workflow's id
	prepared []*trace
	halted   atomic.Bool
	cancel   context.CancelFunc // wall: cancels the calls in flight
	failFast sync.Once
	reason   string

	sinkMu  sync.Mutex
	sink    Sink
	sinkErr error
	nodes   int

	resMu sync.Mutex
	res   RunResult
}

// newRunner applies cfg's defaults and prepares the traces.
func newRunner(cfg Config, traces []*dag.Graph, sink Sink) (*runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(traces) == 0 {
		return nil, errors.New("no trace to replay")
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
	if cfg.WorkflowPolicy == nil {
		cfg.WorkflowPolicy = FCFS{}
	}
	enc := cfg.Encoder
	if enc == nil {
		var err error
		if enc, err = tokenizer.Default(); err != nil {
			return nil, err
		}
	}
	prepared := make([]*trace, len(traces))
	for i, g := range traces {
		t, err := prepare(g, enc, cfg.Context)
		if err != nil {
			return nil, err
		}
		prepared[i] = t
	}
	return &runner{cfg: cfg, prepared: prepared, sink: sink,
		tagged: (cfg.Workflows > len(traces) || cfg.Workflows == 0) && !cfg.SharedReplays}, nil
}

// Run replays cfg.Workflows workflows over the traces with the completer,
// on the wall clock, delivering every node's and workflow's result to sink
// as it completes. A canceled ctx stops dispatching, cancels the calls in
// flight and returns once they have ended; results already delivered are
// never lost. The error is non-nil only for run-fatal problems (bad input,
// a failing sink).
func Run(ctx context.Context, cfg Config, traces []*dag.Graph, c Completer, sink Sink) (RunResult, error) {
	r, err := newRunner(cfg, traces, sink)
	if err != nil {
		return RunResult{}, err
	}
	cfg = r.cfg
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.cancel = cancel
	t0 := time.Now()
	scale := cfg.TimeScale
	now := func() float64 { return since(time.Now(), t0, scale) }
	r.res.Start = t0
	var g errgroup.Group
	start := func(i int, arrival time.Time, slot chan struct{}) {
		g.Go(func() error {
			if slot != nil {
				defer func() { <-slot }()
			}
			r.ended(r.workflow(runCtx, c, i, since(arrival, t0, scale), now))
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
			arrival := t0.Add(time.Duration(at * scale * float64(time.Second)))
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
	g.Wait()
	end := time.Now()
	return r.finish(ctx, end, since(end, t0, scale))
}

// ended tallies a finished workflow and delivers its result.
func (r *runner) ended(wr WorkflowResult) {
	r.deliver(func() error { return r.sink.Workflow(wr) })
	r.resMu.Lock()
	defer r.resMu.Unlock()
	r.res.Workflows++
	switch wr.Outcome {
	case OutcomeCompleted:
		r.res.Completed++
	case OutcomeFailed:
		r.res.Failed++
	default:
		r.res.Cut++
	}
}

// finish says how the run ended.
func (r *runner) finish(ctx context.Context, end time.Time, modeled float64) (RunResult, error) {
	res := r.res
	res.Planned = r.cfg.Workflows
	res.End = end
	res.DurationS = modeled
	res.Nodes = r.nodes
	switch {
	case r.sinkErr != nil:
		return res, fmt.Errorf("writing results: %w", r.sinkErr)
	case ctx.Err() != nil:
		res.Outcome, res.Reason = OutcomeInterrupted, "interrupted: "+ctx.Err().Error()
	case r.reason != "":
		res.Outcome, res.Reason = OutcomeFailed, r.reason
	case res.Failed > 0 || res.Cut > 0 || r.cfg.Workflows > 0 && res.Workflows < r.cfg.Workflows:
		res.Outcome, res.Reason = OutcomeFailed, fmt.Sprintf("%d of %d workflows failed", res.Failed+res.Cut, r.cfg.Workflows)
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
	t.ahead = make([]int, len(g.Nodes))
	for k := len(topo.Order) - 1; k >= 0; k-- {
		v := topo.Order[k]
		for _, c := range topo.Children(v) {
			t.ahead[v] = max(t.ahead[v], t.ahead[c])
		}
		if g.Nodes[v].Kind == dag.KindLLM {
			t.ahead[v]++
		}
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
		r.halt()
	}
}

// halt stops dispatching (and, on the wall clock, cancels the calls in
// flight).
func (r *runner) halt() {
	r.halted.Store(true)
	if r.cancel != nil {
		r.cancel()
	}
}

func (r *runner) stopRun(reason string) {
	r.failFast.Do(func() {
		r.reason = reason
		r.halt()
	})
}

// done is a finished node, by position.
type done struct {
	v   int
	res NodeResult
}

// workflow replays one workflow on the wall clock: this goroutine owns its
// flow; workers run the nodes and hand results back on a channel sized to
// the node count, so none ever blocks.
func (r *runner) workflow(ctx context.Context, c Completer, idx int, arrival float64, now func() float64) WorkflowResult {
	f := r.newFlow(idx, arrival, now())
	results := make(chan done, len(f.t.g.Nodes))
	var workers sync.WaitGroup
	for {
		for ctx.Err() == nil {
			j, ok := f.next(now())
			if !ok {
				break
			}
			workers.Add(1)
			go func() {
				defer workers.Done()
				results <- done{j.v, r.execute(ctx, c, j, now)}
			}()
		}
		if f.inFlight == 0 {
			break
		}
		d := <-results
		f.end(d.v, d.res, now())
	}
	workers.Wait()
	return f.result()
}

// execute runs one node on the wall clock.
func (r *runner) execute(ctx context.Context, c Completer, j job, now func() float64) NodeResult {
	res := j.res
	wait := func(d time.Duration) bool {
		timer := time.NewTimer(time.Duration(float64(d) * r.cfg.TimeScale))
		select {
		case <-timer.C:
			return true
		case <-ctx.Done():
			timer.Stop()
			res.Status, res.Error = StatusCanceled, ctx.Err().Error()
			return false
		}
	}
	switch {
	case !j.llm:
		wait(j.tool)
	case j.think > 0 && !wait(j.think):
	default:
		r.called(&res, c.Complete(ctx, j.call), r.cfg.TimeScale, ctx.Err() != nil)
	}
	res.EndS = now()
	return res
}

// flow is the decision core of one workflow's replay, the same on both
// clocks: the ready set in the policy's order, admission under the limit,
// and what a node's end does (its children become ready; a failure skips
// its descendants, stops the run or is ignored, as OnError says). Its
// driver owns it: one goroutine, or the event loop. Times are modeled
// seconds since the run's start.
type flow struct {
	r         *runner
	t         *trace
	id        string
	st        *State
	ws        *WorkflowState
	limit     int
	indeg     []int
	status    []string
	readyAt   []float64
	left      []int
	ready     *heap.Heap[int]
	generated map[int]string
	inFlight  int
	arrival   float64
	all       []NodeResult
}

// job is a node to run: an LLM call or a tool's modeled time, with its
// result begun (identity, ready and start times).
type job struct {
	v    int
	llm  bool
	call Call
	tool time.Duration // modeled
	// think is the agent's own time before an LLM call is sent (modeled).
	think time.Duration
	res   NodeResult
}

func (r *runner) newFlow(idx int, arrival, now float64) *flow {
	t := r.prepared[idx%len(r.prepared)]
	n := len(t.g.Nodes)
	pol := r.cfg.Policy
	st := &State{Graph: t.g, Topo: t.topo, Rank: t.rank, Pos: t.pos}
	f := &flow{r: r, t: t, id: fmt.Sprintf("wf-%05d", idx), st: st, limit: max(1, pol.Limit(r.cfg.MaxParallel)),
		indeg: make([]int, n), status: make([]string, n), readyAt: make([]float64, n), left: append([]int(nil), t.levels...),
		ready: heap.New(func(a, b int) bool { return pol.Less(st, a, b) }, 0), arrival: arrival}
	f.ws = &WorkflowState{State: st, PathAttained: make([]int, n), CallsAhead: t.ahead}
	for _, nd := range t.g.Nodes {
		f.ws.Remaining += referenceTokens(nd)
	}
	for v := 0; v < n; v++ {
		f.indeg[v] = len(t.topo.Parents(v))
		if f.indeg[v] == 0 {
			f.ready.Push(v)
			f.readyAt[v] = now
		}
	}
	return f
}

// next returns the next node the policy lets start now, if any, marked
// running; never once the run is halted.
func (f *flow) next(now float64) (job, bool) {
	pol := f.r.cfg.Policy
	if f.r.halted.Load() || f.inFlight >= f.limit || f.ready.Len() == 0 || !pol.Admit(f.st, f.ready.Top()) {
		return job{}, false
	}
	v := f.ready.Pop()
	f.inFlight++
	f.status[v] = "running"
	nd := f.t.g.Nodes[v]
	j := job{v: v, res: NodeResult{Workflow: f.id, Trace: f.t.g.ID, Node: nd.ID, Kind: string(nd.Kind), Agent: nd.Agent, Status: StatusOK,
		ReadyS: f.readyAt[v], StartS: now}}
	j.res.QueueWaitS = j.res.StartS - j.res.ReadyS
	switch nd.Kind {
	case dag.KindLLM:
		j.llm = true
		j.think = nd.Think.D()
		j.call = f.r.call(f, v)
		j.call.Priority = f.r.priority(f.ws, v, now)
	case dag.KindTool:
		j.tool = nd.Duration.D()
		if j.tool == 0 {
			j.tool = f.r.cfg.ToolLatency
		}
	}
	return j, true
}

// call builds LLM node v's call; the flow owns the generated outputs of the
// live context.
func (r *runner) call(f *flow, v int) Call {
	nd := f.t.g.Nodes[v]
	tag := ""
	if r.tagged {
		tag = "Workflow " + f.id + "."
	}
	msgs := f.t.prompt.messages(v, func(u int) (string, bool) {
		s, ok := f.generated[u]
		return s, ok
	}, tag)
	maxTokens := max(1, nd.OutputTokens.N)
	if r.cfg.MaxTokens > 0 {
		maxTokens = min(maxTokens, r.cfg.MaxTokens)
	}
	if r.cfg.OutputTokens > 0 {
		maxTokens = r.cfg.OutputTokens
	}
	return Call{
		Messages: msgs, MaxTokens: maxTokens, IgnoreEOS: !r.cfg.NoIgnoreEOS, Temperature: r.cfg.Temperature,
		Workflow: f.id, Agent: nd.Agent,
	}
}

// called fills an LLM node's result from its call's, whose times are
// divided by scale (wall seconds per modeled second); canceled says the
// run was stopping when the call failed.
func (r *runner) called(res *NodeResult, cr CallResult, scale float64, canceled bool) {
	res.TTFTS, res.E2ES = cr.TTFT.Seconds()/scale, cr.E2E.Seconds()/scale
	res.ITLS = make([]float64, len(cr.ITL))
	for k, d := range cr.ITL {
		res.ITLS[k] = d.Seconds() / scale
	}
	res.PromptTokens, res.CompletionTokens, res.CachedTokens = cr.PromptTokens, cr.CompletionTokens, cr.CachedTokens
	res.UsageReported, res.FinishReason, res.HTTPStatus, res.Attempts = cr.UsageReported, cr.FinishReason, cr.Status, cr.Attempts
	res.Text = cr.Text
	if cr.Err != nil {
		res.Status, res.Error = StatusFailed, cr.Err.Error()
		if canceled {
			res.Status = StatusCanceled
		}
	}
}

// end records node v's result: delivered at once; then, as OnError says,
// its children become ready or its descendants are skipped.
func (f *flow) end(v int, res NodeResult, now float64) {
	f.inFlight--
	served := 0
	if res.Status == StatusOK {
		served = res.PromptTokens + res.CompletionTokens
	}
	f.ws.Attained += served
	if served > 0 {
		f.ws.Calls++
	}
	f.ws.Remaining -= referenceTokens(f.t.g.Nodes[v])
	for _, c := range f.t.topo.Children(v) {
		f.ws.PathAttained[c] = max(f.ws.PathAttained[c], f.ws.PathAttained[v]+served)
	}
	if res.Status == StatusOK && res.Text != "" {
		if f.generated == nil {
			f.generated = map[int]string{}
		}
		f.generated[v] = res.Text
	}
	f.record(v, res)
	failed := res.Status == StatusFailed
	if failed {
		switch f.r.cfg.OnError {
		case SkipDependents:
			f.skip(v, fmt.Sprintf("%s failed", res.Node))
			return
		case FailFast:
			f.r.stopRun(fmt.Sprintf("fail-fast: workflow %s node %s failed: %s", f.id, res.Node, res.Error))
			return
		}
	}
	if res.Status != StatusOK && !failed {
		return // canceled: the run is stopping
	}
	for _, c := range f.t.topo.Children(v) {
		f.indeg[c]--
		if f.indeg[c] == 0 && f.status[c] == "" {
			f.ready.Push(int(c))
			f.readyAt[c] = now
		}
	}
}

func (f *flow) record(v int, res NodeResult) {
	f.status[v] = res.Status
	f.all = append(f.all, res)
	r := f.r
	r.deliver(func() error {
		r.nodes++
		return r.sink.Node(res)
	})
	f.left[f.t.topo.Level[v]]--
	for f.st.Level < len(f.left)-1 && f.left[f.st.Level] == 0 {
		f.st.Level++
	}
}

func (f *flow) skip(v int, cause string) {
	g := f.t.g
	for _, c := range f.t.topo.Children(v) {
		if f.status[c] != "" {
			continue
		}
		nd := g.Nodes[c]
		f.record(int(c), NodeResult{Workflow: f.id, Trace: g.ID, Node: nd.ID, Kind: string(nd.Kind), Agent: nd.Agent,
			Status: StatusSkipped, Error: "not run: " + cause})
		f.skip(int(c), cause)
	}
}

// result is the workflow's summary once nothing is in flight.
func (f *flow) result() WorkflowResult {
	return summarize(WorkflowResult{Workflow: f.id, Trace: f.t.g.ID, Nodes: len(f.t.g.Nodes), ArrivalS: f.arrival}, f.t, f.all)
}

// summarize computes a workflow's figures from its node results.
func summarize(wr WorkflowResult, t *trace, all []NodeResult) WorkflowResult {
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

// priority is node v's call priority: its workflow policy's level, aged
// as Config.Aging says (the fcfs policy's calls all stay at 0).
func (r *runner) priority(w *WorkflowState, v int, now float64) int {
	level := r.cfg.WorkflowPolicy.Priority(w, v)
	if r.cfg.Aging <= 0 || r.cfg.WorkflowPolicy.Name() == "fcfs" {
		return level
	}
	return int(now*1000) + level*int(r.cfg.Aging.Milliseconds())
}

// referenceTokens is an LLM node's work as the trace records it: its
// prompt and output tokens (0 for other nodes).
func referenceTokens(nd *dag.Node) int {
	if nd.Kind != dag.KindLLM {
		return 0
	}
	return nd.InputTokens.N + nd.OutputTokens.N
}

// ErrorModes lists the on-error modes.
func ErrorModes() string {
	return strings.Join([]string{string(SkipDependents), string(FailFast), string(Continue)}, ", ")
}
