package router

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Message is one agent-to-agent message.
type Message struct {
	ID        string          `json:"id"`
	Source    string          `json:"source"`
	Target    string          `json:"target"`
	Type      string          `json:"type"`
	Payload   json.RawMessage `json:"payload"`
	Timestamp time.Time       `json:"-"`
}

// MarshalJSON writes the timestamp as the design documents show it, Unix
// seconds, and again in RFC 3339 as "time".
func (m Message) MarshalJSON() ([]byte, error) {
	type plain Message
	return json.Marshal(struct {
		plain
		Timestamp float64   `json:"timestamp"`
		Time      time.Time `json:"time"`
	}{plain(m), unixSeconds(m.Timestamp), m.Timestamp})
}

// unixSeconds is t in seconds since 1970, as Python's time.time() gives it.
func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// ErrFull reports a refused message: a full queue or too many queues.
type ErrFull struct{ Reason string }

func (e *ErrFull) Error() string { return e.Reason }

type queueKey struct{ workflow, agent string }

type queue struct {
	msgs    []Message
	bytes   int64         // the messages' size (see size)
	wake    chan struct{} // closed and replaced when a message arrives
	waiters int
}

// size is what a message counts against the byte limits: its payload and
// strings, and a fixed allowance for the rest of its record.
func size(m Message) int64 {
	return int64(len(m.Payload)+len(m.Source)+len(m.Target)+len(m.Type)+len(m.ID)) + 128
}

// mailboxes holds the message queues of every (workflow, agent), with
// bounded length and bytes per queue, bounded queues and bytes in total,
// and bounded message age. Safe for concurrent use.
type mailboxes struct {
	mu      sync.Mutex
	q       map[queueKey]*queue
	holding int   // queues holding messages
	bytes   int64 // over every queue
	limits
	now func() time.Time
	seq atomic.Uint64

	sent, received, expired atomic.Int64
}

// limits bound the message queues.
type limits struct {
	maxLen    int
	maxQueues int
	maxQBytes int64 // per queue
	maxBytes  int64 // in total
	ttl       time.Duration
}

// refusal says why a message to (workflow, target) is refused: its queue
// holds maxLen messages ("len") or would hold over maxQBytes ("qbytes"),
// maxQueues queues hold messages ("queues"), or the queues hold n bytes,
// too many for the message ("bytes").
func (l limits) refusal(kind, workflow, target string, n int64) string {
	switch kind {
	case "len":
		return fmt.Sprintf("the queue of agent %s in workflow %s is full (%d messages); read it first or raise --max-message-queue-size", clip(target), clip(workflow), n)
	case "qbytes":
		return fmt.Sprintf("the queue of agent %s in workflow %s would hold over %d bytes; read it first or raise --max-message-queue-bytes", clip(target), clip(workflow), n)
	case "queues":
		return fmt.Sprintf("too many message queues hold messages (%d)", n)
	}
	return fmt.Sprintf("the queues hold %d of their %d bytes (--max-message-bytes); wait for agents to read", n, l.maxBytes)
}

// mailStore keeps the agent message queues: in this process (mailboxes) or
// shared by router replicas (redisMail).
type mailStore interface {
	// send queues a message for (workflow, msg.Target), giving it its id
	// and time; an *ErrFull when a limit refuses it.
	send(workflow string, msg Message) (Message, error)
	// receive takes up to max messages of (workflow, agent), in order.
	// With none there it waits, up to timeout, for one to arrive: a long
	// poll, also before the queue exists.
	receive(ctx context.Context, workflow, agent string, timeout time.Duration, max int) []Message
	// pending counts the messages queued for a workflow.
	pending(workflow string) int
	// depth counts every queued message, the queues holding some, and
	// their bytes.
	depth() (messages, queues int, bytes int64)
	// totals are the messages sent, received and expired.
	totals() (sent, received, expired int64)
	// forget drops a workflow's queues and reports whether it had any.
	forget(workflow string) bool
	// sweep expires old messages everywhere.
	sweep()
}

func newMailboxes(l limits, now func() time.Time) *mailboxes {
	return &mailboxes{q: map[queueKey]*queue{}, limits: l, now: now}
}

func (m *mailboxes) totals() (sent, received, expired int64) {
	return m.sent.Load(), m.received.Load(), m.expired.Load()
}

// take removes the first n messages of q. Called with mu held.
func (m *mailboxes) take(q *queue, n int) {
	for _, msg := range q.msgs[:n] {
		b := size(msg)
		q.bytes -= b
		m.bytes -= b
	}
	clear(q.msgs[:n]) // let the payloads go
	q.msgs = q.msgs[n:]
	if len(q.msgs) == 0 {
		m.holding--
		q.msgs = nil
	}
}

// get returns the queue of k, creating it. Called with mu held.
func (m *mailboxes) get(k queueKey) *queue {
	q := m.q[k]
	if q == nil {
		q = &queue{wake: make(chan struct{})}
		m.q[k] = q
	}
	return q
}

// expire drops a queue's messages older than the TTL. Called with mu held.
func (m *mailboxes) expire(q *queue) {
	cut := m.now().Add(-m.ttl)
	k := 0
	for k < len(q.msgs) && q.msgs[k].Timestamp.Before(cut) {
		k++
	}
	if k > 0 {
		m.expired.Add(int64(k))
		m.take(q, k)
	}
}

// drop removes an empty queue nobody waits on. Called with mu held.
func (m *mailboxes) drop(k queueKey, q *queue) {
	if len(q.msgs) == 0 && q.waiters == 0 {
		delete(m.q, k)
	}
}

func (m *mailboxes) send(workflow string, msg Message) (Message, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := queueKey{workflow, msg.Target}
	q := m.get(k)
	m.expire(q)
	msg.ID = fmt.Sprintf("msg-%d", m.seq.Add(1))
	b := size(msg)
	var full string
	switch {
	case len(q.msgs) >= m.maxLen:
		full = m.limits.refusal("len", workflow, msg.Target, int64(m.maxLen))
	case q.bytes+b > m.maxQBytes:
		full = m.limits.refusal("qbytes", workflow, msg.Target, m.maxQBytes)
	case len(q.msgs) == 0 && m.holding >= m.maxQueues:
		full = m.limits.refusal("queues", workflow, msg.Target, int64(m.maxQueues))
	case m.bytes+b > m.maxBytes:
		full = m.limits.refusal("bytes", workflow, msg.Target, m.bytes)
	}
	if full != "" {
		m.drop(k, q)
		return msg, &ErrFull{full}
	}
	if len(q.msgs) == 0 {
		m.holding++
	}
	msg.Timestamp = m.now()
	q.msgs = append(q.msgs, msg)
	q.bytes += b
	m.bytes += b
	close(q.wake)
	q.wake = make(chan struct{})
	m.sent.Add(1)
	return msg, nil
}

func (m *mailboxes) receive(ctx context.Context, workflow, agent string, timeout time.Duration, max int) []Message {
	k := queueKey{workflow, agent}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	m.mu.Lock()
	defer m.mu.Unlock()
	for {
		q := m.get(k)
		m.expire(q)
		if n := min(len(q.msgs), max); n > 0 {
			out := append([]Message(nil), q.msgs[:n]...)
			m.take(q, n)
			m.drop(k, q)
			m.received.Add(int64(n))
			return out
		}
		if timeout <= 0 {
			m.drop(k, q)
			return nil
		}
		wake := q.wake
		q.waiters++
		m.mu.Unlock()
		done := false
		select {
		case <-wake:
		case <-deadline.C:
			done = true
		case <-ctx.Done():
			done = true
		}
		m.mu.Lock()
		q.waiters--
		if done {
			m.drop(k, q)
			return nil
		}
	}
}

func (m *mailboxes) pending(workflow string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for k, q := range m.q {
		if k.workflow == workflow {
			n += len(q.msgs)
		}
	}
	return n
}

func (m *mailboxes) depth() (messages, queues int, bytes int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, q := range m.q {
		messages += len(q.msgs)
	}
	return messages, m.holding, m.bytes
}

func (m *mailboxes) forget(workflow string) (had bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, q := range m.q {
		if k.workflow == workflow {
			had = true
			if len(q.msgs) > 0 {
				m.take(q, len(q.msgs))
			}
			if q.waiters == 0 {
				delete(m.q, k)
			}
		}
	}
	return had
}

func (m *mailboxes) sweep() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, q := range m.q {
		m.expire(q)
		m.drop(k, q)
	}
}
