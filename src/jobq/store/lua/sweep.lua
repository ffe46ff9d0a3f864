-- sweep: a hub instance closes; the workers attached through it leave the registry (their
-- running jobs stay: they keep them if they reconnect elsewhere in time, else leases expire).
-- ARGV: inst
local inst = ARGV[1]
for _, worker in ipairs(redis.call('SMEMBERS', K .. 'iw:' .. inst)) do
  if redis.call('HGET', K .. 'w:' .. worker, 'owner') == inst then
    unregister(worker)
  end
end
redis.call('DEL', K .. 'iw:' .. inst)
redis.call('ZREM', K .. 'inst', inst)
return 1
