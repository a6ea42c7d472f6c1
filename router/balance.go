package router

import (
	"sync"

	"errors"
	"github.com/wfsched/wfsched/internal/waitline"
	"math"
	"strings"
	"sync/atomic"
)

// Balancer is the routing state and every routing decision, apart from
// HTTP: the backends' in-flight and home counts, health and prefix indexes,
// the consistent-hash ring, the workflow table and the logics. The proxy
// serves through one; wfsched's virtual-time replay drives one directly,
// so both clocks make the same decisions with the same code.
//
// Route picks a backend, Begin and End bracket a request's time on it, and
// Finish records a workflow request's end. Safe for concurrent use.
type Balancer struct {
	loadFactor float64
	set        atomic.Pointer[backendSet]
	setMu      sync.Mutex // held to change the set
	logic      Logic
	fallback   Logic
	workflows  workflowStore
	table      *workflowTable // the workflows in this process (with shared state, its mirror)
	responses  responseStore
	tie        atomic.Uint64

	// Admission: with a positive limit, each backend serves at most that
	// many admitted requests; more wait in its line.
	admitMu  sync.Mutex
	limit    int
	admitted []int
	lines    []waitline.Line[func()]
	held     atomic.Int64 // requests waiting in the lines
}

// backendSet is the backends as routing sees them at one time: every
// backend the balancer has known, in the order it learned them (so an
// index is a backend's for good, and a later set holds every index of an
// earlier one), and the ring over those present.
type backendSet struct {
	list []*backend
	ring *ring
}

// list is every backend known, by index.
func (bl *Balancer) list() []*backend { return bl.set.Load().list }

// present is the backends service discovery finds (all, without it).
func (bl *Balancer) present() []*backend {
	var out []*backend
	for _, b := range bl.list() {
		if !b.gone.Load() {
			out = append(out, b)
		}
	}
	return out
}

// ringNow is the ring over the backends present.
func (bl *Balancer) ringNow() *ring { return bl.set.Load().ring }

// newBackend is a backend at base URL u (with or without /v1), healthy.
func newBackend(u string) *backend {
	b := &backend{url: strings.TrimSuffix(strings.TrimSuffix(u, "/"), "/v1"), prefix: newPrefixIndex(200_000)}
	b.healthy.Store(true)
	b.timeScale.Store("")
	return b
}

// SetBackends makes urls the backends present, as service discovery
// finds them: a new URL joins, a known one missing leaves (down for
// routing: its workflows move as on failure) and may come back. Backends
// that join or come back are healthy as given. It returns those that
// joined (new to the balancer) and those that came back.
func (bl *Balancer) SetBackends(urls []string, healthy bool) (joined, back []*backend) {
	bl.setMu.Lock()
	defer bl.setMu.Unlock()
	old := bl.set.Load()
	want := map[string]bool{}
	for _, u := range urls {
		want[newBackend(u).url] = true
	}
	list := old.list
	known := map[string]bool{}
	for _, b := range list {
		known[b.url] = true
		switch present := want[b.url]; {
		case present && b.gone.Load():
			b.healthy.Store(healthy)
			b.fails.Store(0)
			b.gone.Store(false)
			back = append(back, b)
		case !present && !b.gone.Load():
			b.gone.Store(true)
			b.healthy.Store(false)
		}
	}
	for _, u := range urls {
		if b := newBackend(u); !known[b.url] {
			known[b.url] = true
			b.healthy.Store(healthy)
			list = append(list[:len(list):len(list)], b)
			joined = append(joined, b)
		}
	}
	bl.set.Store(&backendSet{list: list, ring: newRing(list, func(b *backend) bool { return !b.gone.Load() })})
	return joined, back
}

// Decision is where a request goes and why.
type Decision struct {
	// Backend is the index of the chosen backend, -1 when none is healthy.
	Backend int
	// Affinity is "hit" (the workflow's home), "miss" (a new home or a
	// moved one), or "" for a request routed without a workflow.
	Affinity string
	// Spilled marks a workflow request sent off its home because the home
	// was over the load bound.
	Spilled bool
}

// NewBalancer returns the routing state of cfg's backends under cfg's
// logic, load factor and workflow-table limits (the HTTP fields of cfg are
// not read; backends are names, URLs or not). Backends start healthy.
func NewBalancer(cfg Config) (*Balancer, error) {
	if len(cfg.Backends) == 0 {
		return nil, errors.New("no backend")
	}
	if err := cfg.validateRouting(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	return newBalancer(cfg), nil
}

// newBalancer builds a balancer from a validated configuration with its
// defaults set.
func newBalancer(cfg Config) *Balancer {
	logic, _ := newLogic(cfg.Logic)
	fallback, _ := newLogic(cfg.FallbackLogic)
	bl := &Balancer{loadFactor: cfg.LoadFactor, logic: logic, fallback: fallback, limit: cfg.Admission}
	var list []*backend
	for _, u := range cfg.Backends {
		list = append(list, newBackend(u))
	}
	bl.set.Store(&backendSet{list: list, ring: newRing(list, func(*backend) bool { return true })})
	bl.table = newWorkflowTable(bl.list, cfg.WorkflowTTL, cfg.MaxWorkflows, cfg.MaxWorkflowBytes, cfg.MaxAgents, cfg.Now)
	bl.workflows = bl.table
	bl.responses = newResponseHomes(cfg.MaxResponses, cfg.WorkflowTTL, cfg.Now)
	return bl
}

// Logic is the routing logic's name.
func (bl *Balancer) Logic() string { return bl.logic.Name() }

// Route decides where r goes. A workflow request so routed must be
// finished with Finish(r.Meta.WorkflowID, d.Backend, ...) when Affinity is not "".
func (bl *Balancer) Route(r *Request) Decision { return bl.logic.Pick(bl, r) }

// Begin counts a request in flight on backend i; End gives it back.
func (bl *Balancer) Begin(i int) { bl.list()[i].inFlight.Add(1) }

// End ends a request counted by Begin.
func (bl *Balancer) End(i int) { bl.list()[i].inFlight.Add(-1) }

// Finish records the end of a routed workflow request, routed to backend
// (its Decision's), and what its response said of its prompt.
func (bl *Balancer) Finish(workflow string, backend, prompt, cached int, cachedKnown bool) {
	bl.workflows.done(workflow, backend, prompt, cached, cachedKnown)
}

// Admit asks for a place on backend i for a request of priority prio
// (lower first). With no admission limit, or a place free, it takes it and
// returns true. Otherwise the request waits in the backend's line, by
// priority then arrival, and wake is called, the place taken, when one
// frees; Leave takes a waiter out early. Every admitted request ends with
// Unadmit.
func (bl *Balancer) Admit(i, prio int, wake func()) (bool, *waitline.Ticket[func()]) {
	if bl.limit <= 0 {
		return true, nil
	}
	bl.admitMu.Lock()
	defer bl.admitMu.Unlock()
	bl.grow(i)
	if bl.admitted[i] < bl.limit && bl.lines[i].Len() == 0 {
		bl.admitted[i]++
		return true, nil
	}
	bl.held.Add(1)
	return false, bl.lines[i].Push(prio, wake)
}

// Leave takes a waiting request out of backend i's line; false when it
// had already been admitted (its wake called), and must then Unadmit.
func (bl *Balancer) Leave(i int, t *waitline.Ticket[func()]) bool {
	bl.admitMu.Lock()
	defer bl.admitMu.Unlock()
	bl.grow(i)
	if bl.lines[i].Remove(t) {
		bl.held.Add(-1)
		return true
	}
	return false
}

// Unadmit ends an admitted request on backend i: its place goes to the
// first in the line, whose wake is called.
func (bl *Balancer) Unadmit(i int) {
	if bl.limit <= 0 {
		return
	}
	bl.admitMu.Lock()
	bl.grow(i)
	wake, ok := bl.lines[i].Pop()
	if ok {
		bl.held.Add(-1)
	} else {
		bl.admitted[i]--
	}
	bl.admitMu.Unlock()
	if ok {
		wake()
	}
}

// grow sizes the admission lines for backend i (backends join).
// Called with admitMu held.
func (bl *Balancer) grow(i int) {
	for len(bl.lines) <= i {
		bl.lines = append(bl.lines, waitline.Line[func()]{})
		bl.admitted = append(bl.admitted, 0)
	}
}

// Held is the number of requests waiting for admission.
func (bl *Balancer) Held() int64 { return bl.held.Load() }

// Forget drops a workflow's routing state; false if unknown.
func (bl *Balancer) Forget(id string) bool { return bl.workflows.delete(id) }

// Expire drops the workflows idle past the TTL with nothing in flight.
func (bl *Balancer) Expire() int { return bl.workflows.sweep() }

// Stats returns the routing figures (Messages left zero).
func (bl *Balancer) Stats() Stats {
	t := bl.workflows.stats()
	s := Stats{Logic: bl.logic.Name(), ActiveWorkflows: t.workflows, AffinityHits: t.hits, AffinityMisses: t.misses,
		Spillovers: t.spillovers, Migrations: t.migrations, Evicted: t.evicted, Expired: t.expired, AdmissionWaiting: bl.Held()}
	for _, b := range bl.list() {
		if b.gone.Load() {
			continue
		}
		s.Backends = append(s.Backends, BackendStats{URL: b.url, Healthy: b.healthy.Load(), InFlight: b.inFlight.Load(), Workflows: b.homes.Load(),
			CutStreams: b.cuts.Load(), Failovers: b.failovers.Load()})
	}
	return s
}

// leastLoaded is the healthy backend with the fewest requests in flight.
func (bl *Balancer) leastLoaded() int {
	return bl.leastLoadedOf(func(_ int, b *backend) bool { return b.healthy.Load() })
}

// leastLoadedOf is the backend with the fewest requests in flight among
// those ok accepts, or -1; ties rotate so that an idle system spreads.
func (bl *Balancer) leastLoadedOf(ok func(i int, b *backend) bool) int {
	list := bl.list()
	n := len(list)
	start := int(bl.tie.Add(1) % uint64(n))
	best, load := -1, int64(math.MaxInt64)
	for k := 0; k < n; k++ {
		i := (start + k) % n
		b := list[i]
		if l := b.load(); l < load && ok(i, b) {
			best, load = i, l
		}
	}
	return best
}
