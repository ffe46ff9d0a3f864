-- claim: hand up to `limit` queued jobs to a worker, best first, each as a new attempt with a
-- new fencing token (`tok`: one more than the job's last; the script is atomic and a claim
-- durable as Redis is, so no epoch is needed as in the embedded stores, core/lease.py).
-- ARGV: inst, worker, limit, now, lease deadline, reserve_after (seconds), with payload (1|0)
-- Returns a list of job field lists (see fields()), and 'empty' after them when the claim took
-- fewer than `limit` because every queue the worker's profile looks at is empty: a worker of the
-- same profile would find nothing either (the dispatcher skips it, hub/dispatch.py).
--
-- The worker looks only at the heads of the shape queues its profile satisfies (elig:<profile>):
-- highest priority first, then the customer with the lowest fair-share pass, then the oldest.
-- A head that needs more than the worker has free now (GPU memory, customers) is skipped, until
-- it has waited reserve_after seconds: then it reserves the worker, which takes nothing behind it.
-- A worker runs at most one suspect (is_suspect: a job that lost its worker SUSPECT_LOSSES
-- times, `ls`) at a time (wload's `sus` counts those it runs), as ReadyIndex does.
local worker, limit, now = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local deadline, reserve_after = ARGV[5], tonumber(ARGV[6])
local with_payload = ARGV[7] == '1'
local w = K .. 'w:' .. worker
local info = redis.call('HMGET', w, 'prof', 'slots', 'pgpu', 'pmaxc', 'pr')
if not info[1] then
  return {}
end
local wrun = K .. 'wrun:' .. worker
limit = math.min(limit, tonumber(info[2]) - redis.call('HLEN', wrun))
if limit <= 0 then
  return {}
end
local shapes = redis.call('SMEMBERS', K .. 'elig:' .. info[1])
if #shapes == 0 then
  return { 'empty' }
end
local now_n = tonumber(now)
local gpu_cap = tonumber(info[3]) or 0
local max_customers = tonumber(info[4])

-- What the worker runs now, as far as matching cares.
local wl = K .. 'wload:' .. worker
local gpu_used = tonumber(redis.call('HGET', wl, 'gpu')) or 0
local customers, ncustomers, suspects = {}, 0, 0
local loaded = redis.call('HGETALL', wl)
for i = 1, #loaded, 2 do
  local name = loaded[i]
  if string.sub(name, 1, 2) == 'c:' and tonumber(loaded[i + 1]) > 0 then
    customers[string.sub(name, 3)] = true
    ncustomers = ncustomers + 1
  elseif name == 'sus' then
    suspects = tonumber(loaded[i + 1]) or 0
  end
end

local function load_miss(meta)
  if meta.gpu > 0 and gpu_used + meta.gpu > gpu_cap + 1e-9 then
    return true
  end
  return max_customers ~= nil and meta.iso ~= 'none' and meta.cust ~= ''
    and not customers[meta.cust] and ncustomers >= max_customers
end

-- The best member of a shape queue this worker may take: the head, unless this worker failed
-- it last while another eligible worker is attached, or it is a suspect while this worker runs
-- one already (then the first member that is neither).
local function head(shape)
  local q = K .. 'q:' .. shape
  local many = nil
  local function passed_over(member)
    local f = redis.call('HMGET', jobkey(string.sub(member, 21)), 'avoid', 'ls')
    if suspects > 0 and is_suspect(f[2]) then
      return true
    end
    if f[1] ~= worker then
      return false
    end
    if many == nil then
      many = shape_workers(shape) > 1
    end
    return many
  end
  local first = redis.call('ZRANGE', q, 0, 0)[1]
  if not first or not passed_over(first) then
    return first or false
  end
  local start = 1
  while true do
    local batch = redis.call('ZRANGE', q, start, start + 63)
    if #batch == 0 then
      return false
    end
    for _, member in ipairs(batch) do
      if not passed_over(member) then
        return member
      end
    end
    start = start + 64
  end
end

-- a before b: (priority part, customer pass, seq part), smallest first.
local function before(a, b)
  if a[1] ~= b[1] then
    return a[1] < b[1]
  end
  if a[2] ~= b[2] then
    return a[2] < b[2]
  end
  return a[3] < b[3]
end

local heads = {}
for _, shape in ipairs(shapes) do
  heads[shape] = head(shape)
end

local out = {}
while #out < limit do
  local best, best_key, blocked_key = nil, nil, nil
  for _, shape in ipairs(shapes) do
    local member = heads[shape]
    if member then
      local meta = shape_meta(shape)
      local key = { string.sub(member, 1, 8), fair_pass(meta.cust), string.sub(member, 9, 20) }
      if load_miss(meta) then
        local since = tonumber(redis.call('HGET', jobkey(string.sub(member, 21)), 'since')) or now_n
        if now_n - since >= reserve_after and (blocked_key == nil or before(key, blocked_key)) then
          blocked_key = key
        end
      elseif best_key == nil or before(key, best_key) then
        best, best_key = shape, key
      end
    end
  end
  if best == nil or (blocked_key ~= nil and before(blocked_key, best_key)) then
    break
  end
  local member = heads[best]
  local id = string.sub(member, 21)
  local jk = jobkey(id)
  local meta = shape_meta(best)
  redis.call('ZREM', K .. 'q:' .. best, member)
  fair_left(meta.cust)
  fair_take(meta.cust)
  local f = redis.call('HMGET', jk, 'svc', 'att', 'to', 'pg', 'pm', 'tok', 'ls')
  move(id, jk, f[1], 'queued', 'running')
  redis.call('HSET', jk, 'att', tonumber(f[2]) + 1, 'tok', token_of(f[6], f[2]) + 1, 'w', worker, 'st', now,
    'lease', deadline, 'hp', info[5] or '')
  mark(id, jk, 'started', now, tonumber(f[2]) + 1, worker)
  if f[4] or f[5] then
    redis.call('HDEL', jk, 'pg', 'pm')
  end
  redis.call('ZADD', K .. 'leases', deadline, id)
  if f[3] then
    redis.call('ZADD', K .. 'deadlines', fmt(now_n + tonumber(f[3])), id)
  end
  redis.call('HSET', wrun, id, best)
  load_take(worker, best)
  gpu_used = gpu_used + meta.gpu
  if meta.iso ~= 'none' and meta.cust ~= '' and not customers[meta.cust] then
    customers[meta.cust] = true
    ncustomers = ncustomers + 1
  end
  out[#out + 1] = fields(id, jk, with_payload, true)
  if is_suspect(f[7]) then
    -- A suspect: no other while it runs (the heads of every shape are looked at again).
    redis.call('HINCRBY', wl, 'sus', 1)
    suspects = suspects + 1
    for _, shape in ipairs(shapes) do
      heads[shape] = head(shape)
    end
  else
    heads[best] = head(best)
  end
end
if #out < limit then
  local empty = true
  for _, shape in ipairs(shapes) do
    if redis.call('ZCARD', K .. 'q:' .. shape) > 0 then
      empty = false
      break
    end
  end
  if empty then
    out[#out + 1] = 'empty'
  end
end
return out
