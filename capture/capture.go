// Package capture is the format of a call capture: one JSON line per LLM
// call a client made through wfsched's router (`wfsched router --capture
// DIR`), or per LLM span of an OpenTelemetry trace once imported. It holds
// what rebuilding the workflow's DAG needs: who called (workflow, agent),
// when (arrival, first byte, end), what was sent and answered (messages and
// output, as text, as hashes, or as token counts only) and what the server
// counted. Package dag reads captures into graphs; package router writes
// them.
package capture

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/wfsched/wfsched/internal/gzfile"
	"github.com/wfsched/wfsched/tokenizer"
)

// Version is the capture format's version, in every record.
const Version = 1

// Content modes: what a capture keeps of the texts.
const (
	Full = "full" // the texts (replays can use --context reference)
	Hash = "hash" // token counts, and hashes from which dependencies are rebuilt
	None = "none" // token counts only: dependencies only from parent ids
)

// CheckMode validates a content mode.
func CheckMode(m string) error {
	switch m {
	case Full, Hash, None:
		return nil
	}
	return fmt.Errorf("capture content %q: want %s, %s or %s", m, Full, Hash, None)
}

// Record is one call.
type Record struct {
	V int `json:"wfsched_capture"` // Version
	// Workflow and Agent name the caller: the workflow id and agent id
	// the client sent, or for a request without them a session key
	// ("session:ID" from X-Session-Id, else "conn:ADDR") and no agent.
	Workflow string `json:"workflow"`
	Agent    string `json:"agent,omitempty"`
	// RequestID identifies the call; Parent names an earlier call the
	// client said this one follows (workflow_metadata.parent_request_id).
	RequestID string `json:"request_id"`
	Parent    string `json:"parent_request_id,omitempty"`
	API       string `json:"api"` // chat, completions or responses
	Backend   string `json:"backend,omitempty"`
	Status    int    `json:"status"`
	// Arrival is when the request reached the router; FirstByte when the
	// response's first byte left it; End when its last did.
	Arrival   time.Time `json:"arrival"`
	FirstByte time.Time `json:"first_byte,omitzero"`
	End       time.Time `json:"end"`
	// Token counts the server reported (usage); Cached is -1 when it did
	// not say.
	// TimeScale is the server's wall seconds per modeled second, when it
	// said (wfsched's engine does, in X-Wfsched-Time-Scale): times convert
	// to modeled ones divided by it. 0: 1, a real server.
	TimeScale        float64   `json:"time_scale,omitempty"`
	PromptTokens     int       `json:"prompt_tokens"`
	CompletionTokens int       `json:"completion_tokens"`
	CachedTokens     int       `json:"cached_tokens"`
	Content          string    `json:"content"` // Full, Hash or None
	Messages         []Message `json:"messages"`
	Output           Message   `json:"output"`
	// Kind is "llm" (a call) or, in records imported from traces with
	// tool spans, "tool" (Output is the tool's result).
	Kind string `json:"kind,omitempty"`
	// Truncated says the output's text was cut: the router keeps at most a
	// few MiB of an answer, within its body budget (token counts stay the
	// server's).
	Truncated bool   `json:"truncated,omitempty"`
	Tool      string `json:"tool,omitempty"` // a tool record's tool name
	// Tools names the tools the request offered, sorted (full and hash
	// modes): with the system prompt, what tells agents apart when the
	// client sent no agent id.
	Tools []string `json:"tools,omitempty"`
}

// Message is one message sent, or the output: its role, token count, and,
// by content mode, its text or its hashes.
type Message struct {
	Role       string     `json:"role"`
	Tokens     int        `json:"tokens"`
	Text       string     `json:"text,omitempty"`
	Hash       string     `json:"hash,omitempty"`
	Chunks     []string   `json:"chunks,omitempty"`
	ToolCalls  []ToolCall `json:"tool_calls,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
}

// ToolCall is a function call a message (or the output) carries.
type ToolCall struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Arguments string `json:"arguments,omitempty"` // kept in full mode only
	// In hash mode, the hash of the arguments' canonical JSON
	// (CanonicalJSON), and the hashes of the string values in them
	// (ArgStrings): a sub-agent whose prompt is one of them (an agent
	// called as a tool) is linked to the call that passed it.
	ArgsHash string   `json:"args_hash,omitempty"`
	Values   []string `json:"values,omitempty"`
}

// MinQuote is the shortest text (in bytes) whose presence in a later
// message counts as quoting it: shorter ones ("yes", "{}") recur by chance.
const MinQuote = 8

// CanonicalJSON re-serializes a JSON text compactly with sorted object
// keys and numbers as written, so that the same arguments compare equal
// whatever spacing and key order a framework re-serialized them with. A
// text that is not JSON is returned as it is.
func CanonicalJSON(s string) string {
	v, ok := parseJSON(s)
	if !ok {
		return s
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if enc.Encode(v) != nil {
		return s
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func parseJSON(s string) (any, bool) {
	if strings.TrimSpace(s) == "" {
		return nil, false
	}
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var v any
	if d.Decode(&v) != nil || d.More() {
		return nil, false
	}
	return v, true
}

// ArgStrings returns the non-empty string values (at any depth) of a tool
// call's JSON arguments, in document order (object keys sorted).
func ArgStrings(args string) []string {
	v, ok := parseJSON(args)
	if !ok {
		return nil
	}
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case string:
			if x != "" {
				out = append(out, x)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		case map[string]any:
			keys := slices.Sorted(maps.Keys(x))
			for _, k := range keys {
				walk(x[k])
			}
		}
	}
	walk(v)
	return out
}

// SameArgs reports whether two tool calls' arguments are the same up to
// serialization: their canonical JSON (full mode) or its hash (hash mode)
// are equal. What a mode does not keep is not compared.
func SameArgs(a, b ToolCall) bool {
	switch {
	case a.Arguments != "" && b.Arguments != "":
		return a.Arguments == b.Arguments || CanonicalJSON(a.Arguments) == CanonicalJSON(b.Arguments)
	case a.ArgsHash != "" && b.ArgsHash != "":
		return a.ArgsHash == b.ArgsHash
	}
	return true
}

// NewMessage describes a message's text in content mode mode.
func NewMessage(role, text string, calls []ToolCall, toolCallID, mode string, enc *tokenizer.Encoder) Message {
	m := Message{Role: role, ToolCallID: toolCallID}
	rendered := text
	if len(calls) > 0 {
		tc := make([]tokenizer.ToolCall, len(calls))
		for i, c := range calls {
			tc[i] = tokenizer.ToolCall{Name: c.Name, Arguments: c.Arguments}
		}
		rendered = tokenizer.Message{Content: text, ToolCalls: tc}.Text()
	}
	m.Tokens = enc.Count(rendered)
	switch mode {
	case Full:
		m.Text, m.ToolCalls = text, calls
	case Hash:
		m.Hash, m.Chunks = HashText(text), Chunks(text)
		for _, c := range calls {
			h := ToolCall{ID: c.ID, Name: c.Name, ArgsHash: HashText(CanonicalJSON(c.Arguments))}
			for _, v := range ArgStrings(c.Arguments) {
				h.Values = append(h.Values, HashText(v))
			}
			m.ToolCalls = append(m.ToolCalls, h)
		}
	}
	return m
}

// HashText is a text's hash: the first 16 bytes of its SHA-256, in hex ("" for
// an empty text).
func HashText(text string) string {
	if text == "" {
		return ""
	}
	h := sha256.Sum256([]byte(text))
	return hex.EncodeToString(h[:16])
}

// Chunks are content-defined chunk hashes of a text: the words of each
// line are cut after each word whose own hash ends in three zero bits
// (about one word in eight) and at the line's end, and each chunk's hash
// is kept (8 hex digits). The cuts depend on the words and line breaks
// alone, so a text quoted inside a longer one yields the same interior
// chunks there, and all of its chunks when it is quoted as whole lines (as
// prompt templates put an earlier answer on lines of its own): Contains
// tells containment without the texts.
func Chunks(text string) []string {
	var out []string
	for line := range strings.Lines(text) {
		words := strings.Fields(line)
		start := 0
		for i, w := range words {
			h := sha256.Sum256([]byte(w))
			if h[0]&7 == 0 || i == len(words)-1 {
				c := sha256.Sum256([]byte(strings.Join(words[start:i+1], " ")))
				out = append(out, hex.EncodeToString(c[:4]))
				start = i + 1
			}
		}
	}
	return out
}

// minQuoteTokens is the least output, in tokens, whose chunks quoted as
// whole lines count as a quote.
const minQuoteTokens = 3

// PassesArgs reports whether message m is, or in full mode holds (at
// least MinQuote bytes of it), a string value of out's tool calls'
// arguments: the prompt of an agent called as a tool, with the task its
// caller wrote.
func PassesArgs(m, out Message) bool {
	for _, c := range out.ToolCalls {
		if m.Text != "" {
			for _, v := range ArgStrings(c.Arguments) {
				if m.Text == v || len(v) >= MinQuote && strings.Contains(m.Text, v) {
					return true
				}
			}
		}
		if m.Hash != "" && slices.Contains(c.Values, m.Hash) {
			return true
		}
	}
	return false
}

// Contains reports whether message m holds what out describes: one of its
// tool calls (by id), or its text: in full mode as a substring of at least
// MinQuote bytes, in hash mode as an equal whole text, or out's chunks as
// a run of m's (all of them, or the interior ones, two or more).
func Contains(m, out Message) bool {
	// Tool calls are the same calls when their ids are (a framework that
	// hands the conversation on carries the calls of the agent before).
	for _, c := range out.ToolCalls {
		if c.ID != "" && slices.ContainsFunc(m.ToolCalls, func(x ToolCall) bool { return x.ID == c.ID }) {
			return true
		}
	}
	if out.Text != "" && m.Text != "" {
		return len(out.Text) >= MinQuote && strings.Contains(m.Text, out.Text)
	}
	if out.Hash != "" && out.Hash == m.Hash {
		return true
	}
	// All of its chunks (quoted as whole lines), or the interior ones,
	// at least two of them (one short chunk can be a common word or two),
	// as a run in the message's chunks.
	if len(out.Chunks) > 0 && out.Tokens >= minQuoteTokens && hasRun(m.Chunks, out.Chunks) {
		return true
	}
	return len(out.Chunks) >= 4 && hasRun(m.Chunks, out.Chunks[1:len(out.Chunks)-1])
}

// hasRun reports whether run occurs in s.
func hasRun(s, run []string) bool {
	for i := 0; i+len(run) <= len(s); i++ {
		if slices.Equal(s[i:i+len(run)], run) {
			return true
		}
	}
	return false
}

// Writer appends records to a file, one line each, written whole as each
// call completes: what is written is on disk at once (no buffer to lose at
// a shutdown or a crash), and lines never interleave.
type Writer struct {
	mu   sync.Mutex
	f    *os.File
	path string
}

// Create opens a new capture file in dir (created if missing), named by the
// time and the process so that several routers can share a directory.
func Create(dir string) (*Writer, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("capture directory: %w", err)
	}
	name := fmt.Sprintf("capture-%s-%d.jsonl", time.Now().UTC().Format("20060102T150405.000000000Z"), os.Getpid())
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("capture file: %w", err)
	}
	return &Writer{f: f, path: path}, nil
}

// Path is the file written.
func (w *Writer) Path() string { return w.path }

// Write appends r.
func (w *Writer) Write(r *Record) error {
	r.V = Version
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	w.mu.Lock()
	defer w.mu.Unlock()
	_, err = w.f.Write(b)
	return err
}

// Close closes the file.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.f.Close()
}

// Detect reports whether data starts like a capture file.
func Detect(data []byte) bool {
	line, _, _ := strings.Cut(string(data[:min(len(data), 4096)]), "\n")
	return strings.HasPrefix(strings.TrimSpace(line), "{") && strings.Contains(line, `"wfsched_capture"`)
}

// LineError is a bad line of a capture file.
type LineError struct {
	File string
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// MaxLine bounds one record's line.
const MaxLine = 64 << 20

// Read reads the records of r (named name in errors). A line that breaks
// off at the end (a file still being written) is left out.
func Read(r io.Reader, name string) ([]Record, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	var out []Record
	for line := 1; ; line++ {
		b, err := br.ReadBytes('\n')
		if len(b) > MaxLine {
			return nil, &LineError{name, line, fmt.Errorf("a line over %d bytes", MaxLine)}
		}
		if err == io.EOF && len(b) > 0 && b[len(b)-1] != '\n' {
			break // the unfinished last line
		}
		if t := strings.TrimSpace(string(b)); t != "" {
			var rec Record
			if jerr := json.Unmarshal([]byte(t), &rec); jerr != nil {
				return nil, &LineError{name, line, fmt.Errorf("not a capture record: %v", jerr)}
			}
			if rec.V != Version {
				return nil, &LineError{name, line, fmt.Errorf("wfsched_capture version %d: this wfsched reads version %d", rec.V, Version)}
			}
			if rec.Workflow == "" || rec.RequestID == "" || rec.Arrival.IsZero() {
				return nil, &LineError{name, line, errors.New("workflow, request_id and arrival are required")}
			}
			if rec.End.Before(rec.Arrival) {
				return nil, &LineError{name, line, errors.New("end is before arrival")}
			}
			out = append(out, rec)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Files lists the capture files in dir (*.jsonl and *.jsonl.gz), in
// name order.
func Files(dir string) ([]string, error) {
	var names []string
	for _, pat := range []string{"*.jsonl", "*.jsonl.gz"} {
		m, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			return nil, err
		}
		names = append(names, m...)
	}
	slices.Sort(names)
	return names, nil
}

// ReadDir reads every capture file in dir (Files), in name order.
func ReadDir(dir string) ([]Record, error) {
	names, err := Files(dir)
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%s: no capture files (*.jsonl or *.jsonl.gz) in it", dir)
	}
	var all []Record
	for _, n := range names {
		f, err := gzfile.Open(n)
		if err != nil {
			return nil, err
		}
		recs, err := Read(f, n)
		f.Close()
		if err != nil {
			return nil, err
		}
		all = append(all, recs...)
	}
	return all, nil
}
