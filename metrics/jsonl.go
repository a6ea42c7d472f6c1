package metrics

import (
	"encoding/json"
	"io"

	"github.com/wfsched/wfsched/scheduler"
)

// JSONL writes results as JSON lines, one Write per result, so a file
// holds every completed result even if the run is killed.
type JSONL struct {
	nodes, workflows *json.Encoder
}

var _ scheduler.Sink = (*JSONL)(nil)

// NewJSONL writes node results to nodes and workflow results to workflows.
func NewJSONL(nodes, workflows io.Writer) *JSONL {
	return &JSONL{nodes: json.NewEncoder(nodes), workflows: json.NewEncoder(workflows)}
}

// Node writes one node result.
func (j *JSONL) Node(r scheduler.NodeResult) error { return j.nodes.Encode(r) }

// Workflow writes one workflow result.
func (j *JSONL) Workflow(r scheduler.WorkflowResult) error { return j.workflows.Encode(r) }

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
