package sim

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"regexp"
	"testing"
)

// FuzzGuidedJSON: any schema gives either a refusal or a JSON document,
// never a panic, a hang or an oversized answer.
func FuzzGuidedJSON(f *testing.F) {
	for _, s := range schemas {
		f.Add(s, uint64(1))
	}
	for _, s := range []string{`{}`, `{"type": ["null"]}`, `{"$ref": "#"}`, `{"type": "array", "minItems": 1000000}`,
		`{"type": "string", "minLength": 99999999}`, `{"enum": []}`, `{"type": "integer", "minimum": 5, "maximum": 1}`,
		`{"type": "array", "items": {"enum": [1, 2]}, "minItems": 3, "uniqueItems": true}`, `{"properties": {"a": true}}`,
		`{"type": "string", "pattern": "(a{1000}){1000}"}`, `{"$ref": "#/$defs/x", "$defs": {"x": {"type": "array", "items": {"$ref": "#/$defs/x"}, "minItems": 1}}}`} {
		f.Add(s, uint64(2))
	}
	f.Fuzz(func(t *testing.T, schema string, seed uint64) {
		var sch map[string]any
		d := json.NewDecoder(bytes.NewReader([]byte(schema)))
		d.UseNumber()
		if d.Decode(&sch) != nil {
			return
		}
		doc, err := generateJSON(sch, rand.New(rand.NewPCG(seed, 0)))
		if err != nil {
			return
		}
		if !json.Valid([]byte(doc)) || len(doc) > 2*maxGuideBytes {
			t.Fatalf("schema %s gave %d bytes, valid JSON %v: %.200s", schema, len(doc), json.Valid([]byte(doc)), doc)
		}
	})
}

// FuzzGuidedRegex: a pattern gives a refusal or a string it fully matches.
func FuzzGuidedRegex(f *testing.F) {
	for _, p := range []string{`[a-z]+@[a-z]+\.(com|org)`, `\d{3}-\d{4}`, `(a|b)*c?`, `x{2,5}[^a-c]`, `(?i)hello`, `^\w+$`, `[\x{1F600}-\x{1F64F}]`, `(a{1000}){1000}`} {
		f.Add(p, uint64(1))
	}
	f.Fuzz(func(t *testing.T, pattern string, seed uint64) {
		s, err := generateRegex(pattern, rand.New(rand.NewPCG(seed, 0)))
		if err != nil {
			return
		}
		if !regexp.MustCompile(`^(?:` + pattern + `)$`).MatchString(s) {
			t.Fatalf("pattern %q gave %q, which it does not match", pattern, s)
		}
	})
}
