package tokenizer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	tiktoken "github.com/pkoukk/tiktoken-go"
	loader "github.com/pkoukk/tiktoken-go-loader"
	"github.com/wfsched/wfsched/internal/testenv"
)

func reference(t testing.TB) *tiktoken.Tiktoken {
	t.Helper()
	tiktoken.SetBpeLoader(loader.NewOfflineLoader())
	ref, err := tiktoken.GetEncoding(VocabName)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// chunks cuts s into valid-UTF-8 pieces of about size bytes.
func chunks(s string, size, max int) []string {
	var out []string
	for len(s) > 0 && len(out) < max {
		n := min(size, len(s))
		for n < len(s) && !utf8.RuneStart(s[n]) {
			n++
		}
		out = append(out, s[:n])
		s = s[n:]
	}
	return out
}

// TestMatchesTiktoken checks ids against tiktoken-go, the reference
// implementation of cl100k_base, on hand-picked text and, when
// WFSCHED_SHARED_TRACES is set, on samples of every shared trace file.
func TestMatchesTiktoken(t *testing.T) {
	ref := reference(t)
	enc := MustDefault()

	sample, err := os.ReadFile(filepath.Join("testdata", "sample.txt"))
	if err != nil {
		t.Fatal(err)
	}
	texts := []string{"", " ", "a", "'s", "'S'll", " 'Re", "x'll", "  \n", "\n\n\n", "a  b", "a \t\n b", "123456", "   x", "!!!\n\n",
		string(sample), strings.ReplaceAll(string(sample), `\r\n`, "\r\n")}
	for _, line := range strings.Split(string(sample), "\n") {
		texts = append(texts, line, line+"\n")
	}
	if os.Getenv(testenv.SharedTracesVar) != "" {
		dir := testenv.SharedTraces(t)
		var files []string
		err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				files = append(files, p)
			}
			return err
		})
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: no trace files (%v)", dir, err)
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			// A sample from the start and the middle of each file.
			texts = append(texts, chunks(string(data), 2048, 4)...)
			texts = append(texts, chunks(string(data[len(data)/2:]), 2048, 4)[1:]...)
		}
	}
	for i, text := range texts {
		if !utf8.ValidString(text) {
			continue
		}
		want := ref.Encode(text, nil, nil)
		got := enc.Encode(nil, text)
		if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("text %d %q: ids differ from tiktoken (-want +got):\n%s", i, trunc(text), diff)
			continue
		}
		if n := enc.Count(text); n != len(want) {
			t.Errorf("text %d: Count = %d, want %d", i, n, len(want))
		}
	}
}

func trunc(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

func TestSplitPiecesConcatenates(t *testing.T) {
	for _, s := range []string{"hello world", "a\r\n\r\n b", "  x  ", "é'Ll 12345", "\xff\xfe bad utf8"} {
		var got []string
		splitPieces(s, func(p string) { got = append(got, p) })
		if strings.Join(got, "") != s {
			t.Errorf("pieces of %q = %q: do not rebuild the text", s, got)
		}
	}
}

func TestSplitPieces(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"I'm here", []string{"I", "'m", " here"}},
		{"don't", []string{"don", "'t"}},
		{"x  \ny", []string{"x", "  \n", "y"}},
		{"a   b", []string{"a", "  ", " b"}},
		{"1234567", []string{"123", "456", "7"}},
		{" ...\n\nz", []string{" ...\n\n", "z"}},
		{"end   ", []string{"end", "   "}},
	}
	for _, tt := range tests {
		var got []string
		splitPieces(tt.in, func(p string) { got = append(got, p) })
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("splitPieces(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
}

func TestChat(t *testing.T) {
	enc := MustDefault()
	msgs := []Message{{Role: "system", Content: "You are terse."}, {Role: "user", Content: "Hi there"}, {Role: "assistant", Content: "Hello."}}
	ids := enc.Chat(nil, msgs, true)
	if got, want := len(ids), enc.ChatCount(msgs, true); got != want {
		t.Fatalf("ChatCount = %d, len(Chat) = %d", want, got)
	}
	if ids[0] != BeginOfText || ids[len(ids)-1] == EndOfTurn {
		t.Errorf("template framing wrong: first %d last %d", ids[0], ids[len(ids)-1])
	}
	// A prompt extended by more messages keeps the shorter one as a prefix.
	short := enc.Chat(nil, msgs[:2], false)
	if diff := cmp.Diff(short, ids[:len(short)]); diff != "" {
		t.Errorf("extended prompt does not start with the shorter one:\n%s", diff)
	}
	// Each message adds exactly its overhead plus its content tokens.
	one := enc.Chat(nil, msgs[:1], false)
	if got, want := len(one), 1+enc.MessageOverhead("system")+enc.Count("You are terse."); got != want {
		t.Errorf("one-message prompt has %d tokens, want %d", got, want)
	}
}

func TestFiller(t *testing.T) {
	enc := MustDefault()
	for _, w := range fillerWords {
		if n := enc.Count(w); n != 1 {
			t.Errorf("filler word %q is %d tokens, want 1", w, n)
		}
	}
	for _, n := range []int{0, 1, 7, 100, 4096} {
		if got := enc.Count(enc.Filler(n, 42)); got != n {
			t.Errorf("Count(Filler(%d)) = %d", n, got)
		}
	}
	if enc.Filler(50, 1) == enc.Filler(50, 2) {
		t.Error("fillers with different seeds are equal")
	}
	if a, b := enc.Filler(50, 3), enc.Filler(50, 3); a != b {
		t.Error("filler is not deterministic")
	}
}

func BenchmarkCount(b *testing.B) {
	data, err := os.ReadFile(filepath.Join("testdata", "sample.txt"))
	if err != nil {
		b.Fatal(err)
	}
	text := strings.Repeat(string(data), 20)
	b.Run("wfsched", func(b *testing.B) {
		enc := MustDefault()
		b.SetBytes(int64(len(text)))
		for b.Loop() {
			enc.Count(text)
		}
	})
	b.Run("tiktoken-go", func(b *testing.B) {
		ref := reference(b)
		b.SetBytes(int64(len(text)))
		for b.Loop() {
			ref.Encode(text, nil, nil)
		}
	})
}

// TestMergeHeapMatchesQuadratic checks the O(n log n) merge against the
// plain one on long pieces of many kinds.
func TestMergeHeapMatchesQuadratic(t *testing.T) {
	enc := MustDefault()
	pieces := []string{
		strings.Repeat("=", 1000), strings.Repeat("=+", 700), strings.Repeat("-", 999) + ">",
		strings.Repeat("ab", 600), strings.Repeat("😀", 300), strings.Repeat("{}[]()", 200),
	}
	sample, _ := os.ReadFile(filepath.Join("testdata", "sample.txt"))
	pieces = append(pieces, string(sample))
	for _, p := range pieces {
		plain := func() []int { // merge's quadratic path, forced
			return enc.mergeQuadratic([]byte(p))
		}()
		if diff := cmp.Diff(plain, enc.mergeHeap([]byte(p))); diff != "" {
			t.Errorf("piece %q...: heap merge differs:\n%s", trunc(p), diff)
		}
	}
	// And against the reference on a whole long run.
	ref := reference(t)
	long := " " + strings.Repeat("=-", 5000) + "\n"
	if diff := cmp.Diff(ref.Encode(long, nil, nil), enc.Encode(nil, long)); diff != "" {
		t.Errorf("long run differs from tiktoken:\n%s", diff)
	}
}

func BenchmarkLongPiece(b *testing.B) {
	enc := MustDefault()
	s := strings.Repeat("=+", 50_000) // one 100 kB piece
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		enc.merge([]byte(s))
	}
}

// TestToolCallText: an assistant turn with tool calls renders its content,
// then each call as JSON on a line of its own; the count follows it.
func TestToolCallText(t *testing.T) {
	m := Message{Role: "assistant", Content: "Let me look.", ToolCalls: []ToolCall{
		{Name: "str_replace_editor", Arguments: `{"command": "view", "path": "/w"}`}, {Name: "bash"}}}
	want := "Let me look.\n" + `{"name": "str_replace_editor", "parameters": {"command": "view", "path": "/w"}}` + "\n" + `{"name": "bash", "parameters": {}}`
	if got := m.Text(); got != want {
		t.Errorf("Text() = %q, want %q", got, want)
	}
	enc := MustDefault()
	msgs := []Message{{Role: "user", Content: "go"}, m, {Role: "tool", Content: "ok"}}
	if n, ids := enc.ChatCount(msgs, true), enc.Chat(nil, msgs, true); n != len(ids) || n <= enc.ChatCount([]Message{{Role: "user", Content: "go"}, {Role: "assistant", Content: "Let me look."}, {Role: "tool", Content: "ok"}}, true) {
		t.Errorf("ChatCount %d, Chat %d tokens: the tool calls must count", n, len(ids))
	}
	if (Message{Role: "user", Content: "x"}).Text() != "x" {
		t.Error("a message without tool calls renders as its content")
	}
}

func TestDecodeInvertsEncode(t *testing.T) {
	e := MustDefault()
	for _, text := range []string{"", "hello world", " {\"name\": \"get_weather\", \"arguments\": {}}", "naïve café ☕ 東京", "a\n\n  b\tc"} {
		if got := e.Decode(e.Encode(nil, text)); got != text {
			t.Errorf("Decode(Encode(%q)) = %q", text, got)
		}
	}
	if got := e.Decode(e.Chat(nil, []Message{{Role: "user", Content: "hi"}}, true)); got != "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n" {
		t.Errorf("chat prompt decodes to %q", got)
	}
	if got := e.TokenText(-1) + e.TokenText(MaxID+1); got != "" {
		t.Errorf("ids outside the vocabulary decode to %q", got)
	}
}
