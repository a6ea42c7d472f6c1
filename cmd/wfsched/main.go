// Command wfsched loads multi-agent workflow traces into dependency graphs,
// replays them against LLM servers under scheduling policies, and reports how
// much each policy saves. See README.md and docs/.
package main

import (
	"context"
	"os"
	"os/signal"
)

func main() {
	// The first Ctrl-C cancels ctx (commands drain and keep what they
	// finished); after it, the default handler lets a second one exit.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	go func() {
		<-ctx.Done()
		stop()
	}()
	code := execute(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
