-- Groups, appended to the prelude of every script (store/redis_scripts.py): the rules of
-- core/workflow.py that must hold atomically across hubs, applied in the script that ends a
-- member (finish() calls group_end). docs/redis.md maps each function to its Python twin.
--
-- A group is the hash g:<id>: `d` (the Group as submitted, msgpack: only Python reads it),
-- `total`, `pol` (policy), `hf` ('1': it has a finalize spec), `state`, `e:<state>` (members
-- ended per terminal state), `fid` (the finalize job's id), `end`, `why`, `nt` ('1': its
-- workers were told FINISHED), `ik` (its idempotency key). Its members' hashes have `grp` (so
-- has its finalize job). gexp: ended groups by the time they are forgotten (tick.lua).
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

-- The group has ended in `state`: it is forgotten RESULT_TTL after (FAILED_TTL if it failed),
-- as EmbeddedGroups._group_ended and the embedded tick do.
group_closed = function(gid, state, now)
  local ttl = state == 'failed' and FAILED_TTL or RESULT_TTL
  redis.call('ZADD', K .. 'gexp', fmt(tonumber(now) + ttl), gid)
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
      group_closed(gid, 'failed', now)
    elseif g[4] ~= '1' then
      redis.call('HSET', gk, 'state', 'completed', 'end', now)
      group_closed(gid, 'completed', now)
    else
      local fid = redis.call('INCR', K .. 'seq')
      redis.call('HSET', gk, 'state', 'finalizing', 'fid', fid)
      redis.call('SADD', K .. 'gheld', gid)
    end
  elseif g[3] == 'finalizing' then
    if state == 'completed' then
      redis.call('HSET', gk, 'state', 'completed', 'end', now)
      group_closed(gid, 'completed', now)
    else
      local outcome = state == 'cancelled' and 'cancelled' or 'failed'
      local err = redis.call('HGET', jk, 'err') or state
      redis.call('HSET', gk, 'state', outcome, 'end', now, 'why', 'finalize job ' .. state .. ': ' .. err)
      group_closed(gid, outcome, now)
    end
  end
end

-- workflow.record_retry: an operator retries member or finalize job `id` (hash `jk`) that
-- ended `previous`. Returns nil when its group (if any) takes it back (a member: its end is
-- no longer counted and the group runs again; the finalize job: the group is finalizing
-- again), else the reason it is refused (Conflict), changing nothing.
group_retry = function(id, jk, previous)
  local gid = redis.call('HGET', jk, 'grp')
  if not gid then
    return nil
  end
  local gk = K .. 'g:' .. gid
  local g = redis.call('HMGET', gk, 'total', 'state', 'fid')
  if not g[1] then
    return nil -- forgotten (its retention ended): the job is retried alone
  end
  if g[2] == 'cancelled' then
    return 'group ' .. gid .. ' was cancelled; its jobs cannot be retried'
  end
  local n, first = tonumber(id), tonumber(gid)
  if not (n > first and n <= first + tonumber(g[1])) then
    if not g[3] or g[2] ~= 'failed' then
      return 'group ' .. gid .. ' has no failed finalize job to retry'
    end
    redis.call('HSET', gk, 'state', 'finalizing')
  else
    if g[3] then
      return 'group ' .. gid .. ' has finalized; its members cannot be retried'
    end
    if g[2] == 'completed' then
      return 'group ' .. gid .. ' has completed; its members cannot be retried'
    end
    local left = (tonumber(redis.call('HGET', gk, 'e:' .. previous)) or 0) - 1
    if left < 0 then
      return 'group ' .. gid .. ' counts no ' .. previous .. ' member'
    end
    if left == 0 then
      redis.call('HDEL', gk, 'e:' .. previous)
    else
      redis.call('HSET', gk, 'e:' .. previous, left)
    end
    redis.call('HSET', gk, 'state', 'running')
  end
  redis.call('HDEL', gk, 'end', 'why', 'nt') -- its next end is told again
  redis.call('ZREM', K .. 'gexp', gid)
  return nil
end
