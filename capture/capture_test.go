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
