-- attach: register (or update) a worker attached through hub instance `inst`.
-- ARGV: inst, worker, info blob, profile, slots, GPU memory, max customers ('' = no limit), now,
-- principal (the token name that attached it, '' = none: its claims record it as the jobs' `hp`)
-- A worker that comes back through another hub instance (its hub died or restarted) starts
-- with an empty running set: what it still runs it declares right after (adopt); whatever the
-- old hub gave it that never arrived is not renewed by its heartbeats, and expires. (Through
-- the same instance, as on a repeated hello, what that hub gave it stays: it may be in flight.)
-- Returns the number of jobs it runs.
local inst, worker, info, profile, slots = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local gpu, max_customers, now, principal = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local w = K .. 'w:' .. worker
local old = redis.call('HMGET', w, 'prof', 'owner')
if old[1] ~= profile then
  if old[1] then
    if redis.call('HINCRBY', K .. 'pcount', old[1], -1) <= 0 then
      redis.call('HDEL', K .. 'pcount', old[1])
    end
  end
  redis.call('HINCRBY', K .. 'pcount', profile, 1)
end
if old[2] and old[2] ~= inst then
  redis.call('SREM', K .. 'iw:' .. old[2], worker)
end
redis.call('HSET', w, 'info', info, 'prof', profile, 'slots', slots, 'pgpu', gpu, 'owner', inst,
  'seen', now)
if max_customers ~= '' then
  redis.call('HSET', w, 'pmaxc', max_customers)
else
  redis.call('HDEL', w, 'pmaxc')
end
if principal ~= '' then
  redis.call('HSET', w, 'pr', principal)
else
  redis.call('HDEL', w, 'pr')
end
if not redis.call('ZSCORE', K .. 'workers', worker) then
  -- Listed in the order workers attached (a re-attach keeps its place).
  redis.call('ZADD', K .. 'workers', redis.call('INCR', K .. 'wseq'), worker)
end
redis.call('SADD', K .. 'iw:' .. inst, worker)
local wl = K .. 'wload:' .. worker
local via = redis.call('HGET', wl, 'via')
if via and via ~= inst then
  redis.call('DEL', K .. 'wrun:' .. worker, wl)
end
redis.call('HSET', wl, 'via', inst)
return redis.call('HLEN', K .. 'wrun:' .. worker)
