-- fail: a failed attempt. The caller decided (core/retry.py) what follows from the attempt
-- number it read; the token check makes sure that number is still the job's.
-- ARGV: inst, job id, token, error, now, decision (retry|fail), retry at
-- Returns the job's fields (without payload), or {} when the attempt lost the job.
local inst, id, token, err, now, decision, at = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local jk = jobkey(id)
local f = redis.call('HMGET', jk, 'state', 'att', 'w', 'shape', 'svc')
if not holds(f[1], f[2], token) then
  return {}
end
stop_running(id, jk, f[3], f[4])
redis.call('HSET', jk, 'err', err)
if f[3] then
  redis.call('HSET', jk, 'avoid', f[3])
end
if decision == 'retry' then
  move(id, jk, f[5], f[1], 'scheduled')
  redis.call('HSET', jk, 'run', at)
  redis.call('ZADD', K .. 'scheduled', at, id)
else
  finish(id, jk, f[5], f[1], 'failed', now, dead_letter_ttl(jk))
  announce(inst, id, jk, 'failed', now)
end
return fields(id, jk, false)
