package heap

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestHeapSorts(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 200; n += 7 {
		in := make([]int, n)
		for i := range in {
			in[i] = r.IntN(50)
		}
		h := New(func(a, b int) bool { return a < b }, 0)
		for _, v := range in {
			h.Push(v)
		}
		var out []int
		for h.Len() > 0 {
			if top := h.Top(); top != h.Pop() {
				t.Fatal("Top differs from Pop")
			}
		}
		h2 := New(func(a, b int) bool { return a < b }, n)
		for _, v := range in {
			h2.Push(v)
		}
		for h2.Len() > 0 {
			out = append(out, h2.Pop())
		}
		want := slices.Clone(in)
		slices.Sort(want)
		if !slices.Equal(out, want) {
			t.Fatalf("n=%d: %v, want %v", n, out, want)
		}
	}
}
