-- touch: a worker's heartbeat renews the leases of every job it runs.
-- ARGV: inst, worker, now, lease deadline, metrics blob ('' = unchanged)
-- Returns the number of jobs it runs, or -1 when the worker is not registered (its hub was
-- taken for dead and its registration swept: the hub registers it again).
local worker, now, deadline, metrics = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local w = K .. 'w:' .. worker
if redis.call('EXISTS', w) == 0 then
  return -1
end
redis.call('HSET', w, 'seen', now)
if metrics ~= '' then
  redis.call('HSET', w, 'met', metrics)
end
local ids = redis.call('HKEYS', K .. 'wrun:' .. worker)
for _, id in ipairs(ids) do
  local jk = jobkey(id)
  local f = redis.call('HMGET', jk, 'state', 'w')
  if f[1] == 'running' and f[2] == worker then
    redis.call('HSET', jk, 'lease', deadline)
    redis.call('ZADD', K .. 'leases', deadline, id)
  end
end
return #ids
