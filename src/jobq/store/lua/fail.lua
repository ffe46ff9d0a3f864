-- fail: a failed attempt (it counts toward max_attempts: `fl`). The caller decided
-- (core/retry.py) what follows from the failures it read; the token check makes sure the
-- attempt it read them under still holds the job.
-- ARGV: inst, job id, token, error, now, decision (retry|fail), retry at, the job's
-- `ae` (attempt errors, msgpack: the history with this attempt added, made in Python), the
-- error as the timeline keeps it (timeline.cut)
-- Returns the job's fields (without payload), or {} when the attempt lost the job.
local inst, id, token, err, now, decision, at, ae = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local detail = ARGV[9]
local jk = jobkey(id)
local f = redis.call('HMGET', jk, 'state', 'tok', 'att', 'w', 'shape', 'svc')
if not holds(f[1], f[2], f[3], token) then
  return {}
end
stop_running(id, jk, f[4], f[5])
redis.call('HSET', jk, 'err', err, 'ae', ae)
redis.call('HINCRBY', jk, 'fl', 1)
if f[4] then
  redis.call('HSET', jk, 'avoid', f[4])
end
if decision == 'retry' then
  mark(id, jk, 'retrying', now, f[3], f[4], detail, at)
  move(id, jk, f[6], f[1], 'scheduled')
  redis.call('HSET', jk, 'run', at)
  redis.call('ZADD', K .. 'scheduled', at, id)
else
  mark(id, jk, 'failed', now, f[3], f[4], detail)
  finish(id, jk, f[6], f[1], 'failed', now, dead_letter_ttl(jk))
  announce(inst, id, jk, 'failed', now)
end
return fields(id, jk, false)
