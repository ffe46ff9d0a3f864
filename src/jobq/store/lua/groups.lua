-- Groups, appended to the prelude of every script (store/redis_scripts.py): the rules of
-- core/workflow.py that must hold atomically across hubs, applied in the script that ends a
-- member (finish() calls group_end). docs/redis.md maps each function to its Python twin.
--
-- A group is the hash g:<id>: `d` (the Group as submitted, msgpack: only Python reads it),
-- `total`, `pol` (policy), `hf` ('1': it has a finalize spec), `state`, `e:<state>` (members
-- ended per terminal state), `fid` (the finalize job's id), `end`, `why`, `nt` ('1': its
-- workers were told FINISHED). Its members' hashes have `grp` (so has its finalize job).
-- gheld: groups whose finalize job's id is set but whose job a hub has not made yet (its
-- payload is built in Python from the members' outcomes: finalize.lua); gw:<id>: the workers
-- that claimed one of its members.

local GROUP_ENDS = { 'cancelled', 'completed', 'failed', 'quarantined' } -- sorted, as Python

-- workflow._failure_reason
local function group_failure(gk, total, completed)
  local parts = {}
  for _, s in ipairs(GROUP_ENDS) do
    local n = tonumber(redis.call('HGET', gk, 'e:' .. s)) or 0
    if s ~= 'completed' and n > 0 then
      parts[#parts + 1] = n .. ' ' .. s
    end
  end
  return (total - completed) .. ' of ' .. total .. ' members did not complete (' .. table.concat(parts, ', ') .. ')'
end

-- workflow.record_end for a member (and record_finalize: the finalize job's id is taken now,
-- once: only while the group is running, which it stops being here), or
-- workflow.record_finalize_end for its finalize job.
group_end = function(id, jk, state, now)
  local gid = redis.call('HGET', jk, 'grp')
  if not gid then
    return
  end
  local gk = K .. 'g:' .. gid
  local g = redis.call('HMGET', gk, 'total', 'pol', 'state', 'hf')
  if not g[1] then
    return
  end
  local total, n, first = tonumber(g[1]), tonumber(id), tonumber(gid)
  if n > first and n <= first + total then
    redis.call('HINCRBY', gk, 'e:' .. state, 1)
    if g[3] ~= 'running' then
      return -- a cancelled group counts its members' ends; nothing follows
    end
    local ended, completed = 0, 0
    for _, s in ipairs(GROUP_ENDS) do
      local c = tonumber(redis.call('HGET', gk, 'e:' .. s)) or 0
      ended = ended + c
      if s == 'completed' then
        completed = c
      end
    end
    if ended < total then
      return
    end
    if g[2] ~= 'all_ended' and completed ~= total then
      redis.call('HSET', gk, 'state', 'failed', 'end', now, 'why', group_failure(gk, total, completed))
    elseif g[4] ~= '1' then
      redis.call('HSET', gk, 'state', 'completed', 'end', now)
    else
      local fid = redis.call('INCR', K .. 'seq')
      redis.call('HSET', gk, 'state', 'finalizing', 'fid', fid)
      redis.call('SADD', K .. 'gheld', gid)
    end
  elseif g[3] == 'finalizing' then
    if state == 'completed' then
      redis.call('HSET', gk, 'state', 'completed', 'end', now)
    else
      local outcome = state == 'cancelled' and 'cancelled' or 'failed'
      local err = redis.call('HGET', jk, 'err') or state
      redis.call('HSET', gk, 'state', outcome, 'end', now, 'why', 'finalize job ' .. state .. ': ' .. err)
    end
  end
end
