package sim

import (
	"context"
	"errors"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newTestEngine(t testing.TB, mod func(*Config)) (*Engine, *FakeClock, *[]StepInfo) {
	t.Helper()
	clock := NewFakeClock(t0)
	var steps []StepInfo
	cfg := Config{Clock: clock, Seed: 1, OnStep: func(s StepInfo) { steps = append(steps, s) }}
	if mod != nil {
		mod(&cfg)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e, clock, &steps
}

func prompt(n, salt int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = 1000 + (i*7+salt*13)%5000
	}
	return p
}

// runAll steps the engine until it is idle.
func runAll(t testing.TB, e *Engine) {
	t.Helper()
	for i := 0; ; i++ {
		if _, ran := e.Step(); !ran {
			return
		}
		if i > 1_000_000 {
			t.Fatal("engine never went idle")
		}
	}
}

func TestSingleRequestTimesEqualModel(t *testing.T) {
	e, _, _ := newTestEngine(t, nil)
	p := e.Profile()
	const P, M = 1000, 20
	st, err := e.Submit(Request{Prompt: prompt(P, 0), MaxTokens: M, IgnoreEOS: true})
	if err != nil {
		t.Fatal(err)
	}
	runAll(t, e)
	arrival, times := st.Times()
	if len(times) != M {
		t.Fatalf("%d tokens, want %d", len(times), M)
	}
	// Prefill: one step computing all P tokens.
	if got, want := times[0]-arrival, p.StepTime(P, P, 1); got != want {
		t.Errorf("TTFT = %v, want %v", got, want)
	}
	// Each decode step computes one token over the grown context.
	for k := 1; k < M; k++ {
		if got, want := times[k]-times[k-1], p.StepTime(1, P+k, 1); got != want {
			t.Errorf("token %d gap = %v, want %v", k, got, want)
		}
	}
	// The model's sanity check: about 7.6 ms per token at batch 1 and an
	// 8k prompt prefilled in about 0.2 s on an idle H100.
	if tpot := p.TPOT(P); tpot < 7500*time.Microsecond || tpot > 7800*time.Microsecond {
		t.Errorf("TPOT %v outside 7.5-7.8 ms", tpot)
	}
	if pre := p.StepTime(8000, 8000, 1); pre < 190*time.Millisecond || pre > 215*time.Millisecond {
		t.Errorf("8k prefill %v, want about 0.2 s", pre)
	}
	_, done, reason := st.Snapshot(0)
	if !done || reason != FinishLength {
		t.Errorf("done %v reason %q", done, reason)
	}
}

func TestChunkedPrefill(t *testing.T) {
	e, _, steps := newTestEngine(t, nil)
	p := e.Profile()
	const P = 10_000 // over the 8192-token budget
	st, _ := e.Submit(Request{Prompt: prompt(P, 0), MaxTokens: 2, IgnoreEOS: true})
	runAll(t, e)
	got := []int{}
	for _, s := range *steps {
		got = append(got, s.Tokens)
	}
	if diff := cmp.Diff([]int{8192, P - 8192, 1}, got); diff != "" {
		t.Errorf("tokens per step (-want +got):\n%s", diff)
	}
	_, times := st.Times()
	want := p.StepTime(8192, 8192, 1) + p.StepTime(P-8192, P, 1)
	if times[0] != want {
		t.Errorf("first token at %v, want %v", times[0], want)
	}
}

func TestPrefixCacheHitCap(t *testing.T) {
	for _, tt := range []struct {
		n, wantCached int
	}{
		{100, 96}, // floor((100-1)/16)*16
		{96, 80},  // a full match still recomputes the last token: its block too
		{17, 16},
		{16, 0},
	} {
		e, _, _ := newTestEngine(t, nil)
		first, _ := e.Submit(Request{Prompt: prompt(tt.n, 0), MaxTokens: 1, IgnoreEOS: true})
		runAll(t, e)
		second, _ := e.Submit(Request{Prompt: prompt(tt.n, 0), MaxTokens: 1, IgnoreEOS: true})
		runAll(t, e)
		if _, cached, _ := first.Usage(); cached != 0 {
			t.Errorf("n=%d: first request cached %d", tt.n, cached)
		}
		if _, cached, _ := second.Usage(); cached != tt.wantCached {
			t.Errorf("n=%d: repeat cached %d, want %d", tt.n, cached, tt.wantCached)
		}
		c := e.Counters()
		if c.PrefixQueries != int64(2*tt.n) || c.PrefixHits != int64(tt.wantCached) {
			t.Errorf("n=%d: queries %d hits %d", tt.n, c.PrefixQueries, c.PrefixHits)
		}
	}
}

func TestPrefixCacheSharedPrefixAndOutputs(t *testing.T) {
	// A second turn whose prompt is the first prompt plus the first answer
	// reuses the blocks of both (outputs are cached once computed).
	e, _, _ := newTestEngine(t, nil)
	p1 := prompt(64, 0)
	first, _ := e.Submit(Request{Prompt: p1, MaxTokens: 40, IgnoreEOS: true})
	runAll(t, e)
	out, _, _ := first.Snapshot(0)
	p2 := append(append(append([]int{}, p1...), out...), prompt(30, 9)...)
	second, _ := e.Submit(Request{Prompt: p2, MaxTokens: 1, IgnoreEOS: true})
	runAll(t, e)
	// 64 + 40 = 104 tokens: 6 full blocks whose KV was computed (the 40th
	// output token was sampled but never computed, so block 7 is partial).
	if _, cached, _ := second.Usage(); cached != 96 {
		t.Errorf("cached %d, want 96", cached)
	}
}

func smallProfile(blocks int) func(*Config) {
	return func(c *Config) {
		p := builtin[DefaultProfile]
		p.NumBlocks, p.MaxModelLen = blocks, blocks*16
		c.Profile = p
	}
}

func TestEvictionThenPreemption(t *testing.T) {
	e, _, _ := newTestEngine(t, smallProfile(10))
	a, _ := e.Submit(Request{Prompt: prompt(64, 1), MaxTokens: 1, IgnoreEOS: true})
	runAll(t, e)
	// a's 4 blocks (+1 for its output) stay cached on the free list...
	again, _ := e.Submit(Request{Prompt: prompt(64, 1), MaxTokens: 1, IgnoreEOS: true})
	runAll(t, e)
	if _, c, _ := again.Usage(); c != 48 {
		t.Fatalf("repeat before eviction cached %d, want 48", c)
	}
	// ...until a request needing all 10 blocks evicts them.
	big, _ := e.Submit(Request{Prompt: prompt(150, 2), MaxTokens: 5, IgnoreEOS: true})
	runAll(t, e)
	late, _ := e.Submit(Request{Prompt: prompt(64, 1), MaxTokens: 1, IgnoreEOS: true})
	runAll(t, e)
	if _, c, _ := late.Usage(); c != 0 {
		t.Errorf("after eviction cached %d, want 0", c)
	}
	for _, s := range []*Stream{a, big, late} {
		if toks, done, _ := s.Snapshot(0); !done || len(toks) == 0 {
			t.Errorf("request not finished: %d tokens", len(toks))
		}
	}
	if e.kv.evicted == 0 {
		t.Error("no eviction counted")
	}
	if e.Counters().Preemptions != 0 {
		t.Error("preempted without pressure")
	}

	// Two requests that each fit but outgrow the cache together: the newer
	// is preempted, recomputed later, and both still finish in full.
	e, _, _ = newTestEngine(t, smallProfile(8))
	x, _ := e.Submit(Request{Prompt: prompt(48, 3), MaxTokens: 40, IgnoreEOS: true})
	y, _ := e.Submit(Request{Prompt: prompt(48, 4), MaxTokens: 40, IgnoreEOS: true})
	runAll(t, e)
	if e.Counters().Preemptions == 0 {
		t.Error("no preemption under KV pressure")
	}
	for _, s := range []*Stream{x, y} {
		toks, done, reason := s.Snapshot(0)
		if !done || len(toks) != 40 || reason != FinishLength {
			t.Errorf("after preemption: %d tokens, done %v, %q", len(toks), done, reason)
		}
	}
	_, tx := x.Times()
	_, ty := y.Times()
	if ty[39] <= tx[39] {
		t.Errorf("the preempted (newer) request finished first: %v <= %v", ty[39], tx[39])
	}
}

func TestBatchedDecodeFollowsModel(t *testing.T) {
	e, _, steps := newTestEngine(t, nil)
	p := e.Profile()
	e.Submit(Request{Prompt: prompt(500, 1), MaxTokens: 10, IgnoreEOS: true})
	e.Submit(Request{Prompt: prompt(700, 2), MaxTokens: 10, IgnoreEOS: true})
	runAll(t, e)
	s := *steps
	// Both prefill in the first step, then decode together.
	if s[0].Tokens != 1200 || s[0].Seqs != 2 {
		t.Fatalf("first step %+v", s[0])
	}
	for k := 1; k < len(s); k++ {
		ctx := (500 + k) + (700 + k) // both contexts, each with its k-th output
		if s[k].Seqs != 2 || s[k].Tokens != 2 || s[k].Context != ctx {
			t.Errorf("step %d: %+v (want 2 seqs, 2 tokens, context %d)", k, s[k], ctx)
		}
		if want := p.StepTime(2, s[k].Context, 2); s[k].Duration != want {
			t.Errorf("step %d lasts %v, want %v", k, s[k].Duration, want)
		}
		if s[k].Duration <= p.TPOT(600) {
			t.Errorf("a batch of two decodes no slower than one: %v", s[k].Duration)
		}
	}
}

func TestDeterministic(t *testing.T) {
	run := func() ([]StepInfo, [][]int) {
		e, _, steps := newTestEngine(t, smallProfile(40))
		var streams []*Stream
		for i := 0; i < 12; i++ {
			s, err := e.Submit(Request{Prompt: prompt(40+i*13, i%3), MaxTokens: 60, MinTokens: 3})
			if err != nil {
				t.Fatal(err)
			}
			streams = append(streams, s)
		}
		runAll(t, e)
		var outs [][]int
		for _, s := range streams {
			o, _, _ := s.Snapshot(0)
			outs = append(outs, o)
		}
		return *steps, outs
	}
	s1, o1 := run()
	s2, o2 := run()
	if diff := cmp.Diff(s1, s2); diff != "" {
		t.Errorf("step schedules differ:\n%s", diff)
	}
	if diff := cmp.Diff(o1, o2); diff != "" {
		t.Errorf("outputs differ:\n%s", diff)
	}
	lengths := map[int]bool{}
	for _, o := range o1 {
		if len(o) < 3 || len(o) > 60 {
			t.Errorf("output of %d tokens outside [min_tokens 3, max_tokens 60]", len(o))
		}
		lengths[len(o)] = true
	}
	if len(lengths) < 3 {
		t.Errorf("output lengths without ignore_eos are not drawn: %v", lengths)
	}
}

func TestAbortFreesBlocks(t *testing.T) {
	e, _, _ := newTestEngine(t, nil)
	st, _ := e.Submit(Request{Prompt: prompt(300, 0), MaxTokens: 1000, IgnoreEOS: true})
	e.Step()
	e.Step()
	if e.kv.used() == 0 {
		t.Fatal("no blocks in use while running")
	}
	st.Abort()
	runAll(t, e)
	if _, done, reason := st.Snapshot(0); !done || reason != FinishAbort {
		t.Errorf("done %v reason %q", done, reason)
	}
	if e.kv.used() != 0 || len(e.running) != 0 {
		t.Errorf("%d blocks, %d running after abort", e.kv.used(), len(e.running))
	}
}

func TestSubmitValidation(t *testing.T) {
	e, _, _ := newTestEngine(t, nil)
	for _, r := range []Request{
		{Prompt: nil, MaxTokens: 1},
		{Prompt: prompt(10, 0), MaxTokens: 0},
		{Prompt: prompt(10, 0), MaxTokens: 200_000},
	} {
		if _, err := e.Submit(r); err == nil {
			t.Errorf("request with %d prompt tokens, max_tokens %d accepted", len(r.Prompt), r.MaxTokens)
		}
	}
}

// lateClock oversleeps every sleep by late, as a busy CPU does.
type lateClock struct {
	FakeClock
	late time.Duration
}

func (c *lateClock) SleepUntil(ctx context.Context, t time.Time) error {
	c.Advance(t.Sub(c.Now()) + c.late)
	return ctx.Err()
}

// TestLatenessRecorded: an engine whose every sleep overshoots by 5 ms
// records each step's outputs as 5 ms late; one that keeps time records
// none. Either way it records the request's modeled latency.
func TestLatenessRecorded(t *testing.T) {
	for _, late := range []time.Duration{0, 5 * time.Millisecond} {
		clock := &lateClock{late: late}
		clock.now = time.Unix(0, 0)
		e, err := New(Config{Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			e.Run(ctx)
		}()
		st, err := e.Submit(Request{Prompt: make([]int, 100), MaxTokens: 20, IgnoreEOS: true})
		if err != nil {
			t.Fatal(err)
		}
		for {
			if _, fin, _ := st.Snapshot(0); fin {
				break
			}
			<-st.Notify()
		}
		cancel()
		<-done
		l := e.Lateness()
		if l.Steps < 20 {
			t.Fatalf("late %v: %d steps measured", late, l.Steps)
		}
		switch {
		case late == 0 && (l.LateSteps != 0 || l.Total != 0):
			t.Errorf("on time: %d late steps, %v in all", l.LateSteps, l.Total)
		case late > 0 && (l.LateSteps < 19 || l.Total < 19*late || l.Total > time.Duration(l.Steps)*late):
			t.Errorf("late %v: %d of %d steps late, %v in all", late, l.LateSteps, l.Steps, l.Total)
		}
		if c := e.Counters(); c.E2ECount != 1 || c.TTFTCount != 1 || c.E2ESum <= c.TTFTSum {
			t.Errorf("late %v: engine recorded %d/%d requests, E2E %v s, TTFT %v s", late, c.E2ECount, c.TTFTCount, c.E2ESum, c.TTFTSum)
		}
	}
}

// TestPriorityScheduling: under the priority policy, of two requests that
// outgrow the cache together the one with the higher priority value is
// preempted even though it arrived first, and it finishes last; waiting
// requests are admitted by priority, then arrival. Under fcfs a non-zero
// priority is refused, as vLLM refuses it.
func TestPriorityScheduling(t *testing.T) {
	e, _, _ := newTestEngine(t, func(c *Config) { smallProfile(8)(c); c.SchedulingPolicy = SchedulingPriority })
	low, _ := e.Submit(Request{Prompt: prompt(48, 3), MaxTokens: 40, IgnoreEOS: true, Priority: 5})
	high, _ := e.Submit(Request{Prompt: prompt(48, 4), MaxTokens: 40, IgnoreEOS: true, Priority: 1})
	runAll(t, e)
	if e.Counters().Preemptions == 0 {
		t.Fatal("no preemption under KV pressure")
	}
	_, tl := low.Times()
	_, th := high.Times()
	if len(tl) != 40 || len(th) != 40 || th[39] >= tl[39] {
		t.Errorf("the higher priority (value 1, newer) should finish first: %v vs %v", th[len(th)-1], tl[len(tl)-1])
	}

	// One sequence at a time: behind a running request, later arrivals
	// with a lower priority value go first.
	e, _, _ = newTestEngine(t, func(c *Config) {
		p := builtin[DefaultProfile]
		p.MaxNumSeqs = 1
		c.Profile, c.SchedulingPolicy = p, SchedulingPriority
	})
	first, _ := e.Submit(Request{Prompt: prompt(32, 1), MaxTokens: 5, IgnoreEOS: true, Priority: 9})
	e.Step() // first runs
	var order []int
	streams := map[*Stream]int{}
	for k, pr := range []int{3, 1, 3, 0} {
		s, _ := e.Submit(Request{Prompt: prompt(32, 10+k), MaxTokens: 2, IgnoreEOS: true, Priority: pr})
		streams[s] = k
	}
	runAll(t, e)
	type fin struct {
		k  int
		at time.Duration
	}
	var fins []fin
	for s, k := range streams {
		_, ts := s.Times()
		fins = append(fins, fin{k, ts[len(ts)-1]})
	}
	sort.Slice(fins, func(a, b int) bool { return fins[a].at < fins[b].at })
	for _, f := range fins {
		order = append(order, f.k)
	}
	// Priorities 3, 1, 3, 0 in arrival order: 0 first, then 1, then the
	// two 3s as they arrived.
	if want := []int{3, 1, 0, 2}; !cmp.Equal(order, want) {
		t.Errorf("finish order %v, want %v (by priority, then arrival)", order, want)
	}
	if _, ts := first.Times(); len(ts) != 5 {
		t.Errorf("the running request was disturbed: %d tokens", len(ts))
	}

	fcfs, _, _ := newTestEngine(t, nil)
	if _, err := fcfs.Submit(Request{Prompt: prompt(8, 1), MaxTokens: 1, Priority: 2}); !errors.Is(err, ErrPriority) {
		t.Errorf("priority under fcfs: %v", err)
	}
}
