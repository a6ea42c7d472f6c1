package sim

import (
	"context"
	"runtime"
	"sync"
	"time"
)

// Clock is the engine's source of time. The engine sleeps until absolute
// deadlines, so no error accumulates across steps.
type Clock interface {
	Now() time.Time
	// SleepUntil returns at t, or early with ctx's error.
	SleepUntil(ctx context.Context, t time.Time) error
}

// WallClock is the real clock. Timers can fire a millisecond late (on the
// development machines here, any timer under about 1.1 ms lasts 1.1 ms, and
// longer ones overshoot by about 0.25 ms), which would add that much to every
// modeled step seen from outside. So SleepUntil sleeps on a timer until a
// margin before the deadline (the overshoot it has measured, at least
// Spin), then polls the clock, yielding the processor between polls, until
// the deadline. Spin 0 never polls. Polling makes a lone engine's times
// exact to a fraction of a millisecond, but it takes a core: with several
// engines or busy clients on few cores it makes timing worse, so engines
// do not poll unless asked (Config.Spin). One WallClock
// serves one engine loop; it is not safe for concurrent sleeps.
type WallClock struct {
	Spin time.Duration
	late time.Duration // moving average of timer overshoot
}

// Now returns time.Now().
func (*WallClock) Now() time.Time { return time.Now() }

// SleepUntil sleeps until t.
func (c *WallClock) SleepUntil(ctx context.Context, t time.Time) error {
	margin := 0 * time.Second
	if c.Spin > 0 {
		margin = max(c.Spin, c.late)
	}
	if d := time.Until(t) - margin; d > 0 {
		timer := time.NewTimer(d)
		woke := time.Now().Add(d)
		select {
		case <-timer.C:
			if c.Spin > 0 {
				c.late += (time.Since(woke) - c.late) / 8
			}
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		}
	}
	for time.Now().Before(t) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		runtime.Gosched()
	}
	return ctx.Err()
}

// FakeClock is a virtual clock for tests: sleeping jumps straight to the
// deadline, so modeled time runs as fast as the CPU allows and exactly.
// It is safe for concurrent use.
type FakeClock struct {
	mu  sync.Mutex
	now time.Time
}

// NewFakeClock returns a fake clock reading start.
func NewFakeClock(start time.Time) *FakeClock { return &FakeClock{now: start} }

// Now returns the fake time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// SleepUntil moves the fake time forward to t (never back).
func (c *FakeClock) SleepUntil(ctx context.Context, t time.Time) error {
	c.Advance(t.Sub(c.Now()))
	return ctx.Err()
}

// Advance moves the fake time forward by d (d <= 0 does nothing).
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d > 0 {
		c.now = c.now.Add(d)
	}
}
