package router

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	"maps"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Shared state: router replicas keep their workflow records and agent
// message queues in one Redis (--state redis://HOST:PORT/DB), so that any
// replica routes a workflow to the home another gave it, and a message
// posted through one is read through another. Every key starts with
// redisPrefix:
//
//	wf:ID          hash, a workflow's record (fields below), expiring
//	lru            sorted set of workflow ids by last use (ms), for the
//	               global bound and the idle TTL
//	homes          hash, backend URL -> workflows whose home it is
//	stats          hash, routing totals (hits, misses, spillovers, ...)
//	replica:RID    a live replica (expires unless its heartbeat renews it)
//	replicas       set of replica ids seen
//	load:RID       hash, a replica's in-flight, cut and failover counts
//	               per backend, renewed with its heartbeat
//	q:WF AGENT     list, a message queue (see redisMail)
//	qb:WF AGENT    its bytes; wq:WF set of its agents with queues;
//	queues         set of "WF AGENT" holding messages; mail hash of totals
//	wake           channel: "WF AGENT" when a message is posted
//	resp:ID        the backend URL that stored a Responses API response,
//	               expiring; resplru sorted set of them by last use
//
// A record's fields: created, last_seen (Unix ms), home, second (backend
// URLs), the counters in recordCounters, last_parent, priority, a:AGENT
// (requests per agent) and if:RID (requests in flight through replica
// RID).
//
// Load signals (requests in flight per backend) stay per replica: each
// replica decides spills on what it has in flight itself. Statistics sum
// over the replicas alive.
const redisPrefix = "wfsched:"

// redisTimeout bounds one Redis operation: past it the replica routes on
// its own state (degraded) until a heartbeat reaches Redis again.
const redisTimeout = 500 * time.Millisecond

// A replica renews its liveness every heartbeat; it counts as alive for
// replicaTTL after its last. Its workflow requests count on the backend
// they were routed to from the commit of the decision to their end (in
// the same scripts, no extra round trip); it reads the other replicas'
// counts with every workflow request it routes, and at least every
// loadEvery, and its routing adds them to its own requests in flight.
// (Variables for tests.)
var (
	heartbeat  = time.Second
	replicaTTL = 5 * time.Second
	loadEvery  = 100 * time.Millisecond
)

// redisState is this replica's connection to the shared Redis.
type redisState struct {
	c        *redis.Client
	addr     string
	replica  string
	degraded atomic.Bool
	errors   atomic.Int64
	others   atomic.Pointer[[]string] // the other replicas alive
	onResume func()                   // called when Redis answers again
	logf     func(format string, args ...any)

	wakeMu sync.Mutex
	wakes  map[string]*wake // queue key -> its long polls' wake
}

// CheckState reports whether s is a state store the router can use:
// "memory" (or "") or redis://HOST:PORT/DB.
func CheckState(s string) error {
	_, err := stateOptions(s)
	return err
}

// stateOptions parses --state: nil options for memory.
func stateOptions(s string) (*redis.Options, error) {
	if s == "" || s == "memory" {
		return nil, nil
	}
	if !strings.HasPrefix(s, "redis://") && !strings.HasPrefix(s, "rediss://") {
		return nil, fmt.Errorf("state %q: want memory or redis://HOST:PORT/DB", s)
	}
	opt, err := redis.ParseURL(s)
	if err != nil {
		return nil, fmt.Errorf("state %q: %v (want redis://HOST:PORT/DB)", s, err)
	}
	return opt, nil
}

// quiet drops go-redis's own log lines: the router logs the loss of its
// state once, and counts every failed operation.
type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

// dialRedis connects to the Redis of --state and checks that it answers.
func dialRedis(s string) (*redisState, error) {
	redis.SetLogger(quiet{})
	opt, err := stateOptions(s)
	if err != nil {
		return nil, err
	}
	opt.DialTimeout = time.Second
	opt.ReadTimeout = redisTimeout
	opt.WriteTimeout = redisTimeout
	opt.MaxRetries = 1
	opt.ContextTimeoutEnabled = true
	st := &redisState{c: redis.NewClient(opt), addr: opt.Addr, replica: newReplicaID(), logf: log.Printf, wakes: map[string]*wake{}}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := st.c.Ping(ctx).Err(); err != nil {
		st.c.Close()
		u, _ := url.Parse(s)
		return nil, fmt.Errorf("the shared state's Redis at %s does not answer (%v): start it, or fix --state (memory keeps state in this process)", u.Host, err)
	}
	if err := st.beat(ctx, nil); err != nil {
		st.c.Close()
		return nil, fmt.Errorf("the shared state's Redis at %s: %v", opt.Addr, err)
	}
	return st, nil
}

func newReplicaID() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// use runs op on Redis unless the replica is degraded, and reports whether
// it did; a failure (not a missing key) makes the replica degraded.
func (s *redisState) use(op func(ctx context.Context) error) bool {
	if s.degraded.Load() {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
	defer cancel()
	if err := op(ctx); err != nil && !errors.Is(err, redis.Nil) {
		s.fail(err)
		return false
	}
	return true
}

// fail counts an error and enters the degraded mode, logging once.
func (s *redisState) fail(err error) {
	s.errors.Add(1)
	if s.degraded.CompareAndSwap(false, true) {
		s.logf("wfsched router: shared state at %s lost (%v): routing on this replica's own state until it returns", s.addr, err)
	}
}

// beat renews the replica's liveness and lists the others alive.
func (s *redisState) beat(ctx context.Context, backends []*backend) error {
	p := s.c.Pipeline()
	p.Set(ctx, redisPrefix+"replica:"+s.replica, "1", replicaTTL)
	p.SAdd(ctx, redisPrefix+"replicas", s.replica)
	if _, err := p.Exec(ctx); err != nil {
		return err
	}
	live, err := s.live(ctx)
	if err != nil {
		return err
	}
	var others []string
	for _, l := range live {
		if l != s.replica {
			others = append(others, l)
		}
	}
	s.others.Store(&others)
	return s.exchangeLoad(ctx, backends)
}

// exchangeLoad publishes this replica's cut streams and failovers per
// backend, keeps its load record alive, and reads the other replicas'
// workflow requests in flight into each backend's remote count.
func (s *redisState) exchangeLoad(ctx context.Context, backends []*backend) error {
	if len(backends) == 0 {
		return nil
	}
	p := s.c.Pipeline()
	load := redisPrefix + "load:" + s.replica
	var fields []any
	for _, b := range backends {
		fields = append(fields, "cuts:"+b.url, b.cuts.Load(), "fo:"+b.url, b.failovers.Load())
	}
	p.HSet(ctx, load, fields...)
	p.PExpire(ctx, load, replicaTTL)
	read := s.readLoads(ctx, p)
	if _, err := p.Exec(ctx); err != nil {
		return err
	}
	read(backends)
	return nil
}

// readLoads queues on p the reads of the other replicas' loads; the
// returned function, once p has run, sets each backend's remote count.
func (s *redisState) readLoads(ctx context.Context, p redis.Pipeliner) func(backends []*backend) {
	var loads []*redis.MapStringStringCmd
	if others := s.others.Load(); others != nil {
		for _, o := range *others {
			loads = append(loads, p.HGetAll(ctx, redisPrefix+"load:"+o))
		}
	}
	return func(backends []*backend) {
		for _, b := range backends {
			var n int64
			for _, l := range loads {
				v, _ := strconv.ParseInt(l.Val()["in:"+b.url], 10, 64)
				n += max(v, 0)
			}
			b.remote.Store(n)
		}
	}
}

// run beats until ctx is done, leaving the degraded mode when Redis
// answers again, exchanges loads with the other replicas, and wakes long
// polls on the messages other replicas post.
func (s *redisState) run(ctx context.Context, list func() []*backend) {
	var listening sync.WaitGroup
	defer listening.Wait()
	listening.Go(func() { s.listen(ctx) })
	t := time.NewTicker(loadEvery)
	defer t.Stop()
	last := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		bctx, cancel := context.WithTimeout(ctx, redisTimeout)
		var err error
		switch {
		case time.Since(last) >= heartbeat || s.degraded.Load():
			last = time.Now()
			err = s.beat(bctx, list())
		default:
			err = s.exchangeLoad(bctx, list())
		}
		cancel()
		switch {
		case err != nil && ctx.Err() == nil:
			if !s.degraded.Load() {
				s.fail(err)
			}
			// Without Redis, the other replicas' loads are unknown.
			for _, b := range list() {
				b.remote.Store(0)
			}
		case err == nil && s.degraded.CompareAndSwap(true, false):
			if s.onResume != nil {
				s.onResume()
			}
			s.logf("wfsched router: shared state at %s is back", s.addr)
		}
	}
}

// listen relays the wake channel to this replica's waiting long polls.
func (s *redisState) listen(ctx context.Context) {
	sub := s.c.Subscribe(ctx, redisPrefix+"wake")
	defer sub.Close()
	ch := sub.Channel()
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-ch:
			if !ok {
				return
			}
			s.wake(m.Payload)
		}
	}
}

// wake is closed when a message is posted to a queue; polls counts the
// long polls waiting on it, so that it goes when the last one leaves.
type wake struct {
	ch    chan struct{}
	polls int
}

// waiter returns a channel closed when a message is posted to queue k,
// and the function that ends the wait (always called).
func (s *redisState) waiter(k string) (<-chan struct{}, func()) {
	s.wakeMu.Lock()
	defer s.wakeMu.Unlock()
	w := s.wakes[k]
	if w == nil {
		w = &wake{ch: make(chan struct{})}
		s.wakes[k] = w
	}
	w.polls++
	return w.ch, func() {
		s.wakeMu.Lock()
		defer s.wakeMu.Unlock()
		if w.polls--; w.polls == 0 && s.wakes[k] == w {
			delete(s.wakes, k)
		}
	}
}

func (s *redisState) wake(k string) {
	s.wakeMu.Lock()
	defer s.wakeMu.Unlock()
	if w := s.wakes[k]; w != nil {
		close(w.ch)
		delete(s.wakes, k)
	}
}

// live lists the replicas alive, dropping the others from the set.
func (s *redisState) live(ctx context.Context) ([]string, error) {
	ids, err := s.c.SMembers(ctx, redisPrefix+"replicas").Result()
	if err != nil {
		return nil, err
	}
	p := s.c.Pipeline()
	exists := make([]*redis.IntCmd, len(ids))
	for i, id := range ids {
		exists[i] = p.Exists(ctx, redisPrefix+"replica:"+id)
	}
	if _, err := p.Exec(ctx); err != nil {
		return nil, err
	}
	var out []string
	for i, id := range ids {
		if exists[i].Val() == 1 {
			out = append(out, id)
		} else {
			s.c.SRem(ctx, redisPrefix+"replicas", id)
		}
	}
	return out, nil
}

// luaRecords are the Lua helpers of the scripts that remove workflows.
const luaRecords = `
local P = ARGV[1]
local function idle(id)
  local h = redis.call('HGETALL', P .. 'wf:' .. id)
  for k = 1, #h, 2 do
    if string.sub(h[k], 1, 3) == 'if:' and tonumber(h[k+1]) > 0
      and redis.call('EXISTS', P .. 'replica:' .. string.sub(h[k], 4)) == 1 then
      return false
    end
  end
  return true
end
local function remove(id)
  local key = P .. 'wf:' .. id
  local home = redis.call('HGET', key, 'home')
  if home and home ~= '' then redis.call('HINCRBY', P .. 'homes', home, -1) end
  local bytes = redis.call('HGET', key, 'bytes')
  if bytes then redis.call('HINCRBY', P .. 'stats', 'bytes', -tonumber(bytes)) end
  redis.call('DEL', key)
  redis.call('ZREM', P .. 'lru', id)
end
`

// commitScript keeps what a routing decision changed in a record, unless
// another replica changed the record's home since it was read, or, for a
// decision that gives a home, any home changed since the counts it
// weighed were read (the homes' version, "v" in the homes hash; "" does
// not check): then 0, read again. So homes are given one at a time over
// every replica, each on the counts the others left, and the bounded
// loads hold as with one router. It also applies the global bounds on
// workflows and on the bytes of the strings they keep (as the workflow
// table counts them), evicting the least recently used (an idle one among
// the oldest 16 if any), and counts the request on the backend it goes to, in
// the replica's load record. ARGV: prefix, id, home read, new home, new
// second, now ms, record TTL ms, max workflows, homes' version read,
// replica, load field ("in:URL", "" for none), load record TTL ms, max
// bytes, then three groups of a count and field/value pairs: fields set,
// record counters added, totals added.
var commitScript = redis.NewScript(luaRecords + `
local id = ARGV[2]
local key = P .. 'wf:' .. id
local cur = redis.call('HGET', key, 'home') or ''
if cur ~= ARGV[3] then return 0 end
if ARGV[4] ~= cur and ARGV[9] ~= '' and (redis.call('HGET', P .. 'homes', 'v') or '0') ~= ARGV[9] then return 0 end
if ARGV[11] ~= '' then
  redis.call('HINCRBY', P .. 'load:' .. ARGV[10], ARGV[11], 1)
  redis.call('PEXPIRE', P .. 'load:' .. ARGV[10], ARGV[12])
end
local i = 14
for g = 1, 3 do
  local n = tonumber(ARGV[i]); i = i + 1
  for _ = 1, n do
    if g == 1 then redis.call('HSET', key, ARGV[i], ARGV[i+1])
    elseif g == 2 then redis.call('HINCRBY', key, ARGV[i], ARGV[i+1])
    else redis.call('HINCRBY', P .. 'stats', ARGV[i], ARGV[i+1]) end
    i = i + 2
  end
end
if ARGV[4] ~= cur then
  if cur ~= '' then redis.call('HINCRBY', P .. 'homes', cur, -1) end
  if ARGV[4] ~= '' then redis.call('HINCRBY', P .. 'homes', ARGV[4], 1) end
  redis.call('HINCRBY', P .. 'homes', 'v', 1)
  redis.call('HSET', key, 'home', ARGV[4])
end
redis.call('HSET', key, 'second', ARGV[5], 'last_seen', ARGV[6])
redis.call('HSETNX', key, 'created', ARGV[6])
redis.call('PEXPIRE', key, ARGV[7])
redis.call('ZADD', P .. 'lru', ARGV[6], id)
local function over()
  local n = redis.call('ZCARD', P .. 'lru')
  return n > tonumber(ARGV[8]) or (n > 1 and tonumber(redis.call('HGET', P .. 'stats', 'bytes') or '0') > tonumber(ARGV[13]))
end
while over() do
  local old = redis.call('ZRANGE', P .. 'lru', 0, 15)
  local victim = nil
  for _, v in ipairs(old) do
    if v ~= id and idle(v) then victim = v; break end
  end
  if not victim then
    victim = old[1]
    if victim == id then victim = old[2] end
  end
  if not victim then break end
  remove(victim)
  redis.call('HINCRBY', P .. 'stats', 'evicted', 1)
end
return 1
`)

// doneScript records a request's end: in the replica's load record, and
// in the workflow's record if it still exists. ARGV: prefix, id, replica,
// now ms, record TTL ms, prompt, cached, cached known (0/1), load field
// ("" for none).
var doneScript = redis.NewScript(`
local P, id = ARGV[1], ARGV[2]
local key = P .. 'wf:' .. id
if ARGV[9] ~= '' and redis.call('EXISTS', P .. 'load:' .. ARGV[3]) == 1 then
  redis.call('HINCRBY', P .. 'load:' .. ARGV[3], ARGV[9], -1)
end
if redis.call('EXISTS', key) == 0 then return 0 end
redis.call('HINCRBY', key, 'if:' .. ARGV[3], -1)
redis.call('HINCRBY', key, 'prompt', ARGV[6])
if ARGV[8] == '1' then
  redis.call('HINCRBY', key, 'cached', ARGV[7])
  redis.call('HINCRBY', key, 'cached_known', 1)
end
redis.call('HSET', key, 'last_seen', ARGV[4])
redis.call('PEXPIRE', key, ARGV[5])
redis.call('ZADD', P .. 'lru', ARGV[4], id)
return 1
`)

// deleteScript removes a workflow; 0 if unknown. ARGV: prefix, id.
var deleteScript = redis.NewScript(luaRecords + `
if redis.call('EXISTS', P .. 'wf:' .. ARGV[2]) == 0 then return 0 end
remove(ARGV[2])
return 1
`)

// expireScript removes up to ARGV[3] workflows last used before ARGV[2]
// (ms) with nothing in flight on a live replica, and returns how many.
var expireScript = redis.NewScript(luaRecords + `
local ids = redis.call('ZRANGEBYSCORE', P .. 'lru', '-inf', ARGV[2], 'LIMIT', 0, ARGV[3])
local n = 0
for _, id in ipairs(ids) do
  if redis.call('EXISTS', P .. 'wf:' .. id) == 0 then
    redis.call('ZREM', P .. 'lru', id)
  elseif idle(id) then
    remove(id)
    redis.call('HINCRBY', P .. 'stats', 'expired', 1)
    n = n + 1
  end
end
return n
`)

// recordCounters are a record's counters, by field name.
var recordCounters = []struct {
	name string
	of   func(w *workflow) *int64
}{
	{"requests", func(w *workflow) *int64 { return &w.requests }},
	{"hits", func(w *workflow) *int64 { return &w.hits }},
	{"misses", func(w *workflow) *int64 { return &w.misses }},
	{"spillovers", func(w *workflow) *int64 { return &w.spillovers }},
	{"migrations", func(w *workflow) *int64 { return &w.migrations }},
	{"untracked", func(w *workflow) *int64 { return &w.untracked }},
	{"prompt", func(w *workflow) *int64 { return &w.prompt }},
	{"cached", func(w *workflow) *int64 { return &w.cached }},
	{"cached_known", func(w *workflow) *int64 { return &w.cachedKnown }},
	{"bytes", func(w *workflow) *int64 { return &w.bytes }},
}

// redisWorkflows keeps workflow records in the shared Redis, with this
// replica's table as its mirror: when Redis is lost, routing goes on over
// the mirror (the homes this replica knows), and a workflow first routed
// then keeps its home when Redis returns.
type redisWorkflows struct {
	s         *redisState
	local     *workflowTable
	list      func() []*backend
	ttl       time.Duration
	max       int
	maxBytes  int64
	maxAgents int
	now       func() time.Time
	// counted is, per backend, this replica's requests counted in its
	// load record in Redis and not yet ended: an end is taken off there
	// only while some are, so that requests routed while Redis was lost
	// (and not counted) never take the count below zero.
	counted sync.Map // backend index -> *atomic.Int64
}

func newRedisWorkflows(s *redisState, local *workflowTable) *redisWorkflows {
	r := &redisWorkflows{s: s, local: local, list: local.backends, ttl: local.ttl, max: local.max, maxBytes: local.maxBytes, maxAgents: local.maxAgents, now: local.now}
	s.onResume = func() {
		// Redis may have come back empty: nothing counted stays counted.
		r.counted.Range(func(_, v any) bool { v.(*atomic.Int64).Store(0); return true })
	}
	return r
}

// count is backend i's count of this replica's requests counted in Redis.
func (r *redisWorkflows) count(i int) *atomic.Int64 {
	if c, ok := r.counted.Load(i); ok {
		return c.(*atomic.Int64)
	}
	c, _ := r.counted.LoadOrStore(i, new(atomic.Int64))
	return c.(*atomic.Int64)
}

// keep is a record's lifetime in Redis: past the idle TTL, so that the
// replicas' sweep (which also gives back the home's count) removes it
// first, unless no replica is left to.
func (r *redisWorkflows) keep() time.Duration { return 2*r.ttl + time.Minute }

func (r *redisWorkflows) url(i int) string {
	if i < 0 {
		return ""
	}
	return r.list()[i].url
}

func (r *redisWorkflows) backend(u string) int {
	for i, b := range r.list() {
		if b.url == u {
			return i
		}
	}
	return -1
}

// parse reads a record's fields; in-flight counts of replicas not in
// live (nil: all) are left out.
func (r *redisWorkflows) parse(id string, h map[string]string, live map[string]bool) *workflow {
	w := newWorkflow(id, r.now())
	for _, c := range recordCounters {
		*c.of(w), _ = strconv.ParseInt(h[c.name], 10, 64)
	}
	if ms, err := strconv.ParseInt(h["created"], 10, 64); err == nil {
		w.created = time.UnixMilli(ms)
	}
	if ms, err := strconv.ParseInt(h["last_seen"], 10, 64); err == nil {
		w.lastSeen = time.UnixMilli(ms)
	}
	w.home, w.second = r.backend(h["home"]), r.backend(h["second"])
	w.lastParent = h["last_parent"]
	if p, err := strconv.ParseFloat(h["priority"], 64); err == nil {
		w.priority = p
	}
	for k, v := range h {
		n, _ := strconv.Atoi(v)
		switch {
		case strings.HasPrefix(k, "a:"):
			w.agents[k[2:]] = n
		case strings.HasPrefix(k, "if:") && n > 0 && (live == nil || live[k[3:]]):
			w.inFlight += n
		}
	}
	return w
}

// maxTries bounds the reads and commits of one update racing other
// replicas'; past it the replica decides on its own state.
const maxTries = 64

func (r *redisWorkflows) update(m *Metadata, decide func(w *workflow) int) {
	id := m.WorkflowID
	for try := 0; try < maxTries; try++ {
		var rec, homes map[string]string
		if !r.s.use(func(ctx context.Context) error {
			p := r.s.c.Pipeline()
			rc := p.HGetAll(ctx, redisPrefix+"wf:"+id)
			hc := p.HGetAll(ctx, redisPrefix+"homes")
			loads := r.s.readLoads(ctx, p)
			_, err := p.Exec(ctx)
			rec, homes = rc.Val(), hc.Val()
			if err == nil {
				loads(r.list())
			}
			return err
		}) {
			break
		}
		for _, b := range r.list() {
			n, _ := strconv.ParseInt(homes[b.url], 10, 64)
			b.homes.Store(n)
		}
		w := r.parse(id, rec, nil)
		if w.home < 0 {
			// Routed while Redis was away: keep the home given then.
			if lw, ok := r.local.get(id); ok && lw.home >= 0 {
				w.home, w.second = lw.home, lw.second
			}
		}
		before := *w
		before.agents = maps.Clone(w.agents)
		w.bytes += noteRequest(w, m, r.maxAgents)
		if len(rec) == 0 {
			w.bytes += entryBytes(id)
		}
		pick := decide(w)
		committed := false
		if !r.s.use(func(ctx context.Context) error {
			n, err := commitScript.Run(ctx, r.s.c, nil, r.commitArgs(w, &before, rec["home"], homes["v"], pick)...).Int()
			committed = n == 1
			return err
		}) {
			break
		}
		if committed {
			if pick >= 0 {
				r.count(pick).Add(1)
			}
			r.local.update(m, func(lw *workflow) int {
				lw.home, lw.second = w.home, w.second
				lw.inFlight++
				return pick
			})
			return
		}
	}
	r.local.update(m, decide)
}

// loadField names a backend in a replica's load record; "" for none.
func (r *redisWorkflows) loadField(i int) string {
	if i < 0 {
		return ""
	}
	return "in:" + r.url(i)
}

// commitArgs are commitScript's arguments for what changed from before to
// w, a record whose home read home when the homes' version read version,
// for a request going to backend pick.
func (r *redisWorkflows) commitArgs(w, before *workflow, home, version string, pick int) []any {
	now := r.now().UnixMilli()
	if version == "" {
		version = "0"
	}
	args := []any{redisPrefix, w.id, home, r.url(w.home), r.url(w.second), now, r.keep().Milliseconds(), r.max, version,
		r.s.replica, r.loadField(pick), replicaTTL.Milliseconds(), r.maxBytes}
	sets := []any{"priority", strconv.FormatFloat(w.priority, 'g', -1, 64)}
	if w.lastParent != before.lastParent {
		sets = append(sets, "last_parent", w.lastParent)
	}
	var adds []any
	for _, c := range recordCounters {
		if d := *c.of(w) - *c.of(before); d != 0 {
			adds = append(adds, c.name, d)
		}
	}
	for a, n := range w.agents {
		if d := n - before.agents[a]; d != 0 {
			adds = append(adds, "a:"+a, d)
		}
	}
	if d := w.inFlight - before.inFlight; d != 0 {
		adds = append(adds, "if:"+r.s.replica, d)
	}
	var totals []any
	t := w.tally.minus(before.tally)
	for _, f := range []struct {
		name string
		n    int64
	}{{"hits", t.hits}, {"misses", t.misses}, {"spillovers", t.spillovers}, {"migrations", t.migrations}, {"bytes", w.bytes - before.bytes}} {
		if f.n != 0 {
			totals = append(totals, f.name, f.n)
		}
	}
	args = append(args, len(sets)/2)
	args = append(args, sets...)
	args = append(args, len(adds)/2)
	args = append(args, adds...)
	args = append(args, len(totals)/2)
	return append(args, totals...)
}

func (r *redisWorkflows) done(id string, backend, prompt, cached int, cachedKnown bool) {
	r.local.done(id, backend, prompt, cached, cachedKnown)
	known := "0"
	if cachedKnown {
		known = "1"
	}
	field := ""
	if backend >= 0 && r.count(backend).Add(-1) >= 0 {
		field = r.loadField(backend)
	} else if backend >= 0 {
		r.count(backend).Add(1)
	}
	r.s.use(func(ctx context.Context) error {
		return doneScript.Run(ctx, r.s.c, nil, redisPrefix, id, r.s.replica, r.now().UnixMilli(), r.keep().Milliseconds(), prompt, cached, known, field).Err()
	})
}

func (r *redisWorkflows) get(id string) (workflow, bool) {
	var w *workflow
	if r.s.use(func(ctx context.Context) error {
		live, err := r.s.live(ctx)
		if err != nil {
			return err
		}
		h, err := r.s.c.HGetAll(ctx, redisPrefix+"wf:"+id).Result()
		if err == nil && len(h) > 0 {
			alive := map[string]bool{}
			for _, l := range live {
				alive[l] = true
			}
			w = r.parse(id, h, alive)
		}
		return err
	}) {
		if w == nil {
			return workflow{}, false
		}
		return *w, true
	}
	return r.local.get(id)
}

func (r *redisWorkflows) delete(id string) bool {
	known := r.local.delete(id)
	r.s.use(func(ctx context.Context) error {
		n, err := deleteScript.Run(ctx, r.s.c, nil, redisPrefix, id).Int()
		known = known || n == 1
		return err
	})
	return known
}

func (r *redisWorkflows) sweep() int {
	n := r.local.sweep()
	r.s.use(func(ctx context.Context) error {
		// Keep the records of this replica's requests in flight: a
		// request may outlast the TTL.
		p := r.s.c.Pipeline()
		now := r.now().UnixMilli()
		for _, id := range r.local.inFlightIDs() {
			p.PExpire(ctx, redisPrefix+"wf:"+id, r.keep())
			p.ZAddXX(ctx, redisPrefix+"lru", redis.Z{Score: float64(now), Member: id})
		}
		if _, err := p.Exec(ctx); err != nil {
			return err
		}
		k, err := expireScript.Run(ctx, r.s.c, nil, redisPrefix, r.now().Add(-r.ttl).UnixMilli(), 1000).Int()
		n = k
		return err
	})
	return n
}

func (r *redisWorkflows) stats() tableStats {
	var s tableStats
	if r.s.use(func(ctx context.Context) error {
		p := r.s.c.Pipeline()
		h := p.HGetAll(ctx, redisPrefix+"stats")
		n := p.ZCard(ctx, redisPrefix+"lru")
		_, err := p.Exec(ctx)
		get := func(k string) int64 { v, _ := strconv.ParseInt(h.Val()[k], 10, 64); return v }
		s = tableStats{tally: tally{get("hits"), get("misses"), get("spillovers"), get("migrations")}, evicted: get("evicted"), expired: get("expired"), workflows: int(n.Val())}
		return err
	}) {
		return s
	}
	return r.local.stats()
}

// backendTotals sums over the live replicas each backend's requests in
// flight, cut streams and failovers, with the workflows whose home it is.
func (s *redisState) backendTotals(backends []*backend) ([]BackendStats, bool) {
	out := make([]BackendStats, len(backends))
	ok := s.use(func(ctx context.Context) error {
		live, err := s.live(ctx)
		if err != nil {
			return err
		}
		p := s.c.Pipeline()
		homes := p.HGetAll(ctx, redisPrefix+"homes")
		var loads []*redis.MapStringStringCmd
		for _, l := range live {
			if l != s.replica { // this replica's own counts are read now
				loads = append(loads, p.HGetAll(ctx, redisPrefix+"load:"+l))
			}
		}
		if _, err := p.Exec(ctx); err != nil {
			return err
		}
		for i, b := range backends {
			o := &out[i]
			o.URL, o.Healthy = b.url, b.healthy.Load()
			o.Workflows, _ = strconv.ParseInt(homes.Val()[b.url], 10, 64)
			o.InFlight, o.CutStreams, o.Failovers = b.inFlight.Load(), b.cuts.Load(), b.failovers.Load()
			for _, l := range loads {
				get := func(k string) int64 { v, _ := strconv.ParseInt(l.Val()[k+b.url], 10, 64); return v }
				o.InFlight += get("in:")
				o.CutStreams += get("cuts:")
				o.Failovers += get("fo:")
			}
		}
		return nil
	})
	return out, ok
}

// putResponseScript remembers a response's backend, forgetting the least
// recently used beyond the bound. ARGV: prefix, id, URL, now ms, TTL ms,
// max.
var putResponseScript = redis.NewScript(`
local P = ARGV[1]
redis.call('SET', P .. 'resp:' .. ARGV[2], ARGV[3], 'PX', ARGV[5])
redis.call('ZADD', P .. 'resplru', ARGV[4], ARGV[2])
redis.call('ZREMRANGEBYSCORE', P .. 'resplru', '-inf', ARGV[4] - ARGV[5])
local over = redis.call('ZCARD', P .. 'resplru') - tonumber(ARGV[6])
if over > 0 then
  for _, id in ipairs(redis.call('ZPOPMIN', P .. 'resplru', over)) do
    redis.call('DEL', P .. 'resp:' .. id)
  end
end
return 1
`)

// redisResponses keeps Responses API homes in the shared Redis, written
// through to this replica's own (read when Redis is lost).
type redisResponses struct {
	s     *redisState
	local responseStore
	max   int
	ttl   time.Duration
	now   func() time.Time
}

func (r *redisResponses) put(id, url string) {
	r.local.put(id, url)
	r.s.use(func(ctx context.Context) error {
		return putResponseScript.Run(ctx, r.s.c, nil, redisPrefix, id, url, r.now().UnixMilli(), r.ttl.Milliseconds(), r.max).Err()
	})
}

func (r *redisResponses) get(id string) (string, bool) {
	var url string
	if r.s.use(func(ctx context.Context) error {
		var err error
		url, err = r.s.c.GetEx(ctx, redisPrefix+"resp:"+id, r.ttl).Result()
		if err == nil {
			err = r.s.c.ZAddXX(ctx, redisPrefix+"resplru", redis.Z{Score: float64(r.now().UnixMilli()), Member: id}).Err()
		}
		return err
	}) && url != "" {
		return url, true
	}
	return r.local.get(id)
}
