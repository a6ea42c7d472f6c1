package tokenizer

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/pkoukk/tiktoken-go-loader/assets"
	"github.com/wfsched/wfsched/internal/heap"
)

// VocabName is the byte-pair encoding this package uses.
const VocabName = "cl100k_base"

// cacheLimit bounds the piece cache; when full it is dropped and rebuilt.
const cacheLimit = 1 << 17

// Encoder turns text into cl100k_base token ids. It is safe for concurrent
// use. The zero value is not usable: call Default.
type Encoder struct {
	ranks map[string]int
	// texts is the inverse of ranks: the bytes of each token id.
	texts []string

	mu    sync.RWMutex
	cache map[string][]int
	// headers holds the chat template's header of each common role,
	// rendered at load (read-only after).
	headers map[string][]int
}

var (
	defaultOnce sync.Once
	defaultEnc  *Encoder
	defaultErr  error
)

// Default returns the process-wide encoder, loading the embedded vocabulary
// on first use (about 0.2 s).
func Default() (*Encoder, error) {
	defaultOnce.Do(func() {
		defaultEnc, defaultErr = load()
	})
	return defaultEnc, defaultErr
}

// MustDefault is Default for callers that cannot proceed without a tokenizer;
// it panics only if the embedded vocabulary is corrupt, a build defect.
func MustDefault() *Encoder {
	e, err := Default()
	if err != nil {
		panic(err)
	}
	return e
}

func load() (*Encoder, error) {
	data, err := assets.Assets.ReadFile(VocabName + ".tiktoken")
	if err != nil {
		return nil, fmt.Errorf("load %s vocabulary: %w", VocabName, err)
	}
	ranks := make(map[string]int, 100_300)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		tok, rank, ok := bytes.Cut(sc.Bytes(), []byte{' '})
		if !ok {
			return nil, fmt.Errorf("load %s vocabulary: line %d: no rank", VocabName, line)
		}
		raw, err := base64.StdEncoding.DecodeString(string(tok))
		if err != nil {
			return nil, fmt.Errorf("load %s vocabulary: line %d: %w", VocabName, line, err)
		}
		r, err := strconv.Atoi(string(rank))
		if err != nil {
			return nil, fmt.Errorf("load %s vocabulary: line %d: %w", VocabName, line, err)
		}
		ranks[string(raw)] = r
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("load %s vocabulary: %w", VocabName, err)
	}
	texts := make([]string, EndOfTurn+1)
	for t, r := range ranks {
		if r < 0 || r >= BeginOfText {
			return nil, fmt.Errorf("load %s vocabulary: rank %d out of range", VocabName, r)
		}
		texts[r] = t
	}
	for id, t := range specials {
		texts[id] = t
	}
	e := &Encoder{ranks: ranks, texts: texts, cache: make(map[string][]int)}
	headers := map[string][]int{}
	for _, r := range roles {
		headers[r] = e.renderHeader(nil, r)
	}
	e.headers = headers
	return e, nil
}

// VocabSize is the number of ordinary (non-special) tokens.
func (e *Encoder) VocabSize() int { return len(e.ranks) }

// Encode appends the token ids of text to dst and returns the extended slice.
// Special-token text such as "<|endoftext|>" is encoded as ordinary text.
func (e *Encoder) Encode(dst []int, text string) []int {
	splitPieces(text, func(p string) {
		if r, ok := e.ranks[p]; ok {
			dst = append(dst, r)
			return
		}
		dst = append(dst, e.merged(p)...)
	})
	return dst
}

// MaxID is the largest token id (the last special token).
const MaxID = EndOfTurn

// TokenText returns the bytes of token id as a string (a special token's
// name for the chat template's ids; "" for an id outside the vocabulary).
// A token may hold part of a multi-byte character, so the text of one token
// need not be valid UTF-8; Decode of a whole sequence is.
func (e *Encoder) TokenText(id int) string {
	if id < 0 || id >= len(e.texts) {
		return ""
	}
	return e.texts[id]
}

// Decode returns the text of ids: the concatenation of their bytes, with
// ids outside the vocabulary skipped and bytes that do not form UTF-8
// replaced by U+FFFD, as tokenizers' decode does.
func (e *Encoder) Decode(ids []int) string {
	var b []byte
	for _, id := range ids {
		b = append(b, e.TokenText(id)...)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// Count returns the number of tokens Encode would produce for text.
func (e *Encoder) Count(text string) int {
	n := 0
	splitPieces(text, func(p string) {
		if _, ok := e.ranks[p]; ok {
			n++
			return
		}
		n += len(e.merged(p))
	})
	return n
}

// merged returns the ids of a pre-token that is not itself in the
// vocabulary, from the cache when it can. The slice is shared: read only.
func (e *Encoder) merged(p string) []int {
	e.mu.RLock()
	ids, ok := e.cache[p]
	e.mu.RUnlock()
	if ok {
		return ids
	}
	ids = e.merge([]byte(p))
	e.mu.Lock()
	if len(e.cache) >= cacheLimit {
		e.cache = make(map[string][]int)
	}
	e.cache[p] = ids
	e.mu.Unlock()
	return ids
}

// longPiece is the piece length above which merging uses a heap: the plain
// algorithm is quadratic, which a long run of punctuation would exploit.
const longPiece = 256

// merge runs byte-pair merging over one piece: repeatedly join the adjacent
// pair whose joined bytes have the lowest rank (the leftmost among equals),
// until no pair is in the vocabulary. Every single byte is in the
// vocabulary, so the result covers b.
func (e *Encoder) merge(b []byte) []int {
	if len(b) > longPiece {
		return e.mergeHeap(b)
	}
	return e.mergeQuadratic(b)
}

// mergeQuadratic is merge by repeated scans: fastest for short pieces.
func (e *Encoder) mergeQuadratic(b []byte) []int {
	const none = int(^uint(0) >> 1)
	// bounds[k] is the start of part k; the last entry is len(b).
	bounds := make([]int, len(b)+1)
	for k := range bounds {
		bounds[k] = k
	}
	rankOf := func(k int) int { // rank of parts k and k+1 joined
		if k+2 >= len(bounds) {
			return none
		}
		if r, ok := e.ranks[string(b[bounds[k]:bounds[k+2]])]; ok {
			return r
		}
		return none
	}
	pairRanks := make([]int, len(bounds)-1)
	for k := range pairRanks {
		pairRanks[k] = rankOf(k)
	}
	for len(bounds) > 2 {
		best, at := none, -1
		for k := 0; k < len(pairRanks)-1; k++ {
			if pairRanks[k] < best {
				best, at = pairRanks[k], k
			}
		}
		if at < 0 {
			break
		}
		bounds = append(bounds[:at+1], bounds[at+2:]...)
		pairRanks = append(pairRanks[:at+1], pairRanks[at+2:]...)
		pairRanks[at] = rankOf(at)
		if at > 0 {
			pairRanks[at-1] = rankOf(at - 1)
		}
	}
	ids := make([]int, 0, len(bounds)-1)
	for k := 0; k+1 < len(bounds); k++ {
		ids = append(ids, e.ranks[string(b[bounds[k]:bounds[k+1]])])
	}
	return ids
}

// mergeHeap is merge in O(n log n): the parts form a linked list and the
// candidate pairs a min-heap keyed by (rank, start), entries checked for
// staleness when popped. Starts are unique and increase left to right, so
// pops come in the same order as merge's scans.
func (e *Encoder) mergeHeap(b []byte) []int {
	n := len(b)
	next := make([]int, n) // start of the following part, n at the end
	prev := make([]int, n) // start of the preceding part, -1 at the start
	alive := make([]bool, n)
	for i := range n {
		next[i], prev[i], alive[i] = i+1, i-1, true
	}
	end := func(i int) int { return next[i] } // part i spans b[i:end(i)]
	h := heap.New(func(a, b pair) bool { return a.rank < b.rank || a.rank == b.rank && a.start < b.start }, n)
	push := func(i int) {
		if i < 0 || next[i] >= n {
			return
		}
		if r, ok := e.ranks[string(b[i:end(next[i])])]; ok {
			h.Push(pair{rank: r, start: i, right: next[i], stop: end(next[i])})
		}
	}
	for i := 0; i+1 < n; i++ {
		push(i)
	}
	for h.Len() > 0 {
		p := h.Pop()
		// Stale if either part has changed since the pair was pushed.
		if !alive[p.start] || !alive[p.right] || next[p.start] != p.right || end(p.right) != p.stop {
			continue
		}
		alive[p.right] = false
		next[p.start] = p.stop
		if p.stop < n {
			prev[p.stop] = p.start
		}
		push(prev[p.start])
		push(p.start)
	}
	var ids []int
	for i := 0; i < n; i = next[i] {
		ids = append(ids, e.ranks[string(b[i:next[i]])])
	}
	return ids
}

type pair struct{ rank, start, right, stop int }
