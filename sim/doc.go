// Package sim is wfsched's embedded LLM engine: an OpenAI-compatible server
// that behaves like vLLM where a scheduler or router can see it, with no GPU.
// It is the default backend of every run, the backend of CI, and the
// stand-in for vLLM in tests of the client, the scheduler and the router.
//
// The engine models vLLM V1's scheduler: continuous batching (running
// sequences decode one token per step, waiting requests prefill in chunks
// within a token budget), a paged KV cache of 16-token blocks with automatic
// prefix caching (chained block hashes, least-recently-used eviction of
// finished requests' blocks, the last prompt token always recomputed) and
// recompute preemption of the newest running request when blocks run out.
// Each step lasts as long as a step-time model calibrated from published
// measurements says (see Profile), on an injectable clock: a fake clock for
// exact tests, the wall clock scaled by a time scale when serving.
//
// Prompts are tokenized with package tokenizer, as package dag counts them,
// so prompt token counts agree between a trace and the engine.
package sim
