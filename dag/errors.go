package dag

import (
	"errors"
	"fmt"
	"strings"
)

// ErrEmpty is returned for input that holds no trace or a trace with no nodes.
var ErrEmpty = errors.New("empty trace")

// CycleError reports a dependency cycle; Nodes lists one cycle in edge
// order, starting from its node earliest in the file.
type CycleError struct {
	Nodes []string
}

func (e *CycleError) Error() string {
	return fmt.Sprintf("dependency cycle: %s -> %s", strings.Join(e.Nodes, " -> "), e.Nodes[0])
}

// EdgeError reports a bad edge, by its position in the edge list.
type EdgeError struct {
	Index  int
	Edge   Edge
	Reason string
}

func (e *EdgeError) Error() string {
	return fmt.Sprintf("edge %d (%q -> %q): %s", e.Index, e.Edge.From, e.Edge.To, e.Reason)
}

// NodeError reports a bad node, by its position and id.
type NodeError struct {
	Index  int
	ID     string
	Reason string
}

func (e *NodeError) Error() string {
	return fmt.Sprintf("node %d (%q): %s", e.Index, e.ID, e.Reason)
}

// SyntaxError reports malformed input at a 1-based line and column.
type SyntaxError struct {
	Line, Column int
	Msg          string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Msg)
}

// TooLargeError reports a file over the size limit.
type TooLargeError struct {
	Size, Limit int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("file is %d bytes, over the %d-byte limit", e.Size, e.Limit)
}

// MultiTraceError is returned when one graph was asked for but the input
// holds several and none was chosen.
type MultiTraceError struct {
	N   int
	IDs []string // the first few trace ids
}

func (e *MultiTraceError) Error() string {
	return fmt.Sprintf("the file holds %d traces (%s...); choose one", e.N, strings.Join(e.IDs, ", "))
}

// InputError marks an error caused by the input (as opposed to I/O), so a
// command line can exit with its bad-input code. Path is the file.
type InputError struct {
	Path string
	Err  error
}

func (e *InputError) Error() string {
	if e.Path == "" {
		return e.Err.Error()
	}
	return e.Path + ": " + e.Err.Error()
}

func (e *InputError) Unwrap() error { return e.Err }
