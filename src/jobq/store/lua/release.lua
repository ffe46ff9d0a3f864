-- release: running attempts their worker gives back unstarted go back to the front of their
-- queue (no budget spent, not counted as run).
-- ARGV: inst, now, why, n, then (job id, token) per attempt.
-- Returns one entry per attempt: the job's fields (without payload), or {} when lost.
local inst, now, why, n = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local out = {}
local ready = false
for i = 0, n - 1 do
  local id, token = ARGV[5 + i * 2], ARGV[6 + i * 2]
  local jk = jobkey(id)
  local f = redis.call('HMGET', jk, 'state', 'tok', 'att')
  if not holds(f[1], f[2], f[3], token) then
    out[#out + 1] = {}
  else
    if release(inst, id, jk, now, why, false) then
      ready = true
    end
    out[#out + 1] = fields(id, jk, false)
  end
end
if ready then
  notify(inst, 'r')
end
return out
