package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/wfsched/wfsched/dag"
	"github.com/wfsched/wfsched/replay"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and failed
	exitUsage   = 2 // bad usage or bad input
)

// cliError carries an exit code and an optional hint to the edge.
type cliError struct {
	code int
	err  error
	hint string
}

func (e *cliError) Error() string { return e.err.Error() }
func (e *cliError) Unwrap() error { return e.err }

func usageError(format string, args ...any) error {
	return &cliError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// The library records the version in every summary.
func init() { replay.Version = version }

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "wfsched",
		Short: "Schedule and route the LLM calls of multi-agent workflows, and measure what it saves",
		Long: `wfsched answers how the LLM calls of multi-agent workflows should be scheduled and
routed across vLLM servers, and what it saves, by measuring it. It loads execution traces
(MAST AppWorld, AG2, HyperAgent, MetaGPT, OpenManus logs, DAG JSON, captures of your own
agents, OpenTelemetry spans, its own format) into dependency graphs (inspect), replays them
under scheduling policies and routing logics on an embedded vLLM-like engine or real
servers (run, compare, sweep, bench), and puts a workflow-affinity router in front of
vLLM (router).`,
		Version:       version,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(flagError)
	// Every number flag of every command must be finite: NaN and Inf parse
	// as floats but mean nothing here. Ranges are checked where each value
	// is used (the library's Validate methods).
	var cpuProfile, memProfile string
	root.PersistentFlags().StringVar(&cpuProfile, "cpuprofile", "", "write a pprof CPU profile of the command to this file")
	root.PersistentFlags().StringVar(&memProfile, "memprofile", "", "write a pprof allocation profile at the command's end to this file")
	stopProfile := func() {}
	root.PersistentPostRunE = func(*cobra.Command, []string) error {
		stopProfile()
		if memProfile == "" {
			return nil
		}
		f, err := os.Create(memProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		return pprof.Lookup("allocs").WriteTo(f, 0)
	}
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if cpuProfile != "" {
			f, err := os.Create(cpuProfile)
			if err != nil {
				return usageError("--cpuprofile: %v", err)
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				f.Close()
				return usageError("--cpuprofile: %v", err)
			}
			stopProfile = func() {
				pprof.StopCPUProfile()
				f.Close()
			}
		}
		var bad error
		cmd.Flags().VisitAll(func(f *pflag.Flag) {
			if f.Value.Type() != "float64" || bad != nil {
				return
			}
			if v, err := strconv.ParseFloat(f.Value.String(), 64); err == nil && (math.IsNaN(v) || math.IsInf(v, 0)) {
				bad = usageError("--%s %s: want a finite number", f.Name, f.Value.String())
			}
		})
		return bad
	}
	root.AddCommand(newRunCmd(), newCompareCmd(), newReportCmd(), newInspectCmd(), newConvertCmd(), newGenCmd(), newSimCmd(), newRouterCmd(), newBenchCmd(), newSweepCmd(), newCalibrateCmd())
	return root
}

// execute runs the command line and returns the process exit code. Errors
// are printed as "wfsched: error: ..." with a hint where one helps.
func execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	code, hint := classify(err)
	fmt.Fprintf(stderr, "wfsched: error: %v\n", err)
	if hint != "" {
		fmt.Fprintf(stderr, "wfsched: hint: %s\n", hint)
	}
	return code
}

// classify maps an error to an exit code and a hint.
func classify(err error) (int, string) {
	var ce *cliError
	if errors.As(err, &ce) {
		return ce.code, ce.hint
	}
	var (
		multi    *dag.MultiTraceError
		large    *dag.TooLargeError
		cyc      *dag.CycleError
		syn      *dag.SyntaxError
		edge     *dag.EdgeError
		node     *dag.NodeError
		input    *dag.InputError
		notTrace *dag.NotTraceError
	)
	switch {
	case errors.As(err, &multi):
		return exitUsage, "pick one with --trace-id ID or --index N (0-based); 'wfsched inspect FILE' lists them"
	case errors.As(err, &large):
		return exitUsage, "raise the limit with --max-bytes"
	case errors.As(err, &cyc):
		return exitUsage, "a workflow's dependencies must form a DAG: remove one edge of this cycle"
	case errors.As(err, &syn):
		return exitUsage, "fix the file at that position, or check --format"
	case errors.As(err, &edge):
		return exitUsage, "every edge must join two node ids of the same trace"
	case errors.As(err, &node):
		return exitUsage, "fix that node in the file (ids must be present and unique)"
	case errors.As(err, &notTrace):
		return exitUsage, "'wfsched report FOLDER' renders a saved run, comparison or sweep again; the traces a run replayed are in its folder's traces.json"
	case errors.Is(err, dag.ErrEmpty):
		return exitUsage, "the trace needs at least one LLM call or tool node"
	case errors.As(err, &input), errors.Is(err, os.ErrNotExist), errors.Is(err, os.ErrPermission):
		return exitUsage, ""
	case strings.HasPrefix(err.Error(), "unknown command"), strings.Contains(err.Error(), "accepts "),
		strings.Contains(err.Error(), "requires at least"):
		return exitUsage, "see 'wfsched --help'"
	}
	return exitFailure, ""
}
