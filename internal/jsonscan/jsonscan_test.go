package jsonscan

import "testing"

func TestValueAndObject(t *testing.T) {
	for _, tc := range []struct {
		in  string
		end int // -1: not a value
	}{
		{`"a\"b" tail`, 6},
		{`{"k": [1, {"x": "}"}], "e": {}} x`, 31},
		{`[1, 2, 3]`, 9},
		{`-12.5e3,`, 7},
		{`true}`, 4},
		{`"open`, -1},
		{`[1, 2`, -1},
		{`{"k" 1}`, -1},
		{`{"k": 1,}`, -1},
		{`,`, -1},
	} {
		if got := Value([]byte(tc.in), 0, 0); got != tc.end {
			t.Errorf("Value(%q) = %d, want %d", tc.in, got, tc.end)
		}
	}
	b := []byte(` {"a": 1, "b\u0063": [2, 3], "d": {"e": "f"}} `)
	members, end, ok := Object(b, 0)
	if !ok || end != len(b)-1 || len(members) != 3 {
		t.Fatalf("Object: %v %d %v", members, end, ok)
	}
	if k := members[1].Key(b); k != "bc" {
		t.Errorf("escaped key decoded as %q", k)
	}
	if raw, plain := members[1].Raw(b); plain || string(raw) != `b\u0063` {
		t.Errorf("Raw of an escaped key: %q %v", raw, plain)
	}
	if v := string(b[members[2].ValueStart:members[2].ValueEnd]); v != `{"e": "f"}` {
		t.Errorf("value %q", v)
	}
	spans, ok := Elements([]byte(`[ {"x":1} , "s", [ ] ]`), 0)
	if !ok || len(spans) != 3 || spans[1] != [2]int{12, 15} {
		t.Errorf("Elements: %v %v", spans, ok)
	}
	// Nesting deeper than encoding/json allows is refused, not followed.
	deep := make([]byte, 0, 2*maxDepth+4)
	for i := 0; i < maxDepth+2; i++ {
		deep = append(deep, '[')
	}
	if Value(deep, 0, 0) != -1 {
		t.Error("unbounded nesting accepted")
	}
}
