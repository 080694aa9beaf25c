-- The cache's lookup of one request (after this process's memory missed).
-- KEYS[1] the entry in the request's own scope, KEYS[2] the shared entry (KEYS[1] again
--   when the scope is shared), KEYS[3] the own scope's lead (string: the request id
--   that calls the provider for this key)
-- ARGV[1] request id, ARGV[2] lease ms (how long a lead holds), ARGV[3] "1": coalesce
-- Returns {"hit", entry, 1|2 (which key), ms left} | {"lead"} | {"follow", ms the lead
--   holds} | {"miss"}
for i = 1, 2 do
  local entry = redis.call('GET', KEYS[i])
  if entry then return {'hit', entry, i, redis.call('PTTL', KEYS[i])} end
end
if ARGV[3] ~= '1' then return {'miss'} end
if redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2]) then return {'lead'} end
-- The leader itself again (its request redelivered after a crash): it still leads.
if redis.call('GET', KEYS[3]) == ARGV[1] then return {'lead'} end
return {'follow', redis.call('PTTL', KEYS[3])}
