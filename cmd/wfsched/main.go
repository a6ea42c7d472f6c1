// Command wfsched loads multi-agent workflow traces into dependency graphs,
// replays them against LLM servers under scheduling policies, and reports how
// much each policy saves. See README.md.
package main

import (
	"context"
	"os"
	"os/signal"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := execute(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
