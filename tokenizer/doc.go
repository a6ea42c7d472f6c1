// Package tokenizer counts and encodes text into tokens offline, so that the
// trace loader (package dag) and the embedded engine (package sim) agree on
// every prompt's token count.
//
// The vocabulary is OpenAI's cl100k_base byte-pair encoding, read from the
// ranks file embedded by github.com/pkoukk/tiktoken-go-loader; no network is
// used at any time. The pre-tokenizer is a hand-written scanner equivalent to
// cl100k_base's regular expression, and merges follow tiktoken's byte-pair
// algorithm, so token ids equal tiktoken's (a differential test checks this).
//
// cl100k_base is a stand-in for the served model's own tokenizer (Llama 3's
// vocabulary extends a tiktoken BPE of the same family): counts produced here
// are estimates of what a real server counts, and callers mark them so.
//
// Chat prompts are rendered with a Llama-3-style template (see Chat): each
// message costs its content tokens plus a fixed overhead of special and role
// tokens, which makes a prompt's count the sum of its messages' counts.
package tokenizer
