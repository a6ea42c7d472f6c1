package sim

import (
	"math/rand/v2"
	"testing"
)

// TestBlockIndexMatchesMap drives the index and a Go map with the same
// random puts and deletes, on a small table so that probe runs wrap and
// collide, and checks every lookup agrees.
func TestBlockIndexMatchesMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	x := newBlockIndex(12) // 32 slots
	ref := map[uint64]int32{}
	keys := make([]uint64, 24)
	for i := range keys {
		keys[i] = rng.Uint64() & 0xff3f // shared low bits: collisions
	}
	keys[0] = 0 // the stand-in key
	for op := 0; op < 20000; op++ {
		k := keys[rng.IntN(len(keys))]
		switch {
		case rng.IntN(3) == 0:
			v, ok := ref[k]
			if rng.IntN(4) == 0 {
				v++ // another block's: left alone
				ok = false
			}
			x.del(k, v)
			if ok {
				delete(ref, k)
			}
		case len(ref) < 12:
			v := int32(rng.IntN(1000))
			_, had := ref[k]
			if x.add(k, v) == had {
				t.Fatalf("op %d: add(%#x) with the key present %v", op, k, had)
			}
			if !had {
				ref[k] = v
			}
		}
		for _, q := range keys {
			got, ok := x.get(q)
			want, wok := ref[q]
			if ok != wok || got != want {
				t.Fatalf("op %d: get(%#x) = %d, %v; want %d, %v", op, q, got, ok, want, wok)
			}
		}
		if x.n != len(ref) {
			t.Fatalf("op %d: %d entries, want %d", op, x.n, len(ref))
		}
	}
}
