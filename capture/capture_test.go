package capture

import (
	"errors"
	"strings"
	"testing"

	"github.com/wfsched/wfsched/tokenizer"
)

func TestContainsAcrossModes(t *testing.T) {
	enc := tokenizer.MustDefault()
	plan := "First search the archives for the 2019 figures, then compare them with the survey, and finally write the summary for the board with three recommendations and their costs."
	quoted := "Plan: " + plan + "\nWrite part 2 of the report."
	other := "Search the web for recent figures and summarise the three most relevant findings with their sources."
	for _, mode := range []string{Full, Hash} {
		out := NewMessage("assistant", plan, nil, "", mode, enc)
		if !Contains(NewMessage("user", quoted, nil, "", mode, enc), out) {
			t.Errorf("%s: a message quoting the output does not contain it", mode)
		}
		if !Contains(NewMessage("user", plan, nil, "", mode, enc), out) {
			t.Errorf("%s: a message equal to the output does not contain it", mode)
		}
		if Contains(NewMessage("user", other, nil, "", mode, enc), out) {
			t.Errorf("%s: an unrelated message contains the output", mode)
		}
	}
	none := NewMessage("user", quoted, nil, "", None, enc)
	if none.Text != "" || none.Hash != "" || none.Tokens != enc.Count(quoted) {
		t.Errorf("none mode keeps %+v", none)
	}
	if Contains(none, NewMessage("assistant", plan, nil, "", None, enc)) {
		t.Error("none mode claims containment it cannot know")
	}
}

func TestReadErrorsSayWhere(t *testing.T) {
	good := `{"wfsched_capture":1,"workflow":"w","request_id":"r1","arrival":"2026-01-01T00:00:00Z","end":"2026-01-01T00:00:01Z","status":200}`
	for _, tt := range []struct{ data, want string }{
		{good + "\n{not json}\n", "c.jsonl:2: not a capture record"},
		{strings.Replace(good, `"wfsched_capture":1`, `"wfsched_capture":2`, 1) + "\n", "c.jsonl:1: wfsched_capture version 2"},
		{strings.Replace(good, `"workflow":"w",`, ``, 1) + "\n", "c.jsonl:1: workflow, request_id and arrival are required"},
		{strings.Replace(good, `00:00:01Z`, `1999-01-01T00:00:00Z`[0:0]+"00:00:00Z", 1) + "\n", ""},
	} {
		_, err := Read(strings.NewReader(tt.data), "c.jsonl")
		var le *LineError
		if tt.want == "" {
			if err != nil {
				t.Errorf("%q: %v", tt.data, err)
			}
			continue
		}
		if !errors.As(err, &le) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want %q", tt.data, err, tt.want)
		}
	}
	// A last line still being written is left out, not an error.
	recs, err := Read(strings.NewReader(good+"\n"+good[:40]), "c.jsonl")
	if err != nil || len(recs) != 1 {
		t.Errorf("a cut last line: %d records, %v", len(recs), err)
	}
}

// TestShortQuoteOnItsOwnLines: in hash mode, an answer too short for
// interior chunks is found when a prompt quotes it on lines of its own (as
// templates do), and not when only some of its words recur.
func TestShortQuoteOnItsOwnLines(t *testing.T) {
	enc := tokenizer.MustDefault()
	plan := "Cover the cache, then the router."
	out := NewMessage("assistant", plan, nil, "", Hash, enc)
	if len(out.Chunks) >= 4 {
		t.Fatalf("the plan has %d chunks: the test wants a short one", len(out.Chunks))
	}
	if !Contains(NewMessage("user", "The plan:\n"+plan+"\nWrite part 2.", nil, "", Hash, enc), out) {
		t.Error("a short answer quoted on its own line is not found")
	}
	if Contains(NewMessage("user", "The plan:\nCover the cache.\nWrite part 2.", nil, "", Hash, enc), out) {
		t.Error("part of a short answer counts as quoting it")
	}
}

// TestArguments: tool-call arguments compare up to serialization, and
// their string values are what a sub-agent's prompt is matched against.
func TestArguments(t *testing.T) {
	spaced, compact := `{"city": "Lisbon", "days": 3, "tags": ["a<b", "x"]}`, `{"tags":["a<b","x"],"days":3,"city":"Lisbon"}`
	if CanonicalJSON(spaced) != CanonicalJSON(compact) || CanonicalJSON(spaced) != `{"city":"Lisbon","days":3,"tags":["a<b","x"]}` {
		t.Errorf("canonical forms %s and %s", CanonicalJSON(spaced), CanonicalJSON(compact))
	}
	if CanonicalJSON(`{"n": 1.50}`) != `{"n":1.50}` || CanonicalJSON("not json") != "not json" || CanonicalJSON(`{} {}`) != `{} {}` {
		t.Error("numbers must keep their digits; what is not one JSON value is returned as it is")
	}
	enc := tokenizer.MustDefault()
	for _, mode := range []string{Full, Hash} {
		a := NewMessage("assistant", "", []ToolCall{{ID: "c1", Name: "f", Arguments: spaced}}, "", mode, enc)
		b := NewMessage("assistant", "", []ToolCall{{ID: "c1", Name: "f", Arguments: compact}}, "", mode, enc)
		c := NewMessage("assistant", "", []ToolCall{{ID: "c1", Name: "f", Arguments: `{"city": "Porto", "days": 3}`}}, "", mode, enc)
		if !SameArgs(a.ToolCalls[0], b.ToolCalls[0]) || SameArgs(a.ToolCalls[0], c.ToolCalls[0]) {
			t.Errorf("%s: re-serialized arguments must compare equal, other arguments not", mode)
		}
		if !PassesArgs(NewMessage("user", "Lisbon", nil, "", mode, enc), a) || PassesArgs(NewMessage("user", "Porto", nil, "", mode, enc), a) || Contains(NewMessage("user", "Lisbon", nil, "", mode, enc), a) {
			t.Errorf("%s: a prompt that is a string value of the arguments must count as passed by the call (not as quoting its output), another not", mode)
		}
	}
	if got := ArgStrings(`{"b": ["x", {"c": "y"}], "a": "z", "n": 2}`); strings.Join(got, ",") != "z,x,y" {
		t.Errorf("ArgStrings: %q", got)
	}
}
