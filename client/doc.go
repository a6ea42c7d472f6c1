// Package client sends chat completions to OpenAI-compatible servers (vLLM,
// wfsched's embedded engine, the router) and measures them as vLLM's
// serving benchmark does: time to first token, every inter-chunk gap, end
// to end latency, prompt, completion and cached tokens, on the client's
// clock. It satisfies scheduler.Completer.
//
// It builds on github.com/sashabaranov/go-openai and sends exactly what that
// library cannot express: per-request body fields (workflow_metadata,
// ignore_eos, min_tokens), per-request headers, and a temperature of 0,
// which go-openai would drop. Failed attempts (429, 5xx, connection errors,
// timeouts, cut streams) are retried with exponential backoff and jitter,
// honouring Retry-After, and every attempt is recorded.
package client
