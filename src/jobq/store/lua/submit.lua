-- submit: create jobs, or return the job an idempotency key already names.
-- ARGV: inst, now, n, then one framed argument (see unframe) of 15 values per job:
--   key, shape, prio (8 hex chars), service, customer, state (queued|scheduled), run_at,
--   static blob, payload blob, retention ttl, max attempts, timeout, max losses,
--   after (prerequisite ids and '#k' for the k-th job of this batch, comma-separated, or ''),
--   after policy ('completed' | 'always')
-- Returns {id, created (1|0), ...} in order, or {'missing', id} (nothing created) when a
-- prerequisite does not exist (deps.lua).
local inst, now, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
local out = {}
local ready = false
local values = unframe(ARGV[4])
local unknown = after_unknown(values, n, 15, 14)
if unknown then
  return { 'missing', unknown }
end
local made = {} -- the ids of this batch's jobs so far, for '#k' refs
local i = 1
for _ = 1, n do
  local ikey, shape, prio, svc, cust, state, run_at, static, payload, ttl, max, timeout, maxl, after, ap =
    unpack(values, i, i + 14)
  i = i + 15
  local existing = false
  if ikey ~= '' then
    existing = redis.call('GET', K .. 'idem:' .. ikey)
    if existing and redis.call('EXISTS', jobkey(existing)) == 0 then
      existing = false
    end
  end
  made[#made + 1] = existing
  if existing then
    out[#out + 1] = tonumber(existing)
    out[#out + 1] = 0
  else
    local id = redis.call('INCR', K .. 'seq')
    made[#made] = id
    local jk = jobkey(id)
    -- Queue order: priority (descending, as hex of 2^31-1-priority), then seq (= id).
    local member = prio .. string.format('%012x', id) .. id
    redis.call('HSET', jk, 'd', static, 'att', '0', 'shape', shape, 'm', member, 'svc', svc,
      'cust', cust, 'sub', now, 'ttl', ttl, 'max', max, 'maxl', maxl)
    if payload ~= '' then
      redis.call('SET', K .. 'p:' .. id, payload)
    end
    if timeout ~= '' then
      redis.call('HSET', jk, 'to', timeout)
    end
    if ikey ~= '' then
      redis.call('HSET', jk, 'ik', ikey)
      redis.call('SET', K .. 'idem:' .. ikey, id)
    end
    if after ~= '' and not after_place(id, jk, svc, after, ap, made, run_at, now) then
      -- waiting for its prerequisites, or cancelled: one of them did not complete (deps.lua)
    elseif state == 'scheduled' then
      redis.call('HSET', jk, 'run', run_at)
      -- (a job queued at once gets its timeline from its first change: marks_of)
      redis.call('SET', tlkey(id), cmsgpack.pack({ { t = tonumber(now), k = 'submitted', v = tonumber(run_at) } }))
      redis.call('ZADD', K .. 'scheduled', run_at, id)
      move(id, jk, svc, nil, 'scheduled')
    else
      enqueue(id, jk, svc, nil, shape, member, cust, now)
      ready = true
    end
    out[#out + 1] = id
    out[#out + 1] = 1
  end
end
if ready then
  notify(inst, 'r')
end
return out
