package router

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The router serves its clients' HTTP/1.1 connections itself for the
// requests they send most: a request line with an origin-form target and
// HTTP/1.1, well-formed header fields, a Host and at most one
// Content-Length. At the first request it does not take (HTTP/1.0, a
// chunked or Expect: 100-continue body, an upgrade, obsolete line folding,
// a header block over the read buffer, anything it would have to judge
// leniently) it hands the connection, with the bytes it has read and not
// consumed, to net/http's server, which serves it from then on. So the
// rare and the odd keep net/http's behaviour, and the common path skips
// what net/http does for every request and a proxy does not need: under
// wrk, the server's own work (request parsing into a fresh header map,
// a read deadline set three times, a background read per request to
// notice a client leaving, the response's two buffers) was about a fifth of
// the router's CPU (pprof, docs/router.md "Proxy speed").
//
// Both serve the same handler (Router.ServeHTTP) with the same bounds:
// the header within HeaderTimeout and 64 KiB (over the 8 KiB read buffer
// it is handed over), idle keep-alive connections closed after
// ClientIdleTimeout, the body's deadline set by the handler, the
// connection limiter's states. A request's context ends when its handler
// returns or when its client leaves: a request still running after
// hangupCheck gets a background read on its connection, which notices
// the client closing (a shorter request ends before any client could be
// told apart from a slow reader, and skips that read's system calls).
type h1Server struct {
	rt      *Router
	handoff chan net.Conn // to net/http's server
	done    chan struct{} // closed when shutting down

	mu    sync.Mutex
	conns map[*h1Conn]struct{}
}

func newH1Server(rt *Router, handoff chan net.Conn) *h1Server {
	return &h1Server{rt: rt, handoff: handoff, done: make(chan struct{}), conns: map[*h1Conn]struct{}{}}
}

// acceptLoop serves ln's connections until it fails or is closed.
func (s *h1Server) acceptLoop(ln net.Listener) error {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			// Out of descriptors and the like: wait and go on, as
			// net/http's server does.
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ECONNABORTED) || isTimeout(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				log.Printf("router: accept: %v; retrying in %v", err, delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		go s.serve(c.(*conn))
	}
}

// shutdown closes idle connections at once and the others as their
// requests end, waiting for them until ctx ends; then it closes the rest.
func (s *h1Server) shutdown(ctx context.Context) {
	s.mu.Lock()
	if !s.closing() {
		close(s.done)
	}
	s.mu.Unlock()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		for c := range s.conns {
			if c.state.Load() == h1Idle || ctx.Err() != nil {
				c.tc.Close()
			}
		}
		n := len(s.conns)
		s.mu.Unlock()
		if n == 0 || ctx.Err() != nil {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
}

func (s *h1Server) closing() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

const (
	h1ReadBuffer  = 8 << 10
	h1WriteBuffer = 8 << 10
	// hangupCheck is how long a request runs before its connection is
	// watched for the client leaving.
	hangupCheck = 50 * time.Millisecond
	// h1MaxDrain is the most of an unread request body read past to keep
	// a connection; over it, the connection closes.
	h1MaxDrain = 256 << 10
)

type h1Conn struct {
	s      *h1Server
	tc     *conn // the limiter's connection
	br     *bufio.Reader
	bw     *bufio.Writer
	cr     h1ConnReader
	ctx    context.Context // the connection's: carries tc
	remote string
	linger bool // a request body is still arriving: close gently
	hangup hangup
	// respBuf holds an answer's first bytes until its head goes.
	respBuf []byte

	// Set while a request is served.
	state atomic.Int32 // h1Idle, h1Active
}

const (
	h1Idle int32 = iota
	h1Active
)

// h1ConnReader reads the connection for the bufio.Reader, returning first
// a byte the background read got (a pipelined request's first).
//
// Read deadlines are set here, just before a read of the connection
// needs them: a request whose head and body came in one read sets one
// (setting one is a fifth of the server's own work in a CPU profile).
// readBy is the deadline the next read must have; one already set up to
// slack earlier is kept (the idle deadline, minutes away, is not moved
// for every request on a busy connection).
type h1ConnReader struct {
	nc      net.Conn
	pending []byte

	readBy, set time.Time
	slack       time.Duration
	isSet       bool // set is the connection's deadline
}

func (r *h1ConnReader) Read(p []byte) (int, error) {
	if len(r.pending) > 0 {
		n := copy(p, r.pending)
		r.pending = r.pending[n:]
		return n, nil
	}
	if !r.keeps() {
		if err := r.nc.SetReadDeadline(r.readBy); err != nil {
			return 0, err
		}
		r.set, r.isSet = r.readBy, true
	}
	return r.nc.Read(p)
}

// keeps says the deadline set will do for readBy.
func (r *h1ConnReader) keeps() bool {
	if !r.isSet {
		return false
	}
	if r.set.IsZero() || r.readBy.IsZero() {
		return r.set.IsZero() && r.readBy.IsZero()
	}
	early := r.readBy.Sub(r.set)
	return early >= 0 && early <= r.slack
}

// readWithin sets the deadline of the connection's next reads d from now.
func (r *h1ConnReader) readWithin(d time.Duration) {
	r.readBy, r.slack = time.Now().Add(d), d/64
}

var (
	h1Readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, h1ReadBuffer) }}
	h1Writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, h1WriteBuffer) }}
)

// serve runs one connection until it closes or is handed over.
func (s *h1Server) serve(tc *conn) {
	c := &h1Conn{s: s, tc: tc, cr: h1ConnReader{nc: tc}}
	c.hangup.c = c
	c.ctx = context.WithValue(context.Background(), connKey{}, tc)
	c.remote = tc.RemoteAddr().String()
	c.br = h1Readers.Get().(*bufio.Reader)
	c.br.Reset(&c.cr)
	c.bw = h1Writers.Get().(*bufio.Writer)
	c.bw.Reset(tc)
	if !s.track(c, true) {
		tc.Close()
		c.release()
		return
	}
	defer s.track(c, false)
	handed := false
	defer func() {
		if err := recover(); err != nil && err != http.ErrAbortHandler {
			buf := make([]byte, 64<<10)
			buf = buf[:runtime.Stack(buf, false)]
			log.Printf("router: panic serving %v: %v\n%s", tc.RemoteAddr(), err, buf)
		}
		if !handed {
			if c.linger {
				c.closeGently()
			}
			tc.Close()
		}
		c.release()
	}()
	for first := true; ; first = false {
		req, ok, err := c.readRequest(first)
		if err != nil {
			return // closed, timed out, or malformed beyond handing over
		}
		if !ok {
			handed = c.handOver()
			return
		}
		ok = c.serveRequest(req)
		c.state.Store(h1Idle)
		if !ok || s.closing() {
			return
		}
		s.rt.conns.setState(tc, connWaiting)
	}
}

// closeGently ends the connection's writing side and waits a moment
// before it closes, so that a client still sending a body the router did
// not read reads the answer before the reset that closing with unread
// bytes sends (net/http waits 500 ms likewise).
func (c *h1Conn) closeGently() {
	c.bw.Flush()
	if cw, ok := c.tc.Conn.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		time.Sleep(500 * time.Millisecond)
	}
}

func (c *h1Conn) release() {
	c.br.Reset(nil)
	h1Readers.Put(c.br)
	c.bw.Reset(nil)
	h1Writers.Put(c.bw)
}

// track adds or removes c from the server's set; false once closing.
func (s *h1Server) track(c *h1Conn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.closing() {
			return false
		}
		s.conns[c] = struct{}{}
		return true
	}
	delete(s.conns, c)
	return true
}

// handOver gives the connection, with what it has buffered, to net/http.
func (c *h1Conn) handOver() bool {
	var pre []byte
	if n := c.br.Buffered(); n > 0 {
		b, _ := c.br.Peek(n)
		pre = append([]byte(nil), b...)
	}
	pre = append(pre, c.cr.pending...)
	if err := c.tc.SetReadDeadline(time.Time{}); err != nil {
		return false
	}
	hc := &handedConn{conn: c.tc, pre: pre}
	c.s.rt.conns.handed.Add(1)
	select {
	case c.s.handoff <- hc:
		return true
	case <-c.s.done:
		return false
	}
}

// handedConn is a connection given to net/http: its reads return first
// the bytes the router had read.
type handedConn struct {
	*conn
	pre []byte
}

func (h *handedConn) Read(p []byte) (int, error) {
	if len(h.pre) > 0 {
		n := copy(p, h.pre)
		h.pre = h.pre[n:]
		return n, nil
	}
	return h.conn.Read(p)
}

// trackedConn is the limiter's connection under c.
func trackedConn(c net.Conn) (*conn, bool) {
	switch t := c.(type) {
	case *conn:
		return t, true
	case *handedConn:
		return t.conn, true
	}
	return nil, false
}

// readRequest reads the next request's head. ok false: the request is one
// to hand over (nothing of it consumed); err: the connection is done.
func (c *h1Conn) readRequest(first bool) (req *http.Request, ok bool, err error) {
	cfg := &c.s.rt.cfg
	// A new connection's first request head is due within the header
	// timeout of the connection's start, its first byte included (as
	// net/http has it); a later one may wait idle, and its head is due
	// within the header timeout of its first byte.
	if first {
		c.cr.readWithin(cfg.HeaderTimeout)
	}
	if c.br.Buffered() == 0 && len(c.cr.pending) == 0 {
		if !first {
			c.cr.readWithin(cfg.ClientIdleTimeout)
		}
		if _, err := c.br.Peek(1); err != nil {
			return nil, false, err
		}
	}
	c.state.Store(h1Active)
	if c.s.closing() {
		return nil, false, net.ErrClosed
	}
	if !first {
		c.cr.readWithin(cfg.HeaderTimeout)
	}
	var head []byte
	for {
		buf, _ := c.br.Peek(c.br.Buffered())
		if end := headEnd(buf); end > 0 {
			head = buf[:end]
			break
		} else if end < 0 {
			return nil, false, nil // a bare line feed: net/http judges
		}
		if c.br.Buffered() == c.br.Size() {
			return nil, false, nil // longer than the buffer: net/http's 64 KiB apply
		}
		if _, err := c.br.Peek(c.br.Buffered() + 1); err != nil {
			if c.br.Buffered() > 0 && !isTimeout(err) {
				// A request cut short: hand over, so net/http answers
				// it as it would.
				return nil, false, nil
			}
			if c.br.Buffered() > 0 {
				// Part of a head by the deadline: net/http's answer.
				c.bw.WriteString(headTimedOut)
				c.bw.Flush()
			}
			return nil, false, err
		}
	}
	req, ok = parseHead(head)
	if !ok {
		return nil, false, nil
	}
	c.br.Discard(len(head))
	req.RemoteAddr = c.remote
	return req, true, nil
}

// headTimedOut is what net/http's server answers a client whose request
// head was not complete by the header timeout.
const headTimedOut = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request"

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// headEnd is the length of the request head at the start of buf (through
// its blank line), 0 if it is not complete, -1 if a line ends in a bare
// line feed.
func headEnd(buf []byte) int {
	for i := 0; ; {
		j := bytes.IndexByte(buf[i:], '\n')
		if j < 0 {
			return 0
		}
		j += i
		if j == 0 || buf[j-1] != '\r' {
			return -1
		}
		if j == i+1 { // an empty line
			if i == 0 {
				return -1 // a blank line before the request line: net/http skips it
			}
			return j + 1
		}
		i = j + 1
	}
}

// Field name characters (RFC 9110 token) and field value characters
// (visible, space, tab, obs-text).
var tokenChar, valueChar [256]bool

func init() {
	for c := 0; c < 256; c++ {
		valueChar[c] = c == '\t' || (c >= 0x20 && c != 0x7f)
		tokenChar[c] = c > 0x20 && c < 0x7f && !bytes.ContainsRune([]byte(`"(),/:;<=>?@[\]{}`), rune(c))
	}
}

// tokenCase says whether name is a token and whether it is in canonical
// form (each word's first letter upper case, the others lower).
func tokenCase(name string) (canonical, ok bool) {
	if len(name) == 0 {
		return false, false
	}
	canonical, upper := true, true
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !tokenChar[c] {
			return false, false
		}
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			canonical = false
		}
		upper = c == '-'
	}
	return canonical, true
}

// parseHead parses a complete request head (CRLF lines through the blank
// one). ok false: not one the router serves itself. Every string of the
// request is a piece of one copy of the head.
func parseHead(headBytes []byte) (*http.Request, bool) {
	head := string(headBytes)
	line, fields, _ := strings.Cut(head, "\r\n")
	method, line, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(line, " ")
	_, methodOK := tokenCase(method)
	if !ok1 || !ok2 || !methodOK || proto != "HTTP/1.1" || len(target) == 0 || target[0] != '/' {
		return nil, false
	}
	u, ok := parseTarget(target)
	if !ok {
		return nil, false
	}
	h, ok := parseFields(fields)
	if !ok {
		return nil, false
	}
	req := &http.Request{Method: method, URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, RequestURI: target, Body: http.NoBody}
	for _, k := range []string{"Transfer-Encoding", "Expect", "Upgrade", "Te", "Trailer"} {
		if _, ok := h[k]; ok {
			return nil, false
		}
	}
	hosts := h["Host"]
	if len(hosts) != 1 || !validHost(hosts[0]) {
		return nil, false
	}
	req.Host = hosts[0]
	delete(h, "Host") // as net/http does: the Host field is req.Host
	switch cl := h["Content-Length"]; len(cl) {
	case 0:
	case 1:
		// Digits only, as net/http's parseContentLength takes them
		// (ParseInt would take "-0" and "+5").
		n, err := strconv.ParseUint(cl[0], 10, 63)
		if err != nil {
			return nil, false
		}
		req.ContentLength = int64(n)
	default:
		return nil, false
	}
	for _, v := range h["Connection"] {
		for t := range strings.SplitSeq(v, ",") {
			switch strings.ToLower(strings.TrimSpace(t)) {
			case "close":
				req.Close = true
			case "keep-alive", "":
			default:
				return nil, false // an upgrade, or hop-by-hop fields to judge
			}
		}
	}
	return req, true
}

// parseFields parses header fields, CRLF lines through an empty one,
// strictly: token names right before their colon, no folded lines, only
// field-value characters. ok false: one of those does not hold. The keys
// are canonical; the values are pieces of fields.
func parseFields(fields string) (http.Header, bool) {
	n := strings.Count(fields, "\r\n") - 1
	h := make(http.Header, n)
	vals := make([]string, 0, n) // one array behind every field's values
	for {
		f, rest, found := strings.Cut(fields, "\r\n")
		if !found {
			return nil, false
		}
		fields = rest
		if len(f) == 0 {
			return h, true
		}
		name, value, found := strings.Cut(f, ":")
		canonical, ok := tokenCase(name)
		if !found || !ok {
			return nil, false
		}
		value = strings.Trim(value, " \t")
		for i := 0; i < len(value); i++ {
			if !valueChar[value[i]] {
				return nil, false
			}
		}
		key := name
		if !canonical {
			key = textproto.CanonicalMIMEHeaderKey(name)
		}
		if vs, dup := h[key]; dup {
			h[key] = append(vs, value)
		} else {
			vals = append(vals, value)
			h[key] = vals[len(vals)-1 : len(vals) : len(vals)]
		}
	}
}

// parseTarget parses an origin-form request target; a path and query of
// plain characters without parsing (what url.ParseRequestURI would give),
// the rest by it.
func parseTarget(target string) (*url.URL, bool) {
	for i := 0; i < len(target); i++ {
		if b := target[i]; b <= 0x20 || b >= 0x7f || b == '#' {
			return nil, false
		}
	}
	path, query, hasQuery := strings.Cut(target, "?")
	plain := true
	for i := 0; i < len(path) && plain; i++ {
		b := path[i]
		plain = b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '/' || b == '-' || b == '_' || b == '.' || b == '~'
	}
	if plain {
		return &url.URL{Path: path, RawQuery: query, ForceQuery: hasQuery && query == ""}, true
	}
	u, err := url.ParseRequestURI(target)
	return u, err == nil
}

// validHost allows what a host and port may hold.
func validHost(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._:[]%~!$&'()*+,;=", c) >= 0) {
			return false
		}
	}
	return true
}

// serveRequest runs the handler for req; false: close the connection.
func (c *h1Conn) serveRequest(req *http.Request) bool {
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	req = req.WithContext(ctx)
	var body *h1Body
	if req.ContentLength > 0 {
		body = &h1Body{c: c, left: req.ContentLength}
		req.Body = body
	}
	w := &h1Response{c: c, req: req, reqBody: body, header: make(http.Header, 8), length: -1, buf: c.respBuf[:0]}
	defer func() { c.respBuf = w.buf[:0] }() // the connection's, for its next answer
	c.watchHangup(cancel, body)
	defer c.hangup.stop()
	c.s.rt.ServeHTTP(w, req)
	if !w.finish() {
		return false
	}
	c.hangup.stop()
	return !req.Close && !w.closeAfter && !c.hangup.gone.Load()
}

// h1Body is a request body of a declared length.
type h1Body struct {
	c    *h1Conn
	left int64
	err  error
	done atomic.Bool // read to its end: the handler is done with the reader
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.left == 0 {
		return 0, io.EOF
	}
	if b.err != nil {
		return 0, b.err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.c.br.Read(p)
	b.left -= int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		b.err = err
		return n, err
	}
	if b.left == 0 {
		b.done.Store(true)
		return n, io.EOF
	}
	return n, nil
}

func (b *h1Body) Close() error { return nil }

// h1Response is the http.ResponseWriter of a request served here. Its
// head goes out with the first flush or, for an answer the handler ends
// within one buffer, with the body and its Content-Length.
type h1Response struct {
	c          *h1Conn
	req        *http.Request
	reqBody    *h1Body // nil: none
	header     http.Header
	status     int
	length     int64 // the declared Content-Length, -1 if none
	written    int64
	headSent   bool
	chunked    bool
	closeAfter bool
	failed     bool
	buf        []byte // the body until the head goes
}

func (w *h1Response) Header() http.Header { return w.header }

func (w *h1Response) WriteHeader(code int) {
	if w.status != 0 || w.headSent {
		return
	}
	if code < 200 || code > 999 {
		return // informational answers are not sent
	}
	w.status = code
	if v := w.header.Get("Content-Length"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			w.length = n
		} else {
			w.header.Del("Content-Length")
		}
	}
}

func (w *h1Response) bodyAllowed() bool {
	return w.status != http.StatusNoContent && w.status != http.StatusNotModified && w.req.Method != http.MethodHead
}

func (w *h1Response) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.failed {
		return 0, errClientWrite
	}
	if !w.bodyAllowed() {
		return 0, http.ErrBodyNotAllowed
	}
	if w.length >= 0 && w.written+int64(len(p)) > w.length {
		return 0, http.ErrContentLength
	}
	w.written += int64(len(p))
	if !w.headSent {
		if len(w.buf)+len(p) <= h1WriteBuffer/2 {
			w.buf = append(w.buf, p...)
			return len(p), nil
		}
		if err := w.sendHead(false); err != nil {
			return 0, err
		}
	}
	return w.writeBody(p)
}

func (w *h1Response) writeBody(p []byte) (int, error) {
	bw := w.c.bw
	if w.chunked && len(p) > 0 {
		bw.WriteString(strconv.FormatInt(int64(len(p)), 16))
		bw.WriteString("\r\n")
		bw.Write(p)
		_, err := bw.WriteString("\r\n")
		return w.check(len(p), err)
	}
	_, err := bw.Write(p)
	return w.check(len(p), err)
}

func (w *h1Response) check(n int, err error) (int, error) {
	if err != nil {
		w.failed = true
		w.c.hangup.clientGone()
		return 0, err
	}
	return n, nil
}

// sendHead writes the status line and header; final says the handler has
// ended, so a buffered body's length is known. A request body the handler
// left unread is read past first if short; a longer one closes the
// connection after the answer (as net/http does: a client still sending
// must not be answered with a reset).
func (w *h1Response) sendHead(final bool) error {
	w.headSent = true
	if b := w.reqBody; b != nil && b.left > 0 {
		switch {
		case b.err != nil: // the client stopped sending it
			w.closeAfter = true
		case b.left > h1MaxDrain:
			w.closeAfter = true
			w.c.linger = true
		default:
			if _, err := io.Copy(io.Discard, b); err != nil {
				w.closeAfter = true
			}
		}
	}
	if w.status == 0 {
		w.status = http.StatusOK
	}
	h := w.header
	if w.bodyAllowed() && w.length < 0 {
		if final {
			w.length = int64(len(w.buf))
			h["Content-Length"] = []string{strconv.Itoa(len(w.buf))}
		} else {
			w.chunked = true
			h["Transfer-Encoding"] = chunkedValue
		}
	}
	if _, ok := h["Content-Type"]; !ok && w.bodyAllowed() && len(w.buf) > 0 {
		h["Content-Type"] = []string{http.DetectContentType(w.buf)}
	}
	if _, ok := h["Date"]; !ok {
		h["Date"] = []string{httpDate()}
	}
	if w.req.Close || w.closeAfter {
		h["Connection"] = closeValue
	} else if h.Get("Connection") == "close" {
		w.closeAfter = true
	}
	bw := w.c.bw
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(strconv.Itoa(w.status))
	bw.WriteString(" ")
	bw.WriteString(http.StatusText(w.status))
	bw.WriteString("\r\n")
	writeFields(bw, h)
	_, err := bw.WriteString("\r\n")
	if err == nil && len(w.buf) > 0 && w.bodyAllowed() {
		buf := w.buf
		w.buf = w.buf[:0]
		_, err = w.writeBody(buf)
	}
	if err != nil {
		w.check(0, err)
	}
	return err
}

var chunkedValue, closeValue = []string{"chunked"}, []string{"close"}

// errClientWrite is what writes return once one to the client failed.
var errClientWrite = errors.New("an earlier write to the client failed")

var lineBreaks = strings.NewReplacer("\r", " ", "\n", " ")

// writeFields writes h's fields as net/http's Header.Write does, but in
// the map's order (Header.Write, which sorts, was 3.4% of the router's CPU
// under wrk, 60% of writing the head): a
// field with an invalid name is dropped, line breaks in a value become
// spaces and the value is trimmed.
func writeFields(bw *bufio.Writer, h http.Header) {
	for k, vs := range h {
		if _, ok := tokenCase(k); !ok {
			continue
		}
		for _, v := range vs {
			bw.WriteString(k)
			bw.WriteString(": ")
			v = strings.Trim(v, " \t\r\n")
			if strings.ContainsAny(v, "\r\n") {
				v = lineBreaks.Replace(v)
			}
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
}

func (w *h1Response) Flush() { w.FlushError() }

func (w *h1Response) FlushError() error {
	if w.failed {
		return errClientWrite
	}
	if !w.headSent {
		if err := w.sendHead(false); err != nil {
			return err
		}
	}
	_, err := w.check(0, w.c.bw.Flush())
	return err
}

// SetReadDeadline and SetWriteDeadline serve http.ResponseController. A
// read deadline is set when a read needs it (h1ConnReader).
func (w *h1Response) SetReadDeadline(t time.Time) error {
	w.c.cr.readBy, w.c.cr.slack = t, 0
	return nil
}
func (w *h1Response) SetWriteDeadline(t time.Time) error { return w.c.tc.SetWriteDeadline(t) }

// finish ends the response after the handler; false: the connection must
// close (a write failed, or the body is short of its declared length).
func (w *h1Response) finish() bool {
	if w.failed {
		return false
	}
	if !w.headSent {
		if err := w.sendHead(true); err != nil {
			return false
		}
	}
	if w.chunked {
		w.c.bw.WriteString("0\r\n\r\n")
	} else if w.bodyAllowed() && w.written < w.length {
		w.c.bw.Flush()
		return false
	}
	return w.c.bw.Flush() == nil
}

// httpDate is the Date field's value, formatted once a second.
func httpDate() string {
	now := time.Now().Unix()
	if d := dateCache.Load(); d != nil && d.sec == now {
		return d.text
	}
	d := &cachedDate{sec: now, text: time.Unix(now, 0).UTC().Format(http.TimeFormat)}
	dateCache.Store(d)
	return d.text
}

type cachedDate struct {
	sec  int64
	text string
}

var dateCache atomic.Pointer[cachedDate]

// hangup watches a request's connection for its client leaving, once the
// request has run hangupCheck and its body has been read (a pipelined
// request already buffered is not watched: nothing can be read for it).
// The watch is a read of one byte: an end of file or an error means the
// client left, and the request's context is cancelled; a byte is the next
// request's first, kept for it.
type hangup struct {
	c      *h1Conn
	cancel context.CancelFunc
	body   *h1Body // nil: none
	t      *time.Timer

	mu       sync.Mutex
	ended    bool
	watching bool
	done     chan struct{}
	gone     atomic.Bool
	b        [1]byte
}

// watchHangup starts the watch of a request. The connection's one timer
// serves each of its requests in turn; a late firing for a request that
// has ended can start the next one's watch early, which costs that watch
// and changes nothing else.
func (c *h1Conn) watchHangup(cancel context.CancelFunc, body *h1Body) {
	h := &c.hangup
	h.mu.Lock()
	h.cancel, h.body, h.ended = cancel, body, false
	h.gone.Store(false)
	if h.t == nil {
		h.t = time.AfterFunc(hangupCheck, h.start)
	} else {
		h.t.Reset(hangupCheck)
	}
	h.mu.Unlock()
}

func (h *hangup) start() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ended {
		return
	}
	if h.body != nil && !h.body.done.Load() {
		h.t.Reset(hangupCheck) // still reading its body
		return
	}
	// The handler is done with the reader once the body is read.
	if h.c.br.Buffered() > 0 || len(h.c.cr.pending) > 0 {
		return
	}
	h.watching = true
	h.done = make(chan struct{})
	go h.read()
}

// hangupReadHook, when set (by tests), runs as the watch's goroutine
// starts, before it clears the read deadline.
var hangupReadHook atomic.Pointer[func()]

func (h *hangup) read() {
	defer close(h.done)
	if hook := hangupReadHook.Load(); hook != nil {
		(*hook)()
	}
	nc := h.c.tc
	// The deadline is cleared under the lock and only while the watch runs:
	// a stop that came first has set ended, and one that comes after sets
	// its deadline in the past once this one is in place. (Cleared outside
	// the lock, it could undo a stop's deadline set just before, and the
	// read would block until the client sent or left, with the connection
	// held and an aborted answer never closed.)
	h.mu.Lock()
	if h.ended {
		h.mu.Unlock()
		return
	}
	err := nc.SetReadDeadline(time.Time{})
	h.mu.Unlock()
	if err != nil {
		return
	}
	n, err := nc.Read(h.b[:])
	switch {
	case n == 1:
		h.c.cr.pending = append(h.c.cr.pending[:0], h.b[0])
	case err != nil && !isTimeout(err): // a timeout is stop's
		h.clientGone()
	}
}

// clientGone cancels the request: its client left.
func (h *hangup) clientGone() {
	h.gone.Store(true)
	h.cancel()
}

// stop ends the watch; after it the connection's reader is the server's.
func (h *hangup) stop() {
	h.t.Stop()
	h.mu.Lock()
	h.ended = true
	watching := h.watching
	h.watching = false
	h.mu.Unlock()
	if watching {
		h.c.tc.SetReadDeadline(aLongTimeAgo)
		<-h.done
		h.c.cr.isSet = false // the watch set its own
	}
}

// handoffListener is the listener net/http's server accepts handed-over
// connections from.
type handoffListener struct {
	ch   chan net.Conn
	addr net.Addr
	done chan struct{}
	once sync.Once
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }
