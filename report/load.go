package report

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/wfsched/wfsched/dag"
	"github.com/wfsched/wfsched/metrics"
	"github.com/wfsched/wfsched/scheduler"
)

// RunData is a saved run read back from its folder.
type RunData struct {
	Dir       string
	Report    RunReport
	Nodes     []scheduler.NodeResult
	Workflows []scheduler.WorkflowResult
	Graphs    []*dag.Graph // from traces.json; nil when absent
}

// LoadRun reads a run folder (summary.json, nodes.jsonl, workflows.jsonl,
// traces.json) and summarizes its results again, so a report reflects the
// current definitions; server counters come from summary.json.
//
// LoadSweep reads the sweep.json a sweep wrote in dir.
func LoadSweep(dir string) (SweepDoc, error) {
	var d SweepDoc
	b, err := os.ReadFile(filepath.Join(dir, "sweep.json"))
	if err != nil {
		return d, fmt.Errorf("%s is not a sweep folder: %w", dir, err)
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return d, fmt.Errorf("%s/sweep.json: %w", dir, err)
	}
	return d, nil
}

// A run that did not finish (killed, or the machine went down) has a
// summary.json saying it was running, or none: its figures are rebuilt from
// the results it wrote, and it is marked OutcomeIncomplete.
func LoadRun(dir string) (RunData, error) {
	rd := RunData{Dir: dir}
	b, err := os.ReadFile(filepath.Join(dir, "summary.json"))
	switch {
	case errors.Is(err, os.ErrNotExist):
		if _, nerr := os.Stat(filepath.Join(dir, "nodes.jsonl")); nerr != nil {
			return rd, fmt.Errorf("%s is not a run folder: no summary.json, no nodes.jsonl", dir)
		}
		rd.Report = RunReport{RunID: filepath.Base(dir), Dir: dir, Outcome: OutcomeRunning}
	case err != nil:
		return rd, fmt.Errorf("%s is not a run folder: %w", dir, err)
	default:
		if err := json.Unmarshal(b, &rd.Report); err != nil {
			return rd, fmt.Errorf("%s/summary.json: %w", dir, err)
		}
	}
	incomplete := rd.Report.Outcome == OutcomeRunning
	if incomplete {
		rd.Report.Outcome = OutcomeIncomplete
		rd.Report.Reason = "the run stopped before it finished (killed?): figures rebuilt from the results it wrote"
	}
	if err := readJSONL(filepath.Join(dir, "nodes.jsonl"), func(raw []byte) error {
		var r scheduler.NodeResult
		err := json.Unmarshal(raw, &r)
		rd.Nodes = append(rd.Nodes, r)
		return err
	}); err != nil {
		return rd, err
	}
	if err := readJSONL(filepath.Join(dir, "workflows.jsonl"), func(raw []byte) error {
		var r scheduler.WorkflowResult
		err := json.Unmarshal(raw, &r)
		rd.Workflows = append(rd.Workflows, r)
		return err
	}); err != nil {
		return rd, err
	}
	if gs, err := dag.ReadFile(filepath.Join(dir, "traces.json"), dag.Options{Format: "native"}); err == nil {
		rd.Graphs = gs
	} else if !errors.Is(err, os.ErrNotExist) {
		return rd, err
	}
	slo, err := metrics.ParseSLO(rd.Report.Config.SLO)
	if err != nil {
		return rd, fmt.Errorf("%s/summary.json: %w", dir, err)
	}
	rec := &metrics.Recorder{SLO: slo}
	for _, n := range rd.Nodes {
		rec.Node(n)
	}
	for _, w := range rd.Workflows {
		rec.Workflow(w)
	}
	duration := rd.Report.Summary.DurationS
	if incomplete {
		// Up to the last result written.
		for _, n := range rd.Nodes {
			duration = max(duration, n.EndS)
		}
	}
	server, util := rd.Report.Summary.Server, rd.Report.Summary.Utilisation
	rd.Report.Summary = rec.Summarize(duration).WithServer(server)
	rd.Report.Summary.Utilisation = util
	if st := rd.Report.Backend.RouterStats; st != nil {
		failovers := map[string]int64{}
		for _, b := range st.Backends {
			failovers[b.URL] = b.Failovers
		}
		rd.Report.Summary = rd.Report.Summary.WithFailovers(failovers)
	}
	return rd, nil
}

// Outcomes of runs as the run folder tells them, beside the scheduler's.
const (
	// OutcomeRunning is written in summary.json when a run starts, and
	// replaced when it ends.
	OutcomeRunning = "running"
	// OutcomeIncomplete is a run read back that never finished.
	OutcomeIncomplete = "incomplete"
)

func readJSONL(path string, each func([]byte) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	for line := 1; ; line++ {
		b, err := br.ReadBytes('\n')
		if err == io.EOF {
			// A last line without its newline was cut by a killed run
			// mid-write: it is not a result.
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s line %d: %w", path, line, err)
		}
		if len(b) > 64<<20 {
			return fmt.Errorf("%s line %d: over 64 MiB", path, line)
		}
		if b = bytes.TrimSpace(b); len(b) == 0 {
			continue
		}
		if err := each(b); err != nil {
			return fmt.Errorf("%s line %d: %w", path, line, err)
		}
	}
}
