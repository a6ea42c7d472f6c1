package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// DefaultWaitReady is how long run, compare, sweep and bench wait by
// default for an --endpoint to answer (--wait-ready): long enough for
// `wfsched sim &` or a router and its engines started just before, short
// enough that a wrong address is soon told. A vLLM loading a large model
// needs more (scripts/setup_vllm.sh waits itself).
const DefaultWaitReady = 30 * time.Second

// readyPoll is the first interval between two checks; it doubles up to a
// second. readyCheck bounds one check (a variable for the tests).
const readyPoll = 100 * time.Millisecond

var readyCheck = 5 * time.Second

// waitReady calls check until it succeeds, ctx ends or wait has passed
// (0: one check), saying once on log what it waits for. check gets a
// context bounded to readyCheck. The error is the last check's, with a hint that
// says what kind of failure it was (see readyHint).
func waitReady(ctx context.Context, base string, wait time.Duration, log io.Writer, check func(context.Context) error) error {
	deadline := time.Now().Add(wait)
	poll := readyPoll
	for said := false; ; {
		cctx, cancel := context.WithTimeout(ctx, readyCheck)
		err := check(cctx)
		cancel()
		if err == nil {
			return nil
		}
		left := time.Until(deadline)
		if left <= 0 || ctx.Err() != nil || refused(err) {
			return &Error{Err: err, Hint: readyHint(base, err, wait)}
		}
		if !said && log != nil {
			fmt.Fprintf(log, "wfsched: waiting up to %v for %s to answer (--wait-ready)\n", wait.Round(time.Second), base)
			said = true
		}
		select {
		case <-time.After(min(poll, left)):
		case <-ctx.Done():
		}
		poll = min(2*poll, time.Second)
	}
}

// readyHint says what a failed readiness check means: nothing listening
// (the only case where "is the server running?" is the question), a host
// that does not resolve, a server that accepted the connection but did
// not answer, or one that answered but is not ready or not what was
// expected.
func readyHint(base string, err error, wait time.Duration) string {
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Sprintf("nothing listens at %s: is the server running? ('wfsched sim' starts a local one; leave out --endpoint to use the embedded engine; --wait-ready waits longer than %v for one starting)", hostOf(base), wait)
	case errors.As(err, &dnsErr):
		return fmt.Sprintf("the host of %s does not resolve: check the URL", base)
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return fmt.Sprintf("%s accepted the connection but did not answer in time: a server still starting, a busy one, or not an OpenAI-compatible server", base)
	case refused(err):
		return fmt.Sprintf("%s wants an API key, and this is not it: give it with --api-key or $WFSCHED_API_KEY", base)
	case strings.Contains(err.Error(), "answered 503"):
		return fmt.Sprintf("%s is up but not ready (503): a router whose backends are not healthy yet, or an engine still loading; --wait-ready waits longer than %v", base, wait)
	}
	return fmt.Sprintf("%s answers, but not as an OpenAI-compatible server (GET /health, GET /v1/models): check the URL and the port", base)
}

// refused says whether the server refused the request for its
// credentials (401, 403): waiting will not change that.
func refused(err error) bool {
	msg := err.Error()
	for _, code := range []string{"401", "403"} {
		if strings.Contains(msg, "answered "+code) || strings.Contains(msg, "status code: "+code) {
			return true
		}
	}
	return false
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func hostOf(base string) string {
	if u, err := url.Parse(base); err == nil && u.Host != "" {
		return u.Host
	}
	return base
}
