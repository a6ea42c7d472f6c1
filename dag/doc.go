// Package dag turns multi-agent execution traces into dependency graphs and
// analyses them: the first stage of wfsched's flow (trace file -> dag.Graph ->
// scheduler -> client -> metrics -> reports).
//
// A Graph holds Nodes (LLM calls, tool executions, other events) and typed
// Edges. Importers read wfsched's own format (docs/trace-format.md), the DAG
// JSON of the user's prototype, raw AppWorld logs and step-list files; all but
// the native format are rebuilt into their real dependencies (an agent's
// history, tool observations, messages between agents) from node types and
// agents, because those files record only the order of events.
//
// Analyses: Kahn's topological sort with ties broken by file order, levels,
// the critical path under a CostModel, statistics including the
// prefix-sharing bound, and DOT, Mermaid and JSON exports. Generate builds
// synthetic graphs with real parallel structure.
//
// Functions here never write to standard output and never exit; errors say
// where the problem is (file, line and column, node or edge).
package dag
