// Package replay runs a replay end to end: it is the map of a run.
//
// A run has three parts, each in one place:
//
//   - A backend, started fresh by Start from a Spec: the embedded engines on
//     the virtual clock (Virtual: modeled time in an event loop, exact and
//     deterministic), the embedded engines serving HTTP on the wall clock, or
//     real servers (endpoints, always wall); with wfsched's router in front
//     when a routing logic is asked or there are several servers. On the
//     virtual clock the router is its routing core, router.Balancer, the one
//     the HTTP proxy serves through.
//   - One replay, Replay, of a Job (traces, scheduler configuration,
//     objectives) on a backend into a run folder: nodes.jsonl and
//     workflows.jsonl as results come, summary.json at the start and at the
//     end (figures, server counters, utilisation, router figures, and the
//     timing check: exact on the virtual clock; on the wall clock the
//     latency the client measured against the engines' own record), and
//     traces.json. The scheduling decisions are the scheduler's: Run drives
//     its flows on goroutines over HTTP, RunVirtual in the event loop.
//   - The arms loop, Rounds: arms (policies, or routing logics) times
//     iterations, interleaved, each on a fresh backend; virtual rounds go one
//     per processor. Once is one fresh run (a sweep's points).
//
// The run folder's format (its writer, types and reader) is package
// report's (report.RunFolder, report.LoadRun); the command line
// (cmd/wfsched) parses flags, calls this package and prints.
package replay
