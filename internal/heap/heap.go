// Package heap is a binary min-heap ordered by a function, for the
// priority queues of Kahn's sort, byte-pair merging and the scheduler's
// ready nodes.
package heap

// Heap is a binary heap whose top is the least element by Less. The zero
// value is unusable: use New.
type Heap[T any] struct {
	s    []T
	less func(a, b T) bool
}

// New returns an empty heap ordered by less, with room for capacity items.
func New[T any](less func(a, b T) bool, capacity int) *Heap[T] {
	return &Heap[T]{s: make([]T, 0, capacity), less: less}
}

// Len is the number of items.
func (h *Heap[T]) Len() int { return len(h.s) }

// Top returns the least item; the heap must not be empty.
func (h *Heap[T]) Top() T { return h.s[0] }

// Push adds v.
func (h *Heap[T]) Push(v T) {
	h.s = append(h.s, v)
	for i := len(h.s) - 1; i > 0; {
		p := (i - 1) / 2
		if !h.less(h.s[i], h.s[p]) {
			break
		}
		h.s[i], h.s[p] = h.s[p], h.s[i]
		i = p
	}
}

// Pop removes and returns the least item; the heap must not be empty.
func (h *Heap[T]) Pop() T {
	v := h.s[0]
	last := len(h.s) - 1
	h.s[0] = h.s[last]
	h.s = h.s[:last]
	for i := 0; ; {
		l, m := 2*i+1, i
		if l < len(h.s) && h.less(h.s[l], h.s[m]) {
			m = l
		}
		if r := l + 1; r < len(h.s) && h.less(h.s[r], h.s[m]) {
			m = r
		}
		if m == i {
			break
		}
		h.s[i], h.s[m] = h.s[m], h.s[i]
		i = m
	}
	return v
}
