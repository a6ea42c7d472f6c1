package client

import (
	"context"
	"sync"

	"github.com/wfsched/wfsched/internal/waitline"
)

// gate bounds the calls in flight; calls over the bound wait in a
// waitline (by priority, lower first, then in the order they came): the
// client's side of an order across workflows.
type gate struct {
	mu    sync.Mutex
	free  int
	queue waitline.Line[*waiter]
}

type waiter struct {
	ready   chan struct{}
	granted bool
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
	w := &waiter{ready: make(chan struct{})}
	t := g.queue.Push(prio, w)
	g.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		g.mu.Lock()
		granted := w.granted
		if !granted {
			g.queue.Remove(t)
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
	if w, ok := g.queue.Pop(); ok {
		w.granted = true
		close(w.ready)
		return
	}
	g.free++
}
