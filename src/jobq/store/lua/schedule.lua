-- schedule: add, pause, resume, advance and remove a cron schedule (docs/workflows.md).
-- A schedule is the hash sched:<name> ("b": the Schedule, msgpack, read by Python only;
-- "cur": its cursor; "p": '1' while paused; "cur" and "p" override what "b" says) and its
-- score in the sorted set schedules:next (its next firing; '+inf' while paused or never).
-- ARGV: op, name, then per op:
--   put     body, cursor, next, max schedules -> 1, or -1 at the limit (a new name)
--   pause   -> 1, or 0 (no such schedule)
--   resume  cursor, next -> 1 (resumed), 0 (no such schedule or not paused)
--   advance cursor, next -> 1 when the cursor moved (cursor < it, not paused), else 0
--   remove  -> 1, or 0
-- Mirrors ScheduledEmbeddedStore's methods of the same names.
local op, name = ARGV[1], ARGV[2]
local sk = K .. 'sched:' .. name
local nk = K .. 'schedules:next'
if op == 'put' then
  if redis.call('EXISTS', sk) == 0 and redis.call('ZCARD', nk) >= tonumber(ARGV[6]) then
    return -1
  end
  redis.call('DEL', sk)
  redis.call('HSET', sk, 'b', ARGV[3], 'cur', ARGV[4], 'p', '0')
  redis.call('ZADD', nk, ARGV[5], name)
  return 1
end
if op == 'remove' then
  redis.call('ZREM', nk, name)
  return redis.call('DEL', sk)
end
local state = redis.call('HMGET', sk, 'cur', 'p')
if not state[1] then
  return 0
end
if op == 'pause' then
  redis.call('HSET', sk, 'p', '1')
  redis.call('ZADD', nk, '+inf', name)
  return 1
end
if op == 'resume' then
  if state[2] ~= '1' then
    return 0
  end
  redis.call('HSET', sk, 'p', '0', 'cur', ARGV[3])
  redis.call('ZADD', nk, ARGV[4], name)
  return 1
end
if op == 'advance' then
  if state[2] == '1' or not (tonumber(state[1]) < tonumber(ARGV[3])) then
    return 0
  end
  redis.call('HSET', sk, 'cur', ARGV[3])
  redis.call('ZADD', nk, ARGV[4], name)
  return 1
end
return redis.error_reply('unknown schedule op ' .. op)
