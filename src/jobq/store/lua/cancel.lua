-- cancel: end a job that has not ended.
-- ARGV: inst, job id, now
-- Returns {'missing'}, {'ended', state} or {'ok', worker that ran it or '', fields}.
local inst, id, now = ARGV[1], ARGV[2], ARGV[3]
local jk = jobkey(id)
local f = redis.call('HMGET', jk, 'state', 'w', 'shape', 'svc', 'm', 'cust', 'ttl', 'att')
local state = f[1]
if not state then
  return { 'missing' }
end
if state == 'completed' or state == 'failed' or state == 'cancelled' or state == 'quarantined' then
  return { 'ended', state }
end
local worker = ''
if state == 'queued' then
  dequeue(f[3], f[5], f[6])
elseif state == 'scheduled' then
  redis.call('ZREM', K .. 'scheduled', id)
elseif state == 'running' then
  worker = f[2] or ''
  stop_running(id, jk, f[2], f[3])
end
redis.call('HSET', jk, 'err', 'cancelled')
if state == 'running' then
  mark(id, jk, 'cancelled', now, f[8], f[2])
else
  mark(id, jk, 'cancelled', now)
end
finish(id, jk, f[4], state, 'cancelled', now, tonumber(f[7]))
announce(inst, id, jk, 'cancelled', now)
return { 'ok', worker, fields(id, jk, false) }
