package tokenizer

import "strconv"

// Message is one chat message: a role ("system", "user", "assistant",
// "tool") and its text; an assistant message may carry the tool calls the
// model made.
type Message struct {
	Role      string
	Content   string
	ToolCalls []ToolCall
}

// ToolCall is a function call an assistant message made: the function's
// name and its arguments, a JSON text.
type ToolCall struct {
	Name, Arguments string
}

// Text is what the template renders of a message: its content, then each
// tool call on a line of its own as {"name": NAME, "parameters": ARGS}, the
// JSON form Llama 3.1's template gives calls. One rendering for the trace
// loader's estimates and for the engine, so their counts agree.
func (m Message) Text() string {
	if len(m.ToolCalls) == 0 {
		return m.Content
	}
	b := []byte(m.Content)
	for _, c := range m.ToolCalls {
		if len(b) > 0 {
			b = append(b, '\n')
		}
		args := c.Arguments
		if args == "" {
			args = "{}"
		}
		b = append(b, `{"name": `...)
		b = strconv.AppendQuote(b, c.Name)
		b = append(b, `, "parameters": `...)
		b = append(b, args...)
		b = append(b, '}')
	}
	return string(b)
}

// Special token ids for the chat template. cl100k_base has no chat tokens of
// its own, so ids past its vocabulary stand in for Llama 3's
// <|begin_of_text|>, <|start_header_id|>, <|end_header_id|> and <|eot_id|>.
const (
	BeginOfText   = 100_300
	StartHeader   = 100_301
	EndHeader     = 100_302
	EndOfTurn     = 100_303
	headerNewline = "\n\n"
)

// specials are the special tokens' texts, for decoding.
var specials = map[int]string{
	BeginOfText: "<|begin_of_text|>",
	StartHeader: "<|start_header_id|>",
	EndHeader:   "<|end_header_id|>",
	EndOfTurn:   "<|eot_id|>",
}

// Chat appends the token ids of messages rendered with a Llama-3-style
// template to dst:
//
//	<|begin_of_text|> then, per message,
//	<|start_header_id|>ROLE<|end_header_id|>\n\nCONTENT<|eot_id|>
//	and, when addGenerationPrompt, <|start_header_id|>assistant<|end_header_id|>\n\n
//
// Because special tokens split the text, a prompt's ids are the
// concatenation of its messages' ids: two prompts that share their first k
// messages share a token prefix of exactly those messages' length.
func (e *Encoder) Chat(dst []int, messages []Message, addGenerationPrompt bool) []int {
	return e.chat(dst, messages, addGenerationPrompt, func(dst []int, m *Message) []int { return e.Encode(dst, m.Text()) })
}

// ChatOpen appends the ids of messages rendered as Chat does but with the
// last message left open (no end of turn, no generation prompt), so the
// model continues it (vLLM's continue_final_message).
func (e *Encoder) ChatOpen(dst []int, messages []Message) []int {
	if len(messages) == 0 {
		return e.Chat(dst, nil, false)
	}
	last := len(messages) - 1
	dst = e.Chat(dst, messages[:last], false)
	dst = e.header(dst, messages[last].Role)
	return e.Encode(dst, messages[last].Text())
}

// chat renders the template, encoding each message's text with encode.
func (e *Encoder) chat(dst []int, messages []Message, addGenerationPrompt bool, encode func([]int, *Message) []int) []int {
	dst = append(dst, BeginOfText)
	for i := range messages {
		dst = e.header(dst, messages[i].Role)
		dst = encode(dst, &messages[i])
		dst = append(dst, EndOfTurn)
	}
	if addGenerationPrompt {
		dst = e.header(dst, "assistant")
	}
	return dst
}

// Memo renders chat prompts as Chat does, encoding each distinct message
// text once: the calls of a replay repeat the same messages (an agent's
// history recurs in each of its later prompts). It keeps two generations
// of texts of at most limit entries each, so memory stays bounded and
// texts in use stay. Not safe for concurrent use.
type Memo struct {
	enc      *Encoder
	limit    int
	cur, old map[string][]int
}

// NewMemo returns a memo keeping up to 2*limit texts.
func (e *Encoder) NewMemo(limit int) *Memo {
	return &Memo{enc: e, limit: max(1, limit), cur: map[string][]int{}}
}

// Chat is Encoder.Chat through the memo.
func (m *Memo) Chat(dst []int, messages []Message, addGenerationPrompt bool) []int {
	return m.enc.chat(dst, messages, addGenerationPrompt, func(dst []int, msg *Message) []int {
		text := msg.Text()
		ids, ok := m.cur[text]
		if !ok {
			if ids, ok = m.old[text]; !ok {
				ids = m.enc.Encode(nil, text)
			}
			if len(m.cur) >= m.limit {
				m.old, m.cur = m.cur, make(map[string][]int, m.limit)
			}
			m.cur[text] = ids
		}
		return append(dst, ids...)
	})
}

func (e *Encoder) header(dst []int, role string) []int {
	if h, ok := e.headers[role]; ok {
		return append(dst, h...)
	}
	return e.renderHeader(dst, role)
}

func (e *Encoder) renderHeader(dst []int, role string) []int {
	dst = append(dst, StartHeader)
	dst = e.Encode(dst, role)
	dst = append(dst, EndHeader)
	return e.Encode(dst, headerNewline)
}

// roles are the chat roles whose headers are rendered once, at load.
var roles = []string{"system", "user", "assistant", "tool", "developer"}

// MessageOverhead is the number of template tokens one message of the given
// role adds besides its content.
func (e *Encoder) MessageOverhead(role string) int {
	return 3 + e.Count(role) + e.Count(headerNewline)
}

// ChatCount returns len(Chat(nil, messages, addGenerationPrompt)) without
// building the slice.
func (e *Encoder) ChatCount(messages []Message, addGenerationPrompt bool) int {
	n := 1
	for _, m := range messages {
		n += e.MessageOverhead(m.Role) + e.Count(m.Text())
	}
	if addGenerationPrompt {
		n += e.GenerationPromptTokens()
	}
	return n
}

// GenerationPromptTokens is the size of the assistant header that ends a
// prompt awaiting the model's answer.
func (e *Encoder) GenerationPromptTokens() int {
	return e.MessageOverhead("assistant") - 1
}

// Filler returns text of exactly n tokens, built
// from a deterministic word sequence seeded by seed, for prompts whose trace
// recorded only a token count. Different seeds give different text from the
// first token, so unrelated fillers share no prefix.
func (e *Encoder) Filler(n int, seed uint64) string {
	if n <= 0 {
		return ""
	}
	// Each " wNNNN" word is two tokens or fewer; build greedily and verify.
	buf := make([]byte, 0, n*6)
	x := seed*0x9E3779B97F4A7C15 + 1
	count := 0
	for count < n {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		w := fillerWords[x%uint64(len(fillerWords))]
		buf = append(buf, w...)
		count++
	}
	return string(buf)
}

// fillerWords are common English words that are each exactly one
// cl100k_base token with their leading space, checked by a test.
var fillerWords = []string{
	" the", " of", " and", " to", " in", " is", " that", " for", " it", " as",
	" with", " was", " on", " be", " by", " this", " are", " or", " from", " at",
	" which", " but", " have", " not", " an", " they", " one", " all", " were", " their",
	" can", " more", " has", " there", " been", " also", " when", " other", " time", " would",
	" into", " some", " new", " these", " two", " may", " first", " any", " than", " then",
	" only", " its", " over", " such", " used", " most", " many", " out", " after", " could",
}
