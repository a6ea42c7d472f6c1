package dag

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
)

// NativeFormat and NativeVersion identify wfsched's own trace format,
// documented in docs/trace-format.md.
const (
	NativeFormat  = "wfsched-dag"
	NativeVersion = 1
)

type nativeFile struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	*Graph
	Graphs []*Graph `json:"graphs,omitempty"`
}

type nativeFormat struct{}

func (nativeFormat) Name() string { return "native" }

func (nativeFormat) Detect(data []byte) bool {
	h := head(data, 4096)
	return firstByte(data) == '{' && bytes.Contains(h, []byte(`"`+NativeFormat+`"`))
}

func (nativeFormat) Parse(data []byte, _ Options) ([]*Graph, error) {
	var f nativeFile
	f.Graph = &Graph{}
	if !decodeNativeParallel(data, &f, minParallelBytes) {
		f = nativeFile{Graph: &Graph{}}
		if err := unmarshal(data, &f); err != nil {
			return nil, err
		}
	}
	if f.Format != NativeFormat {
		return nil, fmt.Errorf("field format is %q, want %q", f.Format, NativeFormat)
	}
	if f.Version != NativeVersion {
		return nil, fmt.Errorf("version %d is not supported (this wfsched reads version %d)", f.Version, NativeVersion)
	}
	gs := f.Graphs
	if len(f.Graph.Nodes) > 0 || len(gs) == 0 {
		gs = append([]*Graph{f.Graph}, gs...)
	}
	for i, g := range gs {
		if g == nil || len(g.Nodes) == 0 {
			return nil, fmt.Errorf("graph %d: %w: no nodes", i, ErrEmpty)
		}
	}
	return gs, nil
}

// WriteJSON writes graphs in wfsched's own format: one graph as a single
// object, several under "graphs".
func WriteJSON(w io.Writer, gs ...*Graph) error {
	f := nativeFile{Format: NativeFormat, Version: NativeVersion}
	if len(gs) == 1 {
		f.Graph = gs[0]
	} else {
		f.Graph = &Graph{}
		f.Graphs = gs
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	enc.SetEscapeHTML(false)
	if len(gs) != 1 {
		// Leave out the empty single-graph fields.
		type multi struct {
			Format  string   `json:"format"`
			Version int      `json:"version"`
			Graphs  []*Graph `json:"graphs"`
		}
		return enc.Encode(multi{f.Format, f.Version, gs})
	}
	return enc.Encode(f)
}
