-- jobq's Redis store: helpers shared by every script (prepended to each one when loaded).
--
-- KEYS[1] is the namespace tag "{ns}:". Every key a script touches is KEYS[1] .. suffix, so all
-- of them share one hash tag and one Redis Cluster slot, and each script is atomic on one node.
-- The layout of every key is in docs/redis.md.
--
-- Rules kept here:
-- * Times arrive as strings the Python side formatted exactly (repr of a float); a time the
--   script computes is written with fmt() (%.17g), which round-trips a double exactly.
-- * A job hash holds the static part of the job in "d" (msgpack, read by Python only) and one
--   short field per thing a script reads or changes; its payload and its result are string keys
--   of their own (p:<id>, r:<id>), so that the hash stays small enough for Redis's compact
--   encoding (see docs/redis.md).
-- * "" stands for "no customer" (a customer id is never empty).
-- * Every change of a job's state goes through move(), which keeps the per-state listing
--   indexes and the counts by (service, state) true.
-- * Counts and the fairness state are read at most once per script and written back once, at
--   its end: each script body runs as main(), followed by flush() (see store/redis_scripts.py).
-- * A function here that mirrors a rule the embedded stores apply in Python is mapped to that
--   Python function, and to the contract cases holding both to one answer, in docs/redis.md
--   ("Python and Lua"); the constants filled in below come from where Python keeps them.
-- * State kept for one call (the namespace K, counts, caches) is declared here and set anew by
--   begin() (begin.lua) at the start of every call: the scripts may run as Redis functions of
--   one library, whose top level runs once (store/redis_scripts.py).

local K -- KEYS[1] of the call
local FAILED_TTL = tonumber('@FAILED_TTL@')
-- How long an ended group is kept (a failed one FAILED_TTL): the store's result_ttl.
local RESULT_TTL = tonumber('@RESULT_TTL@')
local BUS_LENGTH = '@BUS_LENGTH@'
local BUS_AGE = tonumber('@BUS_AGE@')
-- Worker losses a job written without its own `maxl` survives (core/retry.DEFAULT_MAX_LOSSES).
local MAX_LOSSES = tonumber('@MAX_LOSSES@')
-- Losses from which a job is a suspect: a worker runs one at a time (core/retry.is_suspect).
local SUSPECT_LOSSES = tonumber('@SUSPECT_LOSSES@')
-- A job's timeline (core/timeline.py): marks kept, first ones always kept, progress sampling.
local MARKS_KEPT = tonumber('@MARKS_KEPT@')
local FIRST_KEPT = tonumber('@FIRST_KEPT@')
local PROGRESS_EVERY = tonumber('@PROGRESS_EVERY@')
local PROGRESS_MARKS = tonumber('@PROGRESS_MARKS@')

local function is_suspect(losses)
  return (tonumber(losses) or 0) >= SUSPECT_LOSSES
end

local function fmt(x)
  return string.format('%.17g', x)
end

-- Many values in one argument (each a 4-byte big-endian length, then the bytes): a batch of
-- jobs costs the caller one argument instead of a dozen per job.
local function unframe(blob)
  local out, pos = {}, 1
  while pos <= #blob do
    out[#out + 1], pos = struct.unpack('>I4c0', blob, pos)
  end
  return out
end

local function jobkey(id)
  return K .. 'job:' .. id
end

local function resultkey(id)
  return K .. 'r:' .. id
end

-- ------------------------------------------------------------------ timeline (core/timeline.py)
-- A job's timeline is the string key tl:<id> (msgpack: a list of maps with the short names of
-- core/model.Mark), kept apart from the hash so the hash keeps its listpack encoding. A job
-- nothing happened to since its submit has none: its timeline is its `submitted` mark, made
-- from `sub` when the first other mark comes (and by Python when it reads the job).

local function tlkey(id)
  return K .. 'tl:' .. id
end

local function marks_of(id, jk)
  local raw = redis.call('GET', tlkey(id))
  if raw then
    return cmsgpack.unpack(raw)
  end
  return { { t = tonumber(redis.call('HGET', jk, 'sub')), k = 'submitted' } }
end

-- timeline.progress_due: fewer than PROGRESS_MARKS progress marks end the timeline, the last
-- of them PROGRESS_EVERY seconds ago or more.
local function progress_due(marks, now)
  local n, last = 0, nil
  for i = #marks, 1, -1 do
    if marks[i].k ~= 'progress' then
      break
    end
    n = n + 1
    last = last or marks[i].t
  end
  if n >= PROGRESS_MARKS then
    return false
  end
  return last == nil or tonumber(now) - last >= PROGRESS_EVERY
end

-- timeline.add: append a mark (attempt 0, '' and nil are left out); when full, the oldest
-- mark after the first FIRST_KEPT goes. `marks` as marks_of read them (nil: read them now).
local function mark(id, jk, kind, now, att, worker, detail, value, marks)
  marks = marks or marks_of(id, jk)
  local m = { t = tonumber(now), k = kind }
  if att and tonumber(att) and tonumber(att) ~= 0 then
    m.a = tonumber(att)
  end
  if worker and worker ~= '' then
    m.w = worker
  end
  if detail and detail ~= '' then
    m.d = detail
  end
  if value and value ~= '' then
    m.v = tonumber(value)
  end
  while #marks >= MARKS_KEPT do
    table.remove(marks, FIRST_KEPT + 1)
  end
  marks[#marks + 1] = m
  redis.call('SET', tlkey(id), cmsgpack.pack(marks))
end

local count_deltas -- (begin: {})

local function count(svc, state, delta)
  local field = svc .. '\t' .. state
  count_deltas[field] = (count_deltas[field] or 0) + delta
end

local function flush_counts()
  for field, delta in pairs(count_deltas) do
    if delta ~= 0 and redis.call('HINCRBY', K .. 'counts', field, delta) <= 0 then
      redis.call('HDEL', K .. 'counts', field)
    end
  end
end

-- The job's state changes from `from` (nil for a new job) to `to`.
local function move(id, jk, svc, from, to)
  if from then
    redis.call('ZREM', K .. 'st:' .. from, id)
    count(svc, from, -1)
  end
  redis.call('ZADD', K .. 'st:' .. to, id, id)
  count(svc, to, 1)
  redis.call('HSET', jk, 'state', to)
end

-- Whether a bus entry from hub `inst` has a reader: the bus is for the other hubs (`inst`, the
-- hubs alive, holds each from its open on), except an entry with no origin, which is for every
-- hub (the one running the script too). A hub alone on the namespace writes no bus entries.
-- The hubs alive are counted once per script run, at its first entry with an origin (scripts
-- that change `inst`, tick and sweep, do so before any entry).
local hubs_alive -- (begin: nil)
local function heard(inst)
  if inst == '' then
    return true
  end
  if hubs_alive == nil then
    hubs_alive = redis.call('ZCARD', K .. 'inst')
  end
  return hubs_alive > 1
end

-- Tell the other hubs (they read the bus stream): kind "r" = jobs may be runnable.
local function notify(inst, kind)
  if heard(inst) then
    redis.call('XADD', K .. 'bus', 'MAXLEN', '~', BUS_LENGTH, '*', 'o', inst, 'k', kind)
  end
end

-- A job ended: its event goes on the bus in the same atomic step as the change, so a hub that
-- dies right after cannot take it along (whoever waits for the job elsewhere gets it). A large
-- result is left out ("big"): a hub that delivers the event reads it from the job.
local BIG_RESULT = 1024
-- `f` is {state, svc, att, w, pg, pm, err, cust, result} when the caller has them at hand.
local function announce(inst, id, jk, kind, now, f)
  if not heard(inst) then
    return
  end
  if not f then
    f = redis.call('HMGET', jk, 'state', 'svc', 'att', 'w', 'pg', 'pm', 'err', 'cust')
    f[9] = kind == 'completed' and redis.call('GET', resultkey(id))
  end
  local entry = { 'o', inst, 'k', 't', 'id', id, 'kind', kind, 'state', f[1], 'at', now, 'svc', f[2],
    'att', f[3] }
  local optional = { 'w', f[4], 'pg', f[5], 'pm', f[6], 'err', f[7], 'cust', f[8] }
  for i = 1, #optional, 2 do
    if optional[i + 1] and optional[i + 1] ~= '' then
      entry[#entry + 1] = optional[i]
      entry[#entry + 1] = optional[i + 1]
    end
  end
  if kind == 'completed' and f[9] then
    if #f[9] <= BIG_RESULT then
      entry[#entry + 1] = 'res'
      entry[#entry + 1] = f[9]
    else
      entry[#entry + 1] = 'big'
      entry[#entry + 1] = '1'
    end
  end
  redis.call('XADD', K .. 'bus', 'MAXLEN', '~', BUS_LENGTH, '*', unpack(entry))
end

-- ------------------------------------------------------------------ shapes

local shape_cache -- (begin: {})

-- A shape's GPU demand, isolation and customer (what a running job takes from its worker).
local function shape_meta(shape)
  local meta = shape_cache[shape]
  if meta == nil then
    local raw = redis.call('HGET', K .. 'smeta', shape)
    meta = { gpu = 0, iso = 'none', cust = '' }
    if raw then
      local gpu, iso, cust = string.match(raw, '^([^\t]*)\t([^\t]*)\t(.*)$')
      meta = { gpu = tonumber(gpu) or 0, iso = iso, cust = cust }
    end
    shape_cache[shape] = meta
  end
  return meta
end

-- How many attached workers may run jobs of this shape (summed over eligible profiles).
local function shape_workers(shape)
  local total = 0
  for _, profile in ipairs(redis.call('SMEMBERS', K .. 'sprof:' .. shape)) do
    total = total + (tonumber(redis.call('HGET', K .. 'pcount', profile)) or 0)
  end
  return total
end

-- ------------------------------------------------------------------ fairness (stride scheduling)

local FAIR -- (begin: K .. 'fair')
-- fields of FAIR read so far (false: absent) and those changed since (begin: {}, {})
local fair_values, fair_changed

local function fair_get(field, default)
  local value = fair_values[field]
  if value == nil then
    value = tonumber(redis.call('HGET', FAIR, field)) or false
    fair_values[field] = value
  end
  if value == false then
    return default
  end
  return value
end

local function fair_set(field, value)
  fair_values[field] = value
  fair_changed[field] = true
end

local function flush_fair()
  for field in pairs(fair_changed) do
    local value = fair_values[field]
    if value == false then
      redis.call('HDEL', FAIR, field)
    else
      redis.call('HSET', FAIR, field, fmt(value))
    end
  end
end

-- A job of this customer was queued: a customer coming back from idle starts at the current
-- virtual time, so idling banks nothing.
local function fair_add(cust)
  local live = fair_get('n:' .. cust, 0)
  if live <= 0 then
    -- Set even when unchanged: a customer never seen before gets a pass of its own now
    -- (reading a missing pass later would give the virtual time of that later moment).
    fair_set('p:' .. cust, math.max(fair_get('p:' .. cust, 0), fair_get('vt', 0)))
  end
  fair_set('n:' .. cust, live + 1)
end

local function fair_left(cust)
  local left = fair_get('n:' .. cust, 0) - 1
  fair_set('n:' .. cust, left > 0 and left or false)
end

local function fair_pass(cust)
  local vt = fair_get('vt', 0)
  return fair_get('p:' .. cust, vt)
end

-- A job of this customer was handed out: its pass grows by 1 / weight.
local function fair_take(cust)
  local vt = fair_get('vt', 0)
  local passed = fair_get('p:' .. cust, vt)
  if passed > vt then
    fair_set('vt', passed)
  end
  fair_set('p:' .. cust, passed + 1 / fair_get('w:' .. cust, 1))
end

-- ------------------------------------------------------------------ queue and running set

-- Queue a job (again) in its shape's queue; `since` is when it counts as waiting from. (A job
-- that had a run time, scheduled or cancelled while scheduled, has it cleared by the caller.)
local function enqueue(id, jk, svc, from, shape, member, cust, since)
  redis.call('ZADD', K .. 'q:' .. shape, 0, member)
  fair_add(cust)
  redis.call('HSET', jk, 'since', since)
  move(id, jk, svc, from, 'queued')
end

-- Take a queued job out of its queue (cancelled).
local function dequeue(shape, member, cust)
  if redis.call('ZREM', K .. 'q:' .. shape, member) == 1 then
    fair_left(cust)
  end
end

local function load_take(worker, shape)
  local meta = shape_meta(shape)
  local wl = K .. 'wload:' .. worker
  if meta.gpu > 0 then
    redis.call('HINCRBYFLOAT', wl, 'gpu', fmt(meta.gpu))
  end
  if meta.iso ~= 'none' and meta.cust ~= '' then
    redis.call('HINCRBY', wl, 'c:' .. meta.cust, 1)
  end
end

local function load_give_back(worker, shape)
  local meta = shape_meta(shape)
  local wl = K .. 'wload:' .. worker
  if meta.gpu > 0 then
    local left = tonumber(redis.call('HINCRBYFLOAT', wl, 'gpu', fmt(-meta.gpu)))
    if left < 1e-9 then
      redis.call('HSET', wl, 'gpu', '0')
    end
  end
  if meta.iso ~= 'none' and meta.cust ~= '' then
    if redis.call('HINCRBY', wl, 'c:' .. meta.cust, -1) <= 0 then
      redis.call('HDEL', wl, 'c:' .. meta.cust)
    end
  end
end

-- A running attempt ends (or goes back to the queue): its lease and its worker's load go.
local function stop_running(id, jk, worker, shape)
  redis.call('ZREM', K .. 'leases', id)
  redis.call('ZREM', K .. 'deadlines', id)
  redis.call('HDEL', jk, 'lease')
  if worker and redis.call('HDEL', K .. 'wrun:' .. worker, id) == 1 then
    load_give_back(worker, shape)
    if is_suspect(redis.call('HGET', jk, 'ls')) then
      redis.call('HINCRBY', K .. 'wload:' .. worker, 'sus', -1) -- a suspect ran (ReadyIndex.finish)
    end
  end
end

-- What a job's end does to the jobs waiting for it (store/lua/deps.lua defines it).
local dependents_decide
-- What a job's end does to its group (store/lua/groups.lua defines it: record_end), an ended
-- group's retention (group_closed) and an operator's retry of one of its jobs (record_retry).
local group_end, group_closed, group_retry

-- The job ends in `state`; it is kept `ttl` seconds more, then purged by a tick. Its waiting
-- dependents are decided in the same step (deps.lua).
local function finish(id, jk, svc, from, state, now, ttl)
  move(id, jk, svc, from, state)
  local expires = fmt(tonumber(now) + ttl)
  redis.call('HSET', jk, 'fin', now, 'exp', expires)
  redis.call('ZADD', K .. 'expiry', expires, id)
  dependents_decide(id, state, now)
  group_end(id, jk, state, now)
end

-- A failed job (a dead letter) is kept the store's failed_ttl, whatever its own result_ttl.
local function dead_letter_ttl(jk)
  return FAILED_TTL
end

-- Back to the front of its queue. An attempt given back unstarted (`lost` false) costs nothing
-- and is not counted as run; a lost one (its worker died, left, or let the lease expire) costs
-- the max_losses budget (`ls`, `maxl`), never max_attempts, and the worker that lost it is
-- avoided; the last one quarantines the job (announced; the reason as core/retry.after_loss
-- words it). Returns true when the job was queued again.
local function release(inst, id, jk, now, why, lost)
  local f = redis.call('HMGET', jk, 'state', 'att', 'ls', 'maxl', 'w', 'shape', 'svc', 'm', 'cust', 'sub')
  stop_running(id, jk, f[5], f[6])
  if not lost then
    redis.call('HSET', jk, 'att', math.max(0, (tonumber(f[2]) or 0) - 1))
  else
    local losses, max = (tonumber(f[3]) or 0) + 1, tonumber(f[4]) or MAX_LOSSES
    redis.call('HSET', jk, 'ls', losses)
    if f[5] then
      redis.call('HSET', jk, 'avoid', f[5])
    end
    if losses >= max then
      local reason = 'quarantined after losing its worker on ' .. losses
        .. ' attempt(s) (max_losses ' .. max .. '); last: ' .. why
      redis.call('HSET', jk, 'err', reason)
      mark(id, jk, 'quarantined', now, f[2], f[5], reason)
      finish(id, jk, f[7], f[1], 'quarantined', now, dead_letter_ttl(jk))
      announce(inst, id, jk, 'quarantined', now)
      return false
    end
  end
  mark(id, jk, lost and 'lost' or 'released', now, f[2], f[5], why)
  enqueue(id, jk, f[7], f[1], f[6], f[8], f[9], f[10])
  return true
end

-- The job's fields, for the Python side: {id, field, value, ...}, with its result ("res")
-- unless `no_result` (the caller knows it has none, or has it), and its payload ("p") if asked.
local function fields(id, jk, with_payload, no_result)
  local flat = redis.call('HGETALL', jk)
  table.insert(flat, 1, id)
  local result = not no_result and redis.call('GET', resultkey(id))
  if result then
    flat[#flat + 1] = 'res'
    flat[#flat + 1] = result
  end
  local marks = redis.call('GET', tlkey(id))
  if marks then
    flat[#flat + 1] = 'tl'
    flat[#flat + 1] = marks
  end
  if with_payload then
    local payload = redis.call('GET', K .. 'p:' .. id)
    if payload then
      flat[#flat + 1] = 'p'
      flat[#flat + 1] = payload
    end
  end
  return flat
end

-- The fencing token of the job's current attempt: `tok` (a job written before tokens were kept
-- apart has only its attempt number, `att`).
local function token_of(tok, att)
  return tonumber(tok) or tonumber(att) or 0
end

-- Whether attempt `token` still holds the running job (its fields `state`, `tok`, `att`).
local function holds(state, tok, att, token)
  return state == 'running' and token_of(tok, att) == tonumber(token)
end

-- ------------------------------------------------------------------ worker registry

-- Forget a worker's registration (its running jobs stay: their leases decide).
local function unregister(worker)
  local w = K .. 'w:' .. worker
  local f = redis.call('HMGET', w, 'prof', 'owner')
  if f[1] then
    if redis.call('HINCRBY', K .. 'pcount', f[1], -1) <= 0 then
      redis.call('HDEL', K .. 'pcount', f[1])
    end
  end
  if f[2] then
    redis.call('SREM', K .. 'iw:' .. f[2], worker)
  end
  redis.call('DEL', w)
  redis.call('ZREM', K .. 'workers', worker)
end

-- What each script leaves for its end (see the header).
local function flush()
  flush_counts()
  flush_fair()
end
