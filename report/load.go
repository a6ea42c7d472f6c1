package report

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
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
func LoadRun(dir string) (RunData, error) {
	rd := RunData{Dir: dir}
	b, err := os.ReadFile(filepath.Join(dir, "summary.json"))
	if err != nil {
		return rd, fmt.Errorf("%s is not a run folder: %w", dir, err)
	}
	if err := json.Unmarshal(b, &rd.Report); err != nil {
		return rd, fmt.Errorf("%s/summary.json: %w", dir, err)
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
	server := rd.Report.Summary.Server
	rd.Report.Summary = rec.Summarize(rd.Report.Summary.DurationS).WithServer(server)
	return rd, nil
}

func readJSONL(path string, each func([]byte) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for line := 1; sc.Scan(); line++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		if err := each(sc.Bytes()); err != nil {
			return fmt.Errorf("%s line %d: %w", path, line, err)
		}
	}
	return sc.Err()
}
