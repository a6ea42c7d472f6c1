package router

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"strconv"
	"strings"
)

// A backend's answer is read here as net/http's ReadResponse reads it (the
// status line, the header, and the body's framing by
// net/http/transfer.go's rules), and FuzzReadAnswer holds the two to the
// same verdict on any bytes. What a proxy needs beyond a parse is decided
// here too, stricter than Go's Transport where HAProxy is: the connection
// is not reused after an answer whose framing was doubtful (both
// Transfer-Encoding and Content-Length, RFC 9112 6.3) or after which the
// backend sent bytes nobody asked for (see upBody.finish).

// maxHeadBytes bounds an answer's head.
const maxHeadBytes = 64 << 10

// max1xx bounds the informational answers before the final one (Go's
// Transport allows 5).
const max1xx = 5

// answerFraming is how an answer's body is delimited and whether its
// connection may carry another request after it.
type answerFraming struct {
	remain  int64 // body bytes with a Content-Length (0: none), -1 otherwise
	chunked bool
	keep    bool
	// hop lists the fields the answer's Connection field named, read
	// before net/http's rule drops a Connection field that says close:
	// they are hop-by-hop and must not be relayed.
	hop []string
}

// errMalformedAnswer marks an answer net/http refuses too;
// errUnrelayable one that net/http reads but the router does not relay (a
// protocol other than HTTP/1.x, a status under 100, a 101, more than
// max1xx informational answers, a status line over the read buffer or a
// head over maxHeadBytes: net/http has no bound of its own there).
var (
	errMalformedAnswer = errors.New("malformed answer")
	errUnrelayable     = errors.New("answer not relayed")
)

// readBackendAnswer reads the head of the final answer to a request of method
// from br, skipping informational ones, and says how its body is framed.
// resp.Body is unset: the caller reads the body from br as framing says.
func readBackendAnswer(br *bufio.Reader, method string) (*http.Response, answerFraming, error) {
	for n1xx := 0; ; n1xx++ {
		resp, err := readAnswerHead(br)
		if err != nil {
			return nil, answerFraming{}, err
		}
		code := resp.StatusCode
		switch {
		case resp.ProtoMajor != 1:
			return nil, answerFraming{}, fmt.Errorf("%w: protocol %q", errUnrelayable, clip(resp.Proto))
		case code < 100:
			return nil, answerFraming{}, fmt.Errorf("%w: status %d", errUnrelayable, code)
		case code == http.StatusSwitchingProtocols:
			// The router never asks for an upgrade (Upgrade is not
			// forwarded): a 101 is not an answer it can relay.
			return nil, answerFraming{}, fmt.Errorf("%w: 101 Switching Protocols to a request that asked for no upgrade", errUnrelayable)
		case code < 200:
			// 100 Continue, 103 Early Hints: the answer follows. Their
			// own bodies are empty (net/http's rule for 1xx).
			if n1xx >= max1xx {
				return nil, answerFraming{}, fmt.Errorf("%w: more than %d informational answers", errUnrelayable, max1xx)
			}
			if _, err := frameAnswer(resp, method); err != nil {
				return nil, answerFraming{}, err
			}
			continue
		}
		f, err := frameAnswer(resp, method)
		if err != nil {
			return nil, answerFraming{}, err
		}
		return resp, f, nil
	}
}

// readAnswerHead reads one status line and header as http.ReadResponse
// does.
func readAnswerHead(br *bufio.Reader) (*http.Response, error) {
	line, err := br.ReadSlice('\n')
	switch {
	case err == bufio.ErrBufferFull:
		return nil, fmt.Errorf("%w: status line over %d bytes", errUnrelayable, br.Size())
	case err == io.EOF && len(line) > 0:
		return nil, io.ErrUnexpectedEOF // an answer, cut
	case err != nil:
		return nil, err
	}
	// textproto's ReadLine: the line without its CRLF or LF.
	line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
	resp := &http.Response{}
	proto, status, ok := bytes.Cut(line, []byte(" "))
	if !ok {
		return nil, fmt.Errorf("%w: status line %q", errMalformedAnswer, clip(string(line)))
	}
	switch {
	case bytes.Equal(proto, []byte("HTTP/1.1")):
		resp.Proto, resp.ProtoMajor, resp.ProtoMinor = "HTTP/1.1", 1, 1
	case bytes.Equal(proto, []byte("HTTP/1.0")):
		resp.Proto, resp.ProtoMajor, resp.ProtoMinor = "HTTP/1.0", 1, 0
	default:
		resp.Proto = string(proto)
	}
	resp.Status = strings.TrimLeft(string(status), " ")
	codeText, _, _ := strings.Cut(resp.Status, " ")
	if len(codeText) != 3 {
		return nil, fmt.Errorf("%w: status code %q", errMalformedAnswer, clip(codeText))
	}
	if resp.StatusCode, err = strconv.Atoi(codeText); err != nil || resp.StatusCode < 0 {
		return nil, fmt.Errorf("%w: status code %q", errMalformedAnswer, clip(codeText))
	}
	if resp.ProtoMajor == 0 {
		if resp.ProtoMajor, resp.ProtoMinor, ok = http.ParseHTTPVersion(resp.Proto); !ok {
			return nil, fmt.Errorf("%w: version %q", errMalformedAnswer, clip(resp.Proto))
		}
	}
	hdr, err := readFields(br)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	resp.Header = http.Header(hdr)
	// net/http's fixPragmaCacheControl.
	if p := resp.Header["Pragma"]; len(p) > 0 && p[0] == "no-cache" {
		if _, ok := resp.Header["Cache-Control"]; !ok {
			resp.Header["Cache-Control"] = []string{"no-cache"}
		}
	}
	return resp, nil
}

// readFields reads header fields through the empty line. The common case,
// a head within the read buffer, is parsed there with parseFields; a head
// it does not take, or a longer one, is read by textproto, as net/http
// reads it, up to maxHeadBytes.
func readFields(br *bufio.Reader) (textproto.MIMEHeader, error) {
	for {
		buf, _ := br.Peek(br.Buffered())
		if end := headEnd(buf); end > 0 {
			if h, ok := parseFields(string(buf[:end])); ok {
				br.Discard(end)
				return textproto.MIMEHeader(h), nil
			}
			break
		} else if end < 0 {
			break // a bare line feed: textproto judges
		}
		if len(buf) == br.Size() {
			break
		}
		if _, err := br.Peek(len(buf) + 1); err != nil {
			if len(buf) == 0 {
				return nil, err
			}
			break // cut short: textproto says how
		}
	}
	return textproto.NewReader(bufio.NewReader(&capped{r: br, left: maxHeadBytes})).ReadMIMEHeader()
}

// capped reads at most left bytes of r, then fails: it bounds what
// textproto may gather. It reads one byte at a time, so that nothing past
// the head is taken from r (only long or odd heads come here).
type capped struct {
	r    *bufio.Reader
	left int
}

func (c *capped) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, fmt.Errorf("%w: head over %d bytes", errUnrelayable, maxHeadBytes)
	}
	if len(p) == 0 {
		return 0, nil
	}
	b, err := c.r.ReadByte()
	if err != nil {
		return 0, err
	}
	c.left--
	p[0] = b
	return 1, nil
}

// frameAnswer applies net/http's framing rules for a response (its
// readTransfer and fixLength) to resp, answering to a request of method:
// the Transfer-Encoding and Content-Length fields are checked and
// normalized as net/http leaves them, and resp.ContentLength,
// TransferEncoding and Close are set as ReadResponse sets them.
func frameAnswer(resp *http.Response, method string) (answerFraming, error) {
	h := resp.Header
	hop := connectionFields(h)
	major, minor := resp.ProtoMajor, resp.ProtoMinor
	closing := headerHasToken(h, "Connection", "close")
	if major == 1 && minor == 0 {
		closing = closing || !headerHasToken(h, "Connection", "keep-alive")
	} else if closing {
		delete(h, "Connection")
	}
	// Transfer-Encoding: only "chunked", once, and only from HTTP/1.1.
	chunked, doubtful := false, false
	if te, ok := h["Transfer-Encoding"]; ok {
		delete(h, "Transfer-Encoding")
		if major > 1 || major == 1 && minor >= 1 {
			if len(te) != 1 {
				return answerFraming{}, fmt.Errorf("%w: more than one Transfer-Encoding %q", errMalformedAnswer, te)
			}
			if !asciiEqualFold(te[0], "chunked") {
				return answerFraming{}, fmt.Errorf("%w: unsupported Transfer-Encoding %q", errMalformedAnswer, clip(te[0]))
			}
			chunked = true
		}
	}
	// Content-Length: repeated only with one value, and only digits.
	cls := h["Content-Length"]
	if len(cls) > 1 {
		first := textproto.TrimString(cls[0])
		for _, v := range cls[1:] {
			if textproto.TrimString(v) != first {
				return answerFraming{}, fmt.Errorf("%w: Content-Length fields disagree %q", errMalformedAnswer, cls)
			}
		}
		h["Content-Length"] = []string{first}
		cls = h["Content-Length"]
	}
	declared := int64(-1)
	if len(cls) > 0 {
		v := textproto.TrimString(cls[0])
		n, err := strconv.ParseUint(v, 10, 63)
		if err != nil {
			return answerFraming{}, fmt.Errorf("%w: Content-Length %q", errMalformedAnswer, clip(v))
		}
		declared = int64(n)
		doubtful = chunked
	}
	bodyAllowed := resp.StatusCode/100 != 1 && resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusNotModified
	length := declared
	switch {
	case method == http.MethodHead || !bodyAllowed:
		length = 0
	case chunked:
		delete(h, "Content-Length")
		length = -1
	case declared < 0:
		delete(h, "Content-Length")
	}
	if tr, ok := h["Trailer"]; ok && chunked {
		delete(h, "Trailer")
		for _, v := range tr {
			for k := range strings.SplitSeq(v, ",") {
				switch textproto.CanonicalMIMEHeaderKey(textproto.TrimString(k)) {
				case "Transfer-Encoding", "Trailer", "Content-Length":
					return answerFraming{}, fmt.Errorf("%w: trailer field %q", errMalformedAnswer, clip(k))
				}
			}
		}
	}
	if length == -1 && !chunked && bodyAllowed {
		closing = true // the body ends with the connection
	}
	resp.ContentLength, resp.Close, resp.TransferEncoding = length, closing, nil
	if method == http.MethodHead {
		resp.ContentLength = declared
	}
	if chunked {
		resp.TransferEncoding = []string{"chunked"}
	}
	f := answerFraming{remain: length, keep: !closing && !doubtful, hop: hop}
	if length < 0 && chunked {
		f.chunked = true
	}
	return f, nil
}

// asciiEqualFold is strings.EqualFold for ASCII only, as net/http
// compares Transfer-Encoding (no Unicode case folding: "chunKed" with a
// Kelvin sign is not "chunked").
func asciiEqualFold(s, t string) bool {
	if len(s) != len(t) {
		return false
	}
	for i := 0; i < len(s); i++ {
		a, b := s[i], t[i]
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}

// answerBody reads a body as f frames it from br, as net/http's body
// reader does: a short Content-Length body or a cut chunked one is an
// io.ErrUnexpectedEOF, and a chunked body's trailer is read (and dropped)
// at its end. It reports io.EOF exactly at the body's end.
type answerBody struct {
	br      *bufio.Reader
	r       io.Reader // the chunked reader, or br
	remain  int64     // -1: chunked or to the end of the connection
	chunked bool
	err     error
}

func newAnswerBody(br *bufio.Reader, f answerFraming) *answerBody {
	b := &answerBody{br: br, r: br, remain: f.remain, chunked: f.chunked}
	if f.chunked {
		b.r = httputil.NewChunkedReader(br)
	}
	if f.remain == 0 {
		b.err = io.EOF
	}
	return b
}

func (b *answerBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.remain >= 0 && int64(len(p)) > b.remain {
		p = p[:b.remain]
	}
	n, err := b.r.Read(p)
	if b.remain > 0 {
		b.remain -= int64(n)
		if b.remain == 0 && err == nil {
			err = io.EOF
		} else if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
	}
	if err == io.EOF && b.chunked {
		if terr := readTrailer(b.br); terr != nil {
			err = terr
		}
	}
	if err != nil {
		b.err = err
	}
	return n, err
}

// readTrailer reads a chunked body's trailer section through its end, as
// net/http's body does (the fields are dropped: the router does not relay
// trailers).
func readTrailer(br *bufio.Reader) error {
	buf, err := br.Peek(2)
	if bytes.Equal(buf, []byte("\r\n")) {
		br.Discard(2)
		return nil
	}
	if len(buf) < 2 {
		return io.ErrUnexpectedEOF
	}
	if err != nil {
		return err
	}
	// The trailer must end within the read buffer (net/http's bound).
	if !upcomingDoubleCRLF(br) {
		return fmt.Errorf("%w: suspiciously long trailer after chunked body", errMalformedAnswer)
	}
	if _, err := textproto.NewReader(br).ReadMIMEHeader(); err != nil {
		if err == io.EOF {
			return io.ErrUnexpectedEOF
		}
		return err
	}
	return nil
}

// upcomingDoubleCRLF says whether the bytes br holds or can hold end a
// header section, as net/http's seeUpcomingDoubleCRLF checks.
func upcomingDoubleCRLF(br *bufio.Reader) bool {
	for peek := 4; ; peek++ {
		buf, err := br.Peek(peek)
		if bytes.HasSuffix(buf, []byte("\r\n\r\n")) {
			return true
		}
		if err != nil {
			return false
		}
	}
}
