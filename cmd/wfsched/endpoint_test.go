package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// TestRunSendsWorkflowFieldsToEndpoint replays a trace against a fake
// OpenAI server and checks what reached it.
func TestRunSendsWorkflowFieldsToEndpoint(t *testing.T) {
	var mu sync.Mutex
	var bodies []map[string]any
	var headers []http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/health":
			return
		case "/metrics", "/v1/workflows/stats":
			http.NotFound(w, r)
			return
		case "/v1/models":
			fmt.Fprint(w, `{"object": "list", "data": [{"id": "served-model", "object": "model"}]}`)
			return
		}
		b, _ := io.ReadAll(r.Body)
		var m map[string]any
		json.Unmarshal(b, &m)
		mu.Lock()
		bodies = append(bodies, m)
		headers = append(headers, r.Header.Clone())
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: {\"id\":\"1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ok\"},\"finish_reason\":\"stop\"}]}\n\n")
		fmt.Fprint(w, "data: {\"id\":\"1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":1,\"total_tokens\":10,\"prompt_tokens_details\":null}}\n\n")
		fmt.Fprint(w, "data: [DONE]\n\n")
	}))
	defer srv.Close()
	out := t.TempDir()
	code, stdout, stderr := run(t, "run", "--dag", "../../traces/chain-16.json", "--endpoint", srv.URL, "--temperature", "0", "--out", out, "--policy", "sequential")
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, stdout, stderr)
	}
	if len(bodies) != 16 {
		t.Fatalf("%d calls reached the server, want 16", len(bodies))
	}
	for k, b := range bodies {
		wm, _ := b["workflow_metadata"].(map[string]any)
		if b["model"] != "served-model" || b["temperature"] != 0.0 || b["ignore_eos"] != true || wm["workflow_id"] != "wf-00000" || wm["agent_id"] == "" {
			t.Fatalf("call %d body: model %v temperature %v ignore_eos %v metadata %v", k, b["model"], b["temperature"], b["ignore_eos"], wm)
		}
		if headers[k].Get("X-Workflow-Id") != "wf-00000" || headers[k].Get("X-Agent-Id") != wm["agent_id"] {
			t.Fatalf("call %d headers %v", k, headers[k])
		}
	}
	r := readSummary(t, runDir(t, out))
	// The server sent prompt_tokens_details: null: cached tokens unknown.
	if r.Backend.Kind != "endpoint" || r.Backend.Model != "served-model" || r.Summary.CachedUnknown != 16 || r.Backend.TimeScale != 1 ||
		!math.IsNaN(float64(r.Summary.ServerHitRate)) {
		t.Errorf("summary backend %+v, cached unknown %d", r.Backend, r.Summary.CachedUnknown)
	}
}
