package sim

import (
	"bufio"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// answer turns a request's output tokens into the text it answers with:
// stop strings cut it (the stream holds back the bytes a stop string could
// still claim, as vLLM's detokenizer does), a tool call's arguments are a
// span of it, and it is released only at character boundaries.
type answer struct {
	s    *Server
	p    *plan
	raw  []byte // output bytes so far, token by token
	ends []int  // ends[i]: len(raw) after token i
	sent int    // bytes of raw already answered
	step [2]int // bytes [from, to) of raw the stream's current step answers
	out  *bufio.Writer
}

// add appends output tokens.
func (a *answer) add(toks []int) {
	for _, t := range toks {
		a.raw = append(a.raw, a.s.e.TokenText(t)...)
		a.ends = append(a.ends, len(a.raw))
	}
}

// limit is how many bytes of raw may be answered now.
func (a *answer) limit(done bool, stop Stop) int {
	n := len(a.raw)
	if done {
		if stop.TextEnd >= 0 {
			n = min(n, stop.TextEnd)
		}
		return n
	}
	if !a.p.er.IncludeStop {
		for _, st := range a.p.er.Stop {
			n = min(n, len(a.raw)-(len(st)-1))
		}
	}
	// Not inside a character.
	n = max(n, a.sent)
	for n > a.sent && !utf8.Valid(a.raw[a.sent:n]) {
		n--
	}
	return n
}

// text returns the answer's text in bytes [from, to) of raw: for an
// answer that calls tools only what falls within their arguments.
func (a *answer) text(from, to int) string {
	if len(a.p.calls) > 0 {
		var b strings.Builder
		for i := range a.p.calls {
			b.WriteString(a.callText(i, from, to))
		}
		return b.String()
	}
	if from >= to {
		return ""
	}
	return strings.ToValidUTF8(string(a.raw[from:to]), "\uFFFD")
}

// callText returns what falls within call i's arguments of bytes
// [from, to) of raw.
func (a *answer) callText(i, from, to int) string {
	t := a.p.calls[i]
	from, to = max(from, t.from), min(to, t.to)
	if from >= to {
		return ""
	}
	return strings.ToValidUTF8(string(a.raw[from:to]), "\uFFFD")
}

// reached reports whether an answer of end bytes has got to call i (the
// first, or past the arguments of the one before).
func (a *answer) reached(i, end int) bool {
	return i == 0 || end > a.p.calls[i-1].to
}

// finish returns the finish reason and stop reason the answer ends with.
func (a *answer) finish(reason string, stop Stop) (string, any) {
	if reason == FinishStop {
		if n := len(a.p.calls); n > 0 && len(a.raw) >= a.p.calls[n-1].to {
			return a.p.calls[0].reason, nil
		}
		switch {
		case stop.String != "":
			return reason, stop.String
		case stop.TokenID >= 0:
			return reason, stop.TokenID
		}
	}
	return reason, nil
}

// toolCall is the answer's call i, with the arguments given so far.
func (a *answer) toolCall(i int, args string, header bool) map[string]any {
	t := a.p.calls[i]
	fn := map[string]any{"arguments": args}
	call := map[string]any{"index": i, "function": fn}
	if header {
		call["id"], call["type"] = t.id, "function"
		fn["name"] = t.name
	}
	return call
}

// logprobs of output tokens [from, to): chat's {content: [...]} or
// completions' parallel lists, with offset the text position of the first.
func (a *answer) logprobs(toks []int, first, offset int) any {
	if a.p.logprobs < 0 || len(toks) == 0 {
		return nil
	}
	entries := make([]tokenLogprob, len(toks))
	for i, t := range toks {
		entries[i] = a.s.tokenLogprob(a.p, t, first+i, a.p.logprobs)
	}
	if a.p.chat {
		content := make([]map[string]any, len(entries))
		for i, e := range entries {
			top := make([]map[string]any, len(e.top))
			for k, alt := range e.top {
				top[k] = map[string]any{"token": alt.token, "logprob": alt.logprob, "bytes": alt.bytes}
			}
			content[i] = map[string]any{"token": e.token, "logprob": e.logprob, "bytes": e.bytes, "top_logprobs": top}
		}
		return map[string]any{"content": content}
	}
	lp := map[string]any{}
	tokens, values, offsets, tops := make([]string, len(entries)), make([]float64, len(entries)), make([]int, len(entries)), make([]map[string]float64, len(entries))
	for i, e := range entries {
		tokens[i], values[i], offsets[i] = e.token, e.logprob, offset
		offset += len(e.text)
		tops[i] = map[string]float64{e.token: e.logprob}
		for _, alt := range e.top {
			tops[i][alt.token] = alt.logprob
		}
	}
	lp["tokens"], lp["token_logprobs"], lp["text_offset"], lp["top_logprobs"] = tokens, values, offsets, tops
	return lp
}

// tokenLogprob is one token's log-probability and its top alternatives.
type tokenLogprob struct {
	id      int
	token   string
	text    string
	bytes   []int
	logprob float64
	top     []tokenLogprob
}

// tokenLogprob draws token tok's log-probability at output position pos,
// deterministic from the request's seed: the token itself is the most
// likely and leads its own list of top alternatives; the others (filler
// words, distinct) share the rest of the mass in halving shares, so the
// values are a well-formed distribution.
func (s *Server) tokenLogprob(p *plan, tok, pos, top int) tokenLogprob {
	rng := rand.New(rand.NewPCG(p.seed, uint64(pos)*0x9E3779B97F4A7C15+uint64(tok)))
	prob := 0.55 + 0.44*rng.Float64()
	e := s.logprobEntry(p, tok, math.Log(prob))
	if top == 0 {
		return e
	}
	e.top = []tokenLogprob{e}
	rest := 1 - prob
	for k := 0; len(e.top) < top && k <= 4*top; k++ {
		alt := s.e.fillIDs[rng.IntN(len(s.e.fillIDs))]
		if slices.ContainsFunc(e.top, func(x tokenLogprob) bool { return x.id == alt }) {
			continue
		}
		rest /= 2
		e.top = append(e.top, s.logprobEntry(p, alt, math.Log(rest)))
	}
	return e
}

func (s *Server) logprobEntry(p *plan, tok int, lp float64) tokenLogprob {
	text := s.e.TokenText(tok)
	b := make([]int, len(text))
	for i := range len(text) {
		b[i] = int(text[i])
	}
	return tokenLogprob{id: tok, token: s.logprobToken(p, tok), text: text, bytes: b, logprob: lp}
}

func (s *Server) logprobToken(p *plan, tok int) string {
	if p.tokenIDs {
		return "token_id:" + strconv.Itoa(tok)
	}
	return strings.ToValidUTF8(s.e.TokenText(tok), "\uFFFD")
}

// promptLogprobs is vLLM's prompt_logprobs: null for the first prompt
// token, then each token's {id: {logprob, rank, decoded_token}} with its
// alternatives.
func (s *Server) promptLogprobs(p *plan) []any {
	if p.promptLP < 0 {
		return nil
	}
	out := make([]any, len(p.prompt))
	for i := 1; i < len(p.prompt); i++ {
		e := s.tokenLogprob(p, p.prompt[i], -1-i, p.promptLP)
		m := map[string]any{strconv.Itoa(p.prompt[i]): map[string]any{"logprob": e.logprob, "rank": 1, "decoded_token": e.token}}
		for k, alt := range e.top[min(1, len(e.top)):] {
			m[strconv.Itoa(alt.id)] = map[string]any{"logprob": alt.logprob, "rank": k + 2, "decoded_token": alt.token}
		}
		out[i] = m
	}
	return out
}

// collect waits for a request to end and returns its answer: the tokens,
// how many of them the answer keeps (those wholly past a stop string's cut
// are not in the logprobs), the finish and stop reasons, and the text's
// end. ok is false when the client left.
func (s *Server) collect(r *http.Request, st *Stream, p *plan) (a *answer, toks []int, kept int, finish string, stopReason any, end int, ok bool) {
	var reason string
	for {
		var done bool
		toks, done, reason = st.Snapshot(0)
		if done {
			break
		}
		if !s.wait(r, st) {
			return nil, nil, 0, "", nil, 0, false
		}
	}
	a = &answer{s: s, p: p}
	a.add(toks)
	stop := st.StopInfo()
	end = a.limit(true, stop)
	kept = len(toks)
	for kept > 0 && a.ends[kept-1] > end && (kept < 2 || a.ends[kept-2] >= end) {
		kept--
	}
	finish, stopReason = a.finish(reason, stop)
	return a, toks, kept, finish, stopReason, end, true
}

// whole answers a chat or completions request in one JSON body.
func (s *Server) whole(w http.ResponseWriter, r *http.Request, st *Stream, p *plan) {
	a, toks, kept, finish, stopReason, end, ok := s.collect(r, st, p)
	if !ok {
		return
	}
	text := p.echo + a.text(0, end)
	choice := map[string]any{"index": 0, "logprobs": a.logprobs(toks[:kept], 0, len(p.echo)), "finish_reason": finish, "stop_reason": stopReason}
	body := map[string]any{"id": p.id, "created": time.Now().Unix(), "model": s.e.Model(), "choices": []any{choice}, "usage": s.usage(st)}
	if p.chat {
		body["object"] = "chat.completion"
		msg := map[string]any{"role": "assistant", "content": text, "tool_calls": []any{}}
		if len(p.calls) > 0 {
			msg["content"] = nil
			if p.echo != "" {
				msg["content"] = p.echo
			}
			calls := []any{}
			for i, t := range p.calls {
				if a.reached(i, end) {
					calls = append(calls, map[string]any{"id": t.id, "type": "function",
						"function": map[string]any{"name": t.name, "arguments": a.callText(i, 0, end)}})
				}
			}
			msg["tool_calls"] = calls
		}
		choice["message"] = msg
		if p.promptLP >= 0 {
			body["prompt_logprobs"] = s.promptLogprobs(p)
		}
	} else {
		body["object"] = "text_completion"
		choice["text"] = text
		if p.promptLP >= 0 {
			choice["prompt_logprobs"] = s.promptLogprobs(p)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	writeJSON(w, body)
}

// emitter writes one API's events for a streamed answer: begin before the
// first token, delta for each output token (its text, "" when held back or
// outside a tool call's arguments), end with the last token, and close.
type emitter interface {
	begin()
	delta(text string, toks []int, first int)
	end(text string, toks []int, first int, reason string, stopReason any)
	close()
}

// stream writes an answer as server-sent events, token by token as the
// engine gives them, through em; faults (a cut, a slow stream) apply here.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, st *Stream, a *answer, f fault, em emitter) {
	fl, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 4096)
	flush := func() {
		bw.Flush()
		if fl != nil {
			fl.Flush()
		}
	}
	a.out = bw
	got, chunks := 0, 0
	last := time.Now()
	begun := false // begin with the first token, as vLLM's first chunk comes with it
	for {
		toks, done, reason := st.Snapshot(got)
		stop := Stop{TokenID: -1, TextEnd: -1}
		if done {
			stop = st.StopInfo()
		}
		for k := range toks {
			if f.cutAfter >= 0 && chunks >= f.cutAfter {
				flush()
				st.Abort()
				panic(http.ErrAbortHandler) // close the connection mid-stream
			}
			if f.slow > 1 {
				flush()
				time.Sleep(time.Duration(float64(time.Since(last)) * (f.slow - 1)))
			}
			if !begun {
				em.begin()
				begun = true
			}
			a.add(toks[k : k+1])
			lim := a.limit(done && k == len(toks)-1, stop)
			text := a.text(a.sent, lim)
			a.step = [2]int{a.sent, max(a.sent, lim)}
			a.sent = max(a.sent, lim)
			if done && k == len(toks)-1 {
				fr, sr := a.finish(reason, stop)
				em.end(text, toks[k:k+1], got, fr, sr)
			} else {
				em.delta(text, toks[k:k+1], got)
			}
			got++
			chunks++
			last = time.Now()
		}
		if done {
			if len(toks) == 0 {
				if !begun {
					em.begin()
				}
				fr, sr := a.finish(reason, stop)
				em.end("", nil, got, fr, sr)
			}
			break
		}
		flush()
		if !s.wait(r, st) {
			return
		}
	}
	em.close()
	flush()
}

// chatEmitter writes chat and completions chunks as vLLM does: for chat a
// first chunk with the assistant role, then a chunk per output token with
// its text (or its part of a tool call's arguments) and logprobs, the last
// carrying the finish reason; a usage chunk when
// stream_options.include_usage is set (usage on every chunk with
// continuous_usage_stats); and "data: [DONE]".
type chatEmitter struct {
	a       *answer
	st      *Stream
	object  string
	created int64
	headers int // tool calls whose id and name were sent
}

func newChatEmitter(a *answer, st *Stream) *chatEmitter {
	object := "text_completion"
	if a.p.chat {
		object = "chat.completion.chunk"
	}
	return &chatEmitter{a: a, st: st, object: object, created: time.Now().Unix()}
}

func (c *chatEmitter) event(choices []any, usage bool) {
	ev := map[string]any{"id": c.a.p.id, "object": c.object, "created": c.created, "model": c.a.s.e.Model(), "choices": choices}
	if usage {
		ev["usage"] = c.a.s.usage(c.st)
	}
	writeEvent(c.a.out, ev)
}

func (c *chatEmitter) begin() {
	p := c.a.p
	if p.chat {
		c.event([]any{map[string]any{"index": 0, "delta": map[string]any{"role": "assistant", "content": ""}, "logprobs": nil, "finish_reason": nil}}, p.eachUse)
	}
	if p.echo != "" { // the echoed text comes first, whole
		choice := map[string]any{"index": 0, "text": p.echo, "logprobs": nil, "finish_reason": nil}
		if p.chat {
			choice = map[string]any{"index": 0, "delta": map[string]any{"content": p.echo}, "logprobs": nil, "finish_reason": nil}
		}
		c.event([]any{choice}, p.eachUse)
	}
}

func (c *chatEmitter) delta(text string, toks []int, first int) {
	a := c.a
	if text == "" && a.p.logprobs < 0 && (c.headers == len(a.p.calls) || !a.reached(c.headers, a.step[1])) {
		return // nothing to say yet
	}
	c.chunk(text, toks, first, "", nil)
}

func (c *chatEmitter) end(text string, toks []int, first int, reason string, stopReason any) {
	c.chunk(text, toks, first, reason, stopReason)
}

func (c *chatEmitter) chunk(text string, toks []int, first int, reason string, stopReason any) {
	a, p := c.a, c.a.p
	choice := map[string]any{"index": 0, "logprobs": a.logprobs(toks, first, len(p.echo)+a.sent-len(text)), "finish_reason": nil}
	switch {
	case !p.chat:
		choice["text"] = text
	case len(p.calls) > 0:
		// Each call's part of this step's bytes; a call's id and name
		// with its first chunk.
		var calls []any
		for i := range p.calls {
			part := a.callText(i, a.step[0], a.step[1])
			switch {
			case i < c.headers && part != "":
				calls = append(calls, a.toolCall(i, part, false))
			case i == c.headers && a.reached(i, a.step[1]):
				calls = append(calls, a.toolCall(i, part, true))
				c.headers++
			}
		}
		d := map[string]any{}
		if calls != nil {
			d["tool_calls"] = calls
		}
		choice["delta"] = d
	default:
		choice["delta"] = map[string]any{"content": text}
	}
	if reason != "" {
		choice["finish_reason"], choice["stop_reason"] = reason, stopReason
	}
	c.event([]any{choice}, p.eachUse)
}

func (c *chatEmitter) close() {
	if c.a.p.usage {
		c.event([]any{}, true)
	}
	c.a.out.WriteString("data: [DONE]\n\n")
}
