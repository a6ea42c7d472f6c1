package dag

import (
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/wfsched/wfsched/internal/testenv"
	"github.com/wfsched/wfsched/tokenizer"
)

func chatMessages(msgs []Message) []tokenizer.Message {
	out := make([]tokenizer.Message, len(msgs))
	for i, m := range msgs {
		out[i] = tokenizer.Message{Role: m.Role, Content: m.Content}
	}
	return out
}

// checkPrompts verifies, for every LLM node, that the estimated prompt
// length equals the token count of the rebuilt messages rendered by the chat
// template, and that the agent's previous prompt is a token prefix of it
// exactly PrefixShare long.
func checkPrompts(t *testing.T, g *Graph) {
	t.Helper()
	enc := tokenizer.MustDefault()
	prev := PreviousCalls(g)
	share := PrefixShare(g)
	anyShare := PrefixShareAny(g, enc)
	ids := make([][]int, len(g.Nodes))
	for i, n := range g.Nodes {
		if n.Kind != KindLLM {
			continue
		}
		msgs := Messages(g, prev, i)
		ids[i] = enc.Chat(nil, chatMessages(msgs), true)
		if len(ids[i]) != n.InputTokens.N {
			t.Fatalf("%s node %s: estimated prompt %d tokens, rendered %d", g.ID, n.ID, n.InputTokens.N, len(ids[i]))
		}
		// The any-prompt share is a real token prefix of an earlier prompt.
		best := 0
		for j := 0; j < i; j++ {
			if ids[j] == nil {
				continue
			}
			k := 0
			for k < len(ids[j]) && k < len(ids[i]) && ids[j][k] == ids[i][k] {
				k++
			}
			best = max(best, k)
		}
		if anyShare[i] > best || anyShare[i] < share[i] {
			t.Fatalf("%s node %s: any-prompt share %d, longest real common prefix %d, same-agent share %d", g.ID, n.ID, anyShare[i], best, share[i])
		}
		if j := prev[i]; j >= 0 {
			p := ids[j]
			if share[i] != len(p) {
				t.Fatalf("%s node %s: share %d, previous prompt %d", g.ID, n.ID, share[i], len(p))
			}
			if diff := cmp.Diff(p, ids[i][:len(p)]); diff != "" {
				t.Fatalf("%s node %s: previous prompt is not a prefix:\n%s", g.ID, n.ID, diff)
			}
		}
	}
}

func TestPromptsExampleTrace(t *testing.T) {
	g, err := ReadOne(filepath.Join("..", "traces", "research-team.json"), Options{}, Selector{})
	if err != nil {
		t.Fatal(err)
	}
	checkPrompts(t, g)
	prev := PreviousCalls(g)
	idx := g.Index()
	msgs := Messages(g, prev, idx["revise"])
	var roles []string
	for _, m := range msgs {
		roles = append(roles, m.Role)
	}
	// The writer's system text, the three notes, its draft, the review.
	if diff := cmp.Diff([]string{"system", "user", "user", "user", "assistant", "user"}, roles); diff != "" {
		t.Errorf("roles of the revise prompt (-want +got):\n%s", diff)
	}
	if msgs[4].Content != g.Node("draft").Output {
		t.Error("the revise prompt does not carry the draft as the assistant's turn")
	}
}

func TestPromptsSharedTraces(t *testing.T) {
	dir := testenv.SharedTraces(t)
	for _, f := range []string{"appworld-raw/b119b1f_2.txt", "dag-json/HyperAgent/pydata__xarray-3364_dag.json", "dag-json/AG2/02da9c1f-7c36-5739-b723-33a7d4f8e7e7_dag.json"} {
		g, err := ReadOne(filepath.Join(dir, f), Options{}, Selector{})
		if err != nil {
			t.Fatal(err)
		}
		checkPrompts(t, g)
	}
}

func TestPrefixShareAnyAcrossAgents(t *testing.T) {
	g, err := ReadOne(filepath.Join("..", "traces", "research-team.json"), Options{}, Selector{})
	if err != nil {
		t.Fatal(err)
	}
	same, anyShare := PrefixShare(g), PrefixShareAny(g, tokenizer.MustDefault())
	idx := g.Index()
	// researcher-b's first call has the same system text as researcher-a's.
	b := idx["b-search"]
	if same[b] != 0 || anyShare[b] == 0 {
		t.Errorf("b-search: same-agent share %d, any-prompt share %d", same[b], anyShare[b])
	}
	// The planner's first call shares nothing with anyone.
	if p := idx["plan"]; anyShare[p] != 0 {
		t.Errorf("plan shares %d tokens with no earlier prompt", anyShare[p])
	}
}

func TestEstimateTokensKeepsSetCounts(t *testing.T) {
	g := &Graph{Nodes: []*Node{
		{ID: "a", Kind: KindLLM, Agent: "x", Output: "hello world", OutputTokens: TokenCount{N: 99, Exact: true},
			InputTokens: TokenCount{N: 1234, Exact: true}},
		{ID: "b", Kind: KindLLM, Agent: "x", Inputs: []Input{{Tokens: 10}}},
	}}
	enc := tokenizer.MustDefault()
	EstimateTokens(g, enc)
	if g.Nodes[0].OutputTokens.N != 99 || g.Nodes[0].InputTokens.N != 1234 {
		t.Errorf("exact counts changed: %+v", g.Nodes[0])
	}
	// b = a's prompt + a's answer as an assistant turn + a 10-token user turn.
	want := 1234 + enc.MessageOverhead("assistant") + 99 + enc.MessageOverhead("user") + 10
	if got := g.Nodes[1].InputTokens.N; got != want {
		t.Errorf("b prompt = %d, want %d", got, want)
	}
	before := structure(g)
	EstimateTokens(g, enc)
	if diff := cmp.Diff(before, structure(g)); diff != "" {
		t.Errorf("estimating twice changed counts:\n%s", diff)
	}
}

// TestMsgHash: msgHash hashes the pieces of a message as one stream, the
// same as hashing the whole identifier built as a string.
func TestMsgHash(t *testing.T) {
	chain := func(h uint64, s string) uint64 { return fnv(mix(h), s) }
	for _, tc := range []struct{ role, text, id, suffix, num string }{
		{"user", "hello there", "n1", "/in/", "0"},
		{"user", "", "n1", "/in/", "12"},
		{"assistant", "", "n7", "/out", ""},
		{"system", "You are helpful.", "n0", "/system", ""},
	} {
		for _, h := range []uint64{14695981039346656037, 42} {
			var want uint64
			if tc.text != "" {
				want = chain(h, tc.role+"\x00"+tc.text)
			} else {
				want = chain(h, tc.role+"\x00@"+tc.id+tc.suffix+tc.num)
			}
			if got := msgHash(h, tc.role, tc.text, tc.id, tc.suffix, []byte(tc.num)); got != want {
				t.Errorf("%+v from %x: %x, want %x", tc, h, got, want)
			}
		}
	}
}
