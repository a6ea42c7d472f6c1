package router

import (
	"container/list"
	"fmt"
	"hash/fnv"
	"math"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// backend is one upstream server.
type backend struct {
	url       string
	inFlight  atomic.Int64
	homes     atomic.Int64 // workflows whose home it is
	healthy   atomic.Bool
	fails     atomic.Int64 // consecutive failed health checks
	timeScale atomic.Value // string of its X-Wfsched-Time-Scale, "" if none
	cuts      atomic.Int64 // responses it broke off after the first byte
	failovers atomic.Int64 // requests moved off it before their first byte
	// remote counts the requests other router replicas have in flight on
	// it, as they last published them (shared state only).
	remote atomic.Int64
	// gone marks a backend service discovery no longer finds: it is down
	// for routing (its workflows move as on failure) and not probed.
	gone   atomic.Bool
	prefix *prefixIndex
	// series are its per-request metrics, resolved once (routerMetrics.of).
	series atomic.Pointer[backendSeries]
}

// load is the requests in flight on the backend, through this router and
// through the other replicas: the load signal of every logic.
func (b *backend) load() int64 { return b.inFlight.Load() + b.remote.Load() }

// ring is a consistent-hash ring with virtual nodes over some of the
// backends (those present), by their indexes.
type ring struct {
	points []uint64
	owner  []int
	n      int // backends on the ring
	size   int // indexes below it
}

const vnodes = 160

func hash64(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	x := h.Sum64()
	// Finalize (splitmix64) so that nearby keys spread.
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// newRing places the backends of list that on accepts.
func newRing(list []*backend, on func(*backend) bool) *ring {
	r := &ring{size: len(list)}
	type pt struct {
		h uint64
		o int
	}
	var pts []pt
	for i, b := range list {
		if !on(b) {
			continue
		}
		r.n++
		for v := 0; v < vnodes; v++ {
			pts = append(pts, pt{hash64(fmt.Sprintf("%s#%d", b.url, v)), i})
		}
	}
	sort.Slice(pts, func(a, b int) bool { return pts[a].h < pts[b].h })
	for _, p := range pts {
		r.points = append(r.points, p.h)
		r.owner = append(r.owner, p.o)
	}
	return r
}

// walk returns every backend on the ring once, in ring order from key's
// position.
func (r *ring) walk(key string) []int {
	h := hash64(key)
	i := sort.Search(len(r.points), func(k int) bool { return r.points[k] >= h })
	seen := make([]bool, r.size)
	out := make([]int, 0, r.n)
	for k := 0; k < len(r.points) && len(out) < r.n; k++ {
		o := r.owner[(i+k)%len(r.points)]
		if !seen[o] {
			seen[o] = true
			out = append(out, o)
		}
	}
	return out
}

// Request is one request as routing sees it.
type Request struct {
	Meta   *Metadata // nil without workflow metadata
	Prompt func() string
	// Session is the key of the session logic: the workflow id, else the
	// X-Session-Id header.
	Session string
}

// Logic chooses a backend for a request. It decides over the balancer's
// state (in-flight and home counts, health, prefix indexes, workflow
// table), never over HTTP, so that the proxy and the virtual-time replay
// share it.
type Logic interface {
	// Name is the name the command line uses.
	Name() string
	// Pick decides; Backend is -1 when no backend is healthy.
	Pick(s *Balancer, r *Request) Decision
}

var logics = map[string]func() Logic{
	"roundrobin":     func() Logic { return &roundRobin{} },
	"least-loaded":   func() Logic { return leastLoaded{} },
	"session":        func() Logic { return session{} },
	"prefix-aware":   func() Logic { return prefixAware{} },
	"workflow-aware": func() Logic { return workflowAware{} },
}

// Logics lists the routing logic names.
func Logics() []string {
	var names []string
	for n := range logics {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// normalizeLogic accepts the design documents' spellings (workflow_aware,
// prefixaware, least_loaded).
func normalizeLogic(name string) string {
	n := strings.ReplaceAll(strings.ToLower(name), "_", "-")
	switch n {
	case "prefixaware":
		return "prefix-aware"
	case "leastloaded":
		return "least-loaded"
	case "workflowaware":
		return "workflow-aware"
	case "round-robin":
		return "roundrobin"
	}
	return n
}

// CheckLogic reports whether name (in any accepted spelling) is a routing
// logic, with the list of names when it is not.
func CheckLogic(name string) error {
	_, err := newLogic(name)
	return err
}

func newLogic(name string) (Logic, error) {
	f, ok := logics[normalizeLogic(name)]
	if !ok {
		return nil, fmt.Errorf("unknown routing logic %q (want %s)", name, strings.Join(Logics(), ", "))
	}
	return f(), nil
}

type roundRobin struct{ next atomic.Uint64 }

func (*roundRobin) Name() string { return "roundrobin" }

func (l *roundRobin) Pick(s *Balancer, _ *Request) Decision {
	list := s.list()
	n := len(list)
	start := int(l.next.Add(1) % uint64(n))
	for k := 0; k < n; k++ {
		if i := (start + k) % n; list[i].healthy.Load() {
			return Decision{Backend: i}
		}
	}
	return Decision{Backend: -1}
}

type leastLoaded struct{}

func (leastLoaded) Name() string { return "least-loaded" }

func (leastLoaded) Pick(s *Balancer, _ *Request) Decision { return Decision{Backend: s.leastLoaded()} }

type session struct{}

func (session) Name() string { return "session" }

// Pick hashes the session key onto the ring, with no load bound; without a
// key it takes the least loaded.
func (session) Pick(s *Balancer, r *Request) Decision {
	if r.Session == "" {
		return Decision{Backend: s.leastLoaded()}
	}
	list := s.list()
	for _, i := range s.ringNow().walk(r.Session) {
		if list[i].healthy.Load() {
			return Decision{Backend: i}
		}
	}
	return Decision{Backend: -1}
}

// prefixAware routes to the backend that has seen the longest prefix of the
// prompt (in 128-character chunks, an approximate and bounded index per
// backend), unless load is imbalanced, then to the least loaded.
type prefixAware struct{}

func (prefixAware) Name() string { return "prefix-aware" }

const chunkChars = 128

func chunkHashes(text string) []uint64 {
	var out []uint64
	h := fnv.New64a()
	for i := 0; i+chunkChars <= len(text); i += chunkChars {
		h.Write([]byte(text[i : i+chunkChars]))
		out = append(out, h.Sum64())
	}
	return out
}

func (prefixAware) Pick(s *Balancer, r *Request) Decision {
	return Decision{Backend: s.prefixPick(r)}
}

func (rt *Balancer) prefixPick(r *Request) int {
	chunks := chunkHashes(r.Prompt())
	// Imbalance, as SGLang's cache-aware router judges it.
	minL, maxL := int64(math.MaxInt64), int64(-1)
	list := rt.list()
	for _, b := range list {
		if b.healthy.Load() {
			l := b.load()
			minL, maxL = min(minL, l), max(maxL, l)
		}
	}
	pick := -1
	if maxL-minL > 32 && float64(maxL) > 1.1*float64(minL) || len(chunks) == 0 {
		pick = rt.leastLoaded()
	} else {
		best := -1
		for i, b := range list {
			if !b.healthy.Load() {
				continue
			}
			m := b.prefix.match(chunks)
			if m > best || m == best && b.load() < list[pick].load() {
				best, pick = m, i
			}
		}
		if best == 0 {
			pick = rt.leastLoaded()
		}
	}
	if pick >= 0 {
		list[pick].prefix.add(chunks)
	}
	return pick
}

// prefixIndex remembers chunk-prefix hashes a backend has seen, evicting
// the least recently used beyond its limit.
type prefixIndex struct {
	mu    sync.Mutex
	limit int
	m     map[uint64]*list.Element
	lru   list.List
}

func newPrefixIndex(limit int) *prefixIndex {
	return &prefixIndex{limit: limit, m: map[uint64]*list.Element{}}
}

func (p *prefixIndex) match(chunks []uint64) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, h := range chunks {
		e, ok := p.m[h]
		if !ok {
			return k
		}
		p.lru.MoveToFront(e)
	}
	return len(chunks)
}

func (p *prefixIndex) add(chunks []uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, h := range chunks {
		if e, ok := p.m[h]; ok {
			p.lru.MoveToFront(e)
			continue
		}
		p.m[h] = p.lru.PushFront(h)
		if p.lru.Len() > p.limit {
			old := p.lru.Back()
			p.lru.Remove(old)
			delete(p.m, old.Value.(uint64))
		}
	}
}

// workflowAware keeps a workflow on its home backend, the least loaded
// under a bound on homes when it starts, unless the home is over the load
// bound (see routeWorkflow); a second candidate takes over if the home
// fails. Requests without a workflow use the fallback logic.
type workflowAware struct{}

func (workflowAware) Name() string { return "workflow-aware" }

// A workflow that sets context_sharing_strategy "none" shares no context
// between its calls, so affinity buys nothing: it is routed like a request
// without a workflow.
func (workflowAware) Pick(s *Balancer, r *Request) Decision {
	if r.Meta == nil || r.Meta.WorkflowID == "" || r.Meta.ContextSharingStrategy == "none" {
		return s.fallback.Pick(s, r)
	}
	return s.routeWorkflow(r)
}
