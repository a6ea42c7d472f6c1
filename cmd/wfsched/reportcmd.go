package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/wfsched/wfsched/report"
)

func newReportCmd() *cobra.Command {
	var png bool
	var baseline string
	cmd := &cobra.Command{
		Use:   "report DIR",
		Short: "Render again every output of a saved run or comparison",
		Long: `Report reads a run folder (results/<run-id>) or a comparison folder and writes its
outputs again from the saved results, without running anything: for a run, the summary
table and report.html; for a comparison, the table, comparison.json, .csv, .md and
report.html. --png also writes the figures as PNG.`,
		Example: `  wfsched report results/20261123-171007-parallel --png`,
		Args:    oneArg("a folder wfsched wrote (a run, a comparison or a sweep)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			if _, err := os.Stat(filepath.Join(dir, "comparison.json")); err == nil {
				d, runs, err := report.LoadComparison(dir)
				if err != nil {
					return &cliError{code: exitUsage, err: err}
				}
				if baseline == "" {
					baseline = d.Comparison.Baseline
				}
				report.Recompute(&d, runs, baseline)
				if err := report.WriteComparisonFiles(dir, d, runs, png); err != nil {
					return err
				}
				return report.WriteComparisonText(cmd.OutOrStdout(), d)
			}
			rd, err := report.LoadRun(dir)
			if err != nil {
				return &cliError{code: exitUsage, err: err, hint: "give a folder written by 'wfsched run' or 'wfsched compare'"}
			}
			if err := report.WriteRunText(cmd.OutOrStdout(), rd.Report); err != nil {
				return err
			}
			d, runs := report.RunAsComparison(rd)
			if err := writeOut(nil, filepath.Join(dir, "report.html"), func(w ioWriter) error { return report.WriteHTML(w, d, runs) }); err != nil {
				return err
			}
			if png {
				if err := report.WritePNGs(filepath.Join(dir, "png"), d, runs); err != nil {
					return err
				}
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "Wrote %s\n", filepath.Join(dir, "report.html"))
			return err
		},
	}
	cmd.Flags().BoolVar(&png, "png", false, "also write the figures as PNG files")
	cmd.Flags().StringVar(&baseline, "baseline", "", "arm speedups are measured against (default: the comparison's)")
	return cmd
}
