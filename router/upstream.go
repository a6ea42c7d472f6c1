package router

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// upstream is the router's HTTP/1.1 client to its backends: every request
// the router forwards (routed, passed through, health probes, model
// lists) goes through it. It does on the caller's goroutine what
// net/http's Transport does on three (the caller, a reader and a writer
// per connection, handing each request over by channel): under wrk
// against instant backends the Transport's own work was a fifth of the
// router's CPU (pprof), more than the rest of the routing.
//
// Per backend it keeps a pool of kept-alive connections, at most maxConns
// open (requests beyond wait, in arrival order, for a connection to come
// back or to close); a request on a reused connection that fails before
// any byte of the answer is sent again once on a new one (the backend
// closed the idle connection: nothing of the request reached it). A
// request's context cancels it at any point, the first byte of the
// answer must come within headerTimeout, and the body's reader, once
// closed from any goroutine, ends the connection.
type upstream struct {
	dialer        net.Dialer
	headerTimeout time.Duration
	idleTimeout   time.Duration
	maxConns      int
	tlsConfig     *tls.Config // for https backends; nil: the system's roots

	// unsolicitedAnswers counts connections closed for bytes a backend
	// sent outside any answer.
	unsolicitedAnswers atomic.Int64

	mu    sync.RWMutex
	pools map[string]*upPool // by backend base URL
}

func newUpstream(connect, header, idle time.Duration, maxConns int) *upstream {
	return &upstream{dialer: net.Dialer{Timeout: connect, KeepAlive: 30 * time.Second},
		headerTimeout: header, idleTimeout: idle, maxConns: maxConns, pools: map[string]*upPool{}}
}

// upPool is one backend's connections.
type upPool struct {
	u      *upstream
	tls    bool
	addr   string // host:port to dial
	host   string // the Host header
	prefix string // the base URL's path, before every request's

	mu      sync.Mutex
	idle    []*upConn // newest last
	open    int       // connections open or being dialled
	waiters []chan *upConn
}

type upConn struct {
	nc        net.Conn
	br        *bufio.Reader
	pool      *upPool
	idleSince time.Time
}

// errUpstreamClosed is what a body read after Close returns.
var errUpstreamClosed = errors.New("response body closed")

// pool returns the pool of the backend at base (a URL).
func (u *upstream) pool(base string) (*upPool, error) {
	u.mu.RLock()
	p := u.pools[base]
	u.mu.RUnlock()
	if p != nil {
		return p, nil
	}
	pu, err := url.Parse(base)
	if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
		return nil, fmt.Errorf("backend %q: want an http:// or https:// URL", base)
	}
	addr := pu.Host
	if pu.Port() == "" {
		port := "80"
		if pu.Scheme == "https" {
			port = "443"
		}
		addr = net.JoinHostPort(pu.Hostname(), port)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if p := u.pools[base]; p != nil {
		return p, nil
	}
	p = &upPool{u: u, tls: pu.Scheme == "https", addr: addr, host: pu.Host, prefix: strings.TrimSuffix(pu.EscapedPath(), "/")}
	u.pools[base] = p
	return p, nil
}

// closeIdle closes every idle connection; those in use close when their
// request ends.
func (u *upstream) closeIdle() {
	u.mu.RLock()
	defer u.mu.RUnlock()
	for _, p := range u.pools {
		p.mu.Lock()
		idle := p.idle
		p.idle = nil
		p.mu.Unlock()
		for _, c := range idle {
			c.close()
		}
	}
}

// do sends method uri (path and query, below the base URL's path) with
// header (hop-by-hop fields and the workflow headers are left out, as is
// Host and Content-Length, which it writes) and body to the backend at
// base, and returns its answer once its headers are in, without the
// fields its Connection field named (hop-by-hop). The answer's body must
// be closed.
func (u *upstream) do(ctx context.Context, base, method, uri string, header http.Header, body []byte) (*http.Response, error) {
	p, err := u.pool(base)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		c, reused, err := p.get(ctx)
		if err != nil {
			return nil, &unsentError{err}
		}
		resp, stale, err := c.roundTrip(ctx, method, p.prefix+uri, header, body)
		if err == nil {
			return resp, nil
		}
		c.close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// Once more on a new connection when a kept-alive one failed:
		// the backend had closed it. Only a request that did not reach
		// the backend whole, or one that may be sent twice, goes again:
		// a POST the backend read before the connection closed may have
		// run (Go's Transport answers so too).
		if !reused || attempt > 0 || !unsent(err) && !(stale && replayable(method, header)) {
			return nil, err
		}
	}
}

// get takes an idle connection, dials one, or waits for either.
func (p *upPool) get(ctx context.Context) (c *upConn, reused bool, err error) {
	p.mu.Lock()
	for len(p.idle) > 0 {
		c = p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if time.Since(c.idleSince) < p.u.idleTimeout {
			p.mu.Unlock()
			if !c.usable() {
				c.close()
				p.mu.Lock()
				continue
			}
			return c, true, nil
		}
		p.mu.Unlock()
		c.close()
		p.mu.Lock()
	}
	if p.u.maxConns <= 0 || p.open < p.u.maxConns {
		p.open++
		p.mu.Unlock()
		return p.dial(ctx)
	}
	w := make(chan *upConn, 1)
	p.waiters = append(p.waiters, w)
	p.mu.Unlock()
	select {
	case c := <-w:
		if c == nil { // a connection closed: its place is ours
			return p.dial(ctx)
		}
		if !c.usable() {
			c.nc.Close()
			return p.dial(ctx) // in the place it held
		}
		return c, true, nil
	case <-ctx.Done():
		p.mu.Lock()
		for i, x := range p.waiters {
			if x == w {
				p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
				p.mu.Unlock()
				return nil, false, ctx.Err()
			}
		}
		p.mu.Unlock()
		// Handed something meanwhile: pass it on.
		if c := <-w; c != nil {
			p.put(c)
		} else {
			p.release()
		}
		return nil, false, ctx.Err()
	}
}

// dial opens a connection in a place already counted in open.
func (p *upPool) dial(ctx context.Context) (*upConn, bool, error) {
	nc, err := p.u.dialer.DialContext(ctx, "tcp", p.addr)
	if err == nil && p.tls {
		cfg := p.u.tlsConfig.Clone()
		if cfg == nil {
			cfg = &tls.Config{}
		}
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(p.addr)
		}
		cfg.NextProtos = []string{"http/1.1"}
		tc := tls.Client(nc, cfg)
		if err = tc.HandshakeContext(ctx); err != nil {
			nc.Close()
		}
		nc = tc
	}
	if err != nil {
		p.release()
		return nil, false, err
	}
	return &upConn{nc: nc, br: bufio.NewReaderSize(nc, 4<<10), pool: p}, false, nil
}

// put gives a connection back for reuse: to the first waiter, or idle.
func (p *upPool) put(c *upConn) {
	p.mu.Lock()
	if p.handOff(c) {
		return
	}
	c.idleSince = time.Now()
	p.idle = append(p.idle, c)
	p.mu.Unlock()
}

// release gives up a closed connection's place: to the first waiter, who
// dials, or back to the pool.
func (p *upPool) release() {
	p.mu.Lock()
	if p.handOff(nil) {
		return
	}
	p.open--
	p.mu.Unlock()
}

// handOff, called with p.mu held, gives c (nil: a place to dial) to the
// first waiter if there is one, releasing p.mu; else it keeps p.mu and
// says false.
func (p *upPool) handOff(c *upConn) bool {
	if len(p.waiters) == 0 {
		return false
	}
	w := p.waiters[0]
	p.waiters = p.waiters[1:]
	p.mu.Unlock()
	w <- c
	return true
}

// usable says whether a connection that was idle may carry a request:
// nothing has arrived on it since its last answer ended, and the backend
// has not closed it. Bytes there would be taken for the next request's
// answer (Go's Transport reads every idle connection in the background
// for this; one system call before reuse does here what that goroutine
// does there).
func (c *upConn) usable() bool {
	if n := c.br.Buffered(); n > 0 {
		head, _ := c.br.Peek(min(n, 40))
		c.pool.u.unsolicited(c, n, head)
		return false
	}
	var buf [40]byte
	n, err := peekConn(c.nc, buf[:])
	if n > 0 {
		c.pool.u.unsolicited(c, n, buf[:n])
	}
	return n == 0 && err == nil
}

// unsolicited notes bytes a backend sent outside any answer.
func (u *upstream) unsolicited(c *upConn, n int, head []byte) {
	u.unsolicitedAnswers.Add(1)
	log.Printf("router: backend %s sent %d bytes outside any answer (starting %q): connection closed", c.pool.addr, n, head)
}

func (c *upConn) close() {
	c.nc.Close()
	c.pool.release()
}

// aLongTimeAgo, as a deadline, interrupts a blocked read or write at once.
var aLongTimeAgo = time.Unix(1, 0)

// requestHeads hold requests' heads as they are written.
var requestHeads = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// skipHeader says which of a client's header fields a backend does not
// get: connection-specific ones, the workflow headers the router
// consumes, and those the request line and framing write.
func skipHeader(k string) bool {
	switch k {
	case "Host", "Content-Length", "X-Workflow-Id", "X-Agent-Id":
		return true
	}
	return isHop(k)
}

// isHop says whether a header field (canonical key) is one of hopHeaders.
func isHop(k string) bool {
	for _, h := range hopHeaders {
		if k == h {
			return true
		}
	}
	return false
}

// unsentError is the error of a request that did not reach its backend
// whole (the connection could not be had, or writing the request failed):
// no backend can have acted on it, so it may go again, to the same
// backend or another, whatever its method.
type unsentError struct{ err error }

func (e *unsentError) Error() string { return e.err.Error() }
func (e *unsentError) Unwrap() error { return e.err }

// unsent says whether err is a request's that did not reach its backend.
func unsent(err error) bool {
	var u *unsentError
	return errors.As(err, &u)
}

// replayable says whether a request that may have reached a backend can
// be sent again, as Go's Transport decides: its method is idempotent, or
// the client marked it with an idempotency key.
func replayable(method string, header http.Header) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, key := header["Idempotency-Key"]
	_, xkey := header["X-Idempotency-Key"]
	return key || xkey
}

// connectionFields lists the fields h's Connection field names, in
// canonical form: they are hop-by-hop for that message (RFC 9110 7.6.1).
// nil when there is no Connection field, as in nearly every message.
func connectionFields(h http.Header) []string {
	var named []string
	for _, v := range h["Connection"] {
		for t := range strings.SplitSeq(v, ",") {
			if t = textproto.TrimString(t); t != "" {
				named = append(named, textproto.CanonicalMIMEHeaderKey(t))
			}
		}
	}
	return named
}

// hopField says whether the field k (canonical) stays on its hop: one of
// hopHeaders, or named by the message's Connection field.
func hopField(k string, named []string) bool {
	if isHop(k) {
		return true
	}
	for _, n := range named {
		if n == k {
			return true
		}
	}
	return false
}

// roundTrip writes the request and reads the answer's head. stale says
// the connection was found closed by the backend before any byte of an
// answer came (the backend may have closed it while idle, or may have
// read the request and died); an error writing the request is an
// unsentError.
func (c *upConn) roundTrip(ctx context.Context, method, uri string, header http.Header, body []byte) (resp *http.Response, stale bool, err error) {
	stop := context.AfterFunc(ctx, func() { c.nc.SetDeadline(aLongTimeAgo) })
	defer func() {
		if err != nil {
			stop()
		}
	}()
	named := connectionFields(header)
	hp := requestHeads.Get().(*[]byte)
	h := append((*hp)[:0], method...)
	h = append(h, ' ')
	h = append(h, uri...)
	h = append(h, " HTTP/1.1\r\nHost: "...)
	h = append(h, c.pool.host...)
	h = append(h, "\r\n"...)
	for k, vs := range header {
		if skipHeader(k) || named != nil && hopField(k, named) {
			continue
		}
		for _, v := range vs {
			h = append(h, k...)
			h = append(h, ": "...)
			h = append(h, v...)
			h = append(h, "\r\n"...)
		}
	}
	if len(body) > 0 || method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch {
		h = append(h, "Content-Length: "...)
		h = strconv.AppendInt(h, int64(len(body)), 10)
		h = append(h, "\r\n"...)
	}
	h = append(h, "\r\n"...)
	if c.pool.u.headerTimeout > 0 {
		// The request's write and the answer's head: a backend that
		// stops reading a large body must not hold the write forever.
		c.nc.SetDeadline(time.Now().Add(c.pool.u.headerTimeout))
	}
	if len(body) > 0 && len(h)+len(body) <= cap(h) {
		h = append(h, body...)
		body = nil
	}
	if len(body) > 0 { // large: both in one system call, without a copy
		bufs := net.Buffers{h, body}
		_, err = bufs.WriteTo(c.nc)
	} else {
		_, err = c.nc.Write(h)
	}
	*hp = h[:0]
	requestHeads.Put(hp)
	if err != nil {
		return nil, closedByPeer(err), &unsentError{err}
	}
	resp, f, err := readBackendAnswer(c.br, method)
	if err != nil {
		return nil, c.br.Buffered() == 0 && closedByPeer(err), err
	}
	for _, k := range f.hop { // the backend's hop-by-hop fields stay here
		delete(resp.Header, k)
	}
	c.nc.SetDeadline(time.Time{})
	if ctx.Err() != nil { // cancelled as the deadline was cleared
		c.nc.SetDeadline(aLongTimeAgo)
	}
	resp.Body = &upBody{c: c, r: newAnswerBody(c.br, f), keep: f.keep, stop: stop, ctx: ctx}
	if f.remain == 0 {
		resp.Body.(*upBody).end()
	}
	return resp, true, nil
}

// closedByPeer says whether err is the other end having closed the
// connection (not a timeout, not a malformed answer).
func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// upBody reads an answer's body and, at its end, gives the connection
// back (or closes it when the framing or the backend says so).
type upBody struct {
	c        *upConn
	r        *answerBody
	keep     bool // the framing lets the connection carry another request
	stop     func() bool
	ctx      context.Context
	err      error       // the reader's: only its goroutine touches it
	done     atomic.Bool // the connection's fate is decided
	closedBy atomic.Bool // Close was called
}

func (b *upBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.r.Read(p)
	switch {
	case err == io.EOF:
		b.end()
	case err != nil:
		b.finish(false)
		switch {
		case b.closedBy.Load():
			err = errUpstreamClosed
		case b.ctx.Err() != nil:
			err = b.ctx.Err()
		}
	}
	if err != nil {
		b.err = err
	}
	return n, err
}

// end is the body read to its end: the connection is kept when nothing
// follows it. Bytes already there are an answer nobody asked for (a
// backend that sent more than it framed, or a body after a 204): kept,
// they would be the next request's answer, so the connection closes, as
// Go's Transport and HAProxy close it.
func (b *upBody) end() {
	b.err = io.EOF
	if n := b.c.br.Buffered(); n > 0 {
		head, _ := b.c.br.Peek(min(n, 40))
		b.c.pool.u.unsolicited(b.c, n, head)
		b.finish(false)
		return
	}
	b.finish(true)
}

// finish decides the connection's fate once: reused when the body ended
// cleanly and neither side asked to close, closed otherwise.
func (b *upBody) finish(clean bool) {
	if !b.done.CompareAndSwap(false, true) {
		return
	}
	// stop is false once the request's context has ended: its deadline
	// may be set on the connection.
	if b.stop() && clean && b.keep {
		b.c.pool.put(b.c)
		return
	}
	b.c.close()
}

// Close ends the body. From another goroutine it interrupts a read in
// flight (the connection closes).
func (b *upBody) Close() error {
	b.closedBy.Store(true)
	if b.done.Load() {
		return nil
	}
	b.finish(false)
	return nil
}

// headerHasToken says whether a comma-separated header field lists token.
func headerHasToken(h http.Header, key, token string) bool {
	for _, v := range h[key] {
		for s := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(s), token) {
				return true
			}
		}
	}
	return false
}
