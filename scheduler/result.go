package scheduler

import "time"

// Node outcomes.
const (
	StatusOK       = "ok"
	StatusFailed   = "failed"
	StatusSkipped  = "skipped"  // a parent failed (on-error skip-dependents)
	StatusCanceled = "canceled" // the run was stopped while it ran
)

// NodeResult is what happened to one node of one workflow. Times ending in
// S are modeled seconds since the run's start (wall time divided by the
// time scale).
type NodeResult struct {
	Workflow string `json:"workflow"`
	Trace    string `json:"trace"`
	Node     string `json:"node"`
	Kind     string `json:"kind"`
	Agent    string `json:"agent,omitempty"`
	Status   string `json:"status"`
	Error    string `json:"error,omitempty"`

	ReadyS float64 `json:"ready_s"` // all parents done
	StartS float64 `json:"start_s"` // dispatched
	EndS   float64 `json:"end_s"`
	// QueueWaitS is the time from ready to dispatch, inside wfsched.
	QueueWaitS float64 `json:"queue_wait_s"`

	// LLM nodes.
	TTFTS            float64   `json:"ttft_s,omitempty"`
	E2ES             float64   `json:"e2e_s,omitempty"`
	ITLS             []float64 `json:"itl_s,omitempty"`
	PromptTokens     int       `json:"prompt_tokens,omitempty"`
	CompletionTokens int       `json:"completion_tokens,omitempty"`
	CachedTokens     *int      `json:"cached_tokens,omitempty"` // absent: unknown
	UsageReported    bool      `json:"usage_reported,omitempty"`
	FinishReason     string    `json:"finish_reason,omitempty"`
	HTTPStatus       int       `json:"http_status,omitempty"`
	Attempts         []Attempt `json:"attempts,omitempty"`
	// Text is the generated output (kept for the live context, not written).
	Text string `json:"-"`
}

// Service is the node's service time in modeled seconds.
func (r *NodeResult) Service() float64 { return r.EndS - r.StartS }

// Outcomes of a workflow or a run.
const (
	OutcomeCompleted   = "completed"   // every node ran and succeeded
	OutcomeFailed      = "failed"      // some node failed
	OutcomeInterrupted = "interrupted" // stopped (Ctrl-C, fail-fast elsewhere)
)

// WorkflowResult summarizes one replayed workflow. Times in modeled seconds.
type WorkflowResult struct {
	Workflow string `json:"workflow"`
	Trace    string `json:"trace"`
	Outcome  string `json:"outcome"`
	Nodes    int    `json:"nodes"`
	OK       int    `json:"ok"`
	Failed   int    `json:"failed"`
	Skipped  int    `json:"skipped"`
	Canceled int    `json:"canceled"`
	NotRun   int    `json:"not_run"`

	ArrivalS float64 `json:"arrival_s"` // when the workflow arrived
	StartS   float64 `json:"start_s"`   // first dispatch
	EndS     float64 `json:"end_s"`     // last completion
	// QueueDelayS is arrival to first dispatch; CompletionS arrival to the
	// last node's end (the workflow completion time).
	QueueDelayS float64 `json:"queue_delay_s"`
	CompletionS float64 `json:"completion_s"`
	// MakespanS is first dispatch to last completion.
	MakespanS float64 `json:"makespan_s"`
	// CriticalPathS is the heaviest dependency chain weighted by each node's
	// measured service time: no schedule can beat it with unlimited
	// capacity. Efficiency is CriticalPathS / MakespanS.
	CriticalPathS float64 `json:"critical_path_s"`
	Efficiency    float64 `json:"efficiency"`
	// Parallelism is the time-average of nodes in flight: busy node time
	// over the makespan.
	Parallelism float64 `json:"parallelism"`

	PromptTokens     int  `json:"prompt_tokens"`
	CompletionTokens int  `json:"completion_tokens"`
	CachedTokens     int  `json:"cached_tokens"`
	CachedKnown      bool `json:"cached_known"` // every LLM node reported cached tokens
}

// since converts a wall time to modeled seconds since t0.
func since(t, t0 time.Time, scale float64) float64 {
	return t.Sub(t0).Seconds() / scale
}
