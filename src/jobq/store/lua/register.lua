-- register: new shapes and worker profiles, with which profile satisfies which shape.
-- The caller computed the pairs (core/matching.py) against the registry at generation
-- `seen`; if another hub registered something since, nothing is written and 0 is returned
-- (the caller reads the registry again and retries), so no pair is ever missed.
-- ARGV: seen generation, n shapes, (shape, blob, meta)..., n profiles, (profile, blob)...,
--       n pairs, (shape, profile)...
local seen = ARGV[1]
if (redis.call('GET', K .. 'gen') or '0') ~= seen then
  return 0
end
local i = 2
local nshapes = tonumber(ARGV[i])
i = i + 1
for _ = 1, nshapes do
  redis.call('HSET', K .. 'shapes', ARGV[i], ARGV[i + 1])
  redis.call('HSET', K .. 'smeta', ARGV[i], ARGV[i + 2])
  i = i + 3
end
local nprofiles = tonumber(ARGV[i])
i = i + 1
for _ = 1, nprofiles do
  redis.call('HSET', K .. 'profiles', ARGV[i], ARGV[i + 1])
  i = i + 2
end
local npairs = tonumber(ARGV[i])
i = i + 1
for _ = 1, npairs do
  redis.call('SADD', K .. 'elig:' .. ARGV[i + 1], ARGV[i])
  redis.call('SADD', K .. 'sprof:' .. ARGV[i], ARGV[i + 1])
  i = i + 2
end
redis.call('INCR', K .. 'gen')
return 1
