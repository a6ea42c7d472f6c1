package main

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"
	"github.com/wfsched/wfsched/dag"
)

// traceFlags are the flags of every command that reads a trace file.
type traceFlags struct {
	format   string
	traceID  string
	index    int
	edges    string
	maxBytes int64
	spanTime float64
}

func (f *traceFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.format, "format", "auto", "trace format: auto, "+strings.Join(dag.Formats(), ", "))
	fs.StringVar(&f.traceID, "trace-id", "", "in a multi-trace file, the trace with this id")
	fs.IntVar(&f.index, "index", -1, "in a multi-trace file, the trace at this 0-based position")
	fs.StringVar(&f.edges, "edges", string(dag.EdgesRebuild), "rebuild (real dependencies) or file (the file's own edges, dag-json only)")
	fs.Int64Var(&f.maxBytes, "max-bytes", dag.DefaultMaxBytes, "largest input file accepted, in bytes")
	fs.Float64Var(&f.spanTime, "span-time-scale", 0, "OpenTelemetry spans: divide their wall times by this (the time scale of the wfsched sim that served them); 0: as recorded")
	brief(fs, map[string]string{
		"format":          "trace format: auto, or a name from docs/cli.md",
		"edges":           "rebuild (real dependencies) or file (dag-json's own edges)",
		"span-time-scale": "OTLP spans: divide wall times by the serving sim's --time-scale",
	})
}

func (f *traceFlags) options() (dag.Options, error) {
	o := dag.Options{Format: f.format, Edges: dag.EdgeSource(f.edges), MaxBytes: f.maxBytes, TimeScale: f.spanTime}
	if f.maxBytes <= 0 {
		return o, usageError("--max-bytes %d: want a positive size", f.maxBytes)
	}
	if err := o.Validate(); err != nil {
		return o, usageError("%v", err)
	}
	if f.traceID != "" && f.index >= 0 {
		return o, usageError("--trace-id and --index choose a trace two ways: give one")
	}
	return o, nil
}

func (f *traceFlags) selector() dag.Selector {
	return dag.Selector{TraceID: f.traceID, Index: f.index, ByIndex: f.index >= 0}
}

func (f *traceFlags) chosen() bool { return f.traceID != "" || f.index >= 0 }

// readOne reads the chosen graph of path and analyses it.
func (f *traceFlags) readOne(path string) (*dag.Graph, *dag.Topology, error) {
	opt, err := f.options()
	if err != nil {
		return nil, nil, err
	}
	g, err := dag.ReadOne(path, opt, f.selector())
	if err != nil {
		return nil, nil, err
	}
	t, err := dag.Analyze(g)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: trace %s: %w", path, g.ID, err)
	}
	return g, t, nil
}
