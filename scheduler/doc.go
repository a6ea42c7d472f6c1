// Package scheduler replays workflow DAGs under scheduling policies: the
// stage after package dag in wfsched's flow (trace -> dag.Graph -> scheduler
// -> client -> metrics -> reports).
//
// A Policy decides which ready nodes start and in which order; one
// coordinator goroutine per workflow owns the DAG state and starts workers
// under an errgroup with a limit. LLM nodes become chat completions sent
// through a Completer (package client satisfies it); tool nodes wait their
// recorded duration. A node's failure is data, recorded in its NodeResult;
// only run-fatal problems stop a run. Runner replays many workflows at
// once and streams every result to a Sink as it completes.
package scheduler
