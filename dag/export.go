package dag

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// WriteDOT writes g as a Graphviz digraph: one cluster per agent, LLM nodes
// as boxes, tool nodes as ellipses, other nodes as plain text, edges styled
// by type, and the critical path (positions in onPath) drawn bold red.
func WriteDOT(w io.Writer, g *Graph, onPath []int) error {
	bw := bufio.NewWriter(w)
	crit := pathSet(onPath)
	fmt.Fprintf(bw, "digraph %s {\n  rankdir=TB;\n  node [fontname=\"Helvetica\", fontsize=10];\n", dotID(g.ID))
	byAgent := map[string][]int{}
	var agents []string
	for i, n := range g.Nodes {
		if _, ok := byAgent[n.Agent]; !ok {
			agents = append(agents, n.Agent)
		}
		byAgent[n.Agent] = append(byAgent[n.Agent], i)
	}
	for k, a := range agents {
		indent := "  "
		if a != "" {
			fmt.Fprintf(bw, "  subgraph cluster_%d {\n    label=%s;\n    style=rounded;\n", k, dotID(a))
			indent = "    "
		}
		for _, i := range byAgent[a] {
			n := g.Nodes[i]
			shape := map[Kind]string{KindLLM: "box", KindTool: "ellipse"}[n.Kind]
			if shape == "" {
				shape = "plaintext"
			}
			label := fmt.Sprintf("%s\\n%s", n.ID, nodeSummary(n))
			extra := ""
			if crit[i] {
				extra = `, color="red", penwidth=2`
			}
			fmt.Fprintf(bw, "%s%s [shape=%s, label=%s%s];\n", indent, dotID(n.ID), shape, dotQuote(label), extra)
		}
		if a != "" {
			fmt.Fprintln(bw, "  }")
		}
	}
	idx := g.Index()
	pathEdge := map[[2]int]bool{}
	for k := 1; k < len(onPath); k++ {
		pathEdge[[2]int{onPath[k-1], onPath[k]}] = true
	}
	for _, e := range g.Edges {
		style := map[EdgeType]string{EdgeHistory: "solid", EdgeObservation: "dashed", EdgeMessage: "bold", EdgeExplicit: "solid"}[e.Type]
		extra := ""
		if pathEdge[[2]int{idx[e.From], idx[e.To]}] {
			extra = `, color="red"`
		}
		fmt.Fprintf(bw, "  %s -> %s [style=%s, tooltip=%s%s];\n", dotID(e.From), dotID(e.To), style, dotQuote(string(e.Type)), extra)
	}
	fmt.Fprintln(bw, "}")
	return bw.Flush()
}

// WriteMermaid writes g as a Mermaid flowchart, with the critical path's
// nodes in a highlighted class.
func WriteMermaid(w io.Writer, g *Graph, onPath []int) error {
	bw := bufio.NewWriter(w)
	crit := pathSet(onPath)
	fmt.Fprintln(bw, "flowchart TD")
	ids := make(map[string]string, len(g.Nodes))
	for i, n := range g.Nodes {
		mid := fmt.Sprintf("n%d", i)
		ids[n.ID] = mid
		label := strings.NewReplacer(`"`, "#quot;", "\n", " ").Replace(fmt.Sprintf("%s: %s", n.ID, nodeSummary(n)))
		open, closing := "[", "]"
		if n.Kind == KindTool {
			open, closing = "([", "])"
		}
		fmt.Fprintf(bw, "  %s%s\"%s\"%s\n", mid, open, label, closing)
		if crit[i] {
			fmt.Fprintf(bw, "  class %s critical\n", mid)
		}
	}
	for _, e := range g.Edges {
		arrow := map[EdgeType]string{EdgeObservation: "-.->", EdgeMessage: "==>"}[e.Type]
		if arrow == "" {
			arrow = "-->"
		}
		fmt.Fprintf(bw, "  %s %s|%s| %s\n", ids[e.From], arrow, e.Type, ids[e.To])
	}
	fmt.Fprintln(bw, "  classDef critical stroke:#d00,stroke-width:3px")
	return bw.Flush()
}

func nodeSummary(n *Node) string {
	switch n.Kind {
	case KindLLM:
		return fmt.Sprintf("%s llm %d→%d tok", n.Agent, n.InputTokens.N, n.OutputTokens.N)
	case KindTool:
		return fmt.Sprintf("%s tool", n.Agent)
	}
	if n.Label != "" {
		return n.Label
	}
	return string(n.Kind)
}

func pathSet(path []int) map[int]bool {
	s := make(map[int]bool, len(path))
	for _, v := range path {
		s[v] = true
	}
	return s
}

func dotQuote(s string) string {
	return `"` + strings.NewReplacer(`"`, `\"`, "\n", `\n`).Replace(s) + `"`
}

func dotID(s string) string {
	if s == "" {
		return `""`
	}
	return dotQuote(s)
}
