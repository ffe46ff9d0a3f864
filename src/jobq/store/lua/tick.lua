-- tick: what time has made due, for the whole namespace (any hub may run it; each step is
-- atomic, so two hubs ticking at once never apply the same change twice).
-- ARGV: inst, now, hub_ttl, limit, pause_after
-- Returns {promoted, purged, {id, token, ...} of attempts over their timeout (the caller
-- fails them through core/retry.py), {{worker, fields}, ...} of jobs whose lease expired,
-- the number of hubs alive (this one included)}.
local inst, now, hub_ttl, limit, pause_after =
  ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local now_n = tonumber(now)

-- This hub is alive; workers of hubs silent for hub_ttl leave the registry (not their jobs).
redis.call('ZADD', K .. 'inst', now, inst)
for _, dead in ipairs(redis.call('ZRANGEBYSCORE', K .. 'inst', '-inf', '(' .. fmt(now_n - hub_ttl))) do
  for _, worker in ipairs(redis.call('SMEMBERS', K .. 'iw:' .. dead)) do
    if redis.call('HGET', K .. 'w:' .. worker, 'owner') == dead then
      unregister(worker)
    end
  end
  redis.call('DEL', K .. 'iw:' .. dead)
  redis.call('ZREM', K .. 'inst', dead)
end

-- Leases do not run while no hub could reach Redis: when no tick has run for longer than
-- pause_after (Redis time), every lease is pushed back by the gap, so workers whose heartbeats
-- could not land keep their jobs.
local t = redis.call('TIME')
local server_now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local last = tonumber(redis.call('GET', K .. 'clock'))
if last and server_now - last > pause_after then
  local gap = server_now - last
  local leases = redis.call('ZRANGE', K .. 'leases', 0, -1, 'WITHSCORES')
  for i = 1, #leases, 2 do
    local moved = fmt(tonumber(leases[i + 1]) + gap)
    redis.call('ZADD', K .. 'leases', moved, leases[i])
    redis.call('HSET', jobkey(leases[i]), 'lease', moved)
  end
end
redis.call('SET', K .. 'clock', fmt(server_now))
-- The bus keeps the last BUS_AGE seconds of notifications (and at most BUS_LENGTH of them).
redis.call('XTRIM', K .. 'bus', 'MINID', '~', string.format('%d-0', (server_now - BUS_AGE) * 1000))

local ready = false

-- Scheduled jobs whose time has come.
local promoted = 0
local due = redis.call('ZRANGEBYSCORE', K .. 'scheduled', '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
for i = 1, #due, 2 do
  local id, at = due[i], due[i + 1]
  redis.call('ZREM', K .. 'scheduled', id)
  local jk = jobkey(id)
  local f = redis.call('HMGET', jk, 'state', 'svc', 'shape', 'm', 'cust')
  if f[1] == 'scheduled' then
    redis.call('HDEL', jk, 'run')
    enqueue(id, jk, f[2], f[1], f[3], f[4], f[5], at)
    promoted = promoted + 1
    ready = true
  end
end

-- Attempts over their timeout: reported, so the caller applies the retry rules.
local overrun = {}
local skip = {}
local over = redis.call('ZRANGEBYSCORE', K .. 'deadlines', '-inf', '(' .. now, 'LIMIT', 0, limit)
for _, id in ipairs(over) do
  local f = redis.call('HMGET', jobkey(id), 'state', 'tok', 'att')
  if f[1] == 'running' then
    overrun[#overrun + 1] = tonumber(id)
    overrun[#overrun + 1] = token_of(f[2], f[3])
    skip[id] = true
  else
    redis.call('ZREM', K .. 'deadlines', id)
  end
end

-- Leases that ran out: back to the queue as lost attempts (quarantined, on the last loss).
local expired = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', K .. 'leases', '-inf', '(' .. now, 'LIMIT', 0, limit)) do
  if not skip[id] then
    local jk = jobkey(id)
    local f = redis.call('HMGET', jk, 'state', 'w')
    if f[1] == 'running' then
      if release(inst, id, jk, now, 'its lease expired', true) then
        ready = true
      end
      expired[#expired + 1] = { f[2] or '', fields(id, jk, false) }
    else
      redis.call('ZREM', K .. 'leases', id)
    end
  end
end

-- A finished job of a group (EmbeddedGroups._kept_until): when to look at it again (its group
-- has not ended: its ttl on, at least RECHECK; it ended less than the job's ttl ago: that),
-- or nil to forget it now. Its ttl is what finish() gave it (exp - fin), never changed.
local RECHECK = 60
local function kept_until(jk, gid)
  local g = redis.call('HMGET', K .. 'g:' .. gid, 'state', 'end')
  if not g[1] then
    return nil
  end
  local t = redis.call('HMGET', jk, 'exp', 'fin')
  local ttl = (tonumber(t[1]) or now_n) - (tonumber(t[2]) or now_n)
  if g[1] == 'running' or g[1] == 'finalizing' or not g[2] then
    return now_n + math.max(ttl, RECHECK)
  end
  local later = tonumber(g[2]) + ttl
  if later > now_n then
    return later
  end
  return nil
end

-- Retention: finished jobs whose time is up are forgotten, one by one.
local purged = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', K .. 'expiry', '-inf', now, 'LIMIT', 0, limit)) do
  redis.call('ZREM', K .. 'expiry', id)
  local jk = jobkey(id)
  local f = redis.call('HMGET', jk, 'state', 'svc', 'ik', 'grp')
  local later = f[4] and kept_until(jk, f[4])
  if later then
    redis.call('ZADD', K .. 'expiry', fmt(later), id) -- its group keeps it longer
  elseif f[1] == 'completed' or f[1] == 'failed' or f[1] == 'cancelled' or f[1] == 'quarantined' then
    redis.call('DEL', jk, K .. 'p:' .. id, resultkey(id), tlkey(id))
    redis.call('ZREM', K .. 'st:' .. f[1], id)
    count(f[2], f[1], -1)
    if f[3] and redis.call('GET', K .. 'idem:' .. f[3]) == id then
      redis.call('DEL', K .. 'idem:' .. f[3])
    end
    purged = purged + 1
  end
end

-- Ended groups whose retention is over are forgotten (EmbeddedGroups.tick): the hash, its
-- workers, its idempotency key. One that runs again (an operator's retry) left gexp then.
for _, gid in ipairs(redis.call('ZRANGEBYSCORE', K .. 'gexp', '-inf', now, 'LIMIT', 0, limit)) do
  redis.call('ZREM', K .. 'gexp', gid)
  local gk = K .. 'g:' .. gid
  local g = redis.call('HMGET', gk, 'state', 'ik')
  if g[1] == 'completed' or g[1] == 'failed' or g[1] == 'cancelled' then
    if g[2] and redis.call('GET', K .. 'gidem:' .. g[2]) == gid then
      redis.call('DEL', K .. 'gidem:' .. g[2])
    end
    redis.call('DEL', gk, K .. 'gw:' .. gid)
  end
end

if ready then
  notify(inst, 'r')
end
return { promoted, purged, overrun, expired, redis.call('ZCARD', K .. 'inst') }
