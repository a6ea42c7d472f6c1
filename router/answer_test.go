package router

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// answerSeeds are backend answers: the cases of issue #30, the
// smuggling classics (conflicting and signed lengths, CL+TE, coding
// lists, obsolete folding, bare CR and LF, NUL, chunk-size overflow) and
// the ordinary shapes.
var answerSeeds = []string{
	"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n5\r\ndata:\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHELLO",
	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHELLOHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged",
	"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged",
	"HTTP/1.1 204 No Content\r\nContent-Length: 4\r\n\r\nbody",
	"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nHELLO!",
	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nHELLO",
	"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nHELLO",
	"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nHELLO",
	"HTTP/1.1 200 OK\r\nContent-Length: -0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 0x5\r\n\r\nHELLO",
	"HTTP/1.1 200 OK\r\nContent-Length: 05\r\n\r\nHELLO",
	"HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nHELLO",
	"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: CHUNKED\r\n\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\nhi",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding:\tchunked \r\n\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: \xe2\x80\x8bchunked\r\n\r\n0\r\n\r\n",
	"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
	"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi",
	"HTTP/1.0 200 OK\r\n\r\nto the end",
	"HTTP/1.1 200 OK\r\n\r\nto the end",
	"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi",
	"HTTP/1.1 200 OK\r\nConnection: X-Secret, close\r\nX-Secret: s\r\nContent-Length: 2\r\n\r\nhi",
	"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 2\r\n\r\nhi",
	" HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
	"HTTP/1.1 200 OK\r\n Content-Length: 2\r\n\r\nhi",
	"HTTP/1.1 200 OK\nContent-Length: 2\n\nhi",
	"HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 2\r\n\r\nhi",
	"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nhi",
	"HTTP/1.1 200 OK\r\nX-A\x00: a\r\nContent-Length: 2\r\n\r\nhi",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nhi\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nhi\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;ext=1\r\nhi\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nX-Trailer: t\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nbad trailer\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Content-Length\r\n\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n0\r\nX-T: 1\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi",
	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHE",
	"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
	"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
	strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", 6) + "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
	"HTTP/1.1  200 OK\r\nContent-Length: 2\r\n\r\nhi",
	"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nhi",
	"HTTP/1.1 2000 OK\r\n\r\n",
	"HTTP/1.1 +20 OK\r\n\r\n",
	"HTTP/1.1 099 Low\r\n\r\n",
	"HTTP/2.0 200 OK\r\n\r\n",
	"HTTP/1.2 200 OK\r\nContent-Length: 2\r\n\r\nhi",
	"HTTP/01.1 200 OK\r\n\r\n",
	"HTP/1.1 200 OK\r\n\r\n",
	"HTTP/1.1 200 OK\r\nPragma: no-cache\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\n",
	"",
}

// likeReadResponse fails t unless readBackendAnswer and the body it
// frames give net/http's verdict on raw: the same answer (status,
// protocol, header, length, coding, close) and body, or a refusal. Go's
// Transport skips informational answers, as the router does, so both are
// read past them. The router refuses more than net/http in the cases
// errUnrelayable lists; those are checked to be such cases. It never
// keeps a connection net/http would close.
func likeReadResponse(t *testing.T, raw []byte, method string) {
	t.Helper()
	br := bufio.NewReaderSize(bytes.NewReader(raw), 4<<10)
	got, f, err := readBackendAnswer(br, method)
	var gotBody []byte
	var gotErr error
	if err == nil {
		gotBody, gotErr = io.ReadAll(newAnswerBody(br, f))
	}

	wbr := bufio.NewReaderSize(bytes.NewReader(raw), 4<<10)
	var want *http.Response
	var werr error
	n1xx, ruled := 0, false // ruled: an answer the router's rules refuse
	for {
		want, werr = http.ReadResponse(wbr, &http.Request{Method: method})
		if werr == nil && (want.ProtoMajor != 1 || want.StatusCode < 100 || want.StatusCode == 101) {
			ruled = true
		}
		if werr != nil || want.StatusCode < 100 || want.StatusCode > 199 || want.StatusCode == 101 {
			break
		}
		n1xx++
	}
	switch {
	case errors.Is(err, errUnrelayable):
		if werr == nil && !ruled && n1xx <= max1xx && len(raw) <= min(maxHeadBytes, 4<<10) {
			t.Fatalf("%q: refused (%v) where no rule of the router's says to: net/http reads %d %s", raw, err, want.StatusCode, want.Proto)
		}
		return
	case err != nil:
		if werr == nil {
			t.Fatalf("%q: refused (%v), but net/http reads %d", raw, err, want.StatusCode)
		}
		return
	case werr != nil:
		t.Fatalf("%q: read as %d, but net/http refuses it: %v", raw, got.StatusCode, werr)
	}
	wantBody, wantErr := io.ReadAll(want.Body)
	type view struct {
		Status, Proto                      string
		StatusCode, ProtoMajor, ProtoMinor int
		Header                             http.Header
		ContentLength                      int64
		TransferEncoding                   []string
		Close                              bool
		Body                               string
		BodyFails                          bool
	}
	v := func(r *http.Response, body []byte, err error) view {
		return view{r.Status, r.Proto, r.StatusCode, r.ProtoMajor, r.ProtoMinor, r.Header, r.ContentLength, r.TransferEncoding,
			r.Close, string(body), err != nil}
	}
	if d := cmp.Diff(v(want, wantBody, wantErr), v(got, gotBody, gotErr)); d != "" {
		t.Fatalf("%q: read otherwise than net/http reads it (-net/http +router):\n%s", raw, d)
	}
	if f.keep && want.Close {
		t.Fatalf("%q: the connection is kept where net/http closes it", raw)
	}
}

// FuzzReadAnswer holds the router's reading of backend answers to
// net/http's on any bytes, after a POST and after a HEAD.
func FuzzReadAnswer(f *testing.F) {
	for _, s := range answerSeeds {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, raw []byte, head bool) {
		method := http.MethodPost
		if head {
			method = http.MethodHead
		}
		likeReadResponse(t, raw, method)
	})
}

// TestReadAnswer checks every seed against net/http, and the verdicts
// that matter most to a proxy: what is refused, and when the connection
// may carry another request.
func TestReadAnswer(t *testing.T) {
	for _, s := range answerSeeds {
		likeReadResponse(t, []byte(s), http.MethodPost)
		likeReadResponse(t, []byte(s), http.MethodHead)
	}
	for _, c := range []struct {
		name, raw string
		refused   bool
		keep      bool
		body      string
	}{
		{"plain", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHELLO", false, true, "HELLO"},
		{"conflicting lengths", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nHELLO!", true, false, ""},
		{"signed length", "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nHELLO", true, false, ""},
		{"CL and TE: chunked, not kept", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n", false, false, "hi"},
		{"last coding not chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n2\r\nhi\r\n0\r\n\r\n", true, false, ""},
		{"101", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", true, false, ""},
		{"unbounded", "HTTP/1.1 200 OK\r\n\r\nto the end", false, false, "to the end"},
		{"100 then 200", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", false, true, "hi"},
	} {
		br := bufio.NewReader(strings.NewReader(c.raw))
		_, f, err := readBackendAnswer(br, http.MethodPost)
		if (err != nil) != c.refused {
			t.Errorf("%s: error %v, want refused %v", c.name, err, c.refused)
			continue
		}
		if err != nil {
			continue
		}
		body, err := io.ReadAll(newAnswerBody(br, f))
		if f.keep != c.keep || string(body) != c.body || err != nil {
			t.Errorf("%s: kept %v, body %q %v; want kept %v, body %q", c.name, f.keep, body, err, c.keep, c.body)
		}
	}
}
