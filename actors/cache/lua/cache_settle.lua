-- A request with a cache ticket completed: store its answer, or hand the lead on.
-- KEYS[1] the entry, KEYS[2] its lead, KEYS[3] its waiters
-- ARGV[1] request id, ARGV[2] mode: "store" (ARGV[3] the entry, ARGV[4] its ttl ms),
--   "release" (answered, but not to be stored: every waiter goes its own way) or
--   "failed" (the oldest waiter still within its deadline leads now, until it)
-- Returns {"stored" | "released", waiters...} | {"promoted", waiter} | {"none"}
local leading = redis.call('GET', KEYS[2]) == ARGV[1]
local mode = ARGV[2]
if mode == 'store' then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
end
if mode == 'store' or (mode == 'release' and leading) then
  if leading then redis.call('DEL', KEYS[2]) end
  local waiters = redis.call('LRANGE', KEYS[3], 0, -1)
  redis.call('DEL', KEYS[3])
  local out = {mode == 'store' and 'stored' or 'released'}
  for _, w in ipairs(waiters) do out[#out + 1] = w end
  return out
end
if mode == 'failed' and leading then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  while true do
    local waiter = redis.call('LPOP', KEYS[3])
    if not waiter then break end
    local rid, deadline = string.match(waiter, '(%S+) (%d+)$')
    if rid and tonumber(deadline) > now then  -- one that gave up is skipped
      redis.call('SET', KEYS[2], rid, 'PX', tonumber(deadline) - now)
      return {'promoted', waiter}
    end
  end
  redis.call('DEL', KEYS[2])
end
return {'none'}
