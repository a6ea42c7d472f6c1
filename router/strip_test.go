package router

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/wfsched/wfsched/internal/jsonscan"
)

func TestStripField(t *testing.T) {
	tests := []struct {
		in, out, value string
		ok             bool
	}{
		{`{"a":1,"workflow_metadata":{"workflow_id":"w"},"b":2}`, `{"a":1,"b":2}`, `{"workflow_id":"w"}`, true},
		{`{"workflow_metadata": {"x": [1, {"y": "}"}]}, "model": "m"}`, `{"model": "m"}`, `{"x": [1, {"y": "}"}]}`, true},
		{`{"model": "m",  "workflow_metadata" : {"x": 1} }`, `{"model": "m" }`, `{"x": 1}`, true},
		{`{"workflow_metadata":{"a":1}}`, `{}`, `{"a":1}`, true},
		{`{"nested": {"workflow_metadata": 1}, "k": "workflow_metadata"}`, `{"nested": {"workflow_metadata": 1}, "k": "workflow_metadata"}`, ``, false},
		{`[1,2]`, `[1,2]`, ``, false},
		{`{"a": `, `{"a": `, ``, false},
		{`{"workflow\u005fmetadata":{"a":1},"b":2}`, `{"b":2}`, `{"a":1}`, true},
		{`{"a":"x\"workflow_metadata\":1","b":[1,{"c":null}],"workflow_metadata":true}`, `{"a":"x\"workflow_metadata\":1","b":[1,{"c":null}]}`, `true`, true},
		{`{"a":[1,2,"workflow_metadata":3]}`, `{"a":[1,2,"workflow_metadata":3]}`, ``, false},
		{`{}`, `{}`, ``, false},
		{`{"a" 1}`, `{"a" 1}`, ``, false},
	}
	for _, tt := range tests {
		out, v, ok, err := stripField([]byte(tt.in), "workflow_metadata")
		if err != nil {
			t.Errorf("stripField(%s): %v", tt.in, err)
		}
		if string(out) != tt.out || string(v) != tt.value || ok != tt.ok {
			t.Errorf("stripField(%s) = %s, %s, %v; want %s, %s, %v", tt.in, out, v, ok, tt.out, tt.value, tt.ok)
		}
		if ok && !json.Valid(out) {
			t.Errorf("stripField(%s) left invalid JSON %s", tt.in, out)
		}
	}
}

func TestStripFieldDuplicate(t *testing.T) {
	in := `{"workflow_metadata":{"workflow_id":"a"},"model":"m","workflow_metadata":{"workflow_id":"b"}}`
	if _, _, _, err := stripField([]byte(in), "workflow_metadata"); !errors.Is(err, errDuplicate) {
		t.Errorf("a body with two workflow_metadata members: %v, want a duplicate error", err)
	}
	for _, raw := range []string{`{"workflow_id":"a","workflow_id":"b"}`, `{"agent_id":"x","agent_id":"y"}`} {
		if _, err := parseMetadata([]byte(raw)); !errors.Is(err, errDuplicate) {
			t.Errorf("metadata %s: %v, want a duplicate error", raw, err)
		}
	}
}

// FuzzStripField checks the in-place scanner against encoding/json: on a
// valid body it finds the member exactly when a JSON parser would (escaped
// spellings included), and what it leaves is still valid JSON.
func FuzzStripField(f *testing.F) {
	f.Add([]byte(`{"a":1,"workflow_metadata":{"workflow_id":"w"},"b":[2,3]}`))
	f.Add([]byte(`{"workflow_metadata":null}`))
	f.Add([]byte(`{"workflow\u005fmetadata":{"x":"\"}"},"k":[{"workflow_metadata":1}]}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		keep := string(in)
		out, v, ok, err := stripField(in, "workflow_metadata")
		in = []byte(keep) // stripField may reuse in's memory
		var m map[string]json.RawMessage
		if json.Valid(in) && json.Unmarshal(in, &m) == nil {
			_, has := m["workflow_metadata"]
			if has != (ok || err != nil) {
				t.Fatalf("%s: encoding/json finds the member: %v; stripField: %v %v", in, has, ok, err)
			}
			if ok && (!json.Valid(out) || !json.Valid(v)) {
				t.Fatalf("valid %s became %s, value %s", in, out, v)
			}
		}
		if !ok && err == nil && string(out) != string(in) {
			t.Fatal("changed a body it did not strip")
		}
	})
}

// FuzzParseCompletion drives the router's whole request parsing: whatever
// the body and headers, it must not panic, must never forward a body that
// still carries workflow_metadata, and must keep only ids within bounds.
func FuzzParseCompletion(f *testing.F) {
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":"hi"}],"workflow_metadata":{"workflow_id":"w","agent_id":"a","parent_request_id":"p","workflow_priority":2}}`), "", "", "")
	f.Add([]byte(`{"workflow_metadata":{"workflow_id":"a"},"workflow_metadata":{"workflow_id":"b"}}`), "", "", "")
	f.Add([]byte(`{"model":"m","prompt":"x"}`), "wf-1", "agent", "")
	f.Add([]byte(`{"model":"m","messages":[]}`), "", "", "session-1")
	f.Add([]byte(`{"workflow_metadata":{"workflow_id":"w","workflow_id":"x"}}`), "", "", "")
	f.Fuzz(func(t *testing.T, body []byte, wf, agent, session string) {
		h := http.Header{}
		if wf != "" {
			h.Set("X-Workflow-Id", wf)
			h.Set("X-Agent-Id", agent)
		}
		if session != "" {
			h.Set("X-Session-Id", session)
		}
		in := bytes.Clone(body)
		out, req, err := parseCompletion(body, h)
		if err != nil {
			return
		}
		if _, _, found, dup := stripField(bytes.Clone(out), "workflow_metadata"); found || dup != nil {
			t.Fatalf("forwarded body still has workflow_metadata: %s", out)
		}
		if json.Valid(in) && !json.Valid(out) {
			t.Fatalf("valid %s became invalid %s", in, out)
		}
		if md := req.Meta; md != nil {
			if len(md.WorkflowID) > MaxIDLength || len(md.AgentID) > MaxIDLength || len(md.ParentRequestID) > MaxIDLength {
				t.Fatalf("kept an id over %d bytes: %+v", MaxIDLength, md)
			}
			if md.WorkflowID != "" && !idSpec.MatchString(md.WorkflowID) {
				t.Fatalf("kept workflow id %q", md.WorkflowID)
			}
		}
		if len(req.Session) > MaxIDLength {
			t.Fatalf("session key of %d bytes", len(req.Session))
		}
		req.Prompt() // must not panic either
	})
}

// FuzzParseMetadata checks the metadata's fast path against the decoder:
// whatever the object, parseMetadata answers as json.Unmarshal (with the
// duplicate check and validation) would.
func FuzzParseMetadata(f *testing.F) {
	f.Add([]byte(`{"workflow_id":"w","agent_id":"a","parent_request_id":"p"}`))
	f.Add([]byte(`{"workflow_id":"w","workflow_priority":2,"context_sharing_strategy":"none"}`))
	f.Add([]byte(`{"workflow_id":"w\u0031","agent_id":"a"}`))
	f.Add([]byte(`{"Workflow_ID":"w","agent_id":"\xff"}`))
	f.Add([]byte(`{"workflow_id":"w","workflow\u005fid":"x"}`))
	f.Add([]byte(`{"workflow_id":5}`))
	f.Add([]byte(`{"workflow_id":"w","extra":{"a":[1,2]}}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, gotErr := parseMetadata(raw)
		// The decoder's answer, with the same duplicate check.
		var want Metadata
		wantErr := json.Unmarshal(raw, &want)
		if members, _, ok := jsonscan.Object(raw, 0); ok && wantErr == nil {
			if _, dup := duplicateKey(raw, members); dup {
				wantErr = errDuplicate
			}
		}
		if wantErr == nil {
			wantErr = want.validate()
		}
		if len(raw) > maxMetadataBytes {
			return // refused by size first
		}
		if (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("%q: error %v, the decoder's %v", raw, gotErr, wantErr)
		}
		if gotErr == nil && *got != want {
			t.Fatalf("%q: %+v, the decoder's %+v", raw, *got, want)
		}
	})
}

// FuzzParseUsage checks the usage scan against regular expressions of
// what it reads: the first prompt (or input) and cached token counts after
// the last "usage" key.
func FuzzParseUsage(f *testing.F) {
	f.Add([]byte(`data: {"usage":{"prompt_tokens":10,"completion_tokens":8,"prompt_tokens_details":{"cached_tokens":4}}}`))
	f.Add([]byte(`{"usage": {"input_tokens" : 7, "input_tokens_details": {"cached_tokens":0}}}`))
	f.Add([]byte(`{"usage":{"prompt_tokens":null,"input_tokens":3}} {"usage":{"prompt_tokens":5}}`))
	f.Add([]byte(`"usage" "input_tokens":2 "prompt_tokens":1`))
	f.Add([]byte(`no usage "prompt_tokens":9`))
	prompt := regexp.MustCompile(`"(?:prompt|input)_tokens"[ \t\r\n]*:[ \t\r\n]*(\d+)`)
	cachedRe := regexp.MustCompile(`"cached_tokens"[ \t\r\n]*:[ \t\r\n]*(\d+)`)
	f.Fuzz(func(t *testing.T, tail []byte) {
		p, c, known := parseUsage(tail)
		var wp, wc int
		var wk bool
		if k := bytes.LastIndex(tail, []byte(`"usage"`)); k >= 0 {
			u := tail[k:]
			if m := prompt.FindSubmatch(u); m != nil {
				wp, _ = strconv.Atoi(string(m[1]))
			}
			if m := cachedRe.FindSubmatch(u); m != nil {
				if n, err := strconv.Atoi(string(m[1])); err == nil {
					wc, wk = n, true
				}
			}
		}
		if p != wp || c != wc || known != wk {
			t.Fatalf("%q: %d %d %v, want %d %d %v", tail, p, c, known, wp, wc, wk)
		}
	})
}

// idSpec is the specification of an id that validID implements.
var idSpec = regexp.MustCompile(fmt.Sprintf(`^[A-Za-z0-9._:@/+-]{1,%d}$`, MaxIDLength))

// TestValidID holds the id check to its specification over hand-picked and
// random strings.
func TestValidID(t *testing.T) {
	cases := []string{"", "a", "wf-1", "team/agent@host:8000", "a+b_c.d", " wf", "wf\n", "wf\x00", "é", "wf?x",
		"{", "`", "[", "~", strings.Repeat("a", MaxIDLength), strings.Repeat("a", MaxIDLength+1)}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		b := make([]byte, rng.IntN(8))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		cases = append(cases, string(b))
	}
	for _, s := range cases {
		if got, want := validID(s), idSpec.MatchString(s); got != want {
			t.Fatalf("validID(%q) = %v, the pattern says %v", s, got, want)
		}
	}
}
