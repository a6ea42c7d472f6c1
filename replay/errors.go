package replay

import "fmt"

// Error is a failure the command line reports with an exit code: Usage
// marks bad input (exit 2), otherwise the run could not be done (exit 1);
// Hint says what to do.
type Error struct {
	Usage bool
	Err   error
	Hint  string
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func usage(format string, args ...any) error {
	return &Error{Usage: true, Err: fmt.Errorf(format, args...)}
}
