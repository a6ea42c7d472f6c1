package sim

import (
	"fmt"
	"io"
)

// Field is one request field of vLLM's OpenAI-compatible API and what the
// embedded engine does with it. Fields is the one table of them: the
// docs/engine.md's table is printed from it (wfsched sim --fields) and a test keeps
// the two equal.
type Field struct {
	Name string
	API  string // chat, completions or both
	Does string
}

// Fields lists every request field vLLM's chat and completions endpoints
// take. Fields not listed are ignored, as vLLM ignores unknown fields.
var Fields = []Field{
	{"model", "both", "checked: another name gets vLLM's 404 `The model ... does not exist.`"},
	{"messages", "chat", "rendered with the Llama-3-style template (text parts only; other part types get a 400); counted with the tokenizer"},
	{"prompt", "completions", "a string, a list of token ids, or a batch of one; larger batches get a 400"},
	{"max_tokens, max_completion_tokens", "both", "cap the output; the default is the rest of the context (chat) or 16 (completions), as in vLLM; over the context gets vLLM's 400"},
	{"min_tokens", "both", "no end of sequence, stop string or stop token before this many tokens"},
	{"ignore_eos", "both", "the output runs to max_tokens"},
	{"stop", "both", "ends the output when the text completes a stop string (past min_tokens); the answer ends before it; `stop_reason` is the string; streams hold back the bytes a stop string could still claim"},
	{"stop_token_ids", "both", "ends the output on one of these token ids (past min_tokens); `stop_reason` is the id"},
	{"include_stop_str_in_output", "both", "the answer keeps the stop string"},
	{"seed", "both", "makes the request's text, structured output, tool call and logprobs reproducible"},
	{"stream, stream_options", "both", "server-sent events as vLLM sends them; `include_usage` adds the usage chunk, `continuous_usage_stats` usage on every chunk; stream_options without stream gets vLLM's 400"},
	{"n", "both", "1 only; other values get a 400"},
	{"best_of", "both", "1 only, as vLLM V1; larger gets a 400"},
	{"use_beam_search, length_penalty", "both", "beam search is not modeled: use_beam_search gets a 400 (length_penalty alone changes nothing)"},
	{"priority", "both", "orders the engine's queue under `--scheduling-policy priority`; non-zero under fcfs gets vLLM's 400"},
	{"response_format", "both", "`text`; `json_object` answers a JSON object whose string holds as many tokens as the output-length model draws; `json_schema` answers a document satisfying the schema (see below); `structural_tag` gets a 400"},
	{"guided_json", "both", "as response_format json_schema"},
	{"guided_regex", "both", "answers a string fully matching the pattern (RE2 syntax; backreferences and lookaround get a 400)"},
	{"guided_choice", "both", "answers one of the choices (seeded)"},
	{"guided_grammar, structural_tag", "both", "not modeled: 400 naming the field"},
	{"guided_decoding_backend, guided_whitespace_pattern", "both", "accepted; change nothing (the document's spacing is fixed)"},
	{"tools, tool_choice", "chat", "`required` or a named function: the answer is a call whose arguments satisfy the function's parameters schema; `auto` (with `wfsched sim --enable-auto-tool-choice`, else vLLM's 400): calls an offered tool not yet called since the last user message (with `wfsched sim --parallel-tool-calls N`, up to N of them at once), otherwise answers in text; `none`: text. Calls are rendered as the template renders calls (`{\"name\": ..., \"parameters\": ...}`), whose tokens are the output"},
	{"parallel_tool_calls", "chat", "`false` keeps an answer to one call; otherwise `auto` calls up to `wfsched sim --parallel-tool-calls` tools at once (default one)"},
	{"logprobs, top_logprobs", "chat", "each output token's log-probability and up to 20 alternatives, seeded; the chosen token is the most likely; over 20 or top_logprobs without logprobs gets vLLM's 400"},
	{"logprobs", "completions", "an integer up to 20: tokens, token_logprobs, top_logprobs and text_offset for each output token"},
	{"prompt_logprobs", "both", "a log-probability for each prompt token after the first (not with stream, as vLLM)"},
	{"return_tokens_as_token_ids", "both", "logprobs name tokens as `token_id:N`"},
	{"echo", "both", "completions: the text starts with the prompt; chat: with the last message when it is the assistant's"},
	{"add_generation_prompt, continue_final_message", "chat", "render the prompt with or without the assistant header, or leave the last message open; both true gets vLLM's 400"},
	{"truncate_prompt_tokens", "both", "keeps the prompt's last N tokens"},
	{"cache_salt", "both", "salts the prefix cache: only requests with the same salt share cached blocks"},
	{"request_id (and the X-Request-Id header)", "both", "names the response (`chatcmpl-ID`, `cmpl-ID`)"},
	{"temperature, top_p, top_k, min_p", "both", "validated as vLLM does (temperature >= 0, top_p in (0, 1], top_k -1, 0 or >= 1, min_p in [0, 1]); change nothing: the words are drawn the same way"},
	{"presence_penalty, frequency_penalty, repetition_penalty", "both", "validated as vLLM does ([-2, 2], [-2, 2], > 0); change nothing"},
	{"logit_bias, allowed_token_ids, bad_words", "both", "token ids validated against the vocabulary; change nothing"},
	{"skip_special_tokens, spaces_between_special_tokens, add_special_tokens", "both", "accepted; change nothing (answers hold no special tokens)"},
	{"user, metadata, store, service_tier, reasoning_effort, include_reasoning, documents, chat_template_kwargs, mm_processor_kwargs, kv_transfer_params, vllm_xargs", "both", "accepted; change nothing measured (the template has no variables, there are no documents, images or remote caches)"},
	{"chat_template", "chat", "not modeled (a custom template would change the prompt counts): 400"},
	{"logits_processors", "both", "vLLM's 400 for a server without --logits-processor-pattern"},
	{"suffix", "completions", "vLLM's 400: not supported"},
	{"prompt_embeds", "completions", "not modeled: 400"},
}

// WriteFieldsTable writes Fields as docs/engine.md's markdown table.
func WriteFieldsTable(w io.Writer) error {
	if _, err := fmt.Fprintln(w, "| Field | Endpoint | What the engine does |\n|---|---|---|"); err != nil {
		return err
	}
	for _, f := range Fields {
		if _, err := fmt.Fprintf(w, "| `%s` | %s | %s |\n", f.Name, f.API, f.Does); err != nil {
			return err
		}
	}
	return nil
}
