package router

import (
	"encoding/json"
	"testing"
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
	}
	for _, tt := range tests {
		out, v, ok := stripField([]byte(tt.in), "workflow_metadata")
		if string(out) != tt.out || string(v) != tt.value || ok != tt.ok {
			t.Errorf("stripField(%s) = %s, %s, %v; want %s, %s, %v", tt.in, out, v, ok, tt.out, tt.value, tt.ok)
		}
		if ok && !json.Valid(out) {
			t.Errorf("stripField(%s) left invalid JSON %s", tt.in, out)
		}
	}
}

func FuzzStripField(f *testing.F) {
	f.Add([]byte(`{"a":1,"workflow_metadata":{"workflow_id":"w"},"b":[2,3]}`))
	f.Add([]byte(`{"workflow_metadata":null}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		out, v, ok := stripField(in, "workflow_metadata")
		if !ok {
			if string(out) != string(in) {
				t.Fatal("changed a body it did not strip")
			}
			return
		}
		if json.Valid(in) && !json.Valid(out) {
			t.Fatalf("valid %s became invalid %s", in, out)
		}
		if !json.Valid(v) {
			t.Fatalf("value %s is not JSON", v)
		}
	})
}
