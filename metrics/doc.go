// Package metrics accumulates replay results and summarizes them with the
// definitions of vLLM's serving benchmark (TTFT, TPOT, ITL, E2E latency,
// throughput) and wfsched's workflow figures (makespan, critical-path
// efficiency, achieved parallelism, prefix-cache hit rate). It follows the
// scheduler in wfsched's flow and feeds the reports.
//
// Accumulate with a Recorder (a scheduler.Sink), then Summarize. Times are
// the modeled seconds the scheduler reports.
package metrics
