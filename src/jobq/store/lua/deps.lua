-- Dependencies (`after`), appended to the prelude of every script (store/redis_scripts.py):
-- the rules of core/dependencies.py, applied as the embedded stores apply them
-- (store/embedded_deps.py); docs/redis.md maps each function to its Python twin.
--
-- A job that names prerequisites keeps them in its hash: `aft` (their ids in `after` order,
-- comma-separated) and `ap` ('always'; absent: 'completed'); a waiting job keeps its start time
-- (if later than its submit) in `run`. deps:<id> is the set of waiting jobs that wait for job
-- <id>: read and deleted when <id> ends, in the script that ends it (finish()).

local ENDED = { completed = true, failed = true, cancelled = true, quarantined = true }

local function ids_of(text)
  local out = {}
  for item in string.gmatch(text or '', '[^,]+') do
    out[#out + 1] = item
  end
  return out
end

-- core/dependencies.after_decision: `prereqs` is {{id, state (false: gone)}, ...} in `after`
-- order. Returns 'run'; or 'wait' and the ids still pending; or 'cancel' and the reason.
local function after_decision(prereqs, policy)
  local pending = {}
  for _, p in ipairs(prereqs) do
    local id, state = p[1], p[2]
    if not state or ENDED[state] then
      if policy ~= 'always' and state ~= 'completed' then
        return 'cancel', 'prerequisite ' .. id .. (state and (' ended ' .. state) or ' is gone')
      end
    else
      pending[#pending + 1] = id
    end
  end
  if #pending > 0 then
    return 'wait', pending
  end
  return 'run'
end

-- A waiting job ends cancelled with `reason` (EmbeddedDependencies._apply, cancel). `tell`:
-- its end goes on the bus with no origin, so every hub (this one too) hears of it.
local function cancel_waiting(id, jk, reason, now, tell)
  local f = redis.call('HMGET', jk, 'svc', 'ttl')
  redis.call('HSET', jk, 'err', reason)
  mark(id, jk, 'cancelled', now, nil, nil, reason) -- its timeline (timeline.ended)
  finish(id, jk, f[1], 'waiting', 'cancelled', now, tonumber(f[2]))
  if tell then
    announce('', id, jk, 'cancelled', now)
  end
end

-- A waiting job whose prerequisites are done: queued, or scheduled when its start is later
-- (EmbeddedDependencies._apply, run). Returns true when it was queued.
local function release_waiting(id, jk, now)
  local f = redis.call('HMGET', jk, 'run', 'svc', 'shape', 'm', 'cust')
  if f[1] and tonumber(f[1]) > tonumber(now) then
    redis.call('ZADD', K .. 'scheduled', f[1], id)
    move(id, jk, f[2], 'waiting', 'scheduled')
    return false
  end
  redis.call('HDEL', jk, 'run')
  enqueue(id, jk, f[2], 'waiting', f[3], f[4], f[5], now)
  return true
end

-- Jobs whose dependents are still to be decided while dependents_decide loops (else false):
-- a dependent it cancels ends through finish(), which lands here again.
local cascade = false

-- Job `id` ended in `state` (finish()): each of its waiting dependents runs, waits on, or ends
-- cancelled, and theirs in turn, in a loop (EmbeddedDependencies._ended).
dependents_decide = function(id, state, now)
  if cascade then
    cascade[#cascade + 1] = { id, state }
    return
  end
  cascade = { { id, state } }
  local i, ready = 1, false
  while i <= #cascade do
    local pid, pstate = tostring(cascade[i][1]), cascade[i][2]
    i = i + 1
    local dk = K .. 'deps:' .. pid
    local waiting = redis.call('SMEMBERS', dk)
    if #waiting > 0 then
      redis.call('DEL', dk)
      table.sort(waiting, function(a, b) return tonumber(a) < tonumber(b) end)
      for _, did in ipairs(waiting) do
        local djk = jobkey(did)
        local f = redis.call('HMGET', djk, 'state', 'aft', 'ap')
        if f[1] == 'waiting' then
          -- The one that ended and those still live: the others completed earlier (or the
          -- policy is 'always'), else the dependent would have been cancelled then.
          local prereqs = { { pid, pstate } }
          for _, a in ipairs(ids_of(f[2])) do
            if a ~= pid then
              local st = redis.call('HGET', jobkey(a), 'state')
              if st and not ENDED[st] then
                prereqs[#prereqs + 1] = { a, st }
              end
            end
          end
          local verdict, detail = after_decision(prereqs, f[3] or 'completed')
          if verdict == 'run' then
            ready = release_waiting(did, djk, now) or ready
          elseif verdict == 'cancel' then
            cancel_waiting(did, djk, detail, now, true)
          end
        end
      end
    end
  end
  cascade = false
  if ready then
    notify('', 'r')
  end
end

-- submit.lua: the first prerequisite named by id (not '#k') that does not exist, else false.
-- `values` holds `n` jobs of `width` values each, `after` being the `at`-th.
local function after_unknown(values, n, width, at)
  for j = 0, n - 1 do
    for _, a in ipairs(ids_of(values[j * width + at])) do
      if string.sub(a, 1, 1) ~= '#' and redis.call('EXISTS', jobkey(a)) == 0 then
        return a
      end
    end
  end
  return false
end

-- submit.lua: new job `id` names prerequisites (`after`: ids, and '#k' for the k-th job of
-- this batch, `made`). Keeps them on the job and decides (EmbeddedDependencies._place): true
-- when it is placed as usual (every prerequisite done); else it is waiting (registered with
-- each pending prerequisite) or has ended cancelled with the reason.
local function after_place(id, jk, svc, after, policy, made, run_at, now)
  local ids, prereqs = {}, {}
  for _, a in ipairs(ids_of(after)) do
    if string.sub(a, 1, 1) == '#' then
      a = tostring(made[tonumber(string.sub(a, 2))])
    end
    ids[#ids + 1] = a
    prereqs[#prereqs + 1] = { a, redis.call('HGET', jobkey(a), 'state') }
  end
  redis.call('HSET', jk, 'aft', table.concat(ids, ','))
  if policy == 'always' then
    redis.call('HSET', jk, 'ap', 'always')
  end
  local verdict, detail = after_decision(prereqs, policy)
  if verdict == 'run' then
    return true
  end
  if run_at ~= '' then
    redis.call('HSET', jk, 'run', run_at)
    -- its first mark says when it may run, as submit.lua's for a delayed job (model.new_job)
    redis.call('SET', tlkey(id), cmsgpack.pack({ { t = tonumber(now), k = 'submitted', v = tonumber(run_at) } }))
  end
  move(id, jk, svc, nil, 'waiting')
  if verdict == 'wait' then
    for _, p in ipairs(detail) do
      redis.call('SADD', K .. 'deps:' .. p, id)
    end
  else
    cancel_waiting(id, jk, detail, now, false)
  end
  return false
end

-- retry.lua: a cancelled dependent whose prerequisites have not all ended waits for them again
-- (EmbeddedDependencies._requeue). Returns true when it does (else it is queued as usual).
local function after_requeue(id, jk, svc, from)
  if from ~= 'cancelled' then
    return false
  end
  local live = {}
  for _, a in ipairs(ids_of(redis.call('HGET', jk, 'aft'))) do
    local st = redis.call('HGET', jobkey(a), 'state')
    if st and not ENDED[st] then
      live[#live + 1] = a
    end
  end
  if #live == 0 then
    return false
  end
  move(id, jk, svc, from, 'waiting')
  for _, p in ipairs(live) do
    redis.call('SADD', K .. 'deps:' .. p, id)
  end
  return true
end
