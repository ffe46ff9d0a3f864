-- complete: finish attempts with their results.
-- ARGV: inst, now, n, then one framed argument (see unframe): (job id, token, result blob) each.
-- Returns one entry per attempt: the job's fields (without payload, nor the result the caller
-- has), or {} when the attempt no longer holds the job (its result is refused).
local inst, now, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
local values = unframe(ARGV[4])
local out = {}
for i = 0, n - 1 do
  local id, token, result = values[1 + i * 3], values[2 + i * 3], values[3 + i * 3]
  local jk = jobkey(id)
  local f = redis.call('HMGET', jk, 'state', 'att', 'w', 'shape', 'svc', 'ttl', 'pg', 'pm', 'err', 'cust', 'tok')
  if not holds(f[1], f[11], f[2], token) then
    out[#out + 1] = {}
  else
    stop_running(id, jk, f[3], f[4])
    redis.call('SET', resultkey(id), result)
    local progress = f[7] and '100'
    if progress then
      redis.call('HSET', jk, 'pg', progress)
    end
    mark(id, jk, 'completed', now, f[2], f[3])
    finish(id, jk, f[5], f[1], 'completed', now, tonumber(f[6]))
    announce(inst, id, jk, 'completed', now,
      { 'completed', f[5], f[2], f[3], progress, f[8], f[9], f[10], result })
    out[#out + 1] = fields(id, jk, false, true)
  end
end
return out
