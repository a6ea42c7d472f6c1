package main

import (
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/wfsched/wfsched/dag"
	"github.com/wfsched/wfsched/tokenizer"
)

type genOptions struct {
	cfg    dag.GenConfig
	output string
}

func newGenCmd() *cobra.Command {
	var o genOptions
	cmd := &cobra.Command{
		Use:   "gen --shape SHAPE --nodes N [--seed S] [-o FILE]",
		Short: "Generate a synthetic workflow DAG with real parallel structure",
		Long: `Gen writes a synthetic workflow in wfsched's own format. Shapes:
  chain      one dependency chain over three agents (no parallelism)
  fanout     a planner, N-2 independent workers, an aggregating call
  mapreduce  a splitter, mappers (call, tool, call), reducers of four, a final call
  layered    levels of --width nodes, each depending on two nodes of the level before
  agents     a coordinator and --width agents with growing histories, tools and hand-offs
Token sizes and tool times are drawn from seeded log-normal distributions; the same
flags always give the same file.`,
		Example: `  wfsched gen --shape fanout --nodes 12 --seed 1 -o traces/fanout-12.json`,
		Args:    noArgs(""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.cfg.Validate(); err != nil {
				return usageError("%v", err)
			}
			enc, err := tokenizer.Default()
			if err != nil {
				return err
			}
			g, err := dag.Generate(o.cfg, enc)
			if err != nil {
				return err
			}
			return writeOut(cmd.OutOrStdout(), o.output, func(w io.Writer) error { return dag.WriteJSON(w, g) })
		},
	}
	cmd.Flags().StringVar(&o.cfg.Shape, "shape", "", "shape: "+strings.Join(dag.Shapes, ", "))
	cmd.Flags().IntVar(&o.cfg.Nodes, "nodes", 20, "approximate number of nodes (at least 3)")
	cmd.Flags().Uint64Var(&o.cfg.Seed, "seed", 1, "random seed")
	cmd.Flags().IntVar(&o.cfg.Width, "width", 0, "layered: nodes per level (default sqrt(nodes)); agents: worker agents (default 4)")
	cmd.Flags().StringVarP(&o.output, "output", "o", "-", "output file (- for standard output)")
	brief(cmd.Flags(), map[string]string{"width": "layered: nodes per level (default sqrt(nodes)); agents: workers (4)"})
	return cmd
}
