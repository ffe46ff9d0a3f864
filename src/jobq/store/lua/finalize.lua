-- finalize: make a group's finalize job, once (the second half of record_finalize: its id was
-- taken by group_end in the script that ended the last member; its payload, the members'
-- outcomes, is built in Python by workflow.finalize_input). Any hub may call it for a group in
-- gheld; only the first call makes the job.
-- ARGV: inst, now, group id, then one framed argument of submit.lua's 15 values for the job
-- Returns 1 when it made the job, 0 when it was made already (or the group was cancelled).
local inst, now, gid = ARGV[1], ARGV[2], ARGV[3]
local gk = K .. 'g:' .. gid
local g = redis.call('HMGET', gk, 'state', 'fid')
if redis.call('SREM', K .. 'gheld', gid) == 0 or g[1] ~= 'finalizing' or not g[2] then
  return 0
end
local id = tonumber(g[2])
local _, shape, prio, svc, cust, state, run_at, static, payload, ttl, max, timeout, maxl = unpack(unframe(ARGV[4]), 1, 13)
local jk = jobkey(id)
local member = prio .. string.format('%012x', id) .. id
redis.call('HSET', jk, 'd', static, 'att', '0', 'shape', shape, 'm', member, 'svc', svc,
  'cust', cust, 'sub', now, 'ttl', ttl, 'max', max, 'maxl', maxl, 'grp', gid)
if payload ~= '' then
  redis.call('SET', K .. 'p:' .. id, payload)
end
if timeout ~= '' then
  redis.call('HSET', jk, 'to', timeout)
end
if state == 'scheduled' then
  redis.call('HSET', jk, 'run', run_at)
  redis.call('ZADD', K .. 'scheduled', run_at, id)
  move(id, jk, svc, nil, 'scheduled')
else
  enqueue(id, jk, svc, nil, shape, member, cust, now)
  notify(inst, 'r')
end
return 1
