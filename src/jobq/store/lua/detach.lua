-- detach: the worker is gone; the jobs it runs go back to the front of the queue, each a lost
-- attempt, except those handed out (`st`) after `unreached` (the worker had been silent since
-- before then): never received, they cost nothing (core/lease.reached).
-- ARGV: inst, worker, now, unreached ('' = none)
-- A worker that has attached again through another hub meanwhile is left alone (that hub
-- has it now). Returns the field lists of the jobs released.
local inst, worker, now, unreached = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local owner = redis.call('HGET', K .. 'w:' .. worker, 'owner')
if owner and owner ~= inst then
  return {}
end
unregister(worker)
local wrun = K .. 'wrun:' .. worker
local out = {}
local ready = false
for _, id in ipairs(redis.call('HKEYS', wrun)) do
  local jk = jobkey(id)
  local f = redis.call('HMGET', jk, 'state', 'w', 'st')
  if f[1] == 'running' and f[2] == worker then
    local lost = unreached == nil or not f[3] or tonumber(f[3]) <= unreached
    if release(inst, id, jk, now, 'its worker went away', lost) then
      ready = true
    end
    out[#out + 1] = fields(id, jk, false)
  end
end
redis.call('DEL', wrun, K .. 'wload:' .. worker)
if ready then
  notify(inst, 'r')
end
return out
