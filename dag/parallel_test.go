package dag

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/wfsched/wfsched/tokenizer"
)

// decodeBoth decodes data as a native file twice: with encoding/json alone
// and through decodeNativeParallel (at any size). ok reports whether the
// parallel path took the file.
func decodeBoth(data []byte) (std, par nativeFile, stdErr error, ok bool) {
	std.Graph, par.Graph = &Graph{}, &Graph{}
	stdErr = json.Unmarshal(data, &std)
	ok = decodeNativeParallel(data, &par, 0)
	if !ok {
		par = nativeFile{Graph: &Graph{}} // as Parse does before its one pass
	}
	return std, par, stdErr, ok
}

// checkSame fails when the parallel path accepted data and decoded it
// otherwise than encoding/json, or accepted what encoding/json refuses.
func checkSame(t *testing.T, name string, data []byte) (took bool) {
	t.Helper()
	std, par, stdErr, ok := decodeBoth(data)
	switch {
	case !ok:
	case stdErr != nil:
		t.Errorf("%s: the parallel path accepted what encoding/json refuses (%v)", name, stdErr)
	case !reflect.DeepEqual(std, par):
		t.Errorf("%s: the parallel path decoded otherwise than encoding/json", name)
	}
	return ok
}

func TestParallelDecodeMatchesEncodingJSON(t *testing.T) {
	enc := tokenizer.MustDefault()
	took := 0
	files, _ := filepath.Glob("../traces/*.json")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if checkSame(t, f, data) {
			took++
		}
	}
	for _, shape := range Shapes {
		g, err := Generate(GenConfig{Shape: shape, Nodes: 300, Seed: 3}, enc)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := WriteJSON(&b, g); err != nil {
			t.Fatal(err)
		}
		if checkSame(t, shape, b.Bytes()) {
			took++
		}
	}
	if took < len(files)+len(Shapes)-1 {
		t.Errorf("the parallel path took only %d of %d files: it is not tested", took, len(files)+len(Shapes))
	}
	// Forms that must fall back (or, if taken, decode the same).
	for name, in := range map[string]string{
		"escaped key":          `{"format":"wfsched-dag","version":1,"id":"x","node\u0073":[{"id":"a","kind":"llm"}],"edges":[]}`,
		"key by case":          `{"format":"wfsched-dag","version":1,"Nodes":[{"id":"a","kind":"llm"}]}`,
		"nodes twice":          `{"format":"wfsched-dag","version":1,"nodes":[{"id":"a"}],"nodes":[{"id":"b"}]}`,
		"null node":            `{"format":"wfsched-dag","version":1,"nodes":[null,{"id":"b"}]}`,
		"node member twice":    `{"format":"wfsched-dag","version":1,"nodes":[{"id":"a","meta":{"x":"1"},"meta":{"y":"2"}}]}`,
		"escapes in strings":   `{"format":"wfsched-dag","version":1,"nodes":[{"id":"a\n\u00e9\"","output":"line\tone","inputs":[{"text":"\ud83d\ude00"}]}]}`,
		"invalid UTF-8":        "{\"format\":\"wfsched-dag\",\"version\":1,\"nodes\":[{\"id\":\"a\xffb\"}],\"edges\":[{\"from\":\"a\xff\",\"to\":\"b\",\"type\":\"message\"}]}",
		"raw control char":     "{\"format\":\"wfsched-dag\",\"version\":1,\"nodes\":[{\"id\":\"a\tb\"}]}",
		"float where int":      `{"format":"wfsched-dag","version":1,"nodes":[{"id":"a","system_tokens":1.5}]}`,
		"exponent int":         `{"format":"wfsched-dag","version":1,"nodes":[{"id":"a","input_tokens":{"n":1e2}}]}`,
		"leading zero":         `{"format":"wfsched-dag","version":1,"nodes":[{"id":"a","line":01}]}`,
		"duration forms":       `{"format":"wfsched-dag","version":1,"nodes":[{"id":"a","duration_s":1.5e-3},{"id":"b","duration_s":-0.0},{"id":"c","duration_s":1e300}]}`,
		"bad literal":          `{"format":"wfsched-dag","version":1,"nodes":[{"id":"a","input_tokens":{"n":1,"exact":tru}}]}`,
		"unknown member":       `{"format":"wfsched-dag","version":1,"nodes":[{"id":"a","extra":[1,{"x":null}]}]}`,
		"nodes not an array":   `{"format":"wfsched-dag","version":1,"nodes":null,"edges":[]}`,
		"edges not an array":   `{"format":"wfsched-dag","version":1,"nodes":[{"id":"a"}],"edges":{}}`,
		"empty arrays":         `{"format":"wfsched-dag","version":1,"nodes":[],"edges":[]}`,
		"trailing garbage":     `{"format":"wfsched-dag","version":1,"nodes":[{"id":"a"}]} x`,
		"edge with extra":      `{"format":"wfsched-dag","version":1,"nodes":[{"id":"a"}],"edges":[{"from":"a","to":"a","type":"message","w":1}]}`,
		"meta with duplicates": `{"format":"wfsched-dag","version":1,"nodes":[{"id":"a","meta":{"k":"1","k":"2"}}]}`,
	} {
		checkSame(t, name, []byte(in))
	}
}
