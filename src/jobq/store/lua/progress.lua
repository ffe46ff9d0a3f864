-- progress: record progress of a running attempt.
-- ARGV: inst, job id, token, value ('' = unchanged), message ('' = unchanged), has message (1|0)
-- Returns the job's fields (without payload), or {} when the attempt lost the job.
local id, token, value, message, has_message = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local jk = jobkey(id)
local f = redis.call('HMGET', jk, 'state', 'tok', 'att')
if not holds(f[1], f[2], f[3], token) then
  return {}
end
if value ~= '' then
  redis.call('HSET', jk, 'pg', value)
end
if has_message == '1' then
  redis.call('HSET', jk, 'pm', message)
end
return fields(id, jk, false)
