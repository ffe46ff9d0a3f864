-- group: create a group and its members in one step (Python: EmbeddedGroups.submit_group):
-- the group's id, then its members' (submit.lua's code, in order: consecutive ids).
-- ARGV: inst, now, n, the members (framed as submit.lua takes them), idempotency key or '',
-- the group (msgpack), policy, has finalize ('1' | '0')
-- Returns {group id, created (1|0), member id, ...}; a known key returns {group id, 0}.
local inst, now, n, key, body, policy, hf = ARGV[1], ARGV[2], ARGV[3], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
if key ~= '' then
  local known = redis.call('GET', K .. 'gidem:' .. key)
  if known and redis.call('EXISTS', K .. 'g:' .. known) == 1 then
    return { tonumber(known), 0 }
  end
end
local gid = redis.call('INCR', K .. 'seq')
local made = submit_script({ inst, now, n, ARGV[4] })
local out = { gid, 1 }
for i = 1, #made, 2 do
  redis.call('HSET', jobkey(made[i]), 'grp', gid)
  out[#out + 1] = made[i]
end
redis.call('HSET', K .. 'g:' .. gid, 'd', body, 'total', n, 'pol', policy, 'hf', hf, 'state', 'running')
if key ~= '' then
  redis.call('SET', K .. 'gidem:' .. key, gid)
  redis.call('HSET', K .. 'g:' .. gid, 'ik', key)
end
return out
