package metrics

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/wfsched/wfsched/scheduler"
)

// JSONL writes results as JSON lines, on a goroutine of its own so that
// encoding does not hold up the run (a virtual run spent an eighth of its
// time encoding). Results are handed over in batches, and lines written
// out every FlushEvery (and at Close), so that millions of results cost
// neither a wake-up nor a system call each, while a run killed outright
// loses at most that much. Close it when the run ends.
type JSONL struct {
	mu      sync.Mutex
	pending []jsonItem
	closed  bool
	err     error // the first write error, returned by the next call
	wake    chan struct{}
	done    chan struct{}
}

type jsonItem struct {
	node *scheduler.NodeResult
	wf   *scheduler.WorkflowResult
}

// FlushEvery bounds how long a result waits before it is written out.
const FlushEvery = 100 * time.Millisecond

// jsonBatch is how many results wake the writer before FlushEvery does.
const jsonBatch = 1024

var _ scheduler.Sink = (*JSONL)(nil)

// NewJSONL writes node results to nodes and workflow results to workflows.
func NewJSONL(nodes, workflows io.Writer) *JSONL {
	j := &JSONL{wake: make(chan struct{}, 1), done: make(chan struct{})}
	go j.loop(nodes, workflows)
	return j
}

func (j *JSONL) loop(nodes, workflows io.Writer) {
	defer close(j.done)
	bn, bw := bufio.NewWriterSize(nodes, 256<<10), bufio.NewWriterSize(workflows, 64<<10)
	en, ew := json.NewEncoder(bn), json.NewEncoder(bw)
	tick := time.NewTicker(FlushEvery)
	defer tick.Stop()
	var spare []jsonItem
	for {
		flush := false
		select {
		case <-j.wake:
		case <-tick.C:
			flush = true
		}
		j.mu.Lock()
		batch, closed := j.pending, j.closed
		j.pending = spare[:0]
		j.mu.Unlock()
		var err error
		for _, it := range batch {
			if it.node != nil {
				err = errors.Join(err, en.Encode(it.node))
			} else {
				err = errors.Join(err, ew.Encode(it.wf))
			}
		}
		clear(batch)
		spare = batch
		if flush || closed {
			err = errors.Join(err, bn.Flush(), bw.Flush())
		}
		j.fail(err)
		if closed {
			return
		}
	}
}

// fail keeps the first error and returns it.
func (j *JSONL) fail(err error) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err == nil {
		j.err = err
	}
	return j.err
}

func (j *JSONL) add(it jsonItem) error {
	j.mu.Lock()
	err := j.err
	j.pending = append(j.pending, it)
	n := len(j.pending)
	j.mu.Unlock()
	if n == jsonBatch {
		select {
		case j.wake <- struct{}{}:
		default:
		}
	}
	return err
}

// Node queues one node result.
func (j *JSONL) Node(r scheduler.NodeResult) error { return j.add(jsonItem{node: &r}) }

// Workflow queues one workflow result.
func (j *JSONL) Workflow(r scheduler.WorkflowResult) error { return j.add(jsonItem{wf: &r}) }

// Close writes out what is queued and stops the writer. Call it once.
func (j *JSONL) Close() error {
	j.mu.Lock()
	j.closed = true
	j.mu.Unlock()
	select {
	case j.wake <- struct{}{}:
	default:
	}
	<-j.done
	return j.fail(nil)
}

// Tee fans results out to several sinks, stopping at the first error.
type Tee []scheduler.Sink

// Node delivers to each sink.
func (t Tee) Node(r scheduler.NodeResult) error {
	for _, s := range t {
		if err := s.Node(r); err != nil {
			return err
		}
	}
	return nil
}

// Workflow delivers to each sink.
func (t Tee) Workflow(r scheduler.WorkflowResult) error {
	for _, s := range t {
		if err := s.Workflow(r); err != nil {
			return err
		}
	}
	return nil
}
