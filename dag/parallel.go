package dag

import (
	"encoding/json"
	"runtime"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/wfsched/wfsched/internal/jsonscan"
	"golang.org/x/sync/errgroup"
)

// minParallelBytes is the size from which a native file's node and edge
// arrays are decoded in parallel: below it one pass is as fast.
const minParallelBytes = 4 << 20

// decodeNativeParallel decodes a native file into f exactly as
// encoding/json would, faster on large files: a structural scan finds the
// elements of the nodes and edges arrays, and encoding/json decodes chunks
// of them on every core while it decodes the rest of the object (for files
// of minBytes and more; tests give 0). It
// reports false, leaving f to be decoded in one pass, for anything out of
// the ordinary (a small file, a key that matches a field only by case, a
// member given twice, several graphs) and for any error, whose message the
// one pass gives with its position.
func decodeNativeParallel(data []byte, f *nativeFile, minBytes int) bool {
	if len(data) < minBytes {
		return false
	}
	members, end, ok := jsonscan.Object(data, 0)
	if !ok || jsonscan.Space(data, end) != len(data) {
		return false
	}
	var nodes, edges *jsonscan.Member
	seen := map[string]bool{}
	for k := range members {
		m := &members[k]
		key := m.Key(data)
		lower := strings.ToLower(key)
		if seen[lower] || lower == "graphs" {
			return false // encoding/json would keep the last, or many graphs
		}
		seen[lower] = true
		switch {
		case key == "nodes":
			nodes = m
		case key == "edges":
			edges = m
		case lower == "nodes" || lower == "edges":
			return false // matched by case folding: leave it to encoding/json
		}
	}
	if nodes == nil {
		return false
	}
	// The object without its arrays (each replaced by null), decoded as is.
	cut := []*jsonscan.Member{nodes}
	if edges != nil {
		cut = append(cut, edges)
		if edges.ValueStart < nodes.ValueStart {
			cut[0], cut[1] = edges, nodes
		}
	}
	top := make([]byte, 0, 256)
	at := 0
	for _, m := range cut {
		top = append(append(top, data[at:m.ValueStart]...), "null"...)
		at = m.ValueEnd
	}
	top = append(top, data[at:]...)

	// Both arrays are found before any decoding starts: once it has, f is
	// written to until g.Wait, and the one pass must not begin before.
	nodeSpans, ok := jsonscan.Elements(data, nodes.ValueStart)
	if !ok {
		return false
	}
	var edgeSpans [][2]int
	if edges != nil {
		if edgeSpans, ok = jsonscan.Elements(data, edges.ValueStart); !ok {
			return false
		}
	}
	var g errgroup.Group
	g.Go(func() error { return json.Unmarshal(top, f) })
	nodeParts := decodeChunks(&g, data, nodeSpans, plainNodes)
	var edgeParts [][]Edge
	if edges != nil {
		edgeParts = decodeChunks(&g, data, edgeSpans, plainEdges)
	}
	if g.Wait() != nil {
		return false
	}
	f.Graph.Nodes = concat(nodeParts)
	if edges != nil {
		f.Graph.Edges = concat(edgeParts)
	}
	return true
}

// decodeChunks starts decoding an array's elements (spans) in chunks, one
// per core, and returns the parts they fill once g is done. fast decodes a
// chunk's elements itself when they have a plain form, and reports false
// (encoding/json then decodes the chunk) when they do not.
func decodeChunks[T any](g *errgroup.Group, data []byte, spans [][2]int, fast func(data []byte, spans [][2]int) ([]T, bool)) [][]T {
	if len(spans) == 0 {
		// An empty array decodes to an empty, non-nil slice.
		return [][]T{{}}
	}
	n := min(runtime.GOMAXPROCS(0), len(spans))
	parts := make([][]T, n)
	for c := 0; c < n; c++ {
		mine := spans[c*len(spans)/n : (c+1)*len(spans)/n]
		g.Go(func() error {
			if out, ok := fast(data, mine); ok {
				parts[c] = out
				return nil
			}
			first, last := mine[0], mine[len(mine)-1]
			chunk := make([]byte, 0, last[1]-first[0]+2)
			chunk = append(append(append(chunk, '['), data[first[0]:last[1]]...), ']')
			return json.Unmarshal(chunk, &parts[c])
		})
	}
	return parts
}

func concat[T any](parts [][]T) []T {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make([]T, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// plainEdges decodes edges of the plain form {"from": "a", "to": "b",
// "type": "message"}: those keys, each at most once, each a string with no
// escape, control character or invalid UTF-8. For these encoding/json
// gives exactly the same Edge; anything else reports false.
func plainEdges(data []byte, spans [][2]int) ([]Edge, bool) {
	out := make([]Edge, len(spans))
	var sub []jsonscan.Member
	for k, sp := range spans {
		e := &out[k]
		var ok bool
		sub, ok = plainFields(sub, data, sp[0], sp[1], edgeKeys, func(key, vs, ve int) bool {
			s, ok := plainString(data[vs:ve])
			switch key {
			case 0:
				e.From = s
			case 1:
				e.To = s
			case 2:
				e.Type = EdgeType(s)
			}
			return ok
		})
		if !ok {
			return nil, false
		}
	}
	return out, true
}

var edgeKeys = []string{"from", "to", "type"}

// plainFields reads the object at data[start:end] whose members are all
// among keys, spelled so and each at most once, calling set with each
// member's key index and where its value lies; false for any other object,
// or when set refuses a value.
func plainFields(sub []jsonscan.Member, data []byte, start, end int, keys []string, set func(key, vs, ve int) bool) ([]jsonscan.Member, bool) {
	sub, e, ok := jsonscan.ObjectInto(sub[:0], data, start)
	if !ok || e != end {
		return sub, false
	}
	seen := 0 // bit i: keys[i] seen
	for _, m := range sub {
		raw, plain := m.Raw(data)
		k := -1
		for i, name := range keys {
			if string(raw) == name {
				k = i
				break
			}
		}
		if !plain || k < 0 || seen&(1<<k) != 0 {
			return sub, false // unknown, escaped, or given twice
		}
		seen |= 1 << k
		if !set(k, m.ValueStart, m.ValueEnd) {
			return sub, false
		}
	}
	return sub, true
}

// plainNodes decodes nodes whose members all have plain forms: the Node
// fields spelled as in the format (each at most once, none null), strings
// (decoded by encoding/json itself when they hold escapes), integers and
// numbers in strict JSON grammar, true and false. For these encoding/json
// gives exactly the same Node; anything else reports false.
func plainNodes(data []byte, spans [][2]int) ([]*Node, bool) {
	out := make([]*Node, len(spans))
	nodes := make([]Node, len(spans))
	var sub, inner []jsonscan.Member
	for k, sp := range spans {
		n := &nodes[k]
		var ok bool
		sub, ok = plainFields(sub, data, sp[0], sp[1], nodeKeys, func(key, vs, ve int) bool {
			v := data[vs:ve]
			var ok bool
			switch nodeKeys[key] {
			case "id":
				n.ID, ok = jsonString(v)
			case "kind":
				var s string
				s, ok = jsonString(v)
				n.Kind = Kind(s)
			case "agent":
				n.Agent, ok = jsonString(v)
			case "label":
				n.Label, ok = jsonString(v)
			case "system":
				n.System, ok = jsonString(v)
			case "output":
				n.Output, ok = jsonString(v)
			case "system_tokens":
				n.SystemTokens, ok = jsonInt(v)
			case "line":
				n.Line, ok = jsonInt(v)
			case "input_tokens":
				inner, n.InputTokens, ok = tokenCount(inner, data, vs, ve)
			case "output_tokens":
				inner, n.OutputTokens, ok = tokenCount(inner, data, vs, ve)
			case "duration_s":
				var f float64
				if f, ok = jsonFloat(v); ok {
					n.Duration = secondsOf(f)
				}
			case "inputs":
				inner, n.Inputs, ok = inputs(inner, data, vs)
			case "meta":
				inner, n.Meta, ok = meta(inner, data, vs, ve)
			}
			return ok
		})
		if !ok {
			return nil, false
		}
		out[k] = n
	}
	return out, true
}

// nodeKeys are Node's members as the format spells them.
var nodeKeys = []string{"id", "kind", "agent", "label", "system", "output", "system_tokens", "line",
	"input_tokens", "output_tokens", "duration_s", "inputs", "meta"}

var tokenKeys = []string{"n", "exact"}

func tokenCount(sub []jsonscan.Member, data []byte, vs, ve int) ([]jsonscan.Member, TokenCount, bool) {
	var tc TokenCount
	sub, ok := plainFields(sub, data, vs, ve, tokenKeys, func(key, s, e int) bool {
		var ok bool
		if key == 0 {
			tc.N, ok = jsonInt(data[s:e])
		} else {
			tc.Exact, ok = jsonBool(data[s:e])
		}
		return ok
	})
	return sub, tc, ok
}

var inputKeys = []string{"from", "text", "tokens"}

func inputs(sub []jsonscan.Member, data []byte, vs int) ([]jsonscan.Member, []Input, bool) {
	spans, ok := jsonscan.Elements(data, vs)
	if !ok {
		return sub, nil, false
	}
	in := make([]Input, len(spans))
	for k, sp := range spans {
		sub, ok = plainFields(sub, data, sp[0], sp[1], inputKeys, func(key, s, e int) bool {
			var ok bool
			switch key {
			case 0:
				in[k].From, ok = jsonString(data[s:e])
			case 1:
				in[k].Text, ok = jsonString(data[s:e])
			case 2:
				in[k].Tokens, ok = jsonInt(data[s:e])
			}
			return ok
		})
		if !ok {
			return sub, nil, false
		}
	}
	return sub, in, true
}

func meta(sub []jsonscan.Member, data []byte, vs, ve int) ([]jsonscan.Member, map[string]string, bool) {
	sub, end, ok := jsonscan.ObjectInto(sub[:0], data, vs)
	if !ok || end != ve {
		return sub, nil, false
	}
	out := make(map[string]string, len(sub))
	for _, f := range sub {
		s, ok := jsonString(data[f.ValueStart:f.ValueEnd])
		if !ok {
			return sub, nil, false
		}
		out[f.Key(data)] = s // a key given twice: the last, as encoding/json
	}
	return sub, out, true
}

// jsonString decodes a JSON string: a plain one directly, one with escapes
// by encoding/json itself.
func jsonString(b []byte) (string, bool) {
	if s, ok := plainString(b); ok {
		return s, true
	}
	if len(b) < 2 || b[0] != '"' {
		return "", false
	}
	var s string
	return s, json.Unmarshal(b, &s) == nil
}

// jsonInt reads an integer in strict JSON grammar, of at most 18 digits
// (so that it fits an int as encoding/json would put it).
func jsonInt(b []byte) (int, bool) {
	d := b
	if len(d) > 0 && d[0] == '-' {
		d = d[1:]
	}
	if len(d) == 0 || len(d) > 18 || d[0] == '0' && len(d) > 1 {
		return 0, false
	}
	for _, c := range d {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	v, err := strconv.Atoi(string(b))
	return v, err == nil
}

// jsonFloat reads a number in strict JSON grammar (-? int frac? exp?).
func jsonFloat(b []byte) (float64, bool) {
	i := 0
	digits := func() int {
		k := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i - k
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	if i < len(b) && b[i] == '0' {
		i++
	} else if digits() == 0 {
		return 0, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return 0, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return 0, false
		}
	}
	if i != len(b) {
		return 0, false
	}
	v, err := strconv.ParseFloat(string(b), 64)
	return v, err == nil
}

func jsonBool(b []byte) (bool, bool) {
	switch string(b) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}

// plainString returns the text of a JSON string with no escape, control
// character or invalid UTF-8 (which encoding/json would decode as is).
func plainString(b []byte) (string, bool) {
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return "", false
	}
	b = b[1 : len(b)-1]
	for _, c := range b {
		if c < 0x20 || c == '\\' || c == '"' {
			return "", false
		}
	}
	if !utf8.Valid(b) {
		return "", false
	}
	return string(b), true
}
