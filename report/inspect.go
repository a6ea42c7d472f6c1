package report

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/wfsched/wfsched/dag"
)

// Inspection is what `wfsched inspect` shows of one graph.
type Inspection struct {
	Path  string    `json:"path,omitempty"`
	Stats dag.Stats `json:"stats"`
	// Batches are the node ids of each level, in file order: what can run
	// together once the levels before have run (the prototype's
	// get_execution_batches()); Order is a topological order (its
	// topological_sort()). Both only when asked for (inspect --batches).
	Batches [][]string `json:"batches,omitempty"`
	Order   []string   `json:"topological_order,omitempty"`
}

// WithBatches fills Batches and Order from g's topology.
func (in Inspection) WithBatches(g *dag.Graph, t *dag.Topology) Inspection {
	in.Batches = make([][]string, len(t.Levels))
	for l, vs := range t.Levels {
		for _, v := range vs {
			in.Batches[l] = append(in.Batches[l], g.Nodes[v].ID)
		}
	}
	for _, v := range t.Order {
		in.Order = append(in.Order, g.Nodes[v].ID)
	}
	return in
}

// WriteInspectText writes one graph's statistics, agents, levels, critical
// path and prefix-sharing bound as text.
func WriteInspectText(w io.Writer, in Inspection) error {
	s := in.Stats
	est := "estimated"
	if s.TokensExact {
		est = "exact"
	}
	if _, err := fmt.Fprintf(w, "Trace %s (%s)\n", s.ID, s.Format); err != nil {
		return err
	}
	rows := [][]string{
		{"nodes", fmt.Sprintf("%d (llm %d, tool %d, other %d)", s.Nodes, s.ByKind[dag.KindLLM], s.ByKind[dag.KindTool], s.ByKind[dag.KindOther])},
		{"edges", fmt.Sprintf("%d (%s)", s.Edges, edgeTypes(s.ByEdgeType))},
		{"agents", strconv.Itoa(len(s.Agents))},
		{"depth (levels)", strconv.Itoa(s.Depth)},
		{"widest level", strconv.Itoa(s.WidestLevel)},
		{"work, estimated", seconds(s.Work)},
		{"span (critical path), estimated", seconds(s.Span)},
		{"parallelism (work / span)", fmt.Sprintf("%.2f", s.Parallelism)},
		{"prompt tokens, " + est, thousands(s.PromptTokens)},
		{"output tokens, " + est, thousands(s.OutputTokens)},
		{"prefix-sharing bound, same agent", fmt.Sprintf("%.1f%% of prompt tokens", 100*s.PrefixShareBound)},
		{"prefix-sharing bound, any earlier prompt", fmt.Sprintf("%.1f%%", 100*s.PrefixShareAnyBound)},
	}
	if err := Table(w, []string{"statistic", "value"}, rows); err != nil {
		return err
	}
	if len(s.Agents) > 0 {
		var ar [][]string
		for _, a := range s.Agents {
			ar = append(ar, []string{a.Agent, strconv.Itoa(a.LLMCalls), strconv.Itoa(a.ToolCalls), thousands(a.PromptTokens), thousands(a.OutputTokens)})
		}
		if err := Table(w, []string{"agent", "llm calls", "tool calls", "prompt tokens", "output tokens"}, ar, 1, 2, 3, 4); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "Levels: %s\nCritical path (%d nodes, %s): %s\n",
		levelSummary(s.LevelSizes), len(s.CriticalPath), seconds(s.Span), elide(s.CriticalPath, 8, 4))
	if err != nil {
		return err
	}
	if len(in.Batches) > 0 {
		if _, err := fmt.Fprintf(w, "Execution batches (%d):\n", len(in.Batches)); err != nil {
			return err
		}
		for l, ids := range in.Batches {
			if _, err := fmt.Fprintf(w, "  %d: %s\n", l, strings.Join(ids, " ")); err != nil {
				return err
			}
		}
		if _, err := fmt.Fprintf(w, "Topological order: %s\n", strings.Join(in.Order, " ")); err != nil {
			return err
		}
	}
	if s.SingleChain() {
		_, err = fmt.Fprintln(w, "Note: this trace is a single chain: its critical path is all of its work, so no policy can run it"+
			" faster than sequentially. Replaying many workflows at once, and reusing each agent's prompt prefix"+
			" (bound above), are where gains can come from.")
	}
	return err
}

// WriteInspectList writes one row per graph of a multi-trace file.
func WriteInspectList(w io.Writer, path string, stats []dag.Stats) error {
	if _, err := fmt.Fprintf(w, "%s holds %d traces; choose one with --trace-id ID or --index N (0-based).\n", path, len(stats)); err != nil {
		return err
	}
	var rows [][]string
	for i, s := range stats {
		rows = append(rows, []string{strconv.Itoa(i), s.ID, strconv.Itoa(s.ByKind[dag.KindLLM]), strconv.Itoa(s.ByKind[dag.KindTool]),
			strconv.Itoa(len(s.Agents)), strconv.Itoa(s.Depth), strconv.Itoa(s.WidestLevel), fmt.Sprintf("%.2f", s.Parallelism),
			thousands(s.PromptTokens), fmt.Sprintf("%.1f%%", 100*s.PrefixShareBound)})
	}
	return Table(w, []string{"index", "trace", "llm", "tool", "agents", "depth", "widest", "parallelism", "prompt tokens", "prefix bound"},
		rows, 0, 2, 3, 4, 5, 6, 7, 8, 9)
}

// WriteJSON writes v as indented JSON.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func edgeTypes(m map[dag.EdgeType]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, string(k))
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[dag.EdgeType(k)])
	}
	return strings.Join(parts, ", ")
}

// levelSummary shows level sizes compactly: "3 levels: 1, 8, 1" or, for
// many levels, the count of levels of each width.
func levelSummary(sizes []int) string {
	if len(sizes) <= 12 {
		parts := make([]string, len(sizes))
		for i, n := range sizes {
			parts[i] = strconv.Itoa(n)
		}
		return fmt.Sprintf("%d, of widths %s", len(sizes), strings.Join(parts, ", "))
	}
	count := map[int]int{}
	for _, n := range sizes {
		count[n]++
	}
	widths := make([]int, 0, len(count))
	for n := range count {
		widths = append(widths, n)
	}
	sort.Ints(widths)
	parts := make([]string, 0, len(widths))
	for _, n := range widths {
		parts = append(parts, fmt.Sprintf("%d×width %d", count[n], n))
	}
	return fmt.Sprintf("%d (%s)", len(sizes), elide(parts, 6, 3))
}

func elide(xs []string, headN, tailN int) string {
	if len(xs) <= headN+tailN+1 {
		return strings.Join(xs, " → ")
	}
	return strings.Join(xs[:headN], " → ") + fmt.Sprintf(" → … (%d more) … → ", len(xs)-headN-tailN) + strings.Join(xs[len(xs)-tailN:], " → ")
}

func seconds(s float64) string {
	switch {
	case math.IsNaN(s):
		return "n/a"
	case s >= 100:
		return fmt.Sprintf("%.0f s", s)
	case s >= 1:
		return fmt.Sprintf("%.2f s", s)
	}
	return fmt.Sprintf("%.1f ms", 1000*s)
}

func thousands(n int) string {
	s := strconv.Itoa(n)
	if n < 0 {
		return "-" + thousands(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
