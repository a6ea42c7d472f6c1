package dag

import "testing"

func TestBuilderUniqueIDs(t *testing.T) {
	b := newBuilder("t", "test")
	for _, id := range []string{"x#2", "x", "x", "x", "x#3"} {
		b.call(id, "a", "out", 0)
	}
	seen := map[string]bool{}
	for _, n := range b.g.Nodes {
		if seen[n.ID] {
			t.Fatalf("duplicate id %q among %v", n.ID, b.g.Nodes)
		}
		seen[n.ID] = true
	}
	if _, err := Analyze(b.g); err != nil {
		t.Fatal(err)
	}
}

// TestBuilderDeliveryOrder checks that directed messages and group posts
// reach a call in the order they were sent, each with its edge.
func TestBuilderDeliveryOrder(t *testing.T) {
	b := newBuilder("t", "test")
	b.call("p", "planner", "plan", 0)
	b.send("planner", "", "broadcast 1")
	b.call("w", "worker", "work", 0)
	b.send("worker", "planner", "direct 2")
	b.input("", "user", "broadcast 3")
	c := b.call("p2", "planner", "done", 0)
	var texts []string
	for _, in := range c.Inputs {
		texts = append(texts, in.Text)
	}
	// The planner's own post does not come back to it.
	if len(texts) != 2 || texts[0] != "direct 2" || texts[1] != "broadcast 3" {
		t.Errorf("inputs %q", texts)
	}
	want := map[Edge]bool{
		{From: "p", To: "w", Type: EdgeMessage}:  true,
		{From: "p", To: "p2", Type: EdgeHistory}: true,
		{From: "w", To: "p2", Type: EdgeMessage}: true,
	}
	if len(b.g.Edges) != len(want) {
		t.Errorf("edges %v", b.g.Edges)
	}
	for _, e := range b.g.Edges {
		if !want[e] {
			t.Errorf("unexpected edge %+v", e)
		}
	}
}
