package report

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/wfsched/wfsched/metrics"
)

// LoadComparison reads comparison.json and the runs it names (paths
// relative to the comparison folder, else as written), grouped by arm;
// warm-up runs are left out.
func LoadComparison(dir string) (ComparisonDoc, map[string][]RunData, error) {
	var d ComparisonDoc
	b, err := os.ReadFile(filepath.Join(dir, "comparison.json"))
	if err != nil {
		return d, nil, fmt.Errorf("%s is not a comparison folder: %w", dir, err)
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return d, nil, fmt.Errorf("%s/comparison.json: %w", dir, err)
	}
	runs := map[string][]RunData{}
	for _, ref := range d.Runs {
		if ref.Warmup {
			continue
		}
		p := ref.Dir
		if !filepath.IsAbs(p) {
			if _, err := os.Stat(filepath.Join(dir, p)); err == nil {
				p = filepath.Join(dir, p)
			}
		}
		rd, err := LoadRun(p)
		if err != nil {
			return d, nil, err
		}
		runs[ref.Arm] = append(runs[ref.Arm], rd)
	}
	return d, runs, nil
}

// Recompute estimates the comparison again from the runs' summaries.
func Recompute(d *ComparisonDoc, runs map[string][]RunData, baseline string) {
	var arms []metrics.Arm
	for _, label := range d.Arms {
		a := metrics.Arm{Label: label}
		for _, rd := range runs[label] {
			a.Summaries = append(a.Summaries, rd.Report.Summary)
		}
		arms = append(arms, a)
	}
	d.Comparison = metrics.Compare(arms, baseline)
	d.UnreliableTiming = nil
	for i, label := range d.Arms {
		for k, rd := range runs[label] {
			if i == 0 && k == 0 {
				d.Seed = rd.Report.Config.Seed
			}
			if t := rd.Report.Timing; t != nil && t.Verdict == TimingUnreliable {
				d.UnreliableTiming = append(d.UnreliableTiming, rd.Report.RunID)
			}
		}
	}
	d.FillNote()
	d.FillAnswer()
}

// WriteComparisonFiles writes comparison.json, .csv, .md and report.html
// into dir, and PNGs of the figures into dir/png when png is set.
func WriteComparisonFiles(dir string, d ComparisonDoc, runs map[string][]RunData, png bool) error {
	writers := []struct {
		name string
		fn   func(io.Writer) error
	}{
		{"comparison.txt", func(w io.Writer) error { return WriteComparisonText(w, d) }}, // the table as printed
		{"comparison.json", func(w io.Writer) error { return WriteJSON(w, d) }},
		{"comparison.csv", func(w io.Writer) error { return WriteComparisonCSV(w, d) }},
		{"comparison.md", func(w io.Writer) error { return WriteComparisonMarkdown(w, d) }},
		{"report.html", func(w io.Writer) error { return WriteHTML(w, d, runs) }},
	}
	for _, f := range writers {
		if err := WriteFile(filepath.Join(dir, f.name), f.fn); err != nil {
			return fmt.Errorf("write %s: %w", f.name, err)
		}
	}
	if png {
		return WritePNGs(filepath.Join(dir, "png"), d, runs)
	}
	return nil
}

// RunAsComparison presents one run as a one-arm comparison, so that a run
// gets the same report.
func RunAsComparison(rd RunData) (ComparisonDoc, map[string][]RunData) {
	arm := rd.Report.Config.Policy
	d := ComparisonDoc{ID: rd.Report.RunID, Created: rd.Report.End, Arms: []string{arm}, Iterations: 1, Method: "a single run",
		Runs: []RunRef{{Dir: rd.Dir, Arm: arm}}, Traces: rd.Report.Traces, Backend: rd.Report.Backend}
	runs := map[string][]RunData{arm: {rd}}
	Recompute(&d, runs, arm)
	d.Answer = rd.Report.Answer()
	return d, runs
}

// WriteFile writes through fn to a temporary file in path's folder and
// renames it into place, so a failed or interrupted write leaves neither a
// half-written file nor the temporary one. A folder at path is refused.
func WriteFile(path string, fn func(io.Writer) error) error {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return fmt.Errorf("%s is a folder: give a file name", path)
	}
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	// CreateTemp makes the file readable by its owner alone; results are
	// for reading by anyone, as a file made with os.Create would be.
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	bw := bufio.NewWriter(f)
	err = fn(bw)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
