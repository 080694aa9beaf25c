-- A request released before its reservation was even made (its router gave up on a
-- late limiter or quota keeper: Redis stalled) leaves a marker in place of the
-- reservation, so that its late ask, when it runs, is a duplicate and charges nothing.
-- The marker goes when it expires (``ttl_ms``), as a reservation would.
local function mark_released(reservations, expiring, rid, marker, ttl_ms)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('HSET', reservations, rid, marker)
  redis.call('ZADD', expiring, now + ttl_ms, rid)
  for _, key in ipairs({reservations, expiring}) do
    if redis.call('PTTL', key) < ttl_ms then redis.call('PEXPIRE', key, ttl_ms) end
  end
end
