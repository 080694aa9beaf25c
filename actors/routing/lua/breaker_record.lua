-- Record the outcome of one call and move the breaker if it must, atomically.
-- KEYS[1] the breaker's state hash, KEYS[2] its window (a list of outcomes for a
-- count window; a hash of per-second counters for a time window)
-- ARGV[1] outcome: "ok" | "fail" | "neutral" (neutral: the caller's fault, not counted)
-- ARGV[2] slow (0/1), ARGV[3] trial (0/1: the call held a half-open permit)
-- ARGV[4] kind: "" | "rate_limited" | "authentication"
-- ARGV[5] retry_after_ms (-1: none given)
-- ARGV[6] window_type "count" | "time", ARGV[7] window_size, ARGV[8] minimum_calls,
-- ARGV[9] failure_rate_threshold %, ARGV[10] slow_call_rate_threshold %,
-- ARGV[11] open_ms, ARGV[12] half_open_calls
-- Returns {transition, state, open_until_ms, failure_rate %, slow_rate %, calls, reason}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local flat = redis.call('HGETALL', KEYS[1])
local s = {}
for i = 1, #flat, 2 do s[flat[i]] = flat[i + 1] end
local state = s.state or 'closed'
local open_until = tonumber(s.open_until or '0')
local outcome, slow, trial, kind = ARGV[1], ARGV[2] == '1', ARGV[3] == '1', ARGV[4]
local open_ms = tonumber(ARGV[11])

local function open(until_ms, reason)
  redis.call('HSET', KEYS[1], 'state', 'open', 'open_until', until_ms, 'opened_at', now,
    'reason', reason, 'trials_left', 0)
  redis.call('HINCRBY', KEYS[1], 'version', 1)
  redis.call('DEL', KEYS[2])
  return {'opened', 'open', tostring(until_ms), '', '', '0', reason}
end

if kind == 'authentication' then
  if s.key_invalid == '1' then return {'', 'open', '0', '', '', '0', s.reason or ''} end
  local reason = 'the provider rejected the API key (401/403); reset the breaker once fixed'
  redis.call('HSET', KEYS[1], 'key_invalid', 1)
  return open(0, reason)
end

if kind == 'rate_limited' then
  local hold = tonumber(ARGV[5])
  if hold < 0 then hold = open_ms end
  local until_ms = now + hold
  if state == 'open' then
    -- A new failure may push the deadline out, never pull it in.
    if until_ms > open_until then redis.call('HSET', KEYS[1], 'open_until', until_ms) end
    return {'', 'open', tostring(math.max(until_ms, open_until)), '', '', '0', s.reason or ''}
  end
  return open(until_ms, 'rate limited (429): held open ' .. hold .. ' ms')
end

if state == 'open' then
  if outcome == 'fail' and s.forced ~= '1' and s.key_invalid ~= '1' and open_until > 0 then
    local until_ms = now + open_ms
    if until_ms > open_until then redis.call('HSET', KEYS[1], 'open_until', until_ms) end
  end
  return {'', 'open', tostring(open_until), '', '', '0', s.reason or ''}
end

if state == 'half_open' then
  if not trial then return {'', 'half_open', '0', '', '', '0', s.reason or ''} end
  if outcome == 'fail' then return open(now + open_ms, 'a half-open trial call failed') end
  local passed = redis.call('HINCRBY', KEYS[1], 'trials_ok', 1)
  if passed >= tonumber(ARGV[12]) then
    redis.call('HSET', KEYS[1], 'state', 'closed', 'open_until', 0, 'reason', 'trials succeeded',
      'trials_left', 0)
    redis.call('HINCRBY', KEYS[1], 'version', 1)
    redis.call('DEL', KEYS[2])
    return {'closed', 'closed', '0', '', '', '0', 'trials succeeded'}
  end
  return {'', 'half_open', '0', '', '', '0', s.reason or ''}
end

-- Closed: add the outcome to the window, then judge the window.
if outcome == 'neutral' then return {'', 'closed', '0', '', '', '0', ''} end
local size = tonumber(ARGV[7])
local calls, failures, slows = 0, 0, 0
if ARGV[6] == 'count' then
  local code = (outcome == 'fail' and 'f' or 'o') .. (slow and 's' or '')
  redis.call('RPUSH', KEYS[2], code)
  redis.call('LTRIM', KEYS[2], -size, -1)
  for _, c in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
    calls = calls + 1
    if string.sub(c, 1, 1) == 'f' then failures = failures + 1 end
    if string.sub(c, 2, 2) == 's' then slows = slows + 1 end
  end
else
  local second = math.floor(now / 1000)
  redis.call('HINCRBY', KEYS[2], second .. ':c', 1)
  if outcome == 'fail' then redis.call('HINCRBY', KEYS[2], second .. ':f', 1) end
  if slow then redis.call('HINCRBY', KEYS[2], second .. ':s', 1) end
  redis.call('PEXPIRE', KEYS[2], (size + 1) * 1000)
  local buckets = redis.call('HGETALL', KEYS[2])
  for i = 1, #buckets, 2 do
    local at, what = string.match(buckets[i], '^(%d+):(%a)$')
    if tonumber(at) <= second - size then
      redis.call('HDEL', KEYS[2], buckets[i])
    elseif what == 'c' then calls = calls + tonumber(buckets[i + 1])
    elseif what == 'f' then failures = failures + tonumber(buckets[i + 1])
    else slows = slows + tonumber(buckets[i + 1]) end
  end
end
if calls < tonumber(ARGV[8]) then return {'', 'closed', '0', '', '', tostring(calls), ''} end
local failure_rate = failures * 100 / calls
local slow_rate = slows * 100 / calls
if failure_rate >= tonumber(ARGV[9]) or slow_rate >= tonumber(ARGV[10]) then
  local reason = string.format('failure rate %.0f%%, slow calls %.0f%%, over %d calls',
    failure_rate, slow_rate, calls)
  local opened = open(now + open_ms, reason)
  opened[4], opened[5], opened[6] = tostring(failure_rate), tostring(slow_rate), tostring(calls)
  return opened
end
return {'', 'closed', '0', tostring(failure_rate), tostring(slow_rate), tostring(calls), ''}
