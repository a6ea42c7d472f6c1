package router

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisMail keeps the agent message queues in the shared Redis: a message
// posted through any replica is read through any other, and a long poll
// wakes when another replica posts (the wake channel). Each queued message
// is one list element, "TIME_MS SIZE ID JSON", so that the scripts can
// expire and count it without decoding it. While Redis is lost, messages go
// to this replica's own queues (and are read from them first once it is
// back).
type redisMail struct {
	s     *redisState
	local *mailboxes
	limits
	now func() time.Time
}

// luaQueues are the helpers of the message scripts; ARGV[1] is the key
// prefix.
const luaQueues = `
local P = ARGV[1]
local M = P .. 'mail'
local function field(e, n)
  local from = 1
  for _ = 1, n - 1 do from = string.find(e, ' ', from, true) + 1 end
  local to = string.find(e, ' ', from, true)
  return tonumber(string.sub(e, from, to - 1))
end
-- take removes the first n messages of queue qk (of workflow wf, agent ag)
-- and returns them; an emptied queue is dropped.
local function take(qk, wf, ag, n)
  local q = P .. 'q:' .. qk
  local out = redis.call('LRANGE', q, 0, n - 1)
  if #out == 0 then return out end
  redis.call('LTRIM', q, #out, -1)
  local bytes = 0
  for _, e in ipairs(out) do bytes = bytes + field(e, 2) end
  redis.call('DECRBY', P .. 'qb:' .. qk, bytes)
  redis.call('HINCRBY', M, 'bytes', -bytes)
  redis.call('HINCRBY', M, 'messages', -#out)
  if redis.call('LLEN', q) == 0 then
    redis.call('DEL', P .. 'qb:' .. qk)
    redis.call('SREM', P .. 'wq:' .. wf, ag)
    redis.call('SREM', P .. 'queues', qk)
    redis.call('HINCRBY', M, 'holding', -1)
  end
  return out
end
-- expire drops the messages of queue qk sent before cut (ms).
local function expire(qk, wf, ag, cut)
  local q = P .. 'q:' .. qk
  local n = 0
  while true do
    local head = redis.call('LINDEX', q, n)
    if not head or field(head, 1) >= cut then break end
    n = n + 1
  end
  if n > 0 then
    take(qk, wf, ag, n)
    redis.call('HINCRBY', M, 'expired', n)
  end
end
`

// sendScript queues a message unless a limit refuses it. ARGV: prefix,
// workflow, agent, now ms, cut ms, size, JSON, max messages per queue, max
// bytes per queue, max queues holding messages, max bytes in all. Returns
// {1, id} or {0, kind, figure} (kind as limits.refusal takes it).
var sendScript = redis.NewScript(luaQueues + `
local wf, ag = ARGV[2], ARGV[3]
local qk = wf .. ' ' .. ag
local q = P .. 'q:' .. qk
expire(qk, wf, ag, tonumber(ARGV[5]))
local size = tonumber(ARGV[6])
local len = redis.call('LLEN', q)
local qbytes = tonumber(redis.call('GET', P .. 'qb:' .. qk) or '0')
local holding = tonumber(redis.call('HGET', M, 'holding') or '0')
local total = tonumber(redis.call('HGET', M, 'bytes') or '0')
if len >= tonumber(ARGV[8]) then return {0, 'len', ARGV[8]} end
if qbytes + size > tonumber(ARGV[9]) then return {0, 'qbytes', ARGV[9]} end
if len == 0 and holding >= tonumber(ARGV[10]) then return {0, 'queues', ARGV[10]} end
if total + size > tonumber(ARGV[11]) then return {0, 'bytes', tostring(total)} end
local id = 'msg-' .. redis.call('HINCRBY', M, 'seq', 1)
redis.call('RPUSH', q, ARGV[4] .. ' ' .. ARGV[6] .. ' ' .. id .. ' ' .. ARGV[7])
redis.call('INCRBY', P .. 'qb:' .. qk, size)
if len == 0 then
  redis.call('HINCRBY', M, 'holding', 1)
  redis.call('SADD', P .. 'wq:' .. wf, ag)
  redis.call('SADD', P .. 'queues', qk)
end
redis.call('HINCRBY', M, 'bytes', size)
redis.call('HINCRBY', M, 'messages', 1)
redis.call('HINCRBY', M, 'sent', 1)
redis.call('PUBLISH', P .. 'wake', qk)
return {1, id}
`)

// receiveScript takes up to ARGV[5] messages of a queue after expiring
// those sent before ARGV[4]. ARGV: prefix, workflow, agent, cut ms, max.
var receiveScript = redis.NewScript(luaQueues + `
local wf, ag = ARGV[2], ARGV[3]
local qk = wf .. ' ' .. ag
expire(qk, wf, ag, tonumber(ARGV[4]))
local out = take(qk, wf, ag, tonumber(ARGV[5]))
redis.call('HINCRBY', M, 'received', #out)
return out
`)

// forgetScript drops a workflow's queues; 1 if it had any. ARGV: prefix,
// workflow.
var forgetScript = redis.NewScript(luaQueues + `
local wf = ARGV[2]
local agents = redis.call('SMEMBERS', P .. 'wq:' .. wf)
for _, ag in ipairs(agents) do
  local qk = wf .. ' ' .. ag
  take(qk, wf, ag, redis.call('LLEN', P .. 'q:' .. qk))
end
redis.call('DEL', P .. 'wq:' .. wf)
if #agents > 0 then return 1 end
return 0
`)

// expireQueuesScript expires the messages of the queues named in ARGV[3..]
// ("WF AGENT"). ARGV: prefix, cut ms, queue keys.
var expireQueuesScript = redis.NewScript(luaQueues + `
for k = 3, #ARGV do
  local qk = ARGV[k]
  local sp = string.find(qk, ' ', 1, true)
  expire(qk, string.sub(qk, 1, sp - 1), string.sub(qk, sp + 1), tonumber(ARGV[2]))
end
return 0
`)

// storedMessage is a queued message's JSON in Redis (its id and time are
// in the element's head).
type storedMessage struct {
	Source  string          `json:"s"`
	Target  string          `json:"t"`
	Type    string          `json:"y"`
	Payload json.RawMessage `json:"p"`
}

func newRedisMail(s *redisState, local *mailboxes) *redisMail {
	return &redisMail{s: s, local: local, limits: local.limits, now: local.now}
}

func (r *redisMail) cut() int64 { return r.now().Add(-r.ttl).UnixMilli() }

func (r *redisMail) send(workflow string, msg Message) (Message, error) {
	now := r.now()
	raw, err := json.Marshal(storedMessage{msg.Source, msg.Target, msg.Type, msg.Payload})
	if err != nil {
		return msg, err
	}
	var res []any
	if !r.s.use(func(ctx context.Context) error {
		var err error
		res, err = sendScript.Run(ctx, r.s.c, nil, redisPrefix, workflow, msg.Target, now.UnixMilli(), r.cut(), size(msg), raw,
			r.maxLen, r.maxQBytes, r.maxQueues, r.maxBytes).Slice()
		return err
	}) || len(res) < 2 {
		return r.local.send(workflow, msg)
	}
	if n, _ := res[0].(int64); n != 1 {
		kind, _ := res[1].(string)
		var figure int64
		if len(res) > 2 {
			s, _ := res[2].(string)
			figure, _ = strconv.ParseInt(s, 10, 64)
		}
		return msg, &ErrFull{r.refusal(kind, workflow, msg.Target, figure)}
	}
	msg.ID, _ = res[1].(string)
	msg.Timestamp = time.UnixMilli(now.UnixMilli())
	return msg, nil
}

// decode reads a queued element back into a message.
func decode(e string) (Message, bool) {
	parts := strings.SplitN(e, " ", 4)
	if len(parts) != 4 {
		return Message{}, false
	}
	ms, err := strconv.ParseInt(parts[0], 10, 64)
	var sm storedMessage
	if err != nil || json.Unmarshal([]byte(parts[3]), &sm) != nil {
		return Message{}, false
	}
	return Message{ID: parts[2], Source: sm.Source, Target: sm.Target, Type: sm.Type, Payload: sm.Payload, Timestamp: time.UnixMilli(ms)}, true
}

// recheck is how often a long poll looks at its queue without a wake (a
// wake lost while the subscription reconnects).
const recheck = time.Second

func (r *redisMail) receive(ctx context.Context, workflow, agent string, timeout time.Duration, max int) []Message {
	// Messages queued here while Redis was lost come first.
	if out := r.local.receive(ctx, workflow, agent, 0, max); len(out) > 0 {
		return out
	}
	qk := workflow + " " + agent
	deadline := time.Now().Add(timeout)
	for {
		// Waiting starts before the look, so that no post between the
		// two goes unheard.
		wake, done := r.s.waiter(qk)
		msgs, ok, wait := r.take(workflow, agent, max, deadline)
		if !ok {
			done()
			return r.local.receive(ctx, workflow, agent, time.Until(deadline), max)
		}
		if !wait {
			done()
			return msgs
		}
		t := time.NewTimer(min(time.Until(deadline), recheck))
		select {
		case <-wake:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		done()
		if ctx.Err() != nil {
			return nil
		}
	}
}

// take takes up to max messages of (workflow, agent) from Redis: ok false
// when Redis could not be asked; wait when there were none and the
// deadline is still ahead.
func (r *redisMail) take(workflow, agent string, max int, deadline time.Time) (msgs []Message, ok, wait bool) {
	var elems []string
	if !r.s.use(func(ctx context.Context) error {
		var err error
		elems, err = receiveScript.Run(ctx, r.s.c, nil, redisPrefix, workflow, agent, r.cut(), max).StringSlice()
		return err
	}) {
		return nil, false, false
	}
	for _, e := range elems {
		if m, ok := decode(e); ok {
			msgs = append(msgs, m)
		}
	}
	return msgs, true, len(elems) == 0 && time.Until(deadline) > 0
}

func (r *redisMail) pending(workflow string) int {
	n := r.local.pending(workflow)
	r.s.use(func(ctx context.Context) error {
		agents, err := r.s.c.SMembers(ctx, redisPrefix+"wq:"+workflow).Result()
		if err != nil || len(agents) == 0 {
			return err
		}
		p := r.s.c.Pipeline()
		lens := make([]*redis.IntCmd, len(agents))
		for i, a := range agents {
			lens[i] = p.LLen(ctx, redisPrefix+"q:"+workflow+" "+a)
		}
		_, err = p.Exec(ctx)
		for _, l := range lens {
			n += int(l.Val())
		}
		return err
	})
	return n
}

// mailTotals reads the shared queues' totals.
func (r *redisMail) mailTotals() (map[string]int64, bool) {
	out := map[string]int64{}
	ok := r.s.use(func(ctx context.Context) error {
		h, err := r.s.c.HGetAll(ctx, redisPrefix+"mail").Result()
		for k, v := range h {
			out[k], _ = strconv.ParseInt(v, 10, 64)
		}
		return err
	})
	return out, ok
}

func (r *redisMail) depth() (messages, queues int, bytes int64) {
	messages, queues, bytes = r.local.depth()
	if t, ok := r.mailTotals(); ok {
		messages += int(t["messages"])
		queues += int(t["holding"])
		bytes += t["bytes"]
	}
	return messages, queues, bytes
}

func (r *redisMail) totals() (sent, received, expired int64) {
	sent, received, expired = r.local.totals()
	if t, ok := r.mailTotals(); ok {
		sent += t["sent"]
		received += t["received"]
		expired += t["expired"]
	}
	return sent, received, expired
}

func (r *redisMail) forget(workflow string) bool {
	had := r.local.forget(workflow)
	r.s.use(func(ctx context.Context) error {
		n, err := forgetScript.Run(ctx, r.s.c, nil, redisPrefix, workflow).Int()
		had = had || n == 1
		return err
	})
	return had
}

func (r *redisMail) sweep() {
	r.local.sweep()
	r.s.use(func(ctx context.Context) error {
		var cursor uint64
		for {
			keys, next, err := r.s.c.SScan(ctx, redisPrefix+"queues", cursor, "", 500).Result()
			if err != nil {
				return err
			}
			if len(keys) > 0 {
				args := []any{redisPrefix, r.cut()}
				for _, k := range keys {
					args = append(args, k)
				}
				if err := expireQueuesScript.Run(ctx, r.s.c, nil, args...).Err(); err != nil {
					return err
				}
			}
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	})
}
