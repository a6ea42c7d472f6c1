package dag

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/wfsched/wfsched/capture"
	"github.com/wfsched/wfsched/internal/gzfile"
	"github.com/wfsched/wfsched/tokenizer"
)

// DefaultMaxBytes is the default limit on an input file's size.
const DefaultMaxBytes int64 = 256 << 20

// EdgeSource chooses where a graph's edges come from.
type EdgeSource string

const (
	// EdgesRebuild (the default) rebuilds real dependencies from node types
	// and agents.
	EdgesRebuild EdgeSource = "rebuild"
	// EdgesFile keeps the edges the file gives, as explicit edges, and all
	// of its nodes.
	EdgesFile EdgeSource = "file"
)

// Options control reading traces. The zero value means: detect the format,
// rebuild edges, DefaultMaxBytes, the default tokenizer.
type Options struct {
	Format   string     // "" or "auto" to detect, else a name from Formats
	Edges    EdgeSource // "" means EdgesRebuild
	MaxBytes int64      // 0 means DefaultMaxBytes
	Encoder  *tokenizer.Encoder
	// TimeScale divides the times of OpenTelemetry spans (wall seconds
	// per modeled second of the server that served them); 0: as recorded.
	TimeScale float64
}

// Validate checks the options.
func (o Options) Validate() error {
	if o.Format != "" && o.Format != "auto" {
		if _, ok := importers[o.Format]; !ok {
			return fmt.Errorf("unknown format %q (want auto, %s)", o.Format, strings.Join(Formats(), ", "))
		}
	}
	switch o.Edges {
	case "", EdgesRebuild, EdgesFile:
	default:
		return fmt.Errorf("unknown edge source %q (want rebuild or file)", o.Edges)
	}
	if o.TimeScale < 0 || math.IsNaN(o.TimeScale) || math.IsInf(o.TimeScale, 0) {
		return fmt.Errorf("time scale %v: want a positive number (wall seconds per modeled second)", o.TimeScale)
	}
	if o.MaxBytes < 0 {
		return fmt.Errorf("size limit %d is negative", o.MaxBytes)
	}
	return nil
}

// Importer reads one trace format. Parse returns graphs whose token counts
// are not yet estimated; it must not panic on any input.
type Importer interface {
	Name() string
	Detect(data []byte) bool
	Parse(data []byte, opt Options) ([]*Graph, error)
}

var (
	importers = map[string]Importer{}
	detectOrd []Importer
)

// Register adds an importer; detection tries importers in registration order.
func Register(imp Importer) {
	importers[imp.Name()] = imp
	detectOrd = append(detectOrd, imp)
}

// Formats lists the registered format names.
func Formats() []string {
	names := make([]string, 0, len(importers))
	for n := range importers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func init() {
	Register(nativeFormat{})
	Register(metaGPTFormat{})
	Register(dagJSONFormat{})
	Register(stepsFormat{})
	Register(chatDevFormat{})
	Register(appworldFormat{})
	Register(captureFormat{})
	Register(otelFormat{})
}

// ReadFile reads every trace in the file at path. Token counts are estimated
// for all of them; use ReadOne to pick one first.
func ReadFile(path string, opt Options) ([]*Graph, error) {
	gs, err := readParse(path, opt)
	if err != nil {
		return nil, err
	}
	enc, err := encoder(opt)
	if err != nil {
		return nil, err
	}
	for _, g := range gs {
		EstimateTokens(g, enc)
	}
	return gs, nil
}

// ReadOne reads the file at path and returns the trace sel chooses, with its
// token counts estimated. A file with one trace needs no selection.
func ReadOne(path string, opt Options, sel Selector) (*Graph, error) {
	gs, err := readParse(path, opt)
	if err != nil {
		return nil, err
	}
	g, err := sel.Pick(gs)
	if err != nil {
		return nil, &InputError{Path: path, Err: err}
	}
	enc, err := encoder(opt)
	if err != nil {
		return nil, err
	}
	EstimateTokens(g, enc)
	return g, nil
}

func encoder(opt Options) (*tokenizer.Encoder, error) {
	if opt.Encoder != nil {
		return opt.Encoder, nil
	}
	return tokenizer.Default()
}

func readParse(path string, opt Options) ([]*Graph, error) {
	if err := opt.Validate(); err != nil {
		return nil, err
	}
	limit := opt.MaxBytes
	if limit == 0 {
		limit = DefaultMaxBytes
	}
	f, err := gzfile.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() && st.Size() > limit {
		return nil, &InputError{Path: path, Err: &TooLargeError{Size: st.Size(), Limit: limit}}
	} else if err == nil && st.IsDir() {
		if IsCaptureDir(path) {
			recs, err := capture.ReadDir(path)
			if err != nil {
				return nil, &InputError{Path: path, Err: err}
			}
			gs, err := FromCapture(recs)
			if err != nil {
				return nil, &InputError{Path: path, Err: err}
			}
			return gs, nil
		}
		return nil, &InputError{Path: path, Err: errors.New("is a folder: give a trace file or a capture folder (run, compare and sweep also take a folder of traces with --dag)")}
	}
	// Tell the format from the head before reading the rest: a large file
	// of no known format is refused without being read whole.
	br := bufio.NewReaderSize(f, headBytes)
	if h, err := br.Peek(headBytes); (err == nil || err == io.EOF) && !possible(h, opt.Format) {
		return nil, &InputError{Path: path, Err: fmt.Errorf("%w (judged from its first %d KiB)", errUnknownFormat, headBytes>>10)}
	} else if err != nil && err != io.EOF && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	// Read into a buffer of the file's size (io.ReadAll would grow one
	// step by step, clearing and copying as it goes).
	var buf bytes.Buffer
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() && !f.Compressed {
		buf.Grow(int(min(st.Size(), limit)) + bytes.MinRead)
	}
	if _, err := buf.ReadFrom(io.LimitReader(br, limit+1)); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	data := buf.Bytes()
	if int64(len(data)) > limit {
		return nil, &InputError{Path: path, Err: &TooLargeError{Size: int64(len(data)), Limit: limit}}
	}
	gs, err := Parse(data, opt)
	if err != nil {
		if kind := resultKind(data); kind != "" {
			err = &NotTraceError{Kind: kind}
		}
		return nil, &InputError{Path: path, Err: err}
	}
	// Graphs without an id are named after the file.
	base := gzfile.Base(path)
	for i, g := range gs {
		if g.ID == "" {
			g.ID = base
			if len(gs) > 1 {
				g.ID = fmt.Sprintf("%s-%d", base, i)
			}
		}
	}
	return gs, nil
}

// Parse reads traces from data in the format opt names (or detects it).
// Token counts are not estimated.
func Parse(data []byte, opt Options) ([]*Graph, error) {
	if err := opt.Validate(); err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, ErrEmpty
	}
	imp, err := detect(data, opt.Format)
	if err != nil {
		return nil, err
	}
	gs, err := imp.Parse(data, opt)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", imp.Name(), err)
	}
	if len(gs) == 0 {
		return nil, fmt.Errorf("%s: %w", imp.Name(), ErrEmpty)
	}
	for _, g := range gs {
		g.Format = imp.Name()
	}
	return gs, nil
}

// headBytes is how much of a file the format is judged from first. The
// text formats' Detect look no further than this.
const headBytes = 64 << 10

var errUnknownFormat = errors.New("cannot tell the trace format")

func detect(data []byte, name string) (Importer, error) {
	if name != "" && name != "auto" {
		return importers[name], nil
	}
	for _, imp := range detectOrd {
		if imp.Detect(data) {
			return imp, nil
		}
	}
	return nil, fmt.Errorf("%w (want one of %s); pass --format", errUnknownFormat, strings.Join(Formats(), ", "))
}

// possible tells whether a file whose first bytes are head may hold a
// trace: JSON (every JSON format starts with an object or an array) or a
// text log its importer recognizes from the head. An empty file passes
// here and is refused as empty later.
func possible(head []byte, format string) bool {
	if format != "" && format != "auto" {
		return true
	}
	if c := firstByte(head); c == '{' || c == '[' || len(bytes.TrimSpace(head)) == 0 {
		return true
	}
	for _, imp := range detectOrd {
		if imp.Detect(head) {
			return true
		}
	}
	return false
}

// Selector chooses one trace of a multi-trace file: by id, or by 0-based
// position when ByIndex is set.
type Selector struct {
	TraceID string
	Index   int
	ByIndex bool
}

// Pick returns the chosen graph. With no choice it returns the only graph,
// or a *MultiTraceError.
func (s Selector) Pick(gs []*Graph) (*Graph, error) {
	switch {
	case s.ByIndex:
		if s.Index < 0 || s.Index >= len(gs) {
			return nil, fmt.Errorf("trace index %d out of range: the file holds %d traces (0 to %d)", s.Index, len(gs), len(gs)-1)
		}
		return gs[s.Index], nil
	case s.TraceID != "":
		var hits []int
		for i, g := range gs {
			if g.ID == s.TraceID {
				hits = append(hits, i)
			}
		}
		switch len(hits) {
		case 0:
			return nil, fmt.Errorf("no trace with id %q among %d traces", s.TraceID, len(gs))
		case 1:
			return gs[hits[0]], nil
		default:
			return nil, fmt.Errorf("trace id %q names %d traces (indexes %s); choose one by index", s.TraceID, len(hits), joinInts(hits))
		}
	case len(gs) == 1:
		return gs[0], nil
	}
	ids := make([]string, 0, 3)
	for _, g := range gs[:min(3, len(gs))] {
		ids = append(ids, g.ID)
	}
	return nil, &MultiTraceError{N: len(gs), IDs: ids}
}

func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ", ")
}

// unmarshal decodes JSON and turns positioned errors into *SyntaxError.
func unmarshal(data []byte, v any) error {
	err := json.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		line, col := position(data, se.Offset-1) // Offset is just past the bad byte
		return &SyntaxError{Line: line, Column: col, Msg: "malformed JSON: " + se.Error()}
	case errors.As(err, &te):
		line, col := position(data, te.Offset)
		field := strings.TrimPrefix(te.Field, "Graph.")
		if field == "" {
			field = "value"
		}
		return &SyntaxError{Line: line, Column: col, Msg: fmt.Sprintf("%s: want %s, found JSON %s", field, jsonKind(te.Type), te.Value)}
	case strings.HasPrefix(err.Error(), "unexpected end of JSON input"):
		line, col := position(data, int64(len(data)))
		return &SyntaxError{Line: line, Column: col, Msg: "malformed JSON: unexpected end of input"}
	}
	return err
}

// NotTraceError is one of wfsched's own result files given as a trace.
type NotTraceError struct {
	Kind string // what the file is, as a phrase: "a run's summary (summary.json)"
}

func (e *NotTraceError) Error() string {
	return "this is " + e.Kind + ", written by wfsched, not a trace"
}

// resultKind says which of wfsched's result files data is, by the fields of
// its (first) JSON object; "" when it is none of them.
func resultKind(data []byte) string {
	var top map[string]json.RawMessage
	if json.Unmarshal(data, &top) != nil {
		line, _, _ := bytes.Cut(data, []byte("\n"))
		if json.Unmarshal(line, &top) != nil {
			return ""
		}
	}
	has := func(keys ...string) bool {
		for _, k := range keys {
			if _, ok := top[k]; !ok {
				return false
			}
		}
		return true
	}
	switch {
	case has("run_id", "backend", "config"):
		return "a run's summary (summary.json)"
	case has("arms_are", "rates_per_s"):
		return "a sweep's results (sweep.json)"
	case has("arms_are", "arms"):
		return "a comparison's results (comparison.json)"
	case has("suite", "cases", "track"):
		return "a benchmark suite's results (bench.json)"
	case has("workflow", "node", "kind", "status", "start_s"):
		return "a run's per-call results (nodes.jsonl)"
	case has("workflow", "outcome", "nodes", "start_s"):
		return "a run's per-workflow results (workflows.jsonl)"
	}
	return ""
}

// jsonKind names what JSON value a Go type decodes from, as a user of the
// file would say it (the Go type itself is the program's business).
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "another value"
	}
	switch t.Kind() {
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	}
	return "another value"
}

// position converts a byte offset to a 1-based line and column.
func position(data []byte, off int64) (line, col int) {
	off = max(0, min(off, int64(len(data))))
	before := data[:off]
	line = bytes.Count(before, []byte{'\n'}) + 1
	col = int(off) - bytes.LastIndexByte(before, '\n')
	return line, col
}

// firstByte returns the first non-space byte of data, or 0.
func firstByte(data []byte) byte {
	t := bytes.TrimLeft(data, " \t\r\n\ufeff")
	if len(t) == 0 {
		return 0
	}
	return t[0]
}

// head returns at most n leading bytes of data.
func head(data []byte, n int) []byte { return data[:min(n, len(data))] }

// metaString renders scalar JSON metadata values as strings; objects and
// arrays are left out.
func metaString(raw map[string]json.RawMessage) map[string]string {
	out := map[string]string{}
	for k, v := range raw {
		var s string
		if json.Unmarshal(v, &s) == nil {
			out[k] = s
			continue
		}
		switch firstByte(v) {
		case '{', '[', 'n', 0:
			continue
		}
		out[k] = string(bytes.TrimSpace(v))
	}
	return out
}
