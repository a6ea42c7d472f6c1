// Package wire names the HTTP headers wfsched's engine, router and client
// exchange, so that each is spelled in one place.
package wire

const (
	// TimeScale carries an engine's time scale (wall seconds per modeled
	// second) on every response of wfsched's engine, and the router passes
	// it on; a client that sees it knows it talks to wfsched's engine.
	TimeScale = "X-Wfsched-Time-Scale"
	// Backend names, in each response the router proxies, the backend that
	// served it.
	Backend = "X-Wfsched-Backend"
)
