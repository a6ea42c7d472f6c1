package main

import (
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// referencePath is the CLI reference, generated from the commands.
const referencePath = "../../docs/cli.md"

// TestCLIReference holds docs/cli.md to the commands as they are defined:
// their use lines, descriptions, examples and every flag with its type,
// default and help. After changing a command, regenerate it with
//
//	go test ./cmd/wfsched -run TestCLIReference -update
func TestCLIReference(t *testing.T) {
	for _, v := range []string{"WFSCHED_API_KEY", "WFSCHED_SHARED_TRACES"} {
		t.Setenv(v, "") // no default may come from the environment
	}
	var b strings.Builder
	writeReference(&b, newRootCmd(io.Discard, io.Discard))
	goldenFile(t, referencePath, b.String())
}

func writeReference(w *strings.Builder, root *cobra.Command) {
	fmt.Fprintf(w, "# Command-line reference\n\n")
	fmt.Fprintf(w, "<!-- Generated from the commands' definitions by `go test ./cmd/wfsched -run TestCLIReference -update`; CI fails when it is not current. Do not edit by hand. -->\n\n")
	fmt.Fprintf(w, "%s\n\n", root.Long)
	var cmds []*cobra.Command
	for _, c := range root.Commands() {
		if c.IsAvailableCommand() {
			cmds = append(cmds, c)
		}
	}
	for _, c := range cmds {
		fmt.Fprintf(w, "- [`%s`](#%s): %s\n", c.CommandPath(), strings.ReplaceAll(c.CommandPath(), " ", "-"), c.Short)
	}
	fmt.Fprintf(w, "\nEvery command also takes:\n\n")
	flagTable(w, root.PersistentFlags())
	for _, c := range cmds {
		fmt.Fprintf(w, "\n## %s\n\n", c.CommandPath())
		fmt.Fprintf(w, "```\n%s\n```\n\n", c.UseLine())
		if c.Long != "" {
			fmt.Fprintf(w, "%s\n\n", strings.TrimSpace(c.Long))
		} else {
			fmt.Fprintf(w, "%s\n\n", c.Short)
		}
		if c.Example != "" {
			fmt.Fprintf(w, "Examples:\n\n```sh\n%s\n```\n\n", strings.TrimRight(c.Example, "\n"))
		}
		flagTable(w, c.LocalFlags())
	}
}

func flagTable(w *strings.Builder, fs *pflag.FlagSet) {
	fmt.Fprintf(w, "| flag | default | meaning |\n|---|---|---|\n")
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden || f.Name == "help" {
			return
		}
		name := "`--" + f.Name
		if f.Shorthand != "" {
			name = "`-" + f.Shorthand + "`, " + name
		}
		if typ, _ := pflag.UnquoteUsage(f); typ != "" {
			name += " " + typ
		}
		name += "`"
		def := f.DefValue
		switch def {
		case "", "[]", "false", "0", "0s":
			def = ""
		default:
			def = "`" + def + "`"
		}
		fmt.Fprintf(w, "| %s | %s | %s |\n", name, def, strings.ReplaceAll(detail(f), "|", `\|`))
	})
}

// TestHelpWidth: every line --help prints fits 120 columns (the flags'
// longer explanations are in docs/cli.md).
func TestHelpWidth(t *testing.T) {
	root := newRootCmd(io.Discard, io.Discard)
	for _, c := range append([]*cobra.Command{root}, root.Commands()...) {
		for _, line := range strings.Split(c.LocalFlags().FlagUsages(), "\n") {
			if n := len([]rune(line)); n > 120 {
				t.Errorf("%s: a help line of %d characters: %s", c.CommandPath(), n, strings.TrimSpace(line))
			}
		}
	}
}
