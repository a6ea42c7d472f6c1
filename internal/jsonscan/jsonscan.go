// Package jsonscan finds the extents of JSON values in place, without
// decoding or copying them: what the router needs to strip one member from
// a request body, and what the trace loader needs to split a large array
// for parallel decoding. It checks structure (strings, brackets, commas,
// colons), not the spelling of numbers and literals; a decoder reads the
// values it finds.
package jsonscan

import (
	"bytes"
	"encoding/json"
)

// KeyIs compares a quoted JSON key with name, decoding escapes if any.
func KeyIs(quoted []byte, name string) bool {
	if bytes.IndexByte(quoted, '\\') < 0 {
		return len(quoted) == len(name)+2 && string(quoted[1:len(quoted)-1]) == name
	}
	var k string
	return json.Unmarshal(quoted, &k) == nil && k == name
}

// maxDepth bounds the nesting Value follows, as encoding/json does.
const maxDepth = 10000

// String returns the index just after the JSON string starting at
// b[i] (a '"'), or -1 if it does not end.
func String(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return -1
}

// Value returns the index just after the JSON value starting at b[i],
// or -1 if there is none. It checks the structure (strings, brackets,
// commas and colons), not the spelling of numbers and literals: the body
// is forwarded as it is, and the server behind reads it in full.
func Value(b []byte, i, depth int) int {
	if i >= len(b) || depth > maxDepth {
		return -1
	}
	switch b[i] {
	case '"':
		return String(b, i)
	case '{', '[':
		closing := byte('}')
		if b[i] == '[' {
			closing = ']'
		}
		i = Space(b, i+1)
		if i < len(b) && b[i] == closing {
			return i + 1
		}
		for {
			if closing == '}' {
				if i >= len(b) || b[i] != '"' {
					return -1
				}
				if i = String(b, i); i < 0 {
					return -1
				}
				if i = Space(b, i); i >= len(b) || b[i] != ':' {
					return -1
				}
				i = Space(b, i+1)
			}
			if i = Value(b, i, depth+1); i < 0 {
				return -1
			}
			i = Space(b, i)
			if i >= len(b) {
				return -1
			}
			if b[i] == closing {
				return i + 1
			}
			if b[i] != ',' {
				return -1
			}
			i = Space(b, i+1)
		}
	default: // a number or a literal: up to the next delimiter
		j := i
	scan:
		for ; j < len(b); j++ {
			switch b[j] {
			case ',', '}', ']', ':', ' ', '\t', '\r', '\n':
				break scan
			}
		}
		if j == i {
			return -1
		}
		return j
	}
}

// Space returns the index of the first byte at or after i that is not JSON
// white space.
func Space(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// SpaceBack returns the index of the last byte before i that is not JSON
// white space, or -1.
func SpaceBack(b []byte, i int) int {
	i--
	for i >= 0 && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i--
	}
	return i
}

// Key decodes a quoted JSON key (escapes included); ok is false if it is
// not a valid JSON string.
func Key(quoted []byte) (key string, ok bool) {
	if bytes.IndexByte(quoted, '\\') < 0 && len(quoted) >= 2 {
		return string(quoted[1 : len(quoted)-1]), true
	}
	return key, json.Unmarshal(quoted, &key) == nil
}

// Member is one member of an object: where its quoted key and its value
// lie.
type Member struct {
	KeyStart, KeyEnd     int
	ValueStart, ValueEnd int
}

// Raw is the member's key as written, without its quotes; plain is false
// when it holds escapes (then Key decodes it).
func (m Member) Raw(b []byte) (raw []byte, plain bool) {
	raw = b[m.KeyStart+1 : m.KeyEnd-1]
	return raw, bytes.IndexByte(raw, '\\') < 0
}

// Key is the member's key, decoded.
func (m Member) Key(b []byte) string {
	k, _ := Key(b[m.KeyStart:m.KeyEnd])
	return k
}

// Object returns the members of the JSON object starting at b[i] (after
// white space), in order; ok is false if there is no well-formed object.
func Object(b []byte, i int) (members []Member, end int, ok bool) {
	return ObjectInto(nil, b, i)
}

// ObjectInto is Object appending to members (to reuse its memory).
func ObjectInto(members []Member, b []byte, i int) ([]Member, int, bool) {
	i = Space(b, i)
	if i >= len(b) || b[i] != '{' {
		return nil, 0, false
	}
	i = Space(b, i+1)
	if i < len(b) && b[i] == '}' {
		return members, i + 1, true
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return nil, 0, false
		}
		ke := String(b, i)
		if ke < 0 {
			return nil, 0, false
		}
		if bytes.IndexByte(b[i:ke], '\\') >= 0 {
			if _, kok := Key(b[i:ke]); !kok {
				return nil, 0, false
			}
		}
		ks := i
		i = Space(b, ke)
		if i >= len(b) || b[i] != ':' {
			return nil, 0, false
		}
		vs := Space(b, i+1)
		ve := Value(b, vs, 0)
		if ve < 0 {
			return nil, 0, false
		}
		members = append(members, Member{KeyStart: ks, KeyEnd: ke, ValueStart: vs, ValueEnd: ve})
		i = Space(b, ve)
		if i >= len(b) {
			return nil, 0, false
		}
		if b[i] == '}' {
			return members, i + 1, true
		}
		if b[i] != ',' {
			return nil, 0, false
		}
		i = Space(b, i+1)
	}
}

// Elements returns the extents of the elements of the JSON array starting
// at b[i], as [start, end) pairs; ok is false if there is no well-formed
// array.
func Elements(b []byte, i int) (spans [][2]int, ok bool) {
	i = Space(b, i)
	if i >= len(b) || b[i] != '[' {
		return nil, false
	}
	i = Space(b, i+1)
	if i < len(b) && b[i] == ']' {
		return nil, true
	}
	for {
		e := Value(b, i, 1)
		if e < 0 {
			return nil, false
		}
		spans = append(spans, [2]int{i, e})
		i = Space(b, e)
		if i >= len(b) {
			return nil, false
		}
		if b[i] == ']' {
			return spans, true
		}
		if b[i] != ',' {
			return nil, false
		}
		i = Space(b, i+1)
	}
}
