package dag

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/wfsched/wfsched/internal/testenv"
	"github.com/wfsched/wfsched/tokenizer"
)

func roundTrip(t *testing.T, gs ...*Graph) []*Graph {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteJSON(&buf, gs...); err != nil {
		t.Fatal(err)
	}
	back, err := Parse(buf.Bytes(), Options{})
	if err != nil {
		t.Fatalf("reading back: %v\n%s", err, buf.String()[:min(buf.Len(), 500)])
	}
	return back
}

func TestNativeRoundTrip(t *testing.T) {
	enc := tokenizer.MustDefault()
	var gs []*Graph
	for _, shape := range Shapes {
		g, err := Generate(GenConfig{Shape: shape, Nodes: 25, Seed: 3}, enc)
		if err != nil {
			t.Fatal(err)
		}
		gs = append(gs, g)
	}
	ex, err := ReadOne(filepath.Join("..", "traces", "research-team.json"), Options{}, Selector{})
	if err != nil {
		t.Fatal(err)
	}
	gs = append(gs, ex)
	if dir := os.Getenv(testenv.SharedTracesVar); dir != "" {
		g, err := ReadOne(testenv.SharedFile(t, "appworld-raw/b119b1f_2.txt"), Options{}, Selector{})
		if err != nil {
			t.Fatal(err)
		}
		gs = append(gs, g)
	}
	for _, g := range gs {
		back := roundTrip(t, g)
		want := *g
		want.Format = "native"
		if diff := cmp.Diff(&want, back[0]); diff != "" {
			t.Errorf("%s: round trip changed the graph (-want +got):\n%s", g.ID, diff)
		}
	}
	// Several graphs in one file.
	back := roundTrip(t, gs[0], gs[1])
	if len(back) != 2 || back[0].ID != gs[0].ID || back[1].ID != gs[1].ID {
		t.Errorf("multi-graph round trip gave %d graphs", len(back))
	}
}

func TestNativeVersion(t *testing.T) {
	_, err := Parse([]byte(`{"format": "wfsched-dag", "version": 9, "id": "x", "nodes": [{"id": "a", "kind": "llm"}], "edges": []}`), Options{})
	if err == nil || !strings.Contains(err.Error(), "version 9") {
		t.Errorf("err = %v, want a version error", err)
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		data   string
		format string
		want   string // substring of the error
		check  func(error) bool
	}{
		{name: "malformed JSON names line and column", data: "{\n \"format\": \"wfsched-dag\",\n \"version\": 1,\n \"nodes\": [\n  {\"id\": \"a\",, }\n ]\n}",
			want: "line 5, column 14", check: func(err error) bool { var s *SyntaxError; return errors.As(err, &s) && s.Line == 5 }},
		{name: "truncated JSON", data: `{"format": "wfsched-dag", "version": 1, "nodes": [`, want: "unexpected end"},
		{name: "wrong type names the field", data: `{"format": "wfsched-dag", "version": 1, "nodes": [{"id": 5}]}`, want: "nodes.id"},
		{name: "dag-json edge to unknown node", data: `{"nodes": [{"id": "n0", "type": "agent_response", "agent": "Supervisor", "content": "Response from Supervisor Agent\n    x"}], "edges": [{"source": "n0", "target": "n9"}]}`,
			want: `edge 0 ("n0" -> "n9"): unknown node "n9"`},
		{name: "dag-json duplicate id", data: `{"nodes": [{"id": "n0", "type": "agent_response"}, {"id": "n0", "type": "agent_response"}], "edges": []}`,
			want: `node 1 ("n0"): duplicate id`},
		{name: "dag-json unknown variant", data: `{"nodes": [{"id": "n0", "type": "banana"}], "edges": []}`, want: `unrecognized node types ("banana")`},
		{name: "dag-json no nodes", data: `{"nodes": [], "edges": []}`, check: func(err error) bool { return errors.Is(err, ErrEmpty) }},
		{name: "empty input", data: "  \n", check: func(err error) bool { return errors.Is(err, ErrEmpty) }},
		{name: "empty step list", data: "[]", check: func(err error) bool { return errors.Is(err, ErrEmpty) }},
		{name: "step without agent names record and step", data: `[{"steps": [{"content": "hi", "kind": "message"}], "metadata": {"trace_id": "t1"}}]`,
			want: "record 0: trace t1: step 0: missing agent"},
		{name: "not an AppWorld log", data: "hello\nworld\n", format: "appworld-log", want: "not an AppWorld log"},
		{name: "undetectable", data: "hello\nworld\n", want: "cannot tell the trace format"},
		{name: "unknown format", data: "{}", format: "yaml", want: `unknown format "yaml"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.data), Options{Format: tt.format})
			if err == nil {
				t.Fatal("no error")
			}
			if tt.want != "" && !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %q, want it to contain %q", err, tt.want)
			}
			if tt.check != nil && !tt.check(err) {
				t.Errorf("err = %v (%T): wrong kind", err, err)
			}
		})
	}
}

func TestReadFileErrors(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.json")
	if err := os.WriteFile(big, bytes.Repeat([]byte(" "), 2048), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := ReadFile(big, Options{MaxBytes: 1024})
	var tl *TooLargeError
	if !errors.As(err, &tl) || tl.Limit != 1024 || !strings.Contains(err.Error(), big) {
		t.Errorf("over the limit: %v", err)
	}
	if _, err := ReadFile(filepath.Join(dir, "missing.json"), Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	var ie *InputError
	if _, err := ReadFile(dir, Options{}); !errors.As(err, &ie) || !strings.Contains(err.Error(), "is a folder") {
		t.Errorf("directory: %v", err)
	}
	// A large file of no known format is refused from its head.
	junk := filepath.Join(dir, "junk.bin")
	if err := os.WriteFile(junk, append([]byte("\x00\x01 not a trace\n"), bytes.Repeat([]byte("z"), 1<<20)...), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(junk, Options{}); !errors.As(err, &ie) || !errors.Is(err, errUnknownFormat) || !strings.Contains(err.Error(), "first 64 KiB") {
		t.Errorf("junk: %v", err)
	}
	cyc := filepath.Join(dir, "cycle.json")
	os.WriteFile(cyc, []byte(`{"format": "wfsched-dag", "version": 1, "id": "c",
	 "nodes": [{"id": "a", "kind": "llm"}, {"id": "b", "kind": "llm"}],
	 "edges": [{"from": "a", "to": "b", "type": "message"}, {"from": "b", "to": "a", "type": "message"}]}`), 0o644)
	g, err := ReadOne(cyc, Options{}, Selector{})
	if err != nil {
		t.Fatal(err)
	}
	var ce *CycleError
	if _, err := Analyze(g); !errors.As(err, &ce) || len(ce.Nodes) != 2 {
		t.Errorf("cycle: %v", err)
	}
}
