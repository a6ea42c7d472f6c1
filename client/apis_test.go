package client

import (
	"context"
	"strings"
	"testing"

	"github.com/wfsched/wfsched/scheduler"
)

// Each API measures the same call alike against the engine, streamed and
// whole.
func TestAPIsMeasureAlike(t *testing.T) {
	c := startSim(t, nil)
	ctx := context.Background()
	call := userCall(strings.Repeat("Tell me a long story about scheduling. ", 10), 20)
	for _, api := range []string{APIChat, APICompletions, APIResponses} {
		for _, whole := range []bool{false, true} {
			cl := newClient(t, Config{BaseURL: c.URLs()[0], API: api, NoStream: whole})
			if err := cl.Discover(ctx); err != nil {
				t.Fatal(err)
			}
			r := cl.Complete(ctx, call)
			if r.Err != nil {
				t.Fatalf("%s (whole %v): %v", api, whole, r.Err)
			}
			if r.CompletionTokens != 20 || r.FinishReason != "length" || !r.UsageReported || r.PromptTokens == 0 || r.CachedTokens == nil || r.Text == "" {
				t.Errorf("%s (whole %v): %+v", api, whole, r)
			}
			if !whole && (len(r.ITL) != 19 || r.TTFT <= 0 || r.E2E < r.TTFT) {
				t.Errorf("%s streamed: %d gaps, TTFT %v, E2E %v", api, len(r.ITL), r.TTFT, r.E2E)
			}
		}
	}
	if _, err := New(Config{BaseURL: c.URLs()[0], API: "grpc"}); err == nil {
		t.Error("an unknown API was taken")
	}
}

// Through the Responses API an agent's later call continues its previous
// response: only the new messages are sent, and the engine, which stored
// the conversation, reads the whole of it (so its prompt holds the first
// call's and hits the cache). Across engines that would be a 404.
func TestResponsesChainAnAgentsCalls(t *testing.T) {
	c := startSim(t, nil)
	ctx := context.Background()
	cl := newClient(t, Config{BaseURL: c.URLs()[0], API: APIResponses})
	cl.Discover(ctx)
	first := scheduler.Call{Workflow: "w", Agent: "a", MaxTokens: 8, IgnoreEOS: true,
		Messages: []scheduler.Message{{Role: "system", Content: strings.Repeat("You plan trips. ", 20)}, {Role: "user", Content: "Plan Lisbon."}}}
	r1 := cl.Complete(ctx, first)
	if r1.Err != nil {
		t.Fatal(r1.Err)
	}
	second := first
	second.Messages = append(append([]scheduler.Message(nil), first.Messages...),
		scheduler.Message{Role: "assistant", Content: "(the trace's answer)"}, scheduler.Message{Role: "user", Content: "And Porto?"})
	items, prev := cl.responsesInput(second)
	if prev == "" || len(items) != 1 || items[0]["content"] != "And Porto?" {
		t.Fatalf("the second call sends %v continuing %q", items, prev)
	}
	r2 := cl.Complete(ctx, second)
	if r2.Err != nil {
		t.Fatal(r2.Err)
	}
	if r2.PromptTokens <= r1.PromptTokens || r2.CachedTokens == nil || *r2.CachedTokens == 0 {
		t.Errorf("the continued call: prompt %d (first %d), cached %v", r2.PromptTokens, r1.PromptTokens, r2.CachedTokens)
	}
	// Another agent, or a call that does not extend the last one, starts afresh.
	other := second
	other.Agent = "b"
	if _, prev := cl.responsesInput(other); prev != "" {
		t.Errorf("another agent continued %q", prev)
	}
	fresh := first
	fresh.Messages = []scheduler.Message{{Role: "user", Content: "Something else."}}
	if _, prev := cl.responsesInput(fresh); prev != "" {
		t.Errorf("an unrelated call continued %q", prev)
	}
}
