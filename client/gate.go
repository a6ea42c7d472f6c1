package client

import (
	"container/heap"
	"context"
	"sync"
)

// gate bounds the calls in flight; calls over the bound wait, by priority
// (lower first) and then in the order they came: the client's side of an
// order across workflows. The virtual clock's client queue orders its
// waiting calls the same way.
type gate struct {
	mu    sync.Mutex
	free  int
	queue waiters
	seq   uint64
}

type waiter struct {
	prio    int
	seq     uint64
	ready   chan struct{}
	granted bool
	index   int
}

func newGate(n int) *gate { return &gate{free: n} }

// acquire waits for a slot; the caller releases it when its call ends.
func (g *gate) acquire(ctx context.Context, prio int) error {
	g.mu.Lock()
	if g.free > 0 && g.queue.Len() == 0 {
		g.free--
		g.mu.Unlock()
		return nil
	}
	g.seq++
	w := &waiter{prio: prio, seq: g.seq, ready: make(chan struct{})}
	heap.Push(&g.queue, w)
	g.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		g.mu.Lock()
		granted := w.granted
		if !granted {
			heap.Remove(&g.queue, w.index)
		}
		g.mu.Unlock()
		if granted {
			g.release()
		}
		return ctx.Err()
	}
}

// release gives a slot back, to the first waiter if any.
func (g *gate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.queue.Len() > 0 {
		w := heap.Pop(&g.queue).(*waiter)
		w.granted = true
		close(w.ready)
		return
	}
	g.free++
}

type waiters []*waiter

func (q waiters) Len() int { return len(q) }
func (q waiters) Less(a, b int) bool {
	if q[a].prio != q[b].prio {
		return q[a].prio < q[b].prio
	}
	return q[a].seq < q[b].seq
}
func (q waiters) Swap(a, b int) {
	q[a], q[b] = q[b], q[a]
	q[a].index, q[b].index = a, b
}
func (q *waiters) Push(x any) {
	w := x.(*waiter)
	w.index = len(*q)
	*q = append(*q, w)
}
func (q *waiters) Pop() any {
	old := *q
	w := old[len(old)-1]
	*q = old[:len(old)-1]
	return w
}
