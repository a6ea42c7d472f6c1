package dag

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/wfsched/wfsched/tokenizer"
)

// canonicalEdges lists a graph's edges by agent, kind and rank (node ids
// differ between imports).
func canonicalEdges(g *Graph) []string {
	names := map[string]string{}
	count := map[string]int{}
	for _, n := range g.Nodes {
		k := n.Agent + "/" + string(n.Kind)
		count[k]++
		names[n.ID] = fmt.Sprintf("%s%d", k, count[k])
	}
	var out []string
	for _, e := range g.Edges {
		out = append(out, names[e.From]+" -"+string(e.Type)+"-> "+names[e.To])
	}
	slices.Sort(out)
	return out
}

func readFixture(t *testing.T, name string) []*Graph {
	t.Helper()
	gs, err := ReadFile("testdata/agents/"+name, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return gs
}

// The capture the router wrote and the OpenTelemetry spans the OpenInference
// instrumentation exported, of the same run of real agent programs
// (scripts/record-fixtures.sh), describe the same calls: workflows, calls
// and tools, agents, token totals, and dependencies.
func TestCaptureAndOTelAgree(t *testing.T) {
	capt, otel := readFixture(t, "capture.jsonl"), readFixture(t, "otel-spans.jsonl")
	if len(capt) != 3 || len(otel) != len(capt) {
		t.Fatalf("%d workflows from the capture, %d from the spans", len(capt), len(otel))
	}
	for i, c := range capt {
		o := otel[i]
		if c.ID != o.ID {
			t.Errorf("workflow %d: %s from the capture, %s from the spans", i, c.ID, o.ID)
			continue
		}
		type figures struct {
			llm, tool, prompt, output int
			agents                    string
		}
		fig := func(g *Graph) figures {
			var f figures
			agents := map[string]bool{}
			for _, n := range g.Nodes {
				agents[n.Agent] = true
				switch n.Kind {
				case KindLLM:
					f.llm++
					f.prompt += n.InputTokens.N
					f.output += n.OutputTokens.N
				case KindTool:
					f.tool++
				}
			}
			names := make([]string, 0, len(agents))
			for a := range agents {
				names = append(names, a)
			}
			slices.Sort(names)
			f.agents = strings.Join(names, ",")
			return f
		}
		if fc, fo := fig(c), fig(o); fc != fo {
			t.Errorf("%s: capture %+v, spans %+v", c.ID, fc, fo)
		}
		if ec, eo := canonicalEdges(c), canonicalEdges(o); !slices.Equal(ec, eo) {
			t.Errorf("%s: edges differ:\n capture %q\n spans   %q", c.ID, ec, eo)
		}
	}
	// What the programs did, as the rebuild must see it.
	want := map[string][]string{
		"agents-2": {"forecaster/llm1 -history-> forecaster/llm2", "forecaster/llm1 -observation-> forecaster/tool1", "forecaster/tool1 -observation-> forecaster/llm2", "triage/llm1 -message-> forecaster/llm1"},
		"graph-1": {"planner/llm1 -message-> worker-1/llm1", "planner/llm1 -message-> worker-2/llm1", "planner/llm1 -message-> worker-3/llm1",
			"worker-1/llm1 -message-> writer/llm1", "worker-2/llm1 -message-> writer/llm1", "worker-3/llm1 -message-> writer/llm1"},
	}
	for _, g := range otel {
		if w, ok := want[g.ID]; ok {
			got := canonicalEdges(g)
			for _, e := range w {
				if !slices.Contains(got, e) {
					t.Errorf("%s lacks %s: %q", g.ID, e, got)
				}
			}
		}
	}
	// The tool span gives the tool node its duration: the tool slept 150
	// ms (spans say nothing of the engines' time scale: their times are
	// taken as they are, as from a real server).
	for _, n := range otel[1].Nodes {
		if n.Kind == KindTool && (n.Label != "get_weather" || n.Duration.D().Seconds() < 0.15 || n.Duration.D().Seconds() > 0.2) {
			t.Errorf("tool node %s: label %q, %v", n.ID, n.Label, n.Duration.D())
		}
	}
}

// The GenAI semantic conventions' attributes, on a span written here (the
// real fixtures come from the OpenInference instrumentation).
func TestGenAIConventions(t *testing.T) {
	span := `{"resourceSpans":[{"scopeSpans":[{"spans":[
 {"traceId":"t1","spanId":"a","name":"invoke_agent","startTimeUnixNano":"1000000000","endTimeUnixNano":"9000000000","attributes":[{"key":"gen_ai.agent.name","value":{"stringValue":"researcher"}},{"key":"gen_ai.conversation.id","value":{"stringValue":"conv-7"}}]},
 {"traceId":"t1","spanId":"b","parentSpanId":"a","name":"chat m","startTimeUnixNano":"1000000000","endTimeUnixNano":"2000000000","attributes":[
  {"key":"gen_ai.operation.name","value":{"stringValue":"chat"}},{"key":"gen_ai.usage.input_tokens","value":{"intValue":"31"}},{"key":"gen_ai.usage.output_tokens","value":{"intValue":12}},
  {"key":"gen_ai.system_instructions","value":{"stringValue":"[{\"type\":\"text\",\"content\":\"You research.\"}]"}},
  {"key":"gen_ai.input.messages","value":{"stringValue":"[{\"role\":\"user\",\"parts\":[{\"type\":\"text\",\"content\":\"Find the 2019 figures.\"}]}]"}},
  {"key":"gen_ai.output.messages","value":{"stringValue":"[{\"role\":\"assistant\",\"parts\":[{\"type\":\"tool_call\",\"id\":\"c1\",\"name\":\"search\",\"arguments\":{\"q\":\"2019\"}}]}]"}}]},
 {"traceId":"t1","spanId":"c","parentSpanId":"a","name":"execute_tool search","startTimeUnixNano":"2000000000","endTimeUnixNano":"5000000000","attributes":[{"key":"gen_ai.operation.name","value":{"stringValue":"execute_tool"}},{"key":"gen_ai.tool.name","value":{"stringValue":"search"}}]},
 {"traceId":"t1","spanId":"d","parentSpanId":"a","name":"chat m","startTimeUnixNano":"5000000000","endTimeUnixNano":"6000000000","attributes":[
  {"key":"gen_ai.operation.name","value":{"stringValue":"chat"}},{"key":"gen_ai.usage.input_tokens","value":{"intValue":"60"}},{"key":"gen_ai.usage.output_tokens","value":{"intValue":"20"}},
  {"key":"gen_ai.system_instructions","value":{"stringValue":"[{\"type\":\"text\",\"content\":\"You research.\"}]"}},
  {"key":"gen_ai.input.messages","value":{"stringValue":"[{\"role\":\"user\",\"parts\":[{\"type\":\"text\",\"content\":\"Find the 2019 figures.\"}]},{\"role\":\"assistant\",\"parts\":[{\"type\":\"tool_call\",\"id\":\"c1\",\"name\":\"search\",\"arguments\":{\"q\":\"2019\"}}]},{\"role\":\"tool\",\"parts\":[{\"type\":\"tool_call_response\",\"id\":\"c1\",\"response\":\"revenue rose 4%\"}]}]"}},
  {"key":"gen_ai.output.messages","value":{"stringValue":"[{\"role\":\"assistant\",\"parts\":[{\"type\":\"text\",\"content\":\"Revenue rose 4% in 2019.\"}]}]"}}]}
]}]}]}`
	recs, err := OTelRecords([]byte(span), tokenizer.MustDefault())
	if err != nil {
		t.Fatal(err)
	}
	gs, err := FromCapture(recs)
	if err != nil || len(gs) != 1 {
		t.Fatalf("%d graphs, %v", len(gs), err)
	}
	g := gs[0]
	if g.ID != "conv-7" || len(g.Nodes) != 3 || g.Nodes[1].Kind != KindTool || g.Nodes[1].Label != "search" || g.Nodes[1].Duration.D().Seconds() != 3 {
		t.Fatalf("graph %s: %d nodes %+v", g.ID, len(g.Nodes), g.Nodes[1])
	}
	first, second := g.Nodes[0], g.Nodes[2]
	if first.Agent != "researcher" || first.System != "You research." || first.InputTokens.N != 31 || first.OutputTokens.N != 12 ||
		len(first.ToolCalls) != 1 || first.ToolCalls[0].Name != "search" || second.Inputs[0].ToolCallID != "c1" || second.Inputs[0].Text != "revenue rose 4%" {
		t.Errorf("nodes: %+v\n%+v", first, second)
	}
	if e := canonicalEdges(g); !slices.Equal(e, []string{"researcher/llm1 -history-> researcher/llm2", "researcher/llm1 -observation-> researcher/tool1", "researcher/tool1 -observation-> researcher/llm2"}) {
		t.Errorf("edges %q", e)
	}
}

func TestOTelErrorsSayWhere(t *testing.T) {
	for _, tt := range []struct{ data, want string }{
		{`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"t","spanId":"s","name":"x","startTimeUnixNano":"abc","endTimeUnixNano":"1","attributes":[{"key":"openinference.span.kind","value":{"stringValue":"LLM"}}]}]}]}]}`, "span s (x): startTimeUnixNano"},
		{"{\"resourceSpans\":[]}\n{\"resourceSpans\": 3}\n", "line 2: not an OTLP JSON export request"},
	} {
		_, err := OTelRecords([]byte(tt.data), tokenizer.MustDefault())
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want %q", tt.data, err, tt.want)
		}
	}
}

func FuzzParseOTel(f *testing.F) {
	data, err := os.ReadFile("testdata/agents/otel-spans.jsonl")
	if err != nil {
		f.Fatal(err)
	}
	// Each export request alone (a few KB each): the fuzzer minimizes
	// each new input it keeps, and on the whole 63 KB file it ran a
	// handful of inputs a minute.
	for line := range bytes.Lines(data) {
		f.Add(bytes.TrimSpace(line))
	}
	f.Fuzz(func(t *testing.T, data []byte) { fuzzParse(t, data, "otel") })
}
