package sim

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Guided decoding: the engine answers a structured-output request with a
// document generated from its constraint (a JSON schema, a regular
// expression, a list of choices) by a seeded walk, then gives that text
// token by token like any output. The text's token count is the output
// length; max_tokens cuts it as it would cut a real model's.

// guideError is a constraint the engine cannot satisfy: answered as a 400
// naming the field and the place in it.
type guideError struct{ path, msg string }

func (e *guideError) Error() string {
	if e.path == "" {
		return e.msg
	}
	return e.path + ": " + e.msg
}

// maxGuideDepth bounds nesting (recursive $refs among them): past it only
// required properties and minimum item counts are generated, and past
// twice it the schema is refused.
const maxGuideDepth = 6

// maxGuideBytes bounds a generated document: a schema or pattern asking
// for more (minItems: 1000000) is refused rather than built.
const maxGuideBytes = 1 << 20

// schemaGen generates JSON text satisfying a JSON schema.
type schemaGen struct {
	rng  *rand.Rand
	root map[string]any
	b    []byte
}

// generateJSON returns a JSON document satisfying schema (decoded with
// UseNumber), deterministic from rng.
func generateJSON(schema map[string]any, rng *rand.Rand) (string, error) {
	g := &schemaGen{rng: rng, root: schema}
	if err := g.value(schema, "", 0); err != nil {
		return "", err
	}
	return string(g.b), nil
}

// annotations are keywords that constrain nothing the generator emits.
var annotations = map[string]bool{
	"$schema": true, "$id": true, "$comment": true, "title": true, "description": true,
	"default": true, "examples": true, "deprecated": true, "readOnly": true, "writeOnly": true,
	"$defs": true, "definitions": true, "strict": true, "additionalProperties": true,
	"unevaluatedProperties": true, "nullable": true,
}

// understood are the constraint keywords the generator honours.
var understood = map[string]bool{
	"type": true, "properties": true, "required": true, "items": true, "prefixItems": true,
	"minItems": true, "maxItems": true, "uniqueItems": true, "enum": true, "const": true,
	"anyOf": true, "oneOf": true, "allOf": true, "$ref": true, "minLength": true, "maxLength": true,
	"pattern": true, "format": true, "minimum": true, "maximum": true, "exclusiveMinimum": true,
	"exclusiveMaximum": true, "multipleOf": true, "minProperties": true, "maxProperties": true,
}

func (g *schemaGen) value(s map[string]any, path string, depth int) error {
	if len(g.b) > maxGuideBytes {
		return &guideError{path, fmt.Sprintf("the document would exceed %d bytes", maxGuideBytes)}
	}
	if depth > 2*maxGuideDepth {
		return &guideError{path, fmt.Sprintf("nested deeper than %d levels (a recursive $ref without a base case?)", 2*maxGuideDepth)}
	}
	for k := range s {
		if !understood[k] && !annotations[k] {
			return &guideError{path, fmt.Sprintf("keyword %q is not supported by the embedded engine's guided decoding", k)}
		}
	}
	if ref, ok := s["$ref"].(string); ok {
		t, err := g.resolve(ref, path)
		if err != nil {
			return err
		}
		return g.value(t, path+"/$ref", depth+1)
	}
	if c, ok := s["const"]; ok {
		return g.literal(c, path)
	}
	if e, ok := s["enum"].([]any); ok {
		if len(e) == 0 {
			return &guideError{path + "/enum", "is empty: nothing can satisfy it"}
		}
		return g.literal(e[g.rng.IntN(len(e))], path)
	}
	for _, k := range []string{"anyOf", "oneOf"} {
		if alts, ok := s[k].([]any); ok {
			if len(alts) == 0 {
				return &guideError{path + "/" + k, "is empty"}
			}
			i := g.rng.IntN(len(alts))
			sub, ok := alts[i].(map[string]any)
			if !ok {
				return &guideError{fmt.Sprintf("%s/%s/%d", path, k, i), "must be a schema object"}
			}
			return g.value(merge(s, sub, k), fmt.Sprintf("%s/%s/%d", path, k, i), depth+1)
		}
	}
	if all, ok := s["allOf"].([]any); ok {
		m := merge(s, nil, "allOf")
		for i, a := range all {
			sub, ok := a.(map[string]any)
			if !ok {
				return &guideError{fmt.Sprintf("%s/allOf/%d", path, i), "must be a schema object"}
			}
			if r, ok := sub["$ref"].(string); ok {
				var err error
				if sub, err = g.resolve(r, path); err != nil {
					return err
				}
			}
			m = mergeAll(m, sub)
		}
		return g.value(m, path, depth+1)
	}
	typ, err := g.pickType(s, path)
	if err != nil {
		return err
	}
	switch typ {
	case "object":
		return g.object(s, path, depth)
	case "array":
		return g.array(s, path, depth)
	case "string":
		return g.str(s, path)
	case "integer", "number":
		return g.number(s, path, typ == "integer")
	case "boolean":
		g.b = strconv.AppendBool(g.b, g.rng.IntN(2) == 0)
	case "null":
		g.b = append(g.b, "null"...)
	default:
		return &guideError{path + "/type", fmt.Sprintf("unknown type %q", typ)}
	}
	return nil
}

// merge returns s without keyword k, with sub's keywords over it.
func merge(s, sub map[string]any, k string) map[string]any {
	m := make(map[string]any, len(s)+len(sub))
	for key, v := range s {
		if key != k {
			m[key] = v
		}
	}
	for key, v := range sub {
		m[key] = v
	}
	return m
}

// mergeAll folds an allOf branch into m: properties and required lists
// join, other keywords of the branch win.
func mergeAll(m, sub map[string]any) map[string]any {
	for k, v := range sub {
		switch k {
		case "properties":
			props, _ := m[k].(map[string]any)
			joined := map[string]any{}
			for pk, pv := range props {
				joined[pk] = pv
			}
			if vp, ok := v.(map[string]any); ok {
				for pk, pv := range vp {
					joined[pk] = pv
				}
			}
			m[k] = joined
		case "required":
			req, _ := m[k].([]any)
			vr, _ := v.([]any)
			m[k] = append(slices.Clip(req), vr...)
		default:
			m[k] = v
		}
	}
	return m
}

func (g *schemaGen) resolve(ref, path string) (map[string]any, error) {
	var node any = g.root
	if ref != "#" {
		rest, ok := strings.CutPrefix(ref, "#/")
		if !ok {
			return nil, &guideError{path + "/$ref", fmt.Sprintf("%q: only references within the schema (#/...) are supported", ref)}
		}
		for _, part := range strings.Split(rest, "/") {
			part = strings.ReplaceAll(strings.ReplaceAll(part, "~1", "/"), "~0", "~")
			m, ok := node.(map[string]any)
			if !ok {
				node = nil
				break
			}
			node = m[part]
		}
	}
	t, ok := node.(map[string]any)
	if !ok {
		return nil, &guideError{path + "/$ref", fmt.Sprintf("%q does not name a schema in this document", ref)}
	}
	return t, nil
}

func (g *schemaGen) literal(v any, path string) error {
	b, err := json.Marshal(v)
	if err != nil {
		return &guideError{path, err.Error()}
	}
	g.b = append(g.b, b...)
	return nil
}

func (g *schemaGen) pickType(s map[string]any, path string) (string, error) {
	switch t := s["type"].(type) {
	case string:
		return t, nil
	case []any:
		if len(t) == 0 {
			return "", &guideError{path + "/type", "is an empty list"}
		}
		// Prefer a non-null type: a nullable field is more useful filled.
		var opts []string
		for _, x := range t {
			if name, ok := x.(string); ok && name != "null" {
				opts = append(opts, name)
			}
		}
		if len(opts) == 0 {
			return "null", nil
		}
		return opts[g.rng.IntN(len(opts))], nil
	case nil:
		switch {
		case s["properties"] != nil:
			return "object", nil
		case s["items"] != nil || s["prefixItems"] != nil:
			return "array", nil
		case s["minLength"] != nil || s["maxLength"] != nil || s["pattern"] != nil || s["format"] != nil:
			return "string", nil
		case s["minimum"] != nil || s["maximum"] != nil:
			return "number", nil
		}
		return "object", nil // {} accepts anything: answer an object
	}
	return "", &guideError{path + "/type", "must be a string or a list of strings"}
}

func (g *schemaGen) object(s map[string]any, path string, depth int) error {
	props, _ := s["properties"].(map[string]any)
	required := map[string]bool{}
	if req, ok := s["required"].([]any); ok {
		for _, r := range req {
			if name, ok := r.(string); ok {
				required[name] = true
			}
		}
	}
	for name := range required {
		if _, ok := props[name]; !ok {
			if props == nil {
				props = map[string]any{}
			}
			props[name] = map[string]any{"type": "string"}
		}
	}
	// Properties in the schema's order would need an ordered decode; sorted
	// names give a deterministic document.
	names := make([]string, 0, len(props))
	for name := range props {
		if depth < maxGuideDepth || required[name] {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	if mx, ok := intKeyword(s, "maxProperties"); ok && len(names) > mx {
		var keep []string
		for _, n := range names {
			if required[n] && len(keep) < mx {
				keep = append(keep, n)
			}
		}
		for _, n := range names {
			if !required[n] && len(keep) < mx {
				keep = append(keep, n)
			}
		}
		names = keep
		slices.Sort(names)
	}
	if mn, ok := intKeyword(s, "minProperties"); ok && len(names) < mn {
		return &guideError{path + "/minProperties", fmt.Sprintf("%d properties are required but the schema names only %d", mn, len(names))}
	}
	g.b = append(g.b, '{')
	for i, name := range names {
		if i > 0 {
			g.b = append(g.b, ", "...)
		}
		g.b = strconv.AppendQuote(g.b, name)
		g.b = append(g.b, ": "...)
		sub, ok := props[name].(map[string]any)
		if !ok {
			if b, isBool := props[name].(bool); isBool && b {
				sub = map[string]any{}
			} else {
				return &guideError{path + "/properties/" + name, "must be a schema object"}
			}
		}
		if err := g.value(sub, path+"/properties/"+name, depth+1); err != nil {
			return err
		}
	}
	g.b = append(g.b, '}')
	return nil
}

func (g *schemaGen) array(s map[string]any, path string, depth int) error {
	lo, _ := intKeyword(s, "minItems")
	hi, ok := intKeyword(s, "maxItems")
	if !ok {
		hi = lo + 3
	}
	if hi < lo {
		return &guideError{path + "/maxItems", fmt.Sprintf("%d is below minItems %d", hi, lo)}
	}
	n := lo
	if depth < maxGuideDepth {
		n = max(lo, min(hi, 1+g.rng.IntN(3)))
	}
	prefix, _ := s["prefixItems"].([]any)
	n = max(n, min(len(prefix), hi))
	items, _ := s["items"].(map[string]any)
	if items == nil {
		items = map[string]any{"type": "string"}
	}
	unique, _ := s["uniqueItems"].(bool)
	seen := map[string]bool{}
	g.b = append(g.b, '[')
	for i := 0; i < n; i++ {
		if i > 0 {
			g.b = append(g.b, ", "...)
		}
		sub := items
		if i < len(prefix) {
			if p, ok := prefix[i].(map[string]any); ok {
				sub = p
			}
		}
		start := len(g.b)
		for try := 0; ; try++ {
			g.b = g.b[:start]
			if err := g.value(sub, fmt.Sprintf("%s/items/%d", path, i), depth+1); err != nil {
				return err
			}
			if !unique || !seen[string(g.b[start:])] {
				break
			}
			if try == 20 {
				return &guideError{path + "/uniqueItems", fmt.Sprintf("could not draw %d distinct items", n)}
			}
		}
		seen[string(g.b[start:])] = true
	}
	g.b = append(g.b, ']')
	return nil
}

// words are what free strings are made of: plain lowercase English.
var words = []string{"the", "plan", "step", "agent", "result", "data", "task", "value", "report", "search",
	"answer", "code", "test", "review", "summary", "list", "query", "note", "file", "check"}

func (g *schemaGen) str(s map[string]any, path string) error {
	var text string
	if p, ok := s["pattern"].(string); ok {
		t, err := generateRegex(p, g.rng)
		if err != nil {
			return &guideError{path + "/pattern", err.Error()}
		}
		text = t
	} else if f, ok := s["format"].(string); ok {
		t, ok := formatted(f, g.rng)
		if !ok {
			return &guideError{path + "/format", fmt.Sprintf("format %q is not supported by the embedded engine's guided decoding", f)}
		}
		text = t
	} else {
		n := 1 + g.rng.IntN(6)
		parts := make([]string, n)
		for i := range parts {
			parts[i] = words[g.rng.IntN(len(words))]
		}
		text = strings.Join(parts, " ")
	}
	lo, _ := intKeyword(s, "minLength")
	hi, hasHi := intKeyword(s, "maxLength")
	if hasHi && hi < lo {
		return &guideError{path + "/maxLength", fmt.Sprintf("%d is below minLength %d", hi, lo)}
	}
	n := utf8.RuneCountInString(text)
	_, fixed := s["pattern"]
	_, fixedFmt := s["format"]
	if (fixed || fixedFmt) && (n < lo || hasHi && n > hi) {
		return &guideError{path, fmt.Sprintf("length bounds %d..%d together with pattern or format are not supported", lo, hi)}
	}
	if lo > maxGuideBytes {
		return &guideError{path + "/minLength", fmt.Sprintf("%d: the document would exceed %d bytes", lo, maxGuideBytes)}
	}
	if n < lo {
		var b strings.Builder
		b.WriteString(text)
		for ; n < lo; n += 1 + len(words[0]) {
			b.WriteString(" ")
			b.WriteString(words[0])
		}
		text = b.String()
	}
	if hasHi && n > hi {
		text = string([]rune(text)[:hi])
		if strings.HasSuffix(text, " ") && hi > 0 {
			text = text[:len(text)-1] + "x"
		}
	}
	g.b = strconv.AppendQuote(g.b, text)
	return nil
}

// formatted returns a string of a known format.
func formatted(format string, rng *rand.Rand) (string, bool) {
	switch format {
	case "date-time":
		return fmt.Sprintf("2026-%02d-%02dT%02d:%02d:00Z", 1+rng.IntN(12), 1+rng.IntN(28), rng.IntN(24), rng.IntN(60)), true
	case "date":
		return fmt.Sprintf("2026-%02d-%02d", 1+rng.IntN(12), 1+rng.IntN(28)), true
	case "time":
		return fmt.Sprintf("%02d:%02d:00Z", rng.IntN(24), rng.IntN(60)), true
	case "email":
		return words[rng.IntN(len(words))] + "@example.com", true
	case "uri", "url":
		return "https://example.com/" + words[rng.IntN(len(words))], true
	case "hostname":
		return words[rng.IntN(len(words))] + ".example.com", true
	case "ipv4":
		return fmt.Sprintf("192.0.2.%d", 1+rng.IntN(254)), true
	case "uuid":
		return fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", rng.Uint32(), rng.IntN(1<<16), rng.IntN(1<<12), rng.IntN(1<<12), rng.Uint64()&(1<<48-1)), true
	}
	return "", false
}

func (g *schemaGen) number(s map[string]any, path string, integer bool) error {
	lo, hasLo := floatKeyword(s, "minimum")
	hi, hasHi := floatKeyword(s, "maximum")
	if x, ok := floatKeyword(s, "exclusiveMinimum"); ok {
		lo, hasLo = x+1e-9, true
		if integer {
			lo = math.Floor(x) + 1
		}
	}
	if x, ok := floatKeyword(s, "exclusiveMaximum"); ok {
		hi, hasHi = x-1e-9, true
		if integer {
			hi = math.Ceil(x) - 1
		}
	}
	switch {
	case !hasLo && !hasHi:
		lo, hi = 0, 100
	case !hasLo:
		lo = hi - 100
	case !hasHi:
		hi = lo + 100
	}
	if integer {
		lo, hi = math.Ceil(lo), math.Floor(hi)
	}
	if hi < lo {
		return &guideError{path, fmt.Sprintf("no number lies between minimum %v and maximum %v", lo, hi)}
	}
	step, hasStep := floatKeyword(s, "multipleOf")
	if hasStep && step <= 0 {
		return &guideError{path + "/multipleOf", "must be positive"}
	}
	x := lo + g.rng.Float64()*(hi-lo)
	switch {
	case hasStep:
		k := math.Ceil(lo / step)
		if k*step > hi {
			return &guideError{path + "/multipleOf", fmt.Sprintf("no multiple of %v lies between %v and %v", step, lo, hi)}
		}
		span := math.Floor(hi/step) - k
		x = (k + math.Floor(g.rng.Float64()*(span+1))) * step
		if integer || step == math.Trunc(step) {
			g.b = strconv.AppendInt(g.b, int64(x), 10)
			return nil
		}
	case integer:
		x = math.Floor(x)
	default:
		x = math.Round(x*100) / 100
		x = max(lo, min(hi, x))
	}
	if integer {
		g.b = strconv.AppendInt(g.b, int64(x), 10)
	} else {
		g.b = strconv.AppendFloat(g.b, x, 'f', -1, 64)
	}
	return nil
}

func floatKeyword(s map[string]any, k string) (float64, bool) {
	switch v := s[k].(type) {
	case json.Number:
		f, err := v.Float64()
		return f, err == nil
	case float64:
		return v, true
	}
	return 0, false
}

func intKeyword(s map[string]any, k string) (int, bool) {
	f, ok := floatKeyword(s, k)
	if !ok || f < 0 {
		return 0, false
	}
	return int(min(f, 1<<20)), true
}

// maxRepeat bounds unbounded repetition (*, +, {n,}) in generated text.
const maxRepeat = 3

// generateRegex returns a string that fully matches pattern (Go's RE2
// syntax, which covers the patterns structured output uses: no
// backreferences or lookaround), drawn from rng.
func generateRegex(pattern string, rng *rand.Rand) (string, error) {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return "", fmt.Errorf("%v (the embedded engine takes RE2 syntax: no backreferences or lookaround)", err)
	}
	var b strings.Builder
	steps := 0
	if err := regexWalk(&b, re.Simplify(), rng, 0, &steps); err != nil {
		return "", err
	}
	// The walk keeps every construct's own language, so the text matches;
	// check it, as a defect here would hand out a wrong document.
	full, err := regexp.Compile(`^(?:` + pattern + `)$`)
	if err != nil || !full.MatchString(b.String()) {
		return "", fmt.Errorf("could not generate a string matching %q", pattern)
	}
	return b.String(), nil
}

// maxRegexSteps bounds the walk: nested repetitions of empty matches
// would otherwise multiply work without growing the text.
const maxRegexSteps = 1 << 20

func regexWalk(b *strings.Builder, re *syntax.Regexp, rng *rand.Rand, depth int, steps *int) error {
	if *steps++; *steps > maxRegexSteps {
		return fmt.Errorf("the pattern needs more than %d generation steps", maxRegexSteps)
	}
	if depth > 100 {
		return fmt.Errorf("pattern nested too deeply")
	}
	if b.Len() > maxGuideBytes {
		return fmt.Errorf("the text would exceed %d bytes", maxGuideBytes)
	}
	switch re.Op {
	case syntax.OpLiteral:
		for _, r := range re.Rune {
			b.WriteRune(r)
		}
	case syntax.OpCharClass:
		// Prefer printable ASCII within the class.
		var picks []rune
		for i := 0; i+1 < len(re.Rune); i += 2 {
			for r := max(re.Rune[i], ' '); r <= min(re.Rune[i+1], '~'); r++ {
				picks = append(picks, r)
			}
		}
		if len(picks) == 0 {
			if len(re.Rune) == 0 {
				return fmt.Errorf("an empty character class matches nothing")
			}
			picks = append(picks, re.Rune[0])
		}
		b.WriteRune(picks[rng.IntN(len(picks))])
	case syntax.OpAnyCharNotNL, syntax.OpAnyChar:
		b.WriteByte("abcdefghij"[rng.IntN(10)])
	case syntax.OpEmptyMatch, syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText,
		syntax.OpWordBoundary, syntax.OpNoWordBoundary:
	case syntax.OpCapture:
		return regexWalk(b, re.Sub[0], rng, depth+1, steps)
	case syntax.OpConcat:
		for _, s := range re.Sub {
			if err := regexWalk(b, s, rng, depth+1, steps); err != nil {
				return err
			}
		}
	case syntax.OpAlternate:
		return regexWalk(b, re.Sub[rng.IntN(len(re.Sub))], rng, depth+1, steps)
	case syntax.OpStar, syntax.OpPlus, syntax.OpQuest, syntax.OpRepeat:
		lo, hi := 0, maxRepeat
		switch re.Op {
		case syntax.OpPlus:
			lo = 1
		case syntax.OpQuest:
			hi = 1
		case syntax.OpRepeat:
			lo, hi = re.Min, re.Max
			if hi < 0 {
				hi = lo + maxRepeat
			}
		}
		for n := lo + rng.IntN(hi-lo+1); n > 0; n-- {
			if err := regexWalk(b, re.Sub[0], rng, depth+1, steps); err != nil {
				return err
			}
		}
	case syntax.OpNoMatch:
		return fmt.Errorf("the pattern matches nothing")
	default:
		return fmt.Errorf("regular expression construct %v is not supported", re.Op)
	}
	return nil
}
