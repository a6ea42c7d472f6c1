package report

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/wfsched/wfsched/dag"
	"github.com/wfsched/wfsched/metrics"
	"github.com/wfsched/wfsched/scheduler"
)

// A run folder, as LoadRun reads it back:
//
//	traces.json      the replayed traces, in wfsched's format
//	nodes.jsonl      one scheduler.NodeResult per line, as each node ends
//	workflows.jsonl  one scheduler.WorkflowResult per line, as each workflow ends
//	summary.json     a RunReport: written when the run starts (outcome
//	                 "running") and again when it ends
//
// RunFolder writes one; its format (types, writer and reader) lives here.
type RunFolder struct {
	Dir          string
	nodes, wfs   *os.File
	jsonl        *metrics.JSONL
	closeResults func() error
}

// CreateRunFolder starts a run folder in dir (which exists): it writes
// traces.json and opens the result files.
func CreateRunFolder(dir string, graphs []*dag.Graph) (*RunFolder, error) {
	f := &RunFolder{Dir: dir}
	var err error
	if f.nodes, err = os.Create(filepath.Join(dir, "nodes.jsonl")); err != nil {
		return nil, err
	}
	if f.wfs, err = os.Create(filepath.Join(dir, "workflows.jsonl")); err != nil {
		f.nodes.Close()
		return nil, err
	}
	f.jsonl = metrics.NewJSONL(f.nodes, f.wfs)
	f.closeResults = sync.OnceValue(f.jsonl.Close)
	if err := WriteFile(filepath.Join(dir, "traces.json"), func(w io.Writer) error { return dag.WriteJSON(w, graphs...) }); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Results is the sink that writes nodes.jsonl and workflows.jsonl.
func (f *RunFolder) Results() scheduler.Sink { return f.jsonl }

// CloseResults writes out the results still buffered and stops their
// writer; it reports the first error writing them.
func (f *RunFolder) CloseResults() error { return f.closeResults() }

// WriteSummary writes summary.json (replacing it whole).
func (f *RunFolder) WriteSummary(r RunReport) error {
	if err := WriteFile(filepath.Join(f.Dir, "summary.json"), func(w io.Writer) error { return WriteJSON(w, r) }); err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	return nil
}

// Close closes the results (if not yet) and the files.
func (f *RunFolder) Close() error {
	err := f.closeResults()
	f.nodes.Close()
	f.wfs.Close()
	return err
}
