package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"github.com/wfsched/wfsched/dag"
	"github.com/wfsched/wfsched/report"
)

type convertOptions struct {
	trace  traceFlags
	output string
}

func newConvertCmd() *cobra.Command {
	var o convertOptions
	cmd := &cobra.Command{
		Use:   "convert FILE -o OUT.json",
		Short: "Convert a trace of any supported format to wfsched's own format",
		Long: `Convert reads a trace, rebuilds its dependencies and token counts, and writes it in
wfsched's own format (docs/trace-format.md). A multi-trace file becomes one file holding
every trace unless --trace-id or --index picks one. "-o -" writes to standard output.`,
		Example: `  wfsched convert traces/mast/b119b1f_2.txt.gz -o b119b1f_2.json`,
		Args:    oneArg("the trace file to convert"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runConvert(cmd, o, args[0])
		},
	}
	o.trace.register(cmd.Flags())
	cmd.Flags().StringVarP(&o.output, "output", "o", "", "output file (required; - for standard output)")
	return cmd
}

func runConvert(cmd *cobra.Command, o convertOptions, path string) error {
	if o.output == "" {
		return usageError("convert needs -o OUT.json (or -o - for standard output)")
	}
	opt, err := o.trace.options()
	if err != nil {
		return err
	}
	var gs []*dag.Graph
	if o.trace.chosen() {
		g, _, err := o.trace.readOne(path)
		if err != nil {
			return err
		}
		gs = []*dag.Graph{g}
	} else {
		if gs, err = dag.ReadFile(path, opt); err != nil {
			return err
		}
		for i, g := range gs {
			if _, err := dag.Analyze(g); err != nil {
				return fmt.Errorf("%s: trace %d (%s): %w", path, i, g.ID, err)
			}
		}
	}
	noteCapture(cmd, gs)
	return writeOut(cmd.OutOrStdout(), o.output, func(w io.Writer) error { return dag.WriteJSON(w, gs...) })
}

// noteCapture tells on stderr what rebuilding a capture could not be sure
// of (dag.CaptureNotes).
func noteCapture(cmd *cobra.Command, gs []*dag.Graph) {
	for _, n := range dag.CaptureNotes(gs) {
		fmt.Fprintln(cmd.ErrOrStderr(), "note: "+n)
	}
}

// ioWriter shortens signatures of writers passed to writeOut.
type ioWriter = io.Writer

// writeOut writes through fn to path (atomically, see report.WriteFile),
// or to stdout for "-" or "".
func writeOut(stdout io.Writer, path string, fn func(io.Writer) error) error {
	if path == "-" || path == "" {
		return fn(stdout)
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return usageError("-o %s is a folder: give a file name", path)
	}
	return report.WriteFile(path, fn)
}
