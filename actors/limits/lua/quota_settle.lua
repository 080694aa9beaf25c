-- Settle one reservation to the request's real usage (refund or extra charge in the
-- periods it was charged to), or release it; once: a settled reservation stays as a
-- marker until it expires, so a redelivered request is neither charged nor settled
-- twice. A released one (a request refused elsewhere) is forgotten at once; one
-- released before it was reserved leaves a "released" marker instead (see below).
-- KEYS[1] reservations (hash), KEYS[2] their expiry times (zset)
-- ARGV[1] request id, ARGV[2] real tokens, ARGV[3] real cost (nano),
-- ARGV[4] counted (1: the request counts; 0: release it entirely),
-- ARGV[5] how long to keep the settled marker (ms)
-- Returns 1 if it settled something.
--#include release_marker
local held = redis.call('HGET', KEYS[1], ARGV[1])
if not held then
  if ARGV[4] == '0' then  -- the quota's own format: a state that is not "open"
    mark_released(KEYS[1], KEYS[2], ARGV[1], '- - - 0 0 released', tonumber(ARGV[5]))
  end
  return 0
end
local m, d, s, tokens, cost, state = string.match(held, '^(%S+) (%S+) (%S+) (%S+) (%S+) (%a+)$')
if state ~= 'open' then return 0 end
local counted = ARGV[4] ~= '0'
local real_tokens = counted and tonumber(ARGV[2]) or 0  -- released: as if never made
local real_cost = counted and tonumber(ARGV[3]) or 0
local dt, dc = real_tokens - tonumber(tokens), real_cost - tonumber(cost)
for _, key in ipairs({m, d, s}) do
  if key ~= '-' and redis.call('EXISTS', key) == 1 then
    if dt ~= 0 then redis.call('HINCRBY', key, 'tokens', dt) end
    if dc ~= 0 then redis.call('HINCRBY', key, 'cost', dc) end
    if not counted then redis.call('HINCRBY', key, 'requests', -1) end
  end
end
if not counted then
  -- Never made: forgotten, so that a retry with the same id is a new request.
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 1
end
redis.call('HSET', KEYS[1], ARGV[1], m .. ' ' .. d .. ' ' .. s .. ' ' .. ARGV[2] .. ' ' ..
  ARGV[3] .. ' settled')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[5]), ARGV[1])
return 1
