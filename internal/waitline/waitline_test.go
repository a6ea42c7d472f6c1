package waitline

import "testing"

// TestOrder: by priority, then arrival; a removed waiter is skipped.
func TestOrder(t *testing.T) {
	var l Line[string]
	l.Push(3, "a")
	b := l.Push(1, "b")
	l.Push(3, "c")
	l.Push(0, "d")
	l.Push(1, "e")
	if !l.Remove(b) || l.Remove(b) {
		t.Fatal("remove")
	}
	var got []string
	for {
		v, ok := l.Pop()
		if !ok {
			break
		}
		got = append(got, v)
	}
	want := []string{"d", "e", "a", "c"}
	if len(got) != len(want) {
		t.Fatalf("%v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("order %v, want %v", got, want)
		}
	}
}
