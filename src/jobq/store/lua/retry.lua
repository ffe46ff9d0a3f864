-- retry: queue a failed, quarantined or cancelled job again with fresh budgets (its fencing
-- token goes on growing).
-- ARGV: inst, job id, now
-- Returns {'missing'}, {'conflict', state}, {'refused', reason} (its group's: record_retry,
-- groups.lua group_retry) or {'ok', fields}.
local inst, id, now = ARGV[1], ARGV[2], ARGV[3]
local jk = jobkey(id)
local f = redis.call('HMGET', jk, 'state', 'svc', 'shape', 'm', 'cust')
if not f[1] then
  return { 'missing' }
end
if f[1] ~= 'failed' and f[1] ~= 'cancelled' and f[1] ~= 'quarantined' then
  return { 'conflict', f[1] }
end
local refused = group_retry(id, jk, f[1])
if refused then
  return { 'refused', refused }
end
redis.call('HSET', jk, 'att', '0')
redis.call('HDEL', jk, 'err', 'fin', 'exp', 'avoid', 'run', 'fl', 'ls')
redis.call('DEL', resultkey(id))
redis.call('ZREM', K .. 'expiry', id)
mark(id, jk, 'retried', now)
if not after_requeue(id, jk, f[2], f[1]) then -- a dependent may wait again (deps.lua)
  enqueue(id, jk, f[2], f[1], f[3], f[4], f[5], now)
  notify(inst, 'r')
end
return { 'ok', fields(id, jk, false) }
