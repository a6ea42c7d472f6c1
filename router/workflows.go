package router

import (
	"container/list"
	"maps"
	"math"
	"sort"
	"sync"
	"time"
)

// workflow is the router's record of one workflow.
type workflow struct {
	id          string
	created     time.Time
	lastSeen    time.Time
	home        int // backend index, -1 before the first request
	second      int // failover candidate, -1 if none
	agents      map[string]int
	untracked   int64 // requests of agents beyond the table's MaxAgents
	bytes       int64 // of the strings kept, as the table's budget counts them
	requests    int64
	tally       // what routing decided for its requests
	inFlight    int
	prompt      int64
	cached      int64
	cachedKnown int64 // responses that reported cached tokens
	lastParent  string
	priority    float64
	elem        *list.Element
}

// tally counts routing's decisions: per workflow, and for the table.
type tally struct {
	hits       int64 // requests routed to the home as assigned
	misses     int64 // requests that had to pick a home (new or moved)
	spillovers int64
	migrations int64
}

func (a tally) minus(b tally) tally {
	return tally{a.hits - b.hits, a.misses - b.misses, a.spillovers - b.spillovers, a.migrations - b.migrations}
}

func (a *tally) add(b tally) {
	a.hits += b.hits
	a.misses += b.misses
	a.spillovers += b.spillovers
	a.migrations += b.migrations
}

// tableStats are a workflow store's totals.
type tableStats struct {
	tally
	evicted, expired int64
	workflows        int
}

// workflowStore keeps the workflow records: in this process (workflowTable)
// or shared by router replicas (redisWorkflows). The routing decision is
// the Balancer's, one for both; a store records what it decided.
type workflowStore interface {
	// update records a request of the workflow m names (creating its
	// record), then runs decide on the record, as one step: decide sees
	// the record as every replica left it, what it changes is kept, and
	// the backend it returns (-1: none) counts the request until done.
	update(m *Metadata, decide func(w *workflow) int)
	// done records the end of a request routed to backend and what its
	// response said of its prompt.
	done(id string, backend, prompt, cached int, cachedKnown bool)
	// get returns a copy of the record; false if unknown.
	get(id string) (workflow, bool)
	// delete ends a workflow; false if unknown.
	delete(id string) bool
	// sweep removes the workflows idle past the TTL with nothing in
	// flight, and returns how many.
	sweep() int
	stats() tableStats
}

// workflowTable holds workflows in this process with an idle TTL and
// limits on their number and on the bytes of the strings they keep,
// evicting the least recently used. Safe for concurrent use.
type workflowTable struct {
	mu        sync.Mutex
	backends  func() []*backend
	ttl       time.Duration
	max       int
	maxBytes  int64
	maxAgents int
	bytes     int64
	now       func() time.Time
	m         map[string]*workflow
	lru       list.List // front: most recently used
	totals    tableStats
}

// entryBytes is what one kept string counts against the byte budget: its
// bytes and an allowance for the map entry holding it.
func entryBytes(s string) int64 { return int64(len(s)) + 48 }

func newWorkflowTable(backends func() []*backend, ttl time.Duration, max int, maxBytes int64, maxAgents int, now func() time.Time) *workflowTable {
	return &workflowTable{backends: backends, ttl: ttl, max: max, maxBytes: maxBytes, maxAgents: maxAgents, now: now, m: map[string]*workflow{}}
}

// grow adds n bytes to w's kept strings, evicting the least recently used
// other workflows while the table is over its byte budget. Called with mu
// held; w is at the front of the LRU list.
func (t *workflowTable) grow(w *workflow, n int64) {
	w.bytes += n
	t.bytes += n
	for t.bytes > t.maxBytes && t.lru.Len() > 1 {
		t.evictOne()
	}
}

// touch returns the workflow, creating it (and evicting the least recently
// used one if the table is full). Called with mu held.
func (t *workflowTable) touch(id string) *workflow {
	now := t.now()
	if w, ok := t.m[id]; ok {
		w.lastSeen = now
		t.lru.MoveToFront(w.elem)
		return w
	}
	if len(t.m) >= t.max {
		t.evictOne()
	}
	w := newWorkflow(id, now)
	w.elem = t.lru.PushFront(w)
	t.m[id] = w
	t.grow(w, entryBytes(id))
	return w
}

func newWorkflow(id string, now time.Time) *workflow {
	return &workflow{id: id, created: now, lastSeen: now, home: -1, second: -1, agents: map[string]int{}, priority: 1}
}

// evictOne removes the least recently used workflow, preferring one with
// nothing in flight among the oldest few. Called with mu held.
func (t *workflowTable) evictOne() {
	victim := t.lru.Back()
	// The front is never preferred: in grow it is the workflow being
	// routed (and there the list holds more than one).
	for e, k := victim, 0; e != nil && e != t.lru.Front() && k < 16; e, k = e.Prev(), k+1 {
		if e.Value.(*workflow).inFlight == 0 {
			victim = e
			break
		}
	}
	if victim != nil {
		t.remove(victim.Value.(*workflow))
		t.totals.evicted++
	}
}

// remove drops a workflow. Called with mu held.
func (t *workflowTable) remove(w *workflow) {
	t.rehome(w.home, -1)
	t.lru.Remove(w.elem)
	delete(t.m, w.id)
	t.bytes -= w.bytes
}

// rehome moves one workflow's count from backend from to backend to (-1:
// none).
func (t *workflowTable) rehome(from, to int) {
	if from == to {
		return
	}
	list := t.backends()
	if from >= 0 {
		list[from].homes.Add(-1)
	}
	if to >= 0 {
		list[to].homes.Add(1)
	}
}

func (t *workflowTable) delete(id string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	w, ok := t.m[id]
	if ok {
		t.remove(w)
	}
	return ok
}

// noteRequest records a request of w: its count, its agent (up to
// maxAgents named), its parent request and priority. It returns the bytes
// of the strings w now keeps beyond those it kept.
func noteRequest(w *workflow, m *Metadata, maxAgents int) (grown int64) {
	w.requests++
	if a := m.AgentID; a != "" {
		if _, ok := w.agents[a]; ok {
			w.agents[a]++
		} else if len(w.agents) < maxAgents {
			w.agents[a] = 1
			grown += entryBytes(a)
		} else {
			w.untracked++
		}
	}
	if p := m.ParentRequestID; p != "" && p != w.lastParent {
		grown += int64(len(p) - len(w.lastParent))
		w.lastParent = p
	}
	w.priority = priority(m.WorkflowPriority)
	return grown
}

func (t *workflowTable) update(m *Metadata, decide func(w *workflow) int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	w := t.touch(m.WorkflowID)
	t.grow(w, noteRequest(w, m, t.maxAgents))
	before, home := w.tally, w.home
	decide(w)
	t.totals.add(w.tally.minus(before))
	t.rehome(home, w.home)
}

// routeWorkflow picks the backend of a request of a known workflow: its
// home unless the home, judged without up to a bound's worth of the
// workflow's own requests in flight (so that its fan-out stays home), is
// over the in-flight bound: then a spillover to the next backend on the
// workflow's ring walk with room. A workflow's first request picks as its
// home the least loaded backend among those under the bound on homes
// (bounded loads over the workflows' homes; ties go in the workflow's ring
// order, so an idle system places by consistent hashing); a failed home
// hands over to the second candidate (a migration).
func (bl *Balancer) routeWorkflow(r *Request) Decision {
	var d Decision
	bl.workflows.update(r.Meta, func(w *workflow) int { d = bl.decide(w); return d.Backend })
	return d
}

// decide routes a request of w, as routeWorkflow says, and records the
// decision in w.
func (bl *Balancer) decide(w *workflow) Decision {
	set := bl.set.Load()
	list := set.list
	healthy := 0
	var homes, inFlight int64
	for _, b := range list {
		if b.healthy.Load() {
			healthy++
			homes += b.homes.Load()
			inFlight += b.load()
		}
	}
	if healthy == 0 {
		return Decision{Backend: -1}
	}
	ok := func(i int) bool { return i >= 0 && list[i].healthy.Load() }
	walk := set.ring.walk(w.id)
	firstHealthy := func(skip int) int {
		for _, i := range walk {
			if i != skip && ok(i) {
				return i
			}
		}
		return -1
	}
	d := Decision{Affinity: "hit"}
	switch {
	case w.home < 0:
		// Homes are given by work, not only by count: workflows differ
		// in length, and a home chosen by count alone gathers the long
		// ones (AppWorld past saturation: engines at 24.6 to 35.9
		// sequences; by load, as even as prefix-aware's).
		limit := int64(bound(bl.loadFactor, int(homes), healthy))
		home := -1
		for _, i := range walk {
			if ok(i) && list[i].homes.Load() < limit && (home < 0 || list[i].load() < list[home].load()) {
				home = i
			}
		}
		if home < 0 {
			home = firstHealthy(-1)
		}
		if home < 0 { // every backend went down since they were counted
			return Decision{Backend: -1}
		}
		w.home = home
		w.second = firstHealthy(w.home)
		w.misses++
		d.Affinity = "miss"
	case !ok(w.home):
		home := w.second
		if !ok(home) {
			home = firstHealthy(w.home)
		}
		if home < 0 {
			return Decision{Backend: -1}
		}
		w.home = home
		w.second = firstHealthy(w.home)
		w.migrations++
		w.misses++
		d.Affinity = "miss"
	default:
		w.hits++
		if !ok(w.second) || w.second == w.home {
			w.second = firstHealthy(w.home)
		}
	}
	pick := w.home
	// A workflow's priority scales how far over the average its home may
	// be loaded before its requests spill: priority 2 stays home under
	// twice the load, 0.5 spills sooner.
	limit := int64(math.Ceil(float64(bound(bl.loadFactor, int(inFlight), healthy)) * w.priority))
	// A workflow's own parallel calls do not push each other off its
	// home: the home is judged without up to limit of them.
	burst := min(int64(w.inFlight), limit)
	if list[pick].load()-burst+1 > limit {
		for _, i := range walk {
			if ok(i) && list[i].load()+1 <= limit {
				pick = i
				break
			}
		}
		if pick != w.home {
			w.spillovers++
			d.Spilled = true
		}
	}
	w.inFlight++
	d.Backend = pick
	return d
}

// bound is ceil(factor * (total+1) / n): the most any of n backends may
// take so that the loads stay within factor of the average.
func bound(factor float64, total, n int) int {
	return int(math.Ceil(factor * float64(total+1) / float64(n)))
}

// priority clamps workflow_priority to [0.5, 4]; 0 (unset) is 1.
func priority(p float64) float64 {
	if p == 0 {
		return 1
	}
	return max(0.5, min(p, 4))
}

func (t *workflowTable) done(id string, _, prompt, cached int, cachedKnown bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	w, ok := t.m[id]
	if !ok {
		return
	}
	w.inFlight--
	w.lastSeen = t.now()
	t.lru.MoveToFront(w.elem)
	w.prompt += int64(prompt)
	if cachedKnown {
		w.cached += int64(cached)
		w.cachedKnown++
	}
}

func (t *workflowTable) sweep() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	cut := t.now().Add(-t.ttl)
	n := 0
	for e := t.lru.Back(); e != nil; {
		w := e.Value.(*workflow)
		prev := e.Prev()
		if w.lastSeen.After(cut) {
			break // the rest are newer
		}
		if w.inFlight == 0 {
			t.remove(w)
			t.totals.expired++
			n++
		}
		e = prev
	}
	return n
}

func (t *workflowTable) get(id string) (workflow, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	w, ok := t.m[id]
	if !ok {
		return workflow{}, false
	}
	c := *w
	c.agents = maps.Clone(w.agents)
	c.elem = nil
	return c, true
}

func (t *workflowTable) stats() tableStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.totals
	s.workflows = len(t.m)
	return s
}

// inFlightIDs lists the workflows with requests in flight.
func (t *workflowTable) inFlightIDs() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for id, w := range t.m {
		if w.inFlight > 0 {
			out = append(out, id)
		}
	}
	return out
}

// len is the number of workflows tracked.
func (t *workflowTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// WorkflowStatus is GET /v1/workflows/{id}/status.
type WorkflowStatus struct {
	WorkflowID string `json:"workflow_id"`
	// CreatedAt is Unix seconds, as the design documents show it;
	// Created the same time in RFC 3339.
	CreatedAt    float64        `json:"created_at"`
	Created      time.Time      `json:"created"`
	LastSeen     time.Time      `json:"last_seen"`
	ActiveAgents int            `json:"active_agents"`
	Agents       map[string]int `json:"agents"`
	// UntrackedAgentRequests counts requests of agents beyond the
	// router's --max-agents-per-workflow, whose ids are not kept.
	UntrackedAgentRequests int64 `json:"untracked_agent_requests,omitempty"`
	TotalRequests          int64 `json:"total_requests"`
	// CacheHits counts the requests routed to the workflow's home as
	// assigned (the design documents' cache_hits: where its KV cache is);
	// CacheHitRate is what the servers measured.
	CacheHits        int64  `json:"cache_hits"`
	InFlight         int    `json:"in_flight"`
	AssignedInstance string `json:"assigned_instance"`
	SecondCandidate  string `json:"second_candidate,omitempty"`
	Spillovers       int64  `json:"spillovers"`
	Migrations       int64  `json:"migrations"`
	PromptTokens     int64  `json:"prompt_tokens"`
	CachedTokens     int64  `json:"cached_tokens"`
	// CacheHitRate is cached over prompt tokens, from the backends'
	// responses; null when no response reported cached tokens.
	CacheHitRate    *float64 `json:"cache_hit_rate"`
	MessagesPending int      `json:"messages_pending"`
	// Priority is the last workflow_priority (clamped to 0.5-4), which
	// scales the load its home may take before requests spill.
	Priority            float64 `json:"priority"`
	LastParentRequestID string  `json:"last_parent_request_id,omitempty"`
}

// status is what GET /v1/workflows/{id}/status answers of a workflow.
func (bl *Balancer) status(id string) (WorkflowStatus, bool) {
	w, ok := bl.workflows.get(id)
	if !ok {
		return WorkflowStatus{}, false
	}
	s := WorkflowStatus{WorkflowID: id, CreatedAt: unixSeconds(w.created), Created: w.created, CacheHits: w.hits, LastSeen: w.lastSeen, ActiveAgents: len(w.agents), Agents: w.agents,
		UntrackedAgentRequests: w.untracked, TotalRequests: w.requests, InFlight: w.inFlight, Spillovers: w.spillovers, Migrations: w.migrations,
		PromptTokens: w.prompt, CachedTokens: w.cached, Priority: w.priority, LastParentRequestID: w.lastParent}
	if s.Agents == nil {
		s.Agents = map[string]int{}
	}
	list := bl.list()
	if w.home >= 0 {
		s.AssignedInstance = list[w.home].url
	}
	if w.second >= 0 {
		s.SecondCandidate = list[w.second].url
	}
	if w.cachedKnown > 0 && w.prompt > 0 {
		rate := float64(w.cached) / float64(w.prompt)
		s.CacheHitRate = &rate
	}
	return s, true
}

// ids lists the workflows, for tests.
func (t *workflowTable) ids() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for id := range t.m {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}
