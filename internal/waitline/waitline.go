// Package waitline is a line of waiters ordered by priority (lower first)
// and then by arrival: the one order of every place where calls wait for
// a slot (the client's connections, the router's admission, the virtual
// clock's queues).
package waitline

import "container/heap"

// Line holds waiters of type T. The zero value is an empty line. Not safe
// for concurrent use.
type Line[T any] struct {
	items items[T]
	seq   uint64
}

// Ticket is a waiter's place in a line, to leave it early.
type Ticket[T any] struct {
	prio  int
	seq   uint64
	value T
	index int // -1 once out of the line
}

// Push puts v in the line at priority prio.
func (l *Line[T]) Push(prio int, v T) *Ticket[T] {
	l.seq++
	t := &Ticket[T]{prio: prio, seq: l.seq, value: v}
	heap.Push(&l.items, t)
	return t
}

// Pop takes the first waiter out.
func (l *Line[T]) Pop() (T, bool) {
	if len(l.items) == 0 {
		var zero T
		return zero, false
	}
	return heap.Pop(&l.items).(*Ticket[T]).value, true
}

// Remove takes t out of the line; false if it was no longer in it.
func (l *Line[T]) Remove(t *Ticket[T]) bool {
	if t.index < 0 {
		return false
	}
	heap.Remove(&l.items, t.index)
	return true
}

// Len is the number of waiters.
func (l *Line[T]) Len() int { return len(l.items) }

type items[T any] []*Ticket[T]

func (q items[T]) Len() int { return len(q) }
func (q items[T]) Less(a, b int) bool {
	if q[a].prio != q[b].prio {
		return q[a].prio < q[b].prio
	}
	return q[a].seq < q[b].seq
}
func (q items[T]) Swap(a, b int) {
	q[a], q[b] = q[b], q[a]
	q[a].index, q[b].index = a, b
}
func (q *items[T]) Push(x any) {
	t := x.(*Ticket[T])
	t.index = len(*q)
	*q = append(*q, t)
}
func (q *items[T]) Pop() any {
	old := *q
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	t.index = -1
	return t
}
