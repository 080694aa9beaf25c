-- Settle one reservation to what the request really used (a refund or an extra
-- charge, in the buckets it was charged to, while a window still holds them), or
-- release it (not counted at all). Once: the reservation is removed; a second settle
-- finds nothing to do.
-- KEYS[1] requests (zset), KEYS[2] tokens (hash), KEYS[3] cost (hash),
-- KEYS[4] reservations (hash: request id -> "at_ms tokens cost"), KEYS[5] their expiry
-- ARGV[1] request id, ARGV[2] real tokens, ARGV[3] real cost (nano-dollars),
-- ARGV[4] counted (1: the request counts; 0: release it, as if never made),
-- ARGV[5] how long a "released" marker is kept (ms): one released before it was
-- reserved (see below)
-- Returns 1 if it settled something.
--#include release_marker
local held = redis.call('HGET', KEYS[4], ARGV[1])
if not held then
  if ARGV[4] == '0' and not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
    mark_released(KEYS[4], KEYS[5], ARGV[1], 'released', tonumber(ARGV[5]))
  end
  return 0
end
if held == 'released' then return 0 end
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
local at, tokens, cost = string.match(held, '^(%d+) (-?%d+) (-?%d+)$')
at = tonumber(at)
local counted = ARGV[4] ~= '0'
local real_tokens = counted and tonumber(ARGV[2]) or 0  -- released: as if never made
local real_cost = counted and tonumber(ARGV[3]) or 0
local deltas = {{KEYS[2], real_tokens - tonumber(tokens)}, {KEYS[3], real_cost - tonumber(cost)}}
local buckets = {s = math.floor(at / 1000), m = math.floor(at / 60000)}
for _, d in ipairs(deltas) do
  local hash, delta = d[1], d[2]
  if delta ~= 0 then
    local from = redis.call('HMGET', hash, 'sf', 'mf')
    for i, p in ipairs({'s', 'm'}) do
      -- A bucket the window no longer holds has left it: nothing to correct there.
      if from[i] and buckets[p] >= tonumber(from[i]) then
        redis.call('HINCRBY', hash, p .. buckets[p], delta)
        redis.call('HINCRBY', hash, p .. 't', delta)
      end
    end
  end
end
if not counted then redis.call('ZREM', KEYS[1], ARGV[1]) end
return 1
