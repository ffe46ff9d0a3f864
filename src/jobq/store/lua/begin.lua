-- The start of every call: the namespace and the state kept for one call, set anew (the
-- declarations are in prelude.lua and deps.lua). Run before each script's body, as a script
-- (EVALSHA) or as a function of the library (FCALL), whose top level runs only when loaded.
local function begin(keys)
  K = keys[1]
  count_deltas = {}
  hubs_alive = nil
  shape_cache = {}
  FAIR = K .. 'fair'
  fair_values, fair_changed = {}, {}
  cascade = false
end
