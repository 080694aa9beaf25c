-- Wait for the identical request in flight: its answer, or the lead if it has gone.
-- KEYS[1] the entry in the request's own scope, KEYS[2] the shared entry, KEYS[3] the
--   lead, KEYS[4] the waiters (list: "reply_to corr request_id deadline_ms", oldest first)
-- ARGV[1] request id, ARGV[2] lease ms (what is left of its deadline), ARGV[3] this
--   waiter, ARGV[4] the waiters' ttl ms
-- Returns {"hit", entry, 1|2, ms left} | {"lead"} | {"wait"}
for i = 1, 2 do
  local entry = redis.call('GET', KEYS[i])
  if entry then return {'hit', entry, i, redis.call('PTTL', KEYS[i])} end
end
if redis.call('GET', KEYS[3]) == ARGV[1] then return {'lead'} end  -- promoted meanwhile
if redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2]) then return {'lead'} end
if not redis.call('LPOS', KEYS[4], ARGV[3]) then  -- asking again: listed once
  redis.call('RPUSH', KEYS[4], ARGV[3])
end
redis.call('PEXPIRE', KEYS[4], ARGV[4])
return {'wait'}
