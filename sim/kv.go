package sim

// kvCache is a paged KV cache with automatic prefix caching, as vLLM V1's
// block pool keeps it: a fixed number of blocks; a block whose tokens are
// all computed is registered under a hash chained over the whole prefix up
// to it; blocks no request uses (reference count 0) sit on a free list in
// least-recently-freed order and keep their cached contents until they are
// taken for new data (eviction). It is owned by the engine loop: not safe
// for concurrent use.
type kvCache struct {
	blocks   []kvBlock
	head     int32 // free list, evicted from the head
	tail     int32
	numFree  int
	cached   *blockIndex // prefix hash -> block
	evicted  int64       // cached blocks reused for new data
	inUseMax int
}

type kvBlock struct {
	ref        int32
	prev, next int32 // free-list links, -1 at the ends
	free       bool
	hashed     bool
	hash       uint64
}

func newKVCache(numBlocks int) *kvCache {
	c := &kvCache{blocks: make([]kvBlock, numBlocks), head: -1, tail: -1, cached: newBlockIndex(numBlocks)}
	for i := range c.blocks {
		c.blocks[i].prev, c.blocks[i].next = -1, -1
		c.pushFree(int32(i))
	}
	return c
}

// used is the number of blocks some request holds.
func (c *kvCache) used() int { return len(c.blocks) - c.numFree }

func (c *kvCache) pushFree(id int32) {
	b := &c.blocks[id]
	b.free, b.prev, b.next = true, c.tail, -1
	if c.tail >= 0 {
		c.blocks[c.tail].next = id
	} else {
		c.head = id
	}
	c.tail = id
	c.numFree++
}

func (c *kvCache) unlinkFree(id int32) {
	b := &c.blocks[id]
	if b.prev >= 0 {
		c.blocks[b.prev].next = b.next
	} else {
		c.head = b.next
	}
	if b.next >= 0 {
		c.blocks[b.next].prev = b.prev
	} else {
		c.tail = b.prev
	}
	b.free, b.prev, b.next = false, -1, -1
	c.numFree--
}

// match appends to dst the cached blocks of the leading hashes that have
// one, stopping at the first that has not.
func (c *kvCache) match(dst []int32, hashes []uint64) []int32 {
	for _, h := range hashes {
		id, ok := c.cached.get(h)
		if !ok {
			break
		}
		dst = append(dst, id)
	}
	return dst
}

// freeAmong counts the blocks of ids that sit on the free list: touching
// them takes them off it.
func (c *kvCache) freeAmong(ids []int32) int {
	n := 0
	for _, id := range ids {
		if c.blocks[id].free {
			n++
		}
	}
	return n
}

// touch takes a reference to the blocks ids (found by match) and appends
// them to dst.
func (c *kvCache) touch(dst []int32, ids []int32) []int32 {
	for _, id := range ids {
		if c.blocks[id].free {
			c.unlinkFree(id)
		}
		c.blocks[id].ref++
		dst = append(dst, id)
	}
	c.inUseMax = max(c.inUseMax, c.used())
	return dst
}

// alloc takes n blocks for new data, evicting the least recently freed
// cached blocks, and appends them to dst. The caller has checked that n
// blocks are free.
func (c *kvCache) alloc(dst []int32, n int) []int32 {
	for ; n > 0; n-- {
		id := c.head
		c.unlinkFree(id)
		b := &c.blocks[id]
		if b.hashed {
			c.cached.del(b.hash, id)
			b.hashed = false
			c.evicted++
		}
		b.ref = 1
		dst = append(dst, id)
	}
	c.inUseMax = max(c.inUseMax, c.used())
	return dst
}

// register records that block id now holds the full block with the given
// prefix hash. A hash already cached in another block keeps that block.
func (c *kvCache) register(id int32, hash uint64) {
	if !c.cached.add(hash, id) {
		return
	}
	b := &c.blocks[id]
	b.hashed, b.hash = true, hash
}

// release drops a reference to each block, last block first, so that a
// request's tail blocks are evicted before its head (whose prefix other
// requests are likelier to share).
func (c *kvCache) release(ids []int32) {
	for k := len(ids) - 1; k >= 0; k-- {
		id := ids[k]
		b := &c.blocks[id]
		b.ref--
		if b.ref == 0 {
			c.pushFree(id)
		}
	}
}

// blockHash chains the hash of one full block's token ids onto the previous
// block's hash, so a block's hash identifies the whole prefix up to it: a
// multiply-xorshift per pair of token ids (ids are below 2^32), then a
// splitmix64 finalizer. Hashing prompts was a seventh of a virtual run's
// CPU time byte by byte (FNV-1a), a tenth token by token.
func blockHash(prev uint64, ids []int) uint64 {
	h := prev ^ 0x9E3779B97F4A7C15
	k := 0
	for ; k+1 < len(ids); k += 2 {
		h = (h ^ (uint64(uint32(ids[k])) | uint64(ids[k+1])<<32)) * 0xbf58476d1ce4e5b9
		h ^= h >> 31
	}
	if k < len(ids) {
		h = (h ^ uint64(ids[k])) * 0xbf58476d1ce4e5b9
		h ^= h >> 31
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	return h ^ h>>31
}

// saltHash seeds the hash chain of a request with a cache salt: its first
// block, and so every block, hashes apart from unsalted ones.
func saltHash(salt string) uint64 {
	h := uint64(0xcbf29ce484222325) // FNV-1a
	for i := 0; i < len(salt); i++ {
		h = (h ^ uint64(salt[i])) * 0x100000001b3
	}
	return h | 1
}
