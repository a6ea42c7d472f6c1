package sim

// blockIndex maps prefix hashes to cached blocks: an open-addressing table
// with linear probing, at least two slots per block so that probes stay
// short. The hashes are already well mixed (blockHash ends in a
// finalizer), so a slot is the hash's low bits. It replaced a Go map
// whose lookups were a seventh of a virtual run's CPU time: a prompt's
// every block is looked up when it is scheduled.
type blockIndex struct {
	slots []slot
	mask  uint64
	n     int
}

// slot is a key and its value side by side: a probe reads one cache line.
type slot struct {
	key uint64 // 0: empty (a hash of 0 is stored as 1)
	val int32
}

func newBlockIndex(blocks int) *blockIndex {
	size := uint64(16)
	for size < 2*uint64(blocks) {
		size <<= 1
	}
	return &blockIndex{slots: make([]slot, size), mask: size - 1}
}

func indexKey(h uint64) uint64 {
	if h == 0 {
		return 1
	}
	return h
}

// get returns the block of hash h.
func (x *blockIndex) get(h uint64) (int32, bool) {
	h = indexKey(h)
	for i := h & x.mask; ; i = (i + 1) & x.mask {
		switch x.slots[i].key {
		case h:
			return x.slots[i].val, true
		case 0:
			return 0, false
		}
	}
}

// add sets the block of hash h unless h has one, in one probe; it
// reports whether it did.
func (x *blockIndex) add(h uint64, id int32) bool {
	h = indexKey(h)
	i := h & x.mask
	for ; x.slots[i].key != 0; i = (i + 1) & x.mask {
		if x.slots[i].key == h {
			return false
		}
	}
	x.n++
	x.slots[i] = slot{h, id}
	return true
}

// del removes hash h if its block is id, shifting later entries of its
// probe run back so that no tombstone is left.
func (x *blockIndex) del(h uint64, id int32) {
	h = indexKey(h)
	i := h & x.mask
	for ; x.slots[i].key != h; i = (i + 1) & x.mask {
		if x.slots[i].key == 0 {
			return
		}
	}
	if x.slots[i].val != id {
		return
	}
	x.n--
	for j := (i + 1) & x.mask; x.slots[j].key != 0; j = (j + 1) & x.mask {
		home := x.slots[j].key & x.mask
		// Entry j may move to the hole at i if its home is not in (i, j].
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			x.slots[i] = x.slots[j]
			i = j
		}
	}
	x.slots[i] = slot{}
}
