package metrics

import (
	"bufio"
	"encoding/json"
	"io"
	"sync"
	"time"

	"github.com/wfsched/wfsched/scheduler"
)

// JSONL writes results as JSON lines, on a goroutine of its own so that
// encoding does not hold up the run (a virtual run spent an eighth of its
// time encoding). Lines are buffered and written out at most FlushEvery
// after they come (and at Flush and Close), so that millions of results
// do not make a system call each, while a run killed outright loses at
// most that much. Close it when the run ends.
type JSONL struct {
	ch   chan jsonItem
	done chan struct{}
	mu   sync.Mutex
	err  error // the first write error, returned by the next call
}

type jsonItem struct {
	node  *scheduler.NodeResult
	wf    *scheduler.WorkflowResult
	flush chan error
}

// FlushEvery bounds how long a result waits in JSONL's buffers.
const FlushEvery = 100 * time.Millisecond

var _ scheduler.Sink = (*JSONL)(nil)

// NewJSONL writes node results to nodes and workflow results to workflows.
func NewJSONL(nodes, workflows io.Writer) *JSONL {
	j := &JSONL{ch: make(chan jsonItem, 4096), done: make(chan struct{})}
	go j.loop(nodes, workflows)
	return j
}

func (j *JSONL) loop(nodes, workflows io.Writer) {
	defer close(j.done)
	bn, bw := bufio.NewWriterSize(nodes, 256<<10), bufio.NewWriterSize(workflows, 64<<10)
	en, ew := json.NewEncoder(bn), json.NewEncoder(bw)
	timer := time.NewTimer(FlushEvery)
	timer.Stop()
	pending := false
	flush := func() error {
		timer.Stop()
		pending = false
		err := bn.Flush()
		if e := bw.Flush(); err == nil {
			err = e
		}
		return j.fail(err)
	}
	for {
		select {
		case it, ok := <-j.ch:
			if !ok {
				flush()
				return
			}
			var err error
			switch {
			case it.node != nil:
				err = en.Encode(it.node)
			case it.wf != nil:
				err = ew.Encode(it.wf)
			default:
				it.flush <- flush()
				continue
			}
			j.fail(err)
			if !pending {
				pending = true
				timer.Reset(FlushEvery)
			}
		case <-timer.C:
			flush()
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

// Node queues one node result.
func (j *JSONL) Node(r scheduler.NodeResult) error {
	if err := j.fail(nil); err != nil {
		return err
	}
	j.ch <- jsonItem{node: &r}
	return nil
}

// Workflow queues one workflow result.
func (j *JSONL) Workflow(r scheduler.WorkflowResult) error {
	if err := j.fail(nil); err != nil {
		return err
	}
	j.ch <- jsonItem{wf: &r}
	return nil
}

// Flush writes out every result queued so far.
func (j *JSONL) Flush() error {
	c := make(chan error, 1)
	j.ch <- jsonItem{flush: c}
	return <-c
}

// Close writes out what is queued and stops the writer.
func (j *JSONL) Close() error {
	close(j.ch)
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
