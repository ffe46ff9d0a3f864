-- adopt: a reconnecting worker still runs these attempts; it keeps those whose lease holds.
-- ARGV: inst, worker, lease deadline, n, then (job id, token) per attempt.
-- Returns the ids it keeps.
local worker, deadline, n = ARGV[2], ARGV[3], tonumber(ARGV[4])
local wrun = K .. 'wrun:' .. worker
local kept = {}
for i = 0, n - 1 do
  local id, token = ARGV[5 + i * 2], ARGV[6 + i * 2]
  local jk = jobkey(id)
  local f = redis.call('HMGET', jk, 'state', 'tok', 'att', 'w', 'shape', 'ls')
  if holds(f[1], f[2], f[3], token) and f[4] == worker then
    if redis.call('HSETNX', wrun, id, f[5]) == 1 then
      load_take(worker, f[5])
      if is_suspect(f[6]) then
        redis.call('HINCRBY', K .. 'wload:' .. worker, 'sus', 1)
      end
    end
    redis.call('HSET', jk, 'lease', deadline)
    redis.call('ZADD', K .. 'leases', deadline, id)
    kept[#kept + 1] = tonumber(id)
  end
end
return kept
