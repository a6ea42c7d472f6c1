package scheduler

import (
	"context"
	"time"

	"github.com/wfsched/wfsched/dag"
)

// Message is one chat message of a call. An assistant message may carry
// the tool calls its turn made; a "tool" message answers one of them.
type Message struct {
	Role       string         `json:"role"`
	Content    string         `json:"content"`
	ToolCalls  []dag.ToolCall `json:"tool_calls,omitempty"`
	ToolCallID string         `json:"tool_call_id,omitempty"`
}

// Call is one chat completion to send.
type Call struct {
	Messages    []Message
	MaxTokens   int
	MinTokens   int      // 0: not sent
	IgnoreEOS   bool     // sent as ignore_eos when true
	Temperature *float64 // nil: not sent (the server's default); 0 is sent as 0
	Seed        *int64
	// Workflow and Agent name the call's workflow and agent: the client
	// sends them as workflow_metadata and X-Workflow-Id / X-Agent-Id, for
	// routing ("" sends neither).
	Workflow, Agent string
	// Priority is the call's priority across workflows (lower first; 0
	// unless a workflow policy sets it), sent as vLLM's priority field.
	Priority int
	// Headers are more headers to send (a fault to inject, in tests).
	Headers map[string]string
}

// Attempt is one try of a call.
type Attempt struct {
	Start    time.Time     `json:"start"`
	Duration time.Duration `json:"duration_ns"`
	Status   int           `json:"status,omitempty"` // HTTP status, 0 if none
	Err      string        `json:"error,omitempty"`
	// Backend is the server that answered, as the router named it (or the
	// endpoint itself); "" when no response came.
	Backend string `json:"backend,omitempty"`
	// Cut marks a response that began but did not finish: a stream that
	// ended without its finish reason or [DONE], a body that broke off,
	// or fewer output tokens than the server's usage says were sent.
	Cut bool `json:"cut,omitempty"`
	// Timeout marks an attempt that ran past the client's timeout.
	Timeout bool `json:"timeout,omitempty"`
}

// CallResult is what a call measured, on the client's clock (wall time).
type CallResult struct {
	Start time.Time // send of the successful (or last) attempt
	// TTFT is the time to the first chunk carrying output, E2E the time to
	// the last byte; ITL the gaps between consecutive output chunks.
	TTFT, E2E time.Duration
	ITL       []time.Duration
	// PromptTokens and CompletionTokens come from the server's usage when
	// UsageReported; otherwise CompletionTokens counts output chunks.
	PromptTokens, CompletionTokens int
	UsageReported                  bool
	// CachedTokens is usage.prompt_tokens_details.cached_tokens; nil when
	// the server sent null or nothing (unknown, not zero).
	CachedTokens *int
	Text         string
	FinishReason string
	Status       int // HTTP status of the last attempt
	Attempts     []Attempt
	// TimeScale is the server's X-Wfsched-Time-Scale (wall seconds per
	// modeled second), 1 when absent.
	TimeScale float64
	Err       error // nil on success
}

// Completer sends chat completions. Implementations must be safe for
// concurrent use and return promptly when ctx is done.
type Completer interface {
	Complete(ctx context.Context, c Call) CallResult
}
