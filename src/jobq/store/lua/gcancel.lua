-- gcancel: workflow.cancel_group: a group that has not ended is cancelled at once (its members'
-- later ends are only counted, and a finalize job not made yet never will be); the hub then
-- cancels its live members and its finalize job one by one (cancel.lua).
-- ARGV: group id, now, reason
-- Returns {'missing'}, {'ended', state} or {'ok', finalize job id or ''}.
local gid, now, reason = ARGV[1], ARGV[2], ARGV[3]
local gk = K .. 'g:' .. gid
local state = redis.call('HGET', gk, 'state')
if not state then
  return { 'missing' }
end
if state ~= 'running' and state ~= 'finalizing' then
  return { 'ended', state }
end
redis.call('HSET', gk, 'state', 'cancelled', 'end', now, 'why', reason)
redis.call('SREM', K .. 'gheld', gid)
group_closed(gid, 'cancelled', now)
return { 'ok', redis.call('HGET', gk, 'fid') or '' }
