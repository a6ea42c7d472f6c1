package sim

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/wfsched/wfsched/tokenizer"
)

// DefaultMedianOutput is the median output length, in tokens, drawn for
// requests that do not set ignore_eos.
const DefaultMedianOutput = 150

// Config configures an Engine. The zero value of each field means its
// default.
type Config struct {
	Profile   Profile // zero: the DefaultProfile built-in
	Model     string  // served model name; "" means Profile.Model
	TimeScale float64 // wall seconds per modeled second; 0 means 1
	Seed      uint64  // seeds every output draw
	Clock     Clock   // nil means a WallClock polling the last Spin of each sleep
	// Spin is how long before each step's end the wall clock stops sleeping
	// on a timer and polls instead (see WallClock); 0: never.
	Spin time.Duration
	// SlowFactor multiplies every step's time (a fault: 1.2 plants a 20%
	// slowdown); 0 means 1.
	SlowFactor float64
	// Jitter is the relative standard deviation of each step's time (a
	// fault: 0.05 makes steps vary by about 5%, as a real server's do),
	// drawn from the seed; 0: none.
	Jitter float64
	// MedianOutput is the median output length of requests without
	// ignore_eos (a log-normal draw); 0 means DefaultMedianOutput.
	MedianOutput int
	// SchedulingPolicy is vLLM's --scheduling-policy: SchedulingFCFS (""
	// too) or SchedulingPriority.
	SchedulingPolicy string
	// OnStep, if set, is called by the engine loop after every step.
	OnStep func(StepInfo)
	// OnFinish, if set, is called by the engine loop as each request ends.
	OnFinish func(Finished)
}

// Finished is what the engine recorded of one request, in modeled time
// since the engine started.
type Finished struct {
	PromptTokens, OutputTokens int
	Arrival, FirstToken, End   time.Duration // FirstToken is -1 without output
	Reason                     string
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.TimeScale != 0 {
		if err := CheckTimeScale(c.TimeScale); err != nil {
			return err
		}
	}
	if c.Jitter < 0 || c.Jitter > 0.5 || math.IsNaN(c.Jitter) {
		return fmt.Errorf("jitter %v: want a relative standard deviation from 0 to 0.5", c.Jitter)
	}
	if c.SlowFactor < 0 || math.IsNaN(c.SlowFactor) || math.IsInf(c.SlowFactor, 0) {
		return fmt.Errorf("slow factor %v: want a positive number", c.SlowFactor)
	}
	if c.Spin < 0 {
		return fmt.Errorf("spin %v is negative", c.Spin)
	}
	if c.MedianOutput < 0 {
		return fmt.Errorf("median output %d is negative", c.MedianOutput)
	}
	switch c.SchedulingPolicy {
	case "", SchedulingFCFS, SchedulingPriority:
	default:
		return fmt.Errorf("scheduling policy %q: want %s or %s", c.SchedulingPolicy, SchedulingFCFS, SchedulingPriority)
	}
	return nil
}

// Scheduling policies, as vLLM's --scheduling-policy names them. Under
// fcfs requests wait and are admitted in arrival order, and the newest
// running request is preempted when memory runs short; under priority
// they wait in order of (priority, arrival), a lower value first, and the
// running request with the highest (priority, arrival) is preempted.
const (
	SchedulingFCFS     = "fcfs"
	SchedulingPriority = "priority"
)

// Time scales outside [MinTimeScale, MaxTimeScale] are refused: below, a
// modeled step is far shorter than the shortest sleep the wall clock allows
// and every time reported would be the timer's, not the model's; above, a
// run would wait out hours for nothing.
const (
	MinTimeScale = 1e-3
	MaxTimeScale = 1e3
)

// CheckTimeScale validates a time scale (wall seconds per modeled second).
func CheckTimeScale(s float64) error {
	if !(s >= MinTimeScale && s <= MaxTimeScale) {
		return fmt.Errorf("time scale %v: want %g to %g wall seconds per modeled second", s, MinTimeScale, MaxTimeScale)
	}
	return nil
}

// StepInfo describes one engine step.
type StepInfo struct {
	Start, Duration time.Duration // modeled
	Tokens          int           // computed tokens (prefill chunks + decodes)
	Context         int           // context tokens read
	Seqs            int           // sequences in the step
	Prefills        int           // sequences still in prefill
	Preempted       int           // requests preempted to make room
	Running         int           // running after the step
	Waiting         int           // waiting after the step
}

// Request is one completion to serve: prompt token ids and sampling limits.
type Request struct {
	Prompt    []int
	MaxTokens int // at least 1
	MinTokens int
	IgnoreEOS bool
	// Stop strings and stop token ids end the output once it is past
	// MinTokens tokens (finish reason "stop"), as vLLM's are; the text up to
	// the stop string is the answer, or up to its end with IncludeStop.
	Stop         []string
	StopTokenIDs []int
	IncludeStop  bool
	Seed         *uint64 // output draws; nil: from the engine seed and arrival order
	// Output, when set, is the output the request gives token by token
	// (guided decoding's: a JSON document, a tool call, a choice); it ends
	// with finish reason "stop" after its last token, or "length" at
	// MaxTokens. Nil: sampled words of a length drawn as the engine's
	// output-length model says.
	Output []int
	// Pool marks a pooling request (an embedding): it ends when its prompt
	// is computed, with no output token.
	Pool bool
	// CacheSalt, when set, salts the prefix cache's block hashes, so only
	// requests with the same salt share cached blocks (vLLM's cache_salt).
	CacheSalt string
	// Priority orders the request under the priority scheduling policy
	// (lower first); under fcfs it must be 0, as vLLM requires.
	Priority int
	// Arrival is when the request reached the server, read from the
	// engine's Clock (zero: when Submit is called). Work done before Submit
	// (parsing, tokenizing) then takes no modeled time: an idle engine
	// starts the request's first step at its arrival.
	Arrival time.Time
	// OnDone, if set, is called by the engine loop once the request has
	// ended and its outputs are published (a virtual driver's hook).
	OnDone func(*Stream)
}

// Finish reasons.
const (
	FinishStop   = "stop"
	FinishLength = "length"
	FinishAbort  = "abort"
)

// Stream carries one request's output from the engine to its reader. Reads
// are safe while the engine writes.
type Stream struct {
	mu       sync.Mutex
	tokens   []int
	times    []time.Duration // modeled time of each token
	done     bool
	reason   string
	prompt   int
	cached   int
	arrival  time.Duration
	notify   chan struct{}
	stop     Stop
	abortOne sync.Once
	engine   *Engine
	onDone   func(*Stream)
	virtual  bool // submitted by a virtual driver (SubmitAt)
}

// Stop tells why a request ended with finish reason "stop": a stop string
// or stop token id, or neither (the model's end of sequence).
type Stop struct {
	String  string // the stop string matched, if any
	TokenID int    // the stop token id matched; -1: none
	// TextEnd is the length in bytes of the output text to answer with
	// (the text before the stop string, or through it with IncludeStop);
	// -1: all of it.
	TextEnd int
}

// StopInfo returns why a finished request stopped.
func (s *Stream) StopInfo() Stop {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stop
}

// Notify returns a channel that receives a value after new output.
func (s *Stream) Notify() <-chan struct{} { return s.notify }

// Snapshot returns the tokens from index from on, whether the request is
// done and why.
func (s *Stream) Snapshot(from int) (tokens []int, done bool, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if from < len(s.tokens) {
		tokens = append(tokens, s.tokens[from:]...)
	}
	return tokens, s.done, s.reason
}

// Usage returns the prompt tokens, prompt tokens served from the prefix
// cache (as first scheduled), and output tokens so far.
func (s *Stream) Usage() (prompt, cached, completion int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.prompt, s.cached, len(s.tokens)
}

// Times returns the modeled arrival time and each output token's modeled
// time, relative to the engine's start.
func (s *Stream) Times() (arrival time.Duration, tokens []time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.arrival, append([]time.Duration(nil), s.times...)
}

// Abort asks the engine to stop the request and free its blocks.
func (s *Stream) Abort() {
	s.abortOne.Do(func() {
		s.engine.mu.Lock()
		s.engine.aborts = append(s.engine.aborts, s)
		s.engine.mu.Unlock()
		s.engine.poke()
	})
}

// seq is the engine's state of one request. Owned by the engine loop.
type seq struct {
	stream    *Stream
	tokens    []int    // prompt, then outputs
	nPrompt   int      //
	hashes    []uint64 // prefix hashes of the full blocks of tokens
	computed  int      // tokens whose KV is in the cache
	blocks    []int32
	target    int // output length at which it stops
	maxTokens int
	stop      []string
	stopIDs   []int
	inclStop  bool
	minTokens int
	output    []int  // forced output (guided decoding); nil: sampled
	pool      bool   // ends after prefill
	tail      string // recent output text, for stop strings
	textLen   int    // bytes of output text before tail
	rng       rand.PCG
	priority  int
	order     uint64 // arrival order, ties of priority
	submitted time.Duration
	arrival   time.Duration
	scheduled time.Duration // first scheduled; -1 before
	firstTok  time.Duration // -1 before
	lastTok   time.Duration
	cachedSet bool
	finished  bool
	aborted   bool
}

type scheduled struct {
	s *seq
	n int
}

type event struct {
	s      *seq
	token  int // -1: none
	at     time.Duration
	reason string // non-empty: finished
}

// Engine is one simulated vLLM instance. Submit and Stream methods are safe
// for concurrent use; the step loop (Run, or Step in tests) is owned by one
// goroutine.
type Engine struct {
	prof     Profile
	cfg      Config
	priority bool // the priority scheduling policy
	clock    Clock
	scale    float64
	slow     float64
	jitter   *rand.Rand // draws Config.Jitter's factors
	epoch    time.Time
	model    string
	enc      *tokenizer.Encoder
	fillIDs  []int

	seeds   atomic.Uint64 // drawSeed's count
	mu      sync.Mutex
	inbox   []*seq
	aborts  []*Stream
	arrived uint64
	wake    chan struct{}

	// Owned by the loop.
	now     time.Duration
	running []*seq
	waiting []*seq
	kv      *kvCache
	sched   []scheduled
	events  []event
	hit     []int32 // the cached blocks a waiting request matched

	stats *stats
}

// New returns an engine; call Run to serve.
func New(cfg Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Profile.Name == "" {
		cfg.Profile = builtin[DefaultProfile]
	}
	if err := cfg.Profile.Validate(); err != nil {
		return nil, fmt.Errorf("profile %s: %w", cfg.Profile.Name, err)
	}
	if c := cfg.Profile.NumBlocks * cfg.Profile.BlockSize; cfg.Profile.MaxModelLen > c {
		return nil, fmt.Errorf("profile %s: max_model_len %d exceeds the KV cache's %d tokens", cfg.Profile.Name, cfg.Profile.MaxModelLen, c)
	}
	enc, err := tokenizer.Default()
	if err != nil {
		return nil, err
	}
	e := &Engine{
		prof: cfg.Profile, cfg: cfg, clock: cfg.Clock, scale: cfg.TimeScale, slow: cfg.SlowFactor,
		model: cfg.Model, enc: enc, wake: make(chan struct{}, 1), kv: newKVCache(cfg.Profile.NumBlocks),
	}
	if e.clock == nil {
		e.clock = &WallClock{Spin: cfg.Spin}
	}
	e.priority = cfg.SchedulingPolicy == SchedulingPriority
	if e.scale == 0 {
		e.scale = 1
	}
	e.jitter = rand.New(rand.NewPCG(cfg.Seed, 0x6a6974)) // "jit"
	if e.slow == 0 {
		e.slow = 1
	}
	if e.model == "" {
		e.model = cfg.Profile.Model
	}
	if e.cfg.MedianOutput == 0 {
		e.cfg.MedianOutput = DefaultMedianOutput
	}
	for _, w := range fillerVocabulary(enc) {
		id := enc.Encode(nil, w)[0]
		e.fillIDs = append(e.fillIDs, id)
	}
	e.epoch = e.clock.Now()
	e.stats = newStats(e.model)
	return e, nil
}

// fillerVocabulary returns single-token words the engine answers with.
func fillerVocabulary(enc *tokenizer.Encoder) []string {
	words := strings.Fields(enc.Filler(400, 1))
	seen := map[string]bool{}
	var out []string
	for _, w := range words {
		if w = " " + w; !seen[w] {
			seen[w] = true
			out = append(out, w)
		}
	}
	return out
}

// drawLength draws an output length from the engine's model of them (a
// log-normal around MedianOutput), at most maxTokens.
func (e *Engine) drawLength(rng *rand.Rand, maxTokens int) int {
	draw := float64(e.cfg.MedianOutput) * math.Exp(0.9*rng.NormFloat64())
	return min(maxTokens, int(math.Round(draw)))
}

// drawSeed returns a seed for a request that names none, from the engine's
// seed and a count of draws, so a seeded engine's answers repeat.
func (e *Engine) drawSeed() uint64 {
	n := e.seeds.Add(1)
	return (e.cfg.Seed+0x5eed)*0x9E3779B97F4A7C15 + n
}

// Model is the served model name.
func (e *Engine) Model() string { return e.model }

// Profile is the profile in use.
func (e *Engine) Profile() Profile { return e.prof }

// TimeScale is the wall seconds per modeled second.
func (e *Engine) TimeScale() float64 { return e.scale }

// Encoder is the tokenizer the engine counts prompts with.
func (e *Engine) Encoder() *tokenizer.Encoder { return e.enc }

// kvUsed is the number of KV blocks in use, read under the stats lock.
func (e *Engine) kvUsed() int {
	e.stats.mu.Lock()
	defer e.stats.mu.Unlock()
	return e.kv.used()
}

// Counters returns a snapshot of the engine's counters.
func (e *Engine) Counters() Counters { return e.stats.counters() }

// Collector exposes the engine's metrics under vLLM's names.
func (e *Engine) Collector() prometheus.Collector { return e.stats }

// TokenText returns the text of a token id (its bytes: part of a
// character for some ids).
func (e *Engine) TokenText(id int) string { return e.enc.TokenText(id) }

// ErrContextLength reports a request longer than the model's context.
var ErrContextLength = errors.New("context length exceeded")

// ErrPriority reports a priority the engine's policy does not take.
var ErrPriority = errors.New("priority not supported")

// Submit queues a request and returns its stream. The request is admitted
// at the next step boundary.
func (e *Engine) Submit(r Request) (*Stream, error) {
	at := e.modeledNow()
	if !r.Arrival.IsZero() {
		at = min(at, e.modeledAt(r.Arrival))
	}
	return e.submit(r, at, false)
}

// SubmitAt queues a request arriving at modeled time at, for a virtual
// driver, which then calls Advance from the goroutine that submits (Run
// must not be serving). The stream's outputs are then handed out without
// locking or notifying: its reader is that same goroutine.
func (e *Engine) SubmitAt(r Request, at time.Duration) (*Stream, error) { return e.submit(r, at, true) }

func (e *Engine) submit(r Request, at time.Duration, virtual bool) (*Stream, error) {
	p := &e.prof
	if len(r.Prompt) == 0 {
		return nil, errors.New("empty prompt")
	}
	if r.MaxTokens < 1 {
		return nil, fmt.Errorf("max_tokens %d: want at least 1", r.MaxTokens)
	}
	if r.Priority != 0 && !e.priority {
		return nil, fmt.Errorf("%w: got priority %d but priority scheduling is not enabled (--scheduling-policy priority)", ErrPriority, r.Priority)
	}
	if n := len(r.Prompt) + r.MaxTokens; n > p.MaxModelLen {
		return nil, fmt.Errorf("%w: this model's maximum context length is %d tokens, but %d were requested (%d in the prompt, %d for the completion)",
			ErrContextLength, p.MaxModelLen, n, len(r.Prompt), r.MaxTokens)
	}
	st := &Stream{prompt: len(r.Prompt), engine: e, onDone: r.OnDone, virtual: virtual, stop: Stop{TokenID: -1, TextEnd: -1}}
	if !virtual {
		st.notify = make(chan struct{}, 1)
	}
	s := &seq{
		stream: st, nPrompt: len(r.Prompt), maxTokens: r.MaxTokens, stop: r.Stop, stopIDs: r.StopTokenIDs,
		inclStop: r.IncludeStop, minTokens: r.MinTokens, output: r.Output, pool: r.Pool, scheduled: -1, firstTok: -1,
	}
	s.tokens = append(intPool.take(len(r.Prompt)+min(r.MaxTokens, 4096)), r.Prompt...)
	s.hashes = hashPool.take((len(s.tokens) + min(r.MaxTokens, 4096)) / p.BlockSize)
	var prev uint64
	if r.CacheSalt != "" {
		prev = saltHash(r.CacheSalt)
	}
	for b := 0; (b+1)*p.BlockSize <= len(s.tokens); b++ {
		prev = blockHash(prev, s.tokens[b*p.BlockSize:(b+1)*p.BlockSize])
		s.hashes = append(s.hashes, prev)
	}
	s.priority = r.Priority
	e.mu.Lock()
	e.arrived++
	s.order = e.arrived
	seed := e.cfg.Seed*0x9E3779B97F4A7C15 + e.arrived
	if r.Seed != nil {
		seed = *r.Seed ^ e.cfg.Seed*0x9E3779B97F4A7C15
	}
	s.rng = *rand.NewPCG(seed, 0x73696d) // "sim"
	s.target = r.MaxTokens
	switch {
	case r.Output != nil:
		s.target = max(1, min(r.MaxTokens, len(r.Output)))
	case !r.IgnoreEOS:
		s.target = max(1, r.MinTokens, e.drawLength(rand.New(&s.rng), r.MaxTokens))
	}
	s.submitted = at
	st.arrival = s.submitted
	// Room for the output the request is expected to give (stop strings
	// aside), so the stream does not regrow token by token.
	st.tokens, st.times = make([]int, 0, min(s.target, 4096)), make([]time.Duration, 0, min(s.target, 4096))
	e.inbox = append(e.inbox, s)
	e.mu.Unlock()
	e.poke()
	return st, nil
}

func (e *Engine) poke() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// modeledNow is the modeled time the clock reads now.
func (e *Engine) modeledNow() time.Duration { return e.modeledAt(e.clock.Now()) }

// modeledAt is the modeled time of wall time t.
func (e *Engine) modeledAt(t time.Time) time.Duration {
	return time.Duration(float64(t.Sub(e.epoch)) / e.scale)
}

// wallAt is the wall time of modeled time t.
func (e *Engine) wallAt(t time.Duration) time.Time {
	return e.epoch.Add(time.Duration(float64(t) * e.scale))
}

// Run serves until ctx is done, then aborts every request left.
func (e *Engine) Run(ctx context.Context) error {
	for {
		ran, err := e.iterate(ctx)
		if err != nil {
			e.abortAll()
			return nil
		}
		if ran {
			continue
		}
		select {
		case <-e.wake: // stepOnce moves the modeled time to the arrival
		case <-ctx.Done():
			e.abortAll()
			return nil
		}
	}
}

// Step runs one step if there is work, sleeping on the clock until its end
// (instantly with a FakeClock), and reports it.
func (e *Engine) Step() (StepInfo, bool) {
	e.now = max(e.now, e.modeledNow())
	info, ran := e.stepOnce(context.Background())
	return info, ran
}

func (e *Engine) iterate(ctx context.Context) (bool, error) {
	_, ran := e.stepOnce(ctx)
	return ran, ctx.Err()
}

func (e *Engine) stepOnce(ctx context.Context) (StepInfo, bool) {
	info, ran := e.step()
	if !ran {
		e.publish()
		return info, false
	}
	_ = e.clock.SleepUntil(ctx, e.wallAt(e.now))
	// The step's outputs go out now, however late that is past its
	// modeled end: lateness every time a client measures carries.
	e.stats.late(e.modeledNow() - e.now)
	e.publish()
	if e.cfg.OnStep != nil {
		e.cfg.OnStep(info)
	}
	return info, true
}

// Advance is one step of a virtual driver at modeled time now (the end of
// the engine's last step, or later when it was idle): the last step's
// outputs are handed out (OnDone hooks included), then the next step runs
// if there is work. It returns when that step ends, the time to call
// Advance again; false when the engine is idle.
func (e *Engine) Advance(now time.Duration) (next time.Duration, busy bool) {
	e.publish()
	e.now = max(e.now, now)
	info, ran := e.step()
	if !ran {
		return 0, false
	}
	if e.cfg.OnStep != nil {
		e.cfg.OnStep(info)
	}
	return e.now, true
}

// step schedules and computes the next step at the modeled time e.now,
// moving it to the earliest arrival when idle, without waiting or handing
// out its outputs; e.now becomes the step's end.
func (e *Engine) step() (StepInfo, bool) {
	if e.drain() && len(e.running) == 0 && len(e.waiting) == 0 {
		// Idle, and requests have arrived since: the modeled time moves to
		// the earliest arrival, which is admitted now.
		e.mu.Lock()
		first := e.inbox[0].submitted
		for _, s := range e.inbox {
			first = min(first, s.submitted)
		}
		e.mu.Unlock()
		e.now = max(e.now, first)
		e.drain()
	}
	e.stats.mu.Lock()
	info, ran := e.schedule()
	e.stats.gauges(len(e.running), len(e.waiting), e.kv)
	e.stats.mu.Unlock()
	return info, ran
}

// drain admits the submitted requests that have arrived by the modeled
// time e.now, in submission order, and applies aborts. It reports whether
// requests remain to be admitted later.
func (e *Engine) drain() (pending bool) {
	e.mu.Lock()
	aborts := e.aborts
	e.aborts = nil
	later := e.inbox[:0]
	for _, s := range e.inbox {
		if s.submitted > e.now {
			later = append(later, s)
			continue
		}
		s.arrival = s.submitted
		e.enqueue(s)
	}
	clear(e.inbox[len(later):])
	e.inbox = later
	pending = len(later) > 0
	e.mu.Unlock()
	if len(aborts) == 0 {
		return pending
	}
	gone := map[*Stream]bool{}
	for _, a := range aborts {
		gone[a] = true
	}
	keep := func(list []*seq) []*seq {
		out := list[:0]
		for _, s := range list {
			if gone[s.stream] && !s.finished {
				s.aborted = true
				e.finish(s, FinishAbort)
				continue
			}
			out = append(out, s)
		}
		return out
	}
	e.running = keep(e.running)
	e.waiting = keep(e.waiting)
	return pending
}

func (e *Engine) blocksFor(tokens int) int {
	return (tokens + e.prof.BlockSize - 1) / e.prof.BlockSize
}

// reserve gives s the blocks to hold n more computed tokens.
func (e *Engine) reserve(s *seq, n int) bool {
	need := e.blocksFor(s.computed+n) - len(s.blocks)
	if need > e.kv.numFree {
		return false
	}
	if need > 0 {
		s.blocks = e.kv.alloc(s.blocks, need)
	}
	return true
}

// preempt frees a running request's blocks and puts it back in the
// queue, to be recomputed: at its front under fcfs, in its place by
// (priority, arrival) under priority.
func (e *Engine) preempt(s *seq) {
	e.kv.release(s.blocks)
	s.blocks = s.blocks[:0]
	s.computed = 0
	if e.priority {
		e.enqueue(s)
	} else {
		e.waiting = append([]*seq{s}, e.waiting...)
	}
	e.stats.preemptions++
}

// before orders the waiting queue under the priority policy.
func before(a, b *seq) bool {
	if a.priority != b.priority {
		return a.priority < b.priority
	}
	return a.order < b.order
}

// enqueue adds a request to the waiting queue: at its end under fcfs, in
// its place by (priority, arrival) under priority.
func (e *Engine) enqueue(s *seq) {
	if !e.priority {
		e.waiting = append(e.waiting, s)
		return
	}
	k := sort.Search(len(e.waiting), func(i int) bool { return before(s, e.waiting[i]) })
	e.waiting = append(e.waiting, nil)
	copy(e.waiting[k+1:], e.waiting[k:])
	e.waiting[k] = s
}

// victim is the index of the running request to preempt: the newest under
// fcfs, the one with the highest (priority, arrival) under priority.
func (e *Engine) victim() int {
	v := len(e.running) - 1
	if e.priority {
		for k, s := range e.running {
			if before(e.running[v], s) {
				v = k
			}
		}
	}
	return v
}

// schedule runs one step's scheduling and execution at e.now, as vLLM V1
// schedules: running requests first, in order, each computing what it still
// lacks within the token budget (preempting the newest running request, or
// under the priority policy the lowest in priority, when no block is free);
// then, if nothing was preempted, waiting requests in queue order (arrival,
// or priority then arrival), each after a prefix-cache lookup, while
// sequences and budget allow. The step's modeled duration advances e.now.
func (e *Engine) schedule() (StepInfo, bool) {
	p := &e.prof
	budget := p.MaxNumBatchedTokens
	e.sched = e.sched[:0]
	preempted := 0
	for i := 0; i < len(e.running) && budget > 0; i++ {
		s := e.running[i]
		n := min(len(s.tokens)-s.computed, budget)
		for !e.reserve(s, n) {
			k := e.victim()
			victim := e.running[k]
			e.running = append(e.running[:k], e.running[k+1:]...)
			if k < i {
				// Scheduled earlier in this step (only under priority):
				// its tokens go back to the budget.
				for j, sc := range e.sched {
					if sc.s == victim {
						budget += sc.n
						e.sched = append(e.sched[:j], e.sched[j+1:]...)
						break
					}
				}
				i--
			}
			e.preempt(victim)
			preempted++
			if victim == s {
				s = nil
				break
			}
		}
		if s == nil {
			break
		}
		e.sched = append(e.sched, scheduled{s, n})
		budget -= n
	}
	if preempted == 0 {
		for len(e.waiting) > 0 && len(e.running) < p.MaxNumSeqs && budget > 0 {
			s := e.waiting[0]
			cacheable := min((len(s.tokens)-1)/p.BlockSize, len(s.hashes)) // the last token is always computed
			e.hit = e.kv.match(e.hit[:0], s.hashes[:cacheable])
			hits := len(e.hit)
			cached := hits * p.BlockSize
			n := min(len(s.tokens)-cached, budget)
			need := e.blocksFor(cached+n) - hits
			if need+e.kv.freeAmong(e.hit) > e.kv.numFree {
				break
			}
			s.blocks = e.kv.touch(s.blocks, e.hit)
			s.blocks = e.kv.alloc(s.blocks, need)
			s.computed = cached
			e.stats.queries += int64(len(s.tokens))
			e.stats.hits += int64(cached)
			if !s.cachedSet {
				s.cachedSet = true
				s.stream.mu.Lock()
				s.stream.cached = cached
				s.stream.mu.Unlock()
			}
			if s.scheduled < 0 {
				s.scheduled = e.now
			}
			e.waiting = e.waiting[1:]
			e.running = append(e.running, s)
			e.sched = append(e.sched, scheduled{s, n})
			budget -= n
		}
	}
	if len(e.sched) == 0 {
		return StepInfo{}, false
	}

	info := StepInfo{Start: e.now, Seqs: len(e.sched), Preempted: preempted}
	for _, sc := range e.sched {
		info.Tokens += sc.n
		info.Context += sc.s.computed + sc.n
		if sc.s.computed+sc.n < len(sc.s.tokens) || sc.s.computed < sc.s.nPrompt {
			info.Prefills++
		}
	}
	info.Duration = time.Duration(float64(p.StepTime(info.Tokens, info.Context, info.Seqs)) * e.slow)
	if j := e.cfg.Jitter; j > 0 {
		f := 1 + j*e.jitter.NormFloat64()
		info.Duration = time.Duration(float64(info.Duration) * max(f, 0.1))
	}
	e.now += info.Duration

	for _, sc := range e.sched {
		e.advance(sc.s, sc.n)
	}
	if e.finishedAny() {
		out := e.running[:0]
		for _, s := range e.running {
			if !s.finished {
				out = append(out, s)
			}
		}
		clear(e.running[len(out):])
		e.running = out
	}
	info.Running, info.Waiting = len(e.running), len(e.waiting)
	e.stats.steps++
	e.stats.busySec += info.Duration.Seconds()
	return info, true
}

func (e *Engine) finishedAny() bool {
	for _, s := range e.running {
		if s.finished {
			return true
		}
	}
	return false
}

// advance applies a step's computation to s: its new full blocks join the
// prefix cache, and a request that has caught up samples its next token.
func (e *Engine) advance(s *seq, n int) {
	bs := e.prof.BlockSize
	before := s.computed / bs
	s.computed += n
	for b := before; b < s.computed/bs && b < len(s.hashes); b++ {
		e.kv.register(s.blocks[b], s.hashes[b])
	}
	if s.computed < len(s.tokens) {
		return // still in prefill
	}
	if s.pool {
		s.firstTok = e.now // a pooling request ends with its prefill
		e.finish(s, FinishStop)
		return
	}
	var tok int
	if k := len(s.tokens) - s.nPrompt; k < len(s.output) {
		tok = s.output[k]
	} else {
		tok = e.fillIDs[s.rng.Uint64()%uint64(len(e.fillIDs))]
	}
	s.tokens = append(s.tokens, tok)
	if len(s.tokens)%bs == 0 {
		var prev uint64
		if k := len(s.hashes); k > 0 {
			prev = s.hashes[k-1]
		}
		s.hashes = append(s.hashes, blockHash(prev, s.tokens[len(s.tokens)-bs:]))
	}
	out := len(s.tokens) - s.nPrompt
	if s.firstTok < 0 {
		s.firstTok = e.now
		e.stats.first(s.firstTok-s.arrival, s.scheduled-s.arrival, s.firstTok-s.scheduled)
	} else {
		e.stats.itl(e.now - s.lastTok)
	}
	s.lastTok = e.now
	e.stats.generated++
	e.events = append(e.events, event{s: s, token: tok, at: e.now})
	reason := ""
	switch {
	case out >= s.maxTokens:
		reason = FinishLength
	case out >= s.target:
		reason = FinishStop
	case (len(s.stop) > 0 || len(s.stopIDs) > 0) && e.hitStop(s, tok, out):
		reason = FinishStop
	}
	if reason != "" {
		e.finish(s, reason)
	}
}

// hitStop reports whether output token tok, the out-th, ends the request
// on a stop token id or stop string, checked past the first MinTokens
// tokens as vLLM does, and records which on the stream.
func (e *Engine) hitStop(s *seq, tok, out int) bool {
	past := out > s.minTokens
	if past && slices.Contains(s.stopIDs, tok) {
		s.stream.setStop(Stop{TokenID: tok, TextEnd: -1})
		return true
	}
	if len(s.stop) == 0 {
		return false
	}
	text := e.enc.TokenText(tok)
	s.tail += text
	longest := 0
	for _, st := range s.stop {
		longest = max(longest, len(st))
		if !past || st == "" {
			continue
		}
		// Only an occurrence that this token completes: earlier text was
		// checked when it came (or was within min_tokens).
		from := max(0, len(s.tail)-len(text)-len(st)+1)
		if i := strings.Index(s.tail[from:], st); i >= 0 {
			end := s.textLen + from + i
			if s.inclStop {
				end += len(st)
			}
			s.stream.setStop(Stop{String: st, TokenID: -1, TextEnd: end})
			return true
		}
	}
	if len(s.tail) > 2*longest+16 {
		cut := len(s.tail) - longest - 16
		s.textLen += cut
		s.tail = s.tail[cut:]
	}
	return false
}

func (s *Stream) setStop(st Stop) {
	s.mu.Lock()
	s.stop = st
	s.mu.Unlock()
}

// finish ends a request: its blocks go back (staying cached) and its reader
// is told at publication.
func (e *Engine) finish(s *seq, reason string) {
	s.finished = true
	e.kv.release(s.blocks)
	s.blocks = nil
	defer func() {
		intPool.give(s.tokens)
		hashPool.give(s.hashes)
		s.tokens, s.hashes = nil, nil
	}()
	e.events = append(e.events, event{s: s, token: -1, at: e.now, reason: reason})
	if e.cfg.OnFinish != nil {
		e.cfg.OnFinish(Finished{PromptTokens: s.nPrompt, OutputTokens: len(s.tokens) - s.nPrompt,
			Arrival: s.arrival, FirstToken: s.firstTok, End: e.now, Reason: reason})
	}
	if reason != FinishAbort {
		e.stats.finished(reason, len(s.tokens)-s.nPrompt, s.nPrompt, e.now-s.arrival, e.now-s.firstTok)
	}
}

// publish hands the step's outputs to the streams: at the step's end.
func (e *Engine) publish() {
	for _, ev := range e.events {
		st := ev.s.stream
		if !st.virtual {
			st.mu.Lock()
		}
		if ev.token >= 0 {
			st.tokens = append(st.tokens, ev.token)
			st.times = append(st.times, ev.at)
		}
		if ev.reason != "" {
			st.done, st.reason = true, ev.reason
		}
		if !st.virtual {
			st.mu.Unlock()
			select {
			case st.notify <- struct{}{}:
			default:
			}
		}
		if ev.reason != "" && st.onDone != nil {
			st.onDone(st)
		}
	}
	clear(e.events)
	e.events = e.events[:0]
}

// abortAll ends every request (the engine is stopping).
func (e *Engine) abortAll() {
	e.mu.Lock()
	e.waiting = append(e.waiting, e.inbox...)
	e.inbox = nil
	e.mu.Unlock()
	e.drain()
	for _, list := range [][]*seq{e.running, e.waiting} {
		for _, s := range list {
			if !s.finished {
				e.finish(s, FinishAbort)
			}
		}
	}
	e.running, e.waiting = nil, nil
	e.publish()
}

// Requests' token and hash slices are recycled: a long prompt's would
// otherwise be a large allocation per request, and the garbage collector's
// work with it (a virtual run allocates one per call).
var (
	intPool  = slicePool[int]{keep: 1024}
	hashPool = slicePool[uint64]{keep: 64}
)

// slicePool recycles slices of at least keep elements' capacity.
type slicePool[T any] struct {
	pool sync.Pool // *[]T
	keep int
}

// take returns an empty slice with room for n elements.
func (p *slicePool[T]) take(n int) []T {
	if b, ok := p.pool.Get().(*[]T); ok && cap(*b) >= n {
		return (*b)[:0]
	}
	return make([]T, 0, n)
}

// give hands a slice back for reuse.
func (p *slicePool[T]) give(b []T) {
	if cap(b) >= p.keep {
		p.pool.Put(&b)
	}
}
