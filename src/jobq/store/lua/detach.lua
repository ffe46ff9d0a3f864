-- detach: the worker is gone; the jobs it runs go back to the front of the queue.
-- ARGV: inst, worker, now
-- A worker that has attached again through another hub meanwhile is left alone (that hub
-- has it now). Returns the field lists of the jobs released.
local inst, worker, now = ARGV[1], ARGV[2], ARGV[3]
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
  local f = redis.call('HMGET', jk, 'state', 'w')
  if f[1] == 'running' and f[2] == worker then
    if release(inst, id, jk, now, 'its worker went away') then
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
