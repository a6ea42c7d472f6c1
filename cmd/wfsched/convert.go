package main

import (
	"bufio"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"github.com/wfsched/wfsched/dag"
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
		Example: `  wfsched convert ../shared/traces/appworld-raw/b119b1f_2.txt -o b119b1f_2.json`,
		Args:    cobra.ExactArgs(1),
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
	return writeOut(cmd.OutOrStdout(), o.output, func(w io.Writer) error { return dag.WriteJSON(w, gs...) })
}

// ioWriter shortens signatures of writers passed to writeOut.
type ioWriter = io.Writer

// writeOut writes through fn to path, or to stdout for "-" or "". A file is
// written under a temporary name and renamed, so a failed write leaves no
// half file behind.
func writeOut(stdout io.Writer, path string, fn func(io.Writer) error) error {
	if path == "-" || path == "" {
		return fn(stdout)
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	if err := fn(bw); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}
