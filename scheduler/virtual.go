package scheduler

import (
	"context"
	"time"

	"github.com/wfsched/wfsched/dag"
	"github.com/wfsched/wfsched/internal/heap"
)

// VirtualEpoch is the wall time that modeled time 0 of a virtual run
// stands for in the fields typed as times (attempts' starts), so that a
// virtual run's results are the same bytes every time.
var VirtualEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// VirtualServer models the servers of a virtual-time replay in modeled
// time. RunVirtual's event loop drives it from one goroutine: Send starts a
// call at modeled time now; the server ends calls by calling their done
// function from within Advance, at the time Advance was given; Next says
// when the server's next event is due.
type VirtualServer interface {
	Send(now time.Duration, c Call, done func(CallResult))
	Next() (at time.Duration, ok bool)
	Advance(now time.Duration)
}

// RunVirtual replays as Run does, in modeled time: a discrete-event loop
// moves from event to event (workflow arrivals, node dispatches, tool
// ends, call ends, and the server's own events) with no waiting, on one
// goroutine, so the same inputs give the same results every time. The
// decisions (policies, admission, error modes, arrivals) are Run's: both
// drive the same flows. Calls' times are the server's modeled times, with
// no network between client and server.
func RunVirtual(ctx context.Context, cfg Config, traces []*dag.Graph, srv VirtualServer, sink Sink) (RunResult, error) {
	r, err := newRunner(cfg, traces, sink)
	if err != nil {
		return RunResult{}, err
	}
	l := &loop{r: r, srv: srv, q: heap.New(func(a, b *event) bool {
		if a.at != b.at {
			return a.at < b.at
		}
		return a.seq < b.seq
	}, 1024)}
	r.res.Start = time.Now()
	cfg = r.cfg
	if !cfg.Arrival.Open() {
		for l.next < min(cfg.Concurrency, cfg.Workflows) {
			l.start(l.next, 0)
			l.next++
		}
	} else {
		l.gen = newArrivals(cfg.Arrival)
		l.arrive()
	}
	for k := 0; ; k++ {
		if k&1023 == 0 && ctx.Err() != nil && !r.halted.Load() {
			r.halt()
		}
		ev, okq := l.peek()
		ts, oks := srv.Next()
		if !okq && !oks {
			break
		}
		if oks && (!okq || ts < ev.at) {
			l.now = max(l.now, ts)
			srv.Advance(ts)
			continue
		}
		l.q.Pop()
		l.now = max(l.now, ev.at)
		l.handle(ev)
	}
	return r.finish(ctx, time.Now(), l.now.Seconds())
}

// Event kinds of the loop.
const (
	evArrival  = iota // workflow ev.idx arrives (open loops)
	evCallEnd         // an LLM node's call ended with ev.cr
	evToolEnd         // a tool node's modeled time is over
	evThinkEnd        // an LLM node's think time is over: its call goes
)

type event struct {
	at   time.Duration
	seq  uint64
	kind int
	idx  int
	f    *flow
	j    job
	cr   CallResult
}

// loop is the state of a virtual run's event loop.
type loop struct {
	r      *runner
	srv    VirtualServer
	q      *heap.Heap[*event]
	seq    uint64
	now    time.Duration
	gen    *arrivals
	next   int // the next workflow index to start or arrive
	active int
	queued []*event // open-loop arrivals over --max-concurrency, in order
}

func (l *loop) peek() (*event, bool) {
	if l.q.Len() == 0 {
		return nil, false
	}
	return l.q.Top(), true
}

func (l *loop) push(ev *event) {
	l.seq++
	ev.seq = l.seq
	l.q.Push(ev)
}

// arrive schedules the next open-loop arrival, while the run is on and
// neither the count nor the duration is reached.
func (l *loop) arrive() {
	cfg := l.r.cfg
	if l.r.halted.Load() || cfg.Workflows > 0 && l.next >= cfg.Workflows {
		return
	}
	at := l.gen.next()
	if d := cfg.Arrival.Duration; d > 0 && at > d.Seconds() {
		return
	}
	l.push(&event{at: time.Duration(at * float64(time.Second)), kind: evArrival, idx: l.next})
	l.next++
}

func (l *loop) handle(ev *event) {
	switch ev.kind {
	case evArrival:
		l.arrive()
		if m := l.r.cfg.Arrival.MaxConcurrency; m > 0 && l.active >= m {
			l.queued = append(l.queued, ev)
			return
		}
		l.start(ev.idx, ev.at)
	case evCallEnd:
		res := ev.j.res
		l.r.called(&res, ev.cr, 1, false)
		l.ended(ev.f, ev.j.v, res)
	case evToolEnd:
		l.ended(ev.f, ev.j.v, ev.j.res)
	case evThinkEnd:
		l.send(ev.f, ev.j)
	}
}

// send sends an LLM node's call to the engines.
func (l *loop) send(f *flow, j job) {
	l.srv.Send(l.now, j.call, func(cr CallResult) {
		l.push(&event{at: l.now, kind: evCallEnd, f: f, j: j, cr: cr})
	})
}

// start starts workflow idx, which arrived at the given time.
func (l *loop) start(idx int, arrival time.Duration) {
	if l.r.halted.Load() {
		return
	}
	l.active++
	l.pump(l.r.newFlow(idx, arrival.Seconds(), l.now.Seconds()))
}

// ended records a node's end and moves its workflow on.
func (l *loop) ended(f *flow, v int, res NodeResult) {
	res.EndS = l.now.Seconds()
	f.end(v, res, res.EndS)
	l.pump(f)
}

// pump dispatches what f's policy admits now; a workflow with nothing left
// in flight has ended, and the next one starts.
func (l *loop) pump(f *flow) {
	for {
		j, ok := f.next(l.now.Seconds())
		if !ok {
			break
		}
		switch {
		case !j.llm:
			l.push(&event{at: l.now + j.tool, kind: evToolEnd, f: f, j: j})
		case j.think > 0:
			l.push(&event{at: l.now + j.think, kind: evThinkEnd, f: f, j: j})
		default:
			l.send(f, j)
		}
	}
	if f.inFlight > 0 {
		return
	}
	l.r.ended(f.result())
	l.active--
	switch {
	case l.r.halted.Load():
	case !l.r.cfg.Arrival.Open():
		if l.next < l.r.cfg.Workflows {
			l.next++
			l.start(l.next-1, l.now)
		}
	case len(l.queued) > 0:
		ev := l.queued[0]
		l.queued = l.queued[1:]
		l.start(ev.idx, ev.at)
	}
}
