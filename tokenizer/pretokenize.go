package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// splitPieces calls fn for each pre-token of text, in order, as cl100k_base's
// pattern splits it:
//
//	(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//	 ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
// The alternatives are tried in order at each position with the backtracking
// semantics of that pattern; each branch below names the alternative it
// implements. The pieces concatenate back to text exactly.
func splitPieces(text string, fn func(piece string)) {
	i := 0
	for i < len(text) {
		n := matchAt(text, i)
		fn(text[i : i+n])
		i += n
	}
}

// matchAt returns the length in bytes of the pre-token starting at i (>= 1).
func matchAt(s string, i int) int {
	r, w := utf8.DecodeRuneInString(s[i:])

	// (?i:'s|'t|'re|'ve|'m|'ll|'d)
	if r == '\'' && i+1 < len(s) {
		c1 := lower(s[i+1])
		switch c1 {
		case 's', 't', 'm', 'd':
			return 2
		}
		if i+2 < len(s) {
			c2 := lower(s[i+2])
			if (c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l') {
				return 3
			}
		}
	}

	// [^\r\n\p{L}\p{N}]?\p{L}+
	if isLetter(r) {
		return w + letterRun(s, i+w)
	}
	if r != '\r' && r != '\n' && !isNumber(r) && i+w < len(s) {
		if r2, _ := utf8.DecodeRuneInString(s[i+w:]); isLetter(r2) {
			return w + letterRun(s, i+w)
		}
	}

	// \p{N}{1,3}
	if isNumber(r) {
		n := w
		for k := 1; k < 3 && i+n < len(s); k++ {
			r2, w2 := utf8.DecodeRuneInString(s[i+n:])
			if !isNumber(r2) {
				break
			}
			n += w2
		}
		return n
	}

	// ' ?[^\s\p{L}\p{N}]+[\r\n]*'
	start := i
	if r == ' ' && i+1 < len(s) {
		if r2, _ := utf8.DecodeRuneInString(s[i+1:]); isPunct(r2) {
			start = i + 1
		}
	}
	if start > i || isPunct(r) {
		j := start
		for j < len(s) {
			r2, w2 := utf8.DecodeRuneInString(s[j:])
			if !isPunct(r2) {
				break
			}
			j += w2
		}
		for j < len(s) && (s[j] == '\r' || s[j] == '\n') {
			j++
		}
		return j - i
	}

	// Only whitespace remains: r is a space character.
	end, lastNL := i, -1
	for end < len(s) {
		r2, w2 := utf8.DecodeRuneInString(s[end:])
		if !unicode.IsSpace(r2) {
			break
		}
		if r2 == '\r' || r2 == '\n' {
			lastNL = end
		}
		end += w2
	}
	// \s*[\r\n]+ : \s* backs off to the last newline of the run.
	if lastNL >= 0 {
		return lastNL + 1 - i
	}
	// \s+(?!\S) : the whole run at the end of text, else all but its last char.
	if end == len(s) {
		return end - i
	}
	if _, lw := utf8.DecodeLastRuneInString(s[i:end]); end-lw > i {
		return end - lw - i
	}
	// \s+
	return end - i
}

func letterRun(s string, j int) int {
	n := 0
	for j+n < len(s) {
		r, w := utf8.DecodeRuneInString(s[j+n:])
		if !isLetter(r) {
			break
		}
		n += w
	}
	return n
}

func lower(b byte) byte {
	if 'A' <= b && b <= 'Z' {
		return b + 'a' - 'A'
	}
	return b
}

func isLetter(r rune) bool {
	if r < utf8.RuneSelf {
		return ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z')
	}
	return unicode.IsLetter(r)
}

func isNumber(r rune) bool {
	if r < utf8.RuneSelf {
		return '0' <= r && r <= '9'
	}
	return unicode.IsNumber(r)
}

// isPunct reports [^\s\p{L}\p{N}].
func isPunct(r rune) bool {
	return !unicode.IsSpace(r) && !isLetter(r) && !isNumber(r)
}
