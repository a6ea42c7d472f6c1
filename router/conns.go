package router

import (
	"container/list"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Connection states, as the limiter sees them.
const (
	connWaiting int32 = iota // accepted, idle between requests, or still sending a request
	connServing              // its request is read: the router is working for it
)

// conn is an accepted client connection, tracked by the limiter.
type conn struct {
	net.Conn
	lim      *connLimiter
	elem     *list.Element // in lim.waiting or lim.serving, as state says
	reserved bool          // over the limit: serves /health and /metrics only
	state    int32
	closed   atomic.Bool
	// writeBy is the write deadline set (UnixNano), 0 when none is;
	// writing, when the write in progress began, 0 when none is.
	writeBy, writing atomic.Int64
	// acked is what the client had acknowledged when writeBy was set.
	acked uint64
}

func (c *conn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.lim.release(c)
	}
	return c.Conn.Close()
}

// Write writes p within the limiter's write timeout of progress: as long
// as the client reads (its acknowledged bytes rise, or the write sends
// anything), the deadline moves on, so a client that reads slowly is
// served however long its answer lasts; one that reads nothing for the
// write timeout (up to twice it, when its receive buffer still took bytes
// as the deadline was set) fails the write, and the server then closes
// the connection and cancels the request. Both servers (the router's own
// and net/http's) write through here; one goroutine writes a connection
// at a time. The deadline is set again only when it has come nearer than
// the timeout by a 64th of it: setting one per write would cost as much as
// the write's own work.
func (c *conn) Write(p []byte) (int, error) {
	d := c.lim.writeTimeout
	if d <= 0 {
		return c.Conn.Write(p)
	}
	now := time.Now()
	c.writing.Store(now.UnixNano())
	defer c.writing.Store(0)
	written := 0
	for first := true; ; first = false {
		if !first {
			now = time.Now()
		}
		if by := c.writeBy.Load(); by == 0 || time.Duration(by-now.UnixNano()) < d-d/64 {
			by = now.Add(d).UnixNano()
			if err := c.Conn.SetWriteDeadline(time.Unix(0, by)); err != nil {
				return written, err
			}
			c.writeBy.Store(by)
			c.acked, _ = ackedBytes(c.Conn)
		}
		n, err := c.Conn.Write(p[written:])
		written += n
		if err != nil && isTimeout(err) && (n > 0 || c.readSince()) {
			c.writeBy.Store(0) // a slow client, not a stalled one: again
			continue
		}
		return written, err
	}
}

// readSince says whether the client has acknowledged bytes since the
// write deadline was set.
func (c *conn) readSince() bool {
	a, ok := ackedBytes(c.Conn)
	return ok && a > c.acked
}

// SetWriteDeadline sets a deadline that holds until the next write, which
// sets the write timeout's own (see Write).
func (c *conn) SetWriteDeadline(t time.Time) error {
	c.writeBy.Store(0)
	return c.Conn.SetWriteDeadline(t)
}

// stalledAfter is how long a write to a client must have waited before
// its connection counts as stalled, and so evictable at the limit: a
// client that reads a stream of tokens never leaves the router's write
// waiting that long.
const stalledAfter = time.Second

// connLimiter bounds a server's connections. Under the limit every
// connection is accepted. At the limit it closes the connection that has
// waited longest (idle between requests, or still sending its request, as a
// slow client does) to make room, or else the one whose client has read
// nothing of its answer the longest (a write waiting stalledAfter or
// more); when every connection is being served and reading it
// accepts up to reserve more that may only serve health and metrics, and
// beyond those it answers 503 and closes. So a flood of slow or idle
// connections cannot lock out the router's real clients or its probes, and
// the router never holds more than max+reserve descriptors for clients.
type connLimiter struct {
	max, reserve int
	writeTimeout time.Duration // see conn.Write; 0: none

	mu       sync.Mutex
	n        int       // connections held, reserved ones included
	reserved int       // reserved connections held
	waiting  list.List // waiting connections, oldest first
	serving  list.List // connections being served

	evicted, refused, handed atomic.Int64
}

func newConnLimiter(max, reserve int, writeTimeout time.Duration) *connLimiter {
	return &connLimiter{max: max, reserve: reserve, writeTimeout: writeTimeout}
}

// limitListener applies a connLimiter to a listener's connections.
type limitListener struct {
	net.Listener
	lim *connLimiter
}

func (l limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if tc := l.lim.admit(c); tc != nil {
			return tc, nil
		}
	}
}

// overloaded is the answer to a connection over every limit.
var overloaded = func() []byte {
	body := `{"error":{"message":"the router is at its connection limit (--max-connections)","type":"Service Unavailable","code":503}}` + "\n"
	return []byte(fmt.Sprintf("HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: application/json\r\nRetry-After: 1\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
}()

// admit tracks a new connection, making room if needed; nil when refused.
func (l *connLimiter) admit(c net.Conn) *conn {
	tc := &conn{Conn: c, lim: l, state: connWaiting}
	var victim *conn
	l.mu.Lock()
	full := l.n-l.reserved >= l.max
	if full && l.waiting.Len() > 0 {
		victim = l.waiting.Front().Value.(*conn)
	} else if full {
		victim = l.stalled()
	}
	switch {
	case !full:
	case victim != nil:
		// The newcomer takes the victim's slot, reserved or not.
		l.unlink(victim)
		tc.reserved = victim.reserved
		l.n--
		victim.closed.Store(true) // its slot is handed over here
	case l.reserved < l.reserve:
		tc.reserved = true
		l.reserved++
	default:
		l.mu.Unlock()
		l.refused.Add(1)
		c.SetWriteDeadline(time.Now().Add(time.Second))
		c.Write(overloaded)
		c.Close()
		return nil
	}
	l.n++
	tc.elem = l.waiting.PushBack(tc)
	l.mu.Unlock()
	if victim != nil {
		l.evicted.Add(1)
		victim.Conn.Close()
	}
	return tc
}

// stalled is the served connection whose write has waited longest, if
// one has waited stalledAfter or more; nil if none. Called with mu held,
// at the limit only: it walks the served connections.
func (l *connLimiter) stalled() *conn {
	var victim *conn
	oldest := time.Now().Add(-stalledAfter).UnixNano()
	for e := l.serving.Front(); e != nil; e = e.Next() {
		c := e.Value.(*conn)
		if w := c.writing.Load(); w != 0 && w <= oldest {
			victim, oldest = c, w
		}
	}
	return victim
}

// unlink takes c off its list. Called with mu held.
func (l *connLimiter) unlink(c *conn) {
	if c.elem == nil {
		return
	}
	if c.state == connServing {
		l.serving.Remove(c.elem)
	} else {
		l.waiting.Remove(c.elem)
	}
	c.elem = nil
}

func (l *connLimiter) release(c *conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.unlink(c)
	l.n--
	if c.reserved {
		l.reserved--
	}
}

// setState moves c between waiting (evictable) and serving.
func (l *connLimiter) setState(c *conn, state int32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.closed.Load() || c.state == state {
		return
	}
	l.unlink(c)
	c.state = state
	if state == connServing {
		c.elem = l.serving.PushBack(c)
	} else {
		c.elem = l.waiting.PushBack(c)
	}
}

// held is the number of client connections held.
func (l *connLimiter) held() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

type connKey struct{}

// connOf is the tracked connection a request arrived on, nil if none.
func connOf(r *http.Request) *conn {
	c, _ := r.Context().Value(connKey{}).(*conn)
	return c
}

// serverHooks wires a connLimiter into an http.Server: the request context
// carries the connection, and a connection becomes waiting again when its
// request ends (idle).
func (l *connLimiter) serverHooks(hs *http.Server) {
	hs.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if tc, ok := trackedConn(c); ok {
			return context.WithValue(ctx, connKey{}, tc)
		}
		return ctx
	}
	hs.ConnState = func(c net.Conn, st http.ConnState) {
		if tc, ok := trackedConn(c); ok && st == http.StateIdle {
			l.setState(tc, connWaiting)
		}
	}
}

// bodyWatch calls done once the request body has been read to its end:
// the router then marks the connection serving and lifts the body's read
// deadline. After any other error the deadline stays: net/http drains an
// unread body before it writes the response, and that drain must not wait
// on a client that stopped sending.
type bodyWatch struct {
	io.ReadCloser
	done func()
	once sync.Once
}

func (b *bodyWatch) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.once.Do(b.done)
	}
	return n, err
}
