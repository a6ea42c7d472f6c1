package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/wfsched/wfsched/tokenizer"
)

// completionRequest holds the request fields the engine reads, of
// /v1/chat/completions and /v1/completions; like vLLM it ignores fields it
// does not know. Fields is the table of what it does with each.
type completionRequest struct {
	Model               string          `json:"model"`
	Messages            json.RawMessage `json:"messages"`
	Prompt              json.RawMessage `json:"prompt"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	MinTokens           int             `json:"min_tokens"`
	IgnoreEOS           bool            `json:"ignore_eos"`
	Seed                *int64          `json:"seed"`
	Stop                json.RawMessage `json:"stop"`
	StopTokenIDs        []int           `json:"stop_token_ids"`
	IncludeStopStr      bool            `json:"include_stop_str_in_output"`
	Stream              bool            `json:"stream"`
	StreamOptions       *struct {
		IncludeUsage         *bool `json:"include_usage"`
		ContinuousUsageStats bool  `json:"continuous_usage_stats"`
	} `json:"stream_options"`
	N                      *int               `json:"n"`
	BestOf                 *int               `json:"best_of"`
	UseBeamSearch          bool               `json:"use_beam_search"`
	Priority               int                `json:"priority"`
	Temperature            *float64           `json:"temperature"`
	TopP                   *float64           `json:"top_p"`
	TopK                   *int               `json:"top_k"`
	MinP                   *float64           `json:"min_p"`
	PresencePenalty        *float64           `json:"presence_penalty"`
	FrequencyPenalty       *float64           `json:"frequency_penalty"`
	RepetitionPenalty      *float64           `json:"repetition_penalty"`
	LogitBias              map[string]float64 `json:"logit_bias"`
	AllowedTokenIDs        []int              `json:"allowed_token_ids"`
	Logprobs               json.RawMessage    `json:"logprobs"` // chat: bool; completions: int
	TopLogprobs            *int               `json:"top_logprobs"`
	PromptLogprobs         *int               `json:"prompt_logprobs"`
	ReturnTokensAsTokenIDs bool               `json:"return_tokens_as_token_ids"`
	Echo                   bool               `json:"echo"`
	Suffix                 *string            `json:"suffix"`
	ResponseFormat         *struct {
		Type       string `json:"type"`
		JSONSchema *struct {
			Name   string          `json:"name"`
			Schema json.RawMessage `json:"schema"`
		} `json:"json_schema"`
	} `json:"response_format"`
	GuidedJSON           json.RawMessage `json:"guided_json"`
	GuidedRegex          *string         `json:"guided_regex"`
	GuidedChoice         []string        `json:"guided_choice"`
	GuidedGrammar        *string         `json:"guided_grammar"`
	StructuralTag        json.RawMessage `json:"structural_tag"`
	Tools                []toolParam     `json:"tools"`
	ToolChoice           json.RawMessage `json:"tool_choice"`
	ParallelToolCalls    *bool           `json:"parallel_tool_calls"`
	TruncatePromptTokens *int            `json:"truncate_prompt_tokens"`
	AddGenerationPrompt  *bool           `json:"add_generation_prompt"`
	ContinueFinalMsg     bool            `json:"continue_final_message"`
	CacheSalt            *string         `json:"cache_salt"`
	RequestID            string          `json:"request_id"`
	LogitsProcessors     json.RawMessage `json:"logits_processors"`
	ChatTemplate         *string         `json:"chat_template"`
	PromptEmbeds         json.RawMessage `json:"prompt_embeds"`
}

type toolParam struct {
	Type     string `json:"type"`
	Function struct {
		Name       string          `json:"name"`
		Parameters json.RawMessage `json:"parameters"`
	} `json:"function"`
}

// MaxLogprobs is the most top log-probabilities a request may ask for
// (vLLM's default --max-logprobs).
const MaxLogprobs = 20

// DefaultCompletionsMaxTokens is /v1/completions' max_tokens when the
// request names none, as in vLLM (chat's default is the rest of the
// context).
const DefaultCompletionsMaxTokens = 16

// plan is a validated request: what the engine runs and how the answer
// is written.
type plan struct {
	chat     bool
	req      *completionRequest
	er       Request
	id       string
	logprobs int // top alternatives per token; -1: no logprobs
	promptLP int // prompt logprobs' alternatives; -1: none
	tokenIDs bool
	prompt   []int
	calls    []toolPlan // the tools the answer calls, in order
	echo     string     // text the answer starts with (echo)
	seed     uint64     // draws of the guided output and the logprobs
	usage    bool       // a usage chunk ends the stream
	eachUse  bool       // usage on every chunk
}

// toolPlan is a tool call of an answer: the output text is the calls as
// the chat template renders them ({"name": ..., "parameters": ARGS}, one
// per line), and this call's arguments are bytes [from, to) of it.
type toolPlan struct {
	id, name string
	from, to int
	reason   string // finish reason when the call completes
}

func floatRange(v *float64, name string, lo, hi float64, loOpen bool) *apiError {
	if v == nil {
		return nil
	}
	if *v < lo || *v > hi || loOpen && *v == lo {
		open := "["
		if loOpen {
			open = "("
		}
		return badRequest(name, "%s must be in %s%g, %g], got %g.", name, open, lo, hi, *v)
	}
	return nil
}

// parse reads a chat or completions request body and plans it.
func (s *Server) parse(body []byte, chat bool, requestID string) (*plan, *apiError) {
	var req completionRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, badRequest("", "malformed JSON body: %v", err)
	}
	return s.plan(&req, chat, requestID)
}

// plan validates a request as vLLM's OpenAI server does and decides what
// the engine runs and how the answer is written. The Responses API plans
// through it too, with its request translated.
func (s *Server) plan(reqp *completionRequest, chat bool, requestID string) (*plan, *apiError) {
	req := *reqp
	e := s.e
	if req.Model != "" && req.Model != e.Model() {
		return nil, &apiError{status: 404, typ: "NotFoundError", param: "model", msg: fmt.Sprintf("The model `%s` does not exist.", req.Model)}
	}
	p := &plan{chat: chat, req: &req, logprobs: -1, promptLP: -1, tokenIDs: req.ReturnTokensAsTokenIDs}
	// Refusals first: what vLLM refuses, and what the engine cannot model.
	switch {
	case req.N != nil && *req.N != 1:
		return nil, badRequest("n", "n = %d: only n = 1 is supported", *req.N)
	case req.BestOf != nil && *req.BestOf > 1:
		return nil, badRequest("best_of", "best_of = %d: vLLM V1 does not support best_of > 1", *req.BestOf)
	case req.UseBeamSearch:
		return nil, badRequest("use_beam_search", "use_beam_search: beam search is not modeled by the embedded engine")
	case len(req.LogitsProcessors) > 0 && string(req.LogitsProcessors) != "null":
		return nil, badRequest("logits_processors", "The `logits_processors` argument is not supported by this server. See --logits-processor-pattern engine argument for more information.")
	case req.Suffix != nil:
		return nil, badRequest("suffix", "suffix is not currently supported")
	case len(req.PromptEmbeds) > 0 && string(req.PromptEmbeds) != "null":
		return nil, badRequest("prompt_embeds", "prompt_embeds: embedding inputs are not supported by the embedded engine (vLLM needs --enable-prompt-embeds)")
	case req.ChatTemplate != nil:
		return nil, badRequest("chat_template", "chat_template: the embedded engine renders prompts with its own template only (a custom template would change the prompt counts it models)")
	case req.GuidedGrammar != nil:
		return nil, badRequest("guided_grammar", "guided_grammar: grammars are not supported by the embedded engine's guided decoding (use guided_json, guided_regex or guided_choice)")
	case len(req.StructuralTag) > 0 && string(req.StructuralTag) != "null":
		return nil, badRequest("structural_tag", "structural_tag is not supported by the embedded engine's guided decoding")
	case req.StreamOptions != nil && !req.Stream:
		return nil, badRequest("stream_options", "Stream options can only be defined when `stream=True`.")
	case req.MinTokens < 0:
		return nil, badRequest("min_tokens", "min_tokens must be greater than or equal to 0, got %d.", req.MinTokens)
	case req.Temperature != nil && *req.Temperature < 0:
		return nil, badRequest("temperature", "temperature must be non-negative, got %g.", *req.Temperature)
	case req.TopK != nil && *req.TopK < -1:
		return nil, badRequest("top_k", "top_k must be -1 or 0 (disable), or at least 1, got %d.", *req.TopK)
	case req.RepetitionPenalty != nil && *req.RepetitionPenalty <= 0:
		return nil, badRequest("repetition_penalty", "repetition_penalty must be greater than zero, got %g.", *req.RepetitionPenalty)
	case req.ContinueFinalMsg && req.AddGenerationPrompt != nil && *req.AddGenerationPrompt:
		return nil, badRequest("continue_final_message", "Cannot set both `continue_final_message` and `add_generation_prompt` to True.")
	case req.CacheSalt != nil && *req.CacheSalt == "":
		return nil, badRequest("cache_salt", "Parameter 'cache_salt' must be a non-empty string if provided.")
	case req.TruncatePromptTokens != nil && *req.TruncatePromptTokens < 1:
		return nil, badRequest("truncate_prompt_tokens", "truncate_prompt_tokens must be at least 1, got %d.", *req.TruncatePromptTokens)
	}
	for _, c := range []*apiError{
		floatRange(req.TopP, "top_p", 0, 1, true),
		floatRange(req.MinP, "min_p", 0, 1, false),
		floatRange(req.PresencePenalty, "presence_penalty", -2, 2, false),
		floatRange(req.FrequencyPenalty, "frequency_penalty", -2, 2, false),
	} {
		if c != nil {
			return nil, c
		}
	}
	vocab := tokenizer.MaxID + 1
	for k := range req.LogitBias {
		if id, err := strconv.Atoi(k); err != nil || id < 0 || id >= vocab {
			return nil, badRequest("logit_bias", "token_id(s) [%s] in logit_bias contain out-of-vocab token ids. Vocabulary size: %d", k, vocab)
		}
	}
	if req.AllowedTokenIDs != nil {
		if len(req.AllowedTokenIDs) == 0 {
			return nil, badRequest("allowed_token_ids", "allowed_token_ids is not None and empty!")
		}
		for _, id := range req.AllowedTokenIDs {
			if id < 0 || id >= vocab {
				return nil, badRequest("allowed_token_ids", "allowed_token_ids contains out-of-vocab token id %d", id)
			}
		}
	}
	stop, err := stopStrings(req.Stop)
	if err != nil {
		return nil, err.(*apiError)
	}
	for _, st := range stop {
		if st == "" {
			return nil, badRequest("stop", "stop cannot contain an empty string.")
		}
	}
	if apiErr := p.readLogprobs(&req); apiErr != nil {
		return nil, apiErr
	}

	// The prompt.
	var apiErr *apiError
	if chat {
		var msgs []tokenizer.Message
		p.prompt, msgs, apiErr = s.chatPrompt(&req)
		if apiErr == nil && req.Echo && msgs[len(msgs)-1].Role == "assistant" {
			p.echo = msgs[len(msgs)-1].Content // the answer continues the same role's message
		}
	} else {
		p.prompt, apiErr = completionPrompt(e.Encoder(), req.Prompt)
		if apiErr == nil && req.Echo {
			p.echo = e.Encoder().Decode(p.prompt)
		}
	}
	if apiErr != nil {
		return nil, apiErr
	}
	if t := req.TruncatePromptTokens; t != nil {
		if *t > e.prof.MaxModelLen {
			return nil, badRequest("truncate_prompt_tokens", "truncate_prompt_tokens value (%d) is greater than max_model_len (%d). Please, select a smaller truncation size.", *t, e.prof.MaxModelLen)
		}
		if len(p.prompt) > *t {
			p.prompt = p.prompt[len(p.prompt)-*t:]
		}
	}

	// Lengths.
	maxLen := e.prof.MaxModelLen
	maxTokens := maxLen - len(p.prompt)
	if !chat {
		maxTokens = DefaultCompletionsMaxTokens
	}
	param := "max_tokens"
	for _, m := range []*int{req.MaxTokens, req.MaxCompletionTokens} {
		if m != nil {
			maxTokens = *m
			if m == req.MaxCompletionTokens {
				param = "max_completion_tokens"
			}
		}
	}
	if maxTokens < 1 || len(p.prompt)+maxTokens > maxLen {
		if maxTokens >= 1 || len(p.prompt) >= maxLen {
			return nil, badRequest(param, "This model's maximum context length is %d tokens. However, you requested %d tokens (%d in the messages, %d in the completion). Please reduce the length of the messages or completion.",
				maxLen, len(p.prompt)+max(maxTokens, 0), len(p.prompt), max(maxTokens, 0))
		}
		return nil, badRequest(param, "%s = %d: must be at least 1", param, maxTokens)
	}
	if req.MinTokens > maxTokens {
		return nil, badRequest("min_tokens", "min_tokens must be less than or equal to max_tokens=%d, got %d.", maxTokens, req.MinTokens)
	}

	// Seeds: the request's, else one drawn from the engine's.
	if req.Seed != nil {
		p.seed = uint64(*req.Seed)
	} else {
		p.seed = e.drawSeed()
	}
	p.er = Request{Prompt: p.prompt, MaxTokens: maxTokens, MinTokens: req.MinTokens, IgnoreEOS: req.IgnoreEOS,
		Stop: stop, StopTokenIDs: req.StopTokenIDs, IncludeStop: req.IncludeStopStr, Priority: req.Priority}
	if req.Seed != nil {
		seed := uint64(*req.Seed)
		p.er.Seed = &seed
	}
	if req.CacheSalt != nil {
		p.er.CacheSalt = *req.CacheSalt
	}
	if apiErr := s.guide(p, &req); apiErr != nil {
		return nil, apiErr
	}
	if req.StreamOptions != nil {
		p.usage = req.StreamOptions.IncludeUsage == nil || *req.StreamOptions.IncludeUsage
		p.eachUse = req.StreamOptions.ContinuousUsageStats
	}
	base := requestID
	if base == "" {
		base = req.RequestID
	}
	switch {
	case base == "" && chat:
		p.id = newID("chatcmpl-")
	case base == "":
		p.id = newID("cmpl-")
	case chat:
		p.id = "chatcmpl-" + base
	default:
		p.id = "cmpl-" + base
	}
	return p, nil
}

// readLogprobs reads logprobs, top_logprobs and prompt_logprobs.
func (p *plan) readLogprobs(req *completionRequest) *apiError {
	raw := bytes.TrimSpace(req.Logprobs)
	if p.chat {
		on := false
		if len(raw) > 0 && string(raw) != "null" {
			if err := json.Unmarshal(raw, &on); err != nil {
				return badRequest("logprobs", "logprobs must be a boolean in chat completions")
			}
		}
		top := 0
		if req.TopLogprobs != nil {
			top = *req.TopLogprobs
			if top < 0 {
				return badRequest("top_logprobs", "`top_logprobs` must be a positive value.")
			}
			if top > 0 && !on {
				return badRequest("top_logprobs", "when using `top_logprobs`, `logprobs` must be set to true.")
			}
		}
		if on {
			p.logprobs = top
		}
	} else if len(raw) > 0 && string(raw) != "null" {
		var n int
		if err := json.Unmarshal(raw, &n); err != nil || n < 0 {
			return badRequest("logprobs", "logprobs must be a non-negative integer in completions")
		}
		p.logprobs = n
	}
	if p.logprobs > MaxLogprobs {
		return badRequest("logprobs", "Requested sample logprobs of %d, which is greater than max allowed: %d", p.logprobs, MaxLogprobs)
	}
	if req.PromptLogprobs != nil {
		n := *req.PromptLogprobs
		switch {
		case n < 0:
			return badRequest("prompt_logprobs", "`prompt_logprobs` must be a positive value.")
		case n > 0 && req.Stream:
			return badRequest("prompt_logprobs", "`prompt_logprobs` are not available when `stream=True`.")
		case n > MaxLogprobs:
			return badRequest("prompt_logprobs", "Requested prompt logprobs of %d, which is greater than max allowed: %d", n, MaxLogprobs)
		}
		p.promptLP = n
	}
	if p.promptLP < 0 && req.Echo && p.logprobs >= 0 && !p.chat {
		p.promptLP = p.logprobs
	}
	return nil
}

// chatPrompt renders the messages, with add_generation_prompt,
// continue_final_message and echo.
func (s *Server) chatPrompt(req *completionRequest) ([]int, []tokenizer.Message, *apiError) {
	msgs, apiErr := chatMessages(req.Messages)
	if apiErr != nil {
		return nil, nil, apiErr
	}
	enc := s.e.Encoder()
	if req.ContinueFinalMsg {
		return enc.ChatOpen(nil, msgs), msgs, nil
	}
	gen := req.AddGenerationPrompt == nil || *req.AddGenerationPrompt
	return enc.Chat(nil, msgs, gen), msgs, nil
}

// guide sets the request's forced output when it asks for structured output
// or a tool call.
func (s *Server) guide(p *plan, req *completionRequest) *apiError {
	var kinds []string
	var schema json.RawMessage
	param := ""
	if rf := req.ResponseFormat; rf != nil {
		switch rf.Type {
		case "", "text":
		case "json_object":
			kinds, param = append(kinds, "json_object"), "response_format"
		case "json_schema":
			if rf.JSONSchema == nil || len(rf.JSONSchema.Schema) == 0 {
				return badRequest("response_format", "response_format: type json_schema needs json_schema.schema")
			}
			kinds, param, schema = append(kinds, "json"), "response_format.json_schema.schema", rf.JSONSchema.Schema
		case "structural_tag":
			return badRequest("response_format", "response_format: structural_tag is not supported by the embedded engine's guided decoding")
		default:
			return badRequest("response_format", "response_format.type %q: want text, json_object or json_schema", rf.Type)
		}
	}
	if len(req.GuidedJSON) > 0 && string(req.GuidedJSON) != "null" {
		kinds, param, schema = append(kinds, "json"), "guided_json", req.GuidedJSON
		var text string
		if json.Unmarshal(req.GuidedJSON, &text) == nil {
			schema = json.RawMessage(text) // a schema sent as a JSON string
		}
	}
	if req.GuidedRegex != nil {
		kinds, param = append(kinds, "regex"), "guided_regex"
	}
	if req.GuidedChoice != nil {
		kinds, param = append(kinds, "choice"), "guided_choice"
	}
	if len(kinds) > 1 {
		return badRequest(param, "You can only use one kind of guided decoding ('guided_json', 'guided_regex' or 'guided_choice').")
	}
	rng := rand.New(rand.NewPCG(p.seed, 0x6775696465)) // "guide"
	tool, apiErr := s.toolChoice(p, req, rng)
	if apiErr != nil {
		return apiErr
	}
	var text string
	switch {
	case len(p.calls) > 0:
		text = tool
	case len(kinds) == 0:
		return nil
	case kinds[0] == "json_object":
		// The document's one string holds as many words as the engine's
		// output-length model draws, so the length stays modeled.
		n := s.e.drawLength(rng, p.er.MaxTokens)
		text = `{"response": "` + strings.TrimSpace(s.e.Encoder().Filler(max(1, n-6), p.seed)) + `"}`
	case kinds[0] == "json":
		var sch map[string]any
		d := json.NewDecoder(bytes.NewReader(schema))
		d.UseNumber()
		if err := d.Decode(&sch); err != nil {
			return badRequest(param, "%s: not a JSON schema object: %v", param, err)
		}
		doc, err := generateJSON(sch, rng)
		if err != nil {
			return badRequest(param, "%s%v", param, slashPath(err))
		}
		text = doc
	case kinds[0] == "regex":
		t, err := generateRegex(*req.GuidedRegex, rng)
		if err != nil {
			return badRequest(param, "guided_regex: %v", err)
		}
		text = t
	case kinds[0] == "choice":
		if len(req.GuidedChoice) == 0 {
			return badRequest(param, "guided_choice: must list at least one choice")
		}
		text = req.GuidedChoice[rng.IntN(len(req.GuidedChoice))]
	}
	p.er.Output = s.e.Encoder().Encode(nil, text)
	if len(p.er.Output) == 0 {
		p.er.Output = []int{} // an empty document: stops at once
	}
	return nil
}

// slashPath formats a guide error as ": path: message" or ": message".
func slashPath(err error) string {
	if ge, ok := err.(*guideError); ok && ge.path != "" {
		return " at " + ge.path + ": " + ge.msg
	}
	return ": " + err.Error()
}

// toolChoice decides whether the answer calls a tool, and returns the
// call's text if so. "required" and a named function always call one;
// "auto" (when the server enables it, as vLLM's --enable-auto-tool-choice)
// calls an offered tool not yet called since the last user message, and
// otherwise answers in text, so an agent's loop (call, result, answer)
// ends.
func (s *Server) toolChoice(p *plan, req *completionRequest, rng *rand.Rand) (string, *apiError) {
	choice := "none"
	named := ""
	raw := bytes.TrimSpace(req.ToolChoice)
	switch {
	case len(raw) == 0 || string(raw) == "null":
		if len(req.Tools) > 0 {
			choice = "auto"
		}
	case raw[0] == '"':
		json.Unmarshal(raw, &choice)
	default:
		var c struct {
			Type     string `json:"type"`
			Function *struct {
				Name string `json:"name"`
			} `json:"function"`
		}
		if err := json.Unmarshal(raw, &c); err != nil || c.Function == nil || c.Function.Name == "" {
			return "", badRequest("tool_choice", "Invalid value for `function` in `tool_choice`! Correct usage: `{\"type\": \"function\", \"function\": {\"name\": \"my_function\"}}`")
		}
		choice, named = "named", c.Function.Name
	}
	if choice != "none" && req.Tools == nil {
		return "", badRequest("tool_choice", "When using `tool_choice`, `tools` must be set.")
	}
	if !p.chat && len(req.Tools) > 0 {
		return "", badRequest("tools", "tools are served by /v1/chat/completions, not /v1/completions")
	}
	for i, t := range req.Tools {
		if t.Type != "" && t.Type != "function" || t.Function.Name == "" {
			return "", badRequest("tools", "tools[%d]: want {type: function, function: {name, parameters}}", i)
		}
	}
	var picks []*toolParam
	switch choice {
	case "none":
		return "", nil
	case "required":
		if len(req.Tools) == 0 {
			return "", nil // as "none", as OpenAI and vLLM do
		}
		picks = []*toolParam{&req.Tools[rng.IntN(len(req.Tools))]}
	case "named":
		for i := range req.Tools {
			if req.Tools[i].Function.Name == named {
				picks = []*toolParam{&req.Tools[i]}
			}
		}
		if picks == nil {
			return "", badRequest("tool_choice", "The tool specified in `tool_choice` does not match any of the specified `tools`")
		}
	case "auto":
		if !s.cfg.AutoToolChoice {
			return "", badRequest("tool_choice", "\"auto\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set")
		}
		called := calledSinceUser(req.Messages)
		var open []int
		for i, t := range req.Tools {
			if !called[t.Function.Name] {
				open = append(open, i)
			}
		}
		if len(open) == 0 {
			return "", nil
		}
		// One call, or with --parallel-tool-calls N up to N open tools at
		// once, in a drawn order.
		n := 1
		if s.cfg.ParallelToolCalls > 1 && (req.ParallelToolCalls == nil || *req.ParallelToolCalls) {
			n = min(s.cfg.ParallelToolCalls, len(open))
		}
		if n == 1 {
			// One draw, as before parallel calls existed: a seed's answers
			// stay what they were.
			picks = []*toolParam{&req.Tools[open[rng.IntN(len(open))]]}
			break
		}
		for _, k := range rng.Perm(len(open))[:n] {
			picks = append(picks, &req.Tools[open[k]])
		}
	default:
		return "", badRequest("tool_choice", "Invalid value for `tool_choice`: %s! Only named tools, \"none\", \"auto\" or \"required\" are supported.", raw)
	}
	reason := "tool_calls"
	if choice == "named" {
		reason = FinishStop // OpenAI's answer to a forced function
	}
	var calls []tokenizer.ToolCall
	var text string
	for _, pick := range picks {
		args := "{}"
		if params := pick.Function.Parameters; len(params) > 0 && string(params) != "null" {
			var sch map[string]any
			d := json.NewDecoder(bytes.NewReader(params))
			d.UseNumber()
			if err := d.Decode(&sch); err != nil {
				return "", badRequest("tools", "tools: function %s: parameters is not a JSON schema object: %v", pick.Function.Name, err)
			}
			doc, err := generateJSON(sch, rng)
			if err != nil {
				return "", badRequest("tools", "tools: function %s: parameters%v", pick.Function.Name, slashPath(err))
			}
			args = doc
		}
		calls = append(calls, tokenizer.ToolCall{Name: pick.Function.Name, Arguments: args})
		text = tokenizer.Message{ToolCalls: calls}.Text()
		to := len(text) - 1 // the call's closing brace
		p.calls = append(p.calls, toolPlan{id: newID("chatcmpl-tool-"), name: pick.Function.Name, from: to - len(args), to: to, reason: reason})
	}
	return text, nil
}

// calledSinceUser returns the tools assistant messages called after the
// last user message.
func calledSinceUser(raw json.RawMessage) map[string]bool {
	var msgs []chatMessage
	json.Unmarshal(raw, &msgs)
	called := map[string]bool{}
	for _, m := range msgs {
		if m.Role == "user" {
			clear(called)
		}
		for _, tc := range m.ToolCalls {
			called[tc.Function.Name] = true
		}
	}
	return called
}
