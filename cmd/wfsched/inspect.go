package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/wfsched/wfsched/dag"
	"github.com/wfsched/wfsched/report"
)

type inspectOptions struct {
	trace   traceFlags
	output  string
	batches bool
}

func newInspectCmd() *cobra.Command {
	var o inspectOptions
	cmd := &cobra.Command{
		Use:   "inspect FILE",
		Short: "Show a trace's statistics, levels, critical path and prefix-sharing bound",
		Long: `Inspect loads a trace into a dependency graph and shows its size, shape, estimated
work and span (the critical path), and the prefix-sharing bound: the fraction of prompt
tokens that repeat a prefix of the same agent's earlier prompt.

For a file holding many traces and no --trace-id or --index, it lists one row per trace.`,
		Example: `  wfsched inspect traces/research-team.json
  wfsched inspect traces/mast/appworld-steps.json.gz --trace-id b119b1f_2
  wfsched inspect traces/research-team.json --batches
  wfsched inspect traces/fanout-12.json -o dot | dot -Tsvg > fanout.svg`,
		Args: oneArg("a trace file, a multi-trace file or a capture folder"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runInspect(cmd, o, args[0])
		},
	}
	o.trace.register(cmd.Flags())
	cmd.Flags().StringVarP(&o.output, "output", "o", "table", "output: table, json, dot or mermaid")
	cmd.Flags().BoolVar(&o.batches, "batches", false, "also list the execution batches (levels) with their node ids, and a topological order")
	brief(cmd.Flags(), map[string]string{"batches": "also list the execution batches (levels) and a topological order"})
	return cmd
}

func runInspect(cmd *cobra.Command, o inspectOptions, path string) error {
	switch o.output {
	case "table", "json", "dot", "mermaid":
	default:
		return usageError("--output %q: want table, json, dot or mermaid", o.output)
	}
	opt, err := o.trace.options()
	if err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	// One read of the file: every trace in it, or the one chosen.
	var g *dag.Graph
	var t *dag.Topology
	if o.trace.chosen() {
		if g, t, err = o.trace.readOne(path); err != nil {
			return err
		}
		noteCapture(cmd, []*dag.Graph{g})
	} else {
		gs, err := dag.ReadFile(path, opt)
		if err != nil {
			return err
		}
		noteCapture(cmd, gs)
		if len(gs) > 1 && (o.output == "table" || o.output == "json") {
			stats := make([]dag.Stats, len(gs))
			for i, g := range gs {
				t, err := dag.Analyze(g)
				if err != nil {
					return fmt.Errorf("%s: trace %d (%s): %w", path, i, g.ID, err)
				}
				stats[i] = dag.Summarize(g, t, dag.CostModel{})
			}
			if o.output == "json" {
				return report.WriteJSON(w, stats)
			}
			return report.WriteInspectList(w, path, stats)
		}
		if g, err = (dag.Selector{}).Pick(gs); err != nil {
			return &dag.InputError{Path: path, Err: err}
		}
		if t, err = dag.Analyze(g); err != nil {
			return fmt.Errorf("%s: trace %s: %w", path, g.ID, err)
		}
	}
	stats := dag.Summarize(g, t, dag.CostModel{})
	in := report.Inspection{Path: path, Stats: stats}
	if o.batches {
		in = in.WithBatches(g, t)
	}
	switch o.output {
	case "json":
		return report.WriteJSON(w, in)
	case "dot", "mermaid":
		path, _ := dag.CriticalPath(t, dag.CostModel{}.Costs(g))
		if o.output == "dot" {
			return dag.WriteDOT(w, g, path.Nodes)
		}
		return dag.WriteMermaid(w, g, path.Nodes)
	}
	return report.WriteInspectText(w, in)
}
