-- May this process call the provider? Only asked when its cached view of the breaker
-- is not "closed": an open breaker whose time is up turns half-open here, and
-- half-open hands out its trial permits one by one.
-- KEYS[1] the breaker's state hash
-- ARGV[1] half_open_calls, ARGV[2] half_open_max_wait_ms (0: none), ARGV[3] open_ms
-- Returns {decision, state, open_until_ms, transition, reason}:
--   decision "allow" | "trial" | "reject"; transition "" | "half_open" | "opened"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local flat = redis.call('HGETALL', KEYS[1])
local s = {}
for i = 1, #flat, 2 do s[flat[i]] = flat[i + 1] end
local state = s.state or 'closed'
local reason = s.reason or ''
if s.key_invalid == '1' then return {'reject', 'open', '0', '', reason} end
if state == 'closed' then return {'allow', 'closed', '0', '', ''} end
local transition = ''
if state == 'open' then
  local open_until = tonumber(s.open_until or '0')
  if s.forced == '1' or now < open_until then
    return {'reject', 'open', tostring(open_until), '', reason}
  end
  redis.call('HSET', KEYS[1], 'state', 'half_open', 'trials_left', ARGV[1], 'trials_ok', 0,
    'half_open_at', now, 'reason', 'trying again')
  redis.call('HINCRBY', KEYS[1], 'version', 1)
  s.trials_left = ARGV[1]
  s.half_open_at = tostring(now)
  transition = 'half_open'
end
if tonumber(s.trials_left or '0') > 0 then
  redis.call('HINCRBY', KEYS[1], 'trials_left', -1)
  return {'trial', 'half_open', '0', transition, ''}
end
local wait = tonumber(ARGV[2])
if wait > 0 and now - tonumber(s.half_open_at or now) > wait then
  -- A trial that never reported counts as a failure.
  local open_until = now + tonumber(ARGV[3])
  reason = 'half-open trials did not report within ' .. ARGV[2] .. ' ms'
  redis.call('HSET', KEYS[1], 'state', 'open', 'open_until', open_until, 'opened_at', now,
    'reason', reason)
  redis.call('HINCRBY', KEYS[1], 'version', 1)
  return {'reject', 'open', tostring(open_until), 'opened', reason}
end
return {'reject', 'half_open', '0', transition, 'half-open: its trial calls are in flight'}
