-- fire: one firing of a cron schedule, exactly once across hubs (docs/workflows.md).
-- The compare-and-set of the schedule's cursor (cursor < at -> cursor = at) and the creation of
-- the firing's job (submit.lua's code, run as submit_script) are one script: of several hubs
-- that find the same firing due, only the first creates its job; a hub killed before the
-- script ran left the firing due for the next tick of any hub.
-- Mirrors ScheduledEmbeddedStore.fire. ARGV: inst, now, name, at, next firing (or '+inf'),
-- then submit.lua's framed values of the one job (its key is the firing's).
-- Returns {id, created (1|0)}, or {0, 0} when the schedule is gone, paused, or past `at`.
local inst, now, name, at, following, values = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local sk = K .. 'sched:' .. name
local state = redis.call('HMGET', sk, 'cur', 'p')
if not state[1] or state[2] == '1' or not (tonumber(state[1]) < tonumber(at)) then
  return {0, 0}
end
redis.call('HSET', sk, 'cur', at)
redis.call('ZADD', K .. 'schedules:next', following, name)
return submit_script({inst, now, '1', values})
