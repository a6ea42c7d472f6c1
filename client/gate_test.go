package client

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestGateOrder: with the one slot taken, waiters get it by priority, then
// in the order they came; a waiter that gives up leaves the queue.
func TestGateOrder(t *testing.T) {
	g := newGate(1)
	if err := g.acquire(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []int
	done := make(chan struct{}, 4)
	start := func(name, prio int) {
		go func() {
			if err := g.acquire(context.Background(), prio); err == nil {
				mu.Lock()
				order = append(order, name) // while holding the slot
				mu.Unlock()
				g.release()
				done <- struct{}{}
			}
		}()
		time.Sleep(20 * time.Millisecond) // queue them in this order
	}
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, 1)
	go func() { gaveUp <- g.acquire(ctx, -5) }()
	time.Sleep(20 * time.Millisecond)
	start(1, 3)
	start(2, 1)
	start(3, 3)
	start(4, 0)
	cancel()
	if err := <-gaveUp; err == nil {
		t.Fatal("a canceled waiter got the slot")
	}
	g.release()
	for range 4 {
		<-done
	}
	mu.Lock()
	defer mu.Unlock()
	g.mu.Lock()
	defer g.mu.Unlock()
	if want := []int{4, 2, 1, 3}; order[0] != want[0] || order[1] != want[1] || order[2] != want[2] || order[3] != want[3] {
		t.Errorf("order %v, want %v", order, want)
	}
	if g.free != 1 || g.queue.Len() != 0 {
		t.Errorf("after: %d free, %d waiting", g.free, g.queue.Len())
	}
}
