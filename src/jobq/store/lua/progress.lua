-- progress: record progress of a running attempt.
-- ARGV: inst, job id, token, value ('' = unchanged), message ('' = unchanged), has message (1|0),
-- now, the message as the timeline keeps it (timeline.cut). A progress mark is added when due
-- (progress_due: sampled).
-- Returns the job's fields (without payload), or {} when the attempt lost the job.
local id, token, value, message, has_message = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local now, detail = ARGV[7], ARGV[8]
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
local marks = marks_of(id, jk)
if progress_due(marks, now) then
  mark(id, jk, 'progress', now, f[3], nil, detail, value, marks)
end
return fields(id, jk, false)
