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
		Short: "Render again every output of a saved run, comparison or sweep",
		Long: `Report reads a run folder (results/<run-id>), a comparison folder or a sweep folder and
writes its outputs again from the saved results, without running anything: for a run, the
summary table and report.html; for a comparison, the table, comparison.json, .csv, .md and
report.html; for a sweep, the table, sweep.json, .csv, .md, report.html and the plots.
--png also writes the figures as PNG.`,
		Example: `  wfsched report results/20261123-171007-parallel --png`,
		Args:    oneArg("a folder wfsched wrote (a run, a comparison or a sweep)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			if _, err := os.Stat(filepath.Join(dir, "sweep.json")); err == nil {
				d, err := report.LoadSweep(dir)
				if err != nil {
					return &cliError{code: exitUsage, err: err}
				}
				if err := report.WriteSweepFiles(dir, d, png); err != nil {
					return err
				}
				if err := report.WriteSweepText(cmd.OutOrStdout(), d); err != nil {
					return err
				}
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "Wrote %s\n", filepath.Join(dir, "report.html"))
				return err
			}
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
				return &cliError{code: exitUsage, err: err, hint: "give a folder written by 'wfsched run', 'wfsched compare' or 'wfsched sweep'"}
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
