package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// noArgs refuses positional arguments, saying what to do instead: a
// command that reads its trace from a flag (--dag) points the argument
// there.
func noArgs(fileFlag string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return nil
		}
		err := fmt.Errorf("%s takes no arguments, got %q", cmd.CommandPath(), args[0])
		if fileFlag != "" && !strings.HasPrefix(args[0], "-") {
			return &cliError{code: exitUsage, err: err, hint: fmt.Sprintf("give the trace with %s: %s %s %s", fileFlag, cmd.CommandPath(), fileFlag, args[0])}
		}
		return &cliError{code: exitUsage, err: err, hint: fmt.Sprintf("flags start with --; see '%s --help'", cmd.CommandPath())}
	}
}

// oneArg takes exactly one positional argument, what, and says so.
func oneArg(what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch len(args) {
		case 1:
			return nil
		case 0:
			return &cliError{code: exitUsage, err: fmt.Errorf("%s needs %s", cmd.CommandPath(), what), hint: "usage: " + cmd.UseLine()}
		}
		return &cliError{code: exitUsage, err: fmt.Errorf("%s takes one argument, %s; got %d: %s", cmd.CommandPath(), what, len(args), strings.Join(args, " ")),
			hint: "usage: " + cmd.UseLine()}
	}
}

// flagError is every command's answer to a flag it cannot parse: its own
// help, and for an unknown flag the nearest one it has.
func flagError(cmd *cobra.Command, err error) error {
	hint := fmt.Sprintf("see '%s --help'", cmd.CommandPath())
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "unknown flag: --"); ok {
		if near := nearestFlag(cmd, name); near != "" {
			hint = fmt.Sprintf("did you mean --%s? (%s)", near, hint)
		}
	}
	return &cliError{code: exitUsage, err: err, hint: hint}
}

// nearestFlag is the flag of cmd whose name is nearest to name: within an
// edit distance of a third of its length (at least 2), or name a prefix of
// it; "" if none is.
func nearestFlag(cmd *cobra.Command, name string) string {
	best, bestD := "", 0
	try := func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		d := editDistance(name, f.Name)
		if strings.HasPrefix(f.Name, name) && len(name) >= 3 {
			d = min(d, 1)
		}
		if d <= max(2, len(f.Name)/3) && (best == "" || d < bestD) {
			best, bestD = f.Name, d
		}
	}
	cmd.Flags().VisitAll(try)
	cmd.InheritedFlags().VisitAll(try)
	return best
}

// editDistance is the Levenshtein distance between a and b (bytes).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
