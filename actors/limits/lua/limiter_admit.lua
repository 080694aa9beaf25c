-- The limiter's admission for one user, all-or-nothing, on Redis time.
-- Requests: an exact sliding window (a sorted set of admitted request ids by time).
-- Tokens and cost: per-second buckets for the minute window, per-minute buckets for
-- the hour window, each window with a running total of the buckets it holds; a
-- window holds its newest 61 buckets, so a charge counts for 60 to 61 seconds in the
-- minute window and 60 to 61 minutes in the hour window (never less than the window:
-- the limit holds in every window of its length).
-- KEYS[1] config (hash of per-user overrides; "null" = unlimited)
-- KEYS[2] requests (zset: request id -> admitted at, ms)
-- KEYS[3] tokens (hash: s<second> and m<minute> buckets; for each window p in {s, m}:
--   <p>t its running total, <p>f the oldest bucket it holds, <p>l the newest charged)
-- KEYS[4] cost (hash: likewise, in nano-dollars)
-- KEYS[5] reservations (hash: request id -> "at_ms tokens cost")
-- KEYS[6] when they are forgotten (zset: request id -> ms)
-- KEYS[7] alert state (hash: rejections and alerted windows, for deduplication)
-- ARGV[1] request id, ARGV[2] tokens, ARGV[3] cost (nano-dollars),
-- ARGV[4] mode: "reserve" (charge, to settle later) | "record" (charge, final) | "check"
-- ARGV[5] reservation ttl ms
-- ARGV[6..13] defaults: requests_per_minute, requests_per_hour, tokens_per_minute,
--   tokens_per_hour, cost_per_minute, cost_per_hour (nano), burst_limit,
--   burst_window_ms ("" = unlimited)
-- Returns JSON: {"verdict": "ok" | "dup" | "reject", "limits": [[name, limit, current,
--   window_ms, reset_ms], ...] for every limit set (reset_ms: until all it counts has
--   left the window), and on "reject": "limit_type", "limit", "current", "window_ms",
--   "retry_after_ms" (-1: never, the request alone is over), "first" (1: the first
--   rejection on this limit in this window), "rejections" (so far)}
--#include admit_common
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rid, tokens, cost, mode = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local HOUR = 3600000
local SPAN = 60  -- a window holds buckets newest - SPAN .. newest

local conf = limits_from(KEYS[1], {'requests_per_minute', 'requests_per_hour',
  'tokens_per_minute', 'tokens_per_hour', 'cost_per_minute', 'cost_per_hour',
  'burst_limit', 'burst_window_ms'}, 5)

redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - HOUR)
-- Reservations never settled are forgotten (a few at a time); what they charged stays
-- until it slides out of the windows, as a request's real usage would.
local stale = redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', now, 'LIMIT', 0, 32)
if #stale > 0 then
  redis.call('HDEL', KEYS[5], unpack(stale))
  redis.call('ZREM', KEYS[6], unpack(stale))
end
-- Admitted in the last hour already (a redelivered request): charged once.
-- Or released before it got here (its router gave up on it): it counts nowhere.
if mode ~= 'check' and (redis.call('ZSCORE', KEYS[2], rid)
    or redis.call('HGET', KEYS[5], rid) == 'released') then
  return cjson.encode({verdict = 'dup'})
end

-- Requests. One admitted at t is in the window (now - window, now]: it leaves at t + window.
local function admitted_since(window_ms)
  return redis.call('ZCOUNT', KEYS[2], '(' .. (now - window_ms), '+inf')
end
local newest_request = false
local function request_reset(window_ms, charged)
  -- until the newest admitted request has left the window
  if charged then return window_ms end
  if newest_request == false then
    local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
    newest_request = last[2] and tonumber(last[2]) or nil
  end
  if newest_request == nil then return 0 end
  return math.max(0, newest_request + window_ms - now)
end
local function request_wait(window_ms, count, limit)
  -- until enough of the admitted requests in the window have slid out of it
  local nth = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. (now - window_ms), '+inf',
    'WITHSCORES', 'LIMIT', count - limit, 1)
  if nth[2] == nil then return 0 end
  return tonumber(nth[2]) + window_ms - now
end

-- Tokens and cost: a window's total, after dropping the buckets that left it.
local function window(hash, p, newest)
  local head = redis.call('HMGET', hash, p .. 't', p .. 'f', p .. 'l')
  local w = {hash = hash, p = p, newest = newest, total = tonumber(head[1] or '0'),
    from = tonumber(head[2] or newest - SPAN), last = tonumber(head[3] or '-1'), moved = false}
  local first = newest - SPAN
  if w.from < first then
    local upto = math.min(first - 1, w.last)
    if upto >= w.from then
      local gone = {}
      for b = w.from, upto do gone[#gone + 1] = p .. b end
      if w.last < first then
        w.total = 0  -- everything it held has left
      else
        for _, v in ipairs(redis.call('HMGET', hash, unpack(gone))) do
          w.total = w.total - tonumber(v or '0')
        end
      end
      redis.call('HDEL', hash, unpack(gone))
    end
    w.from, w.moved = first, true
  end
  return w
end
local function amount_reset(w, bucket_ms, charged)
  -- until the newest bucket charged has left the window
  local total, last = w.total, w.last
  if charged then total, last = total + w.amount, w.newest end
  if total <= 0 or last < w.from then return 0 end
  return math.max(0, (last + SPAN + 1) * bucket_ms - now)
end
local function amount_wait(w, amount, limit, bucket_ms)
  -- until the oldest buckets have slid out far enough for the amount to fit
  if amount > limit then return -1 end
  local held = {}
  for b = w.from, w.newest do held[#held + 1] = w.p .. b end
  local over = w.total + amount - limit
  for i, v in ipairs(redis.call('HMGET', w.hash, unpack(held))) do
    over = over - tonumber(v or '0')
    if over <= 0 then return (w.from + i - 1 + SPAN + 1) * bucket_ms - now end
  end
  return -1
end

local checks = {}
local function add(name, limit, current, amount, window_ms, wait_fn, reset_fn)
  if limit == nil then return end
  checks[#checks + 1] = {name, limit, current, amount, window_ms, wait_fn, reset_fn}
end
if conf.burst_limit ~= nil and conf.burst_window_ms ~= nil then
  local n = admitted_since(conf.burst_window_ms)
  add('burst', conf.burst_limit, n, 1, conf.burst_window_ms,
    function() return request_wait(conf.burst_window_ms, n, conf.burst_limit) end,
    function(charged) return request_reset(conf.burst_window_ms, charged) end)
end
for _, r in ipairs({{'requests_per_minute', 60000}, {'requests_per_hour', HOUR}}) do
  local name, window_ms = r[1], r[2]
  local limit = conf[name]
  if limit ~= nil then
    local n = admitted_since(window_ms)
    add(name, limit, n, 1, window_ms,
      function() return request_wait(window_ms, n, limit) end,
      function(charged) return request_reset(window_ms, charged) end)
  end
end
local sec, minute = math.floor(now / 1000), math.floor(now / 60000)
local windows = {}
for _, dim in ipairs({{'tokens', KEYS[3], tokens}, {'cost', KEYS[4], cost}}) do
  local label, hash, amount = dim[1], dim[2], dim[3]
  for _, span in ipairs({{'_per_minute', 's', sec, 1000, 60000},
                         {'_per_hour', 'm', minute, 60000, HOUR}}) do
    local suffix, p, newest, bucket_ms, window_ms = unpack(span)
    local w = window(hash, p, newest)
    w.amount = amount
    windows[#windows + 1] = w
    local limit = conf[label .. suffix]
    add(label .. suffix, limit, w.total, amount, window_ms,
      function() return amount_wait(w, amount, limit, bucket_ms) end,
      function(charged) return amount_reset(w, bucket_ms, charged) end)
  end
end

local function listing(charged)
  -- Every limit: name, limit, current, window ms, ms until what it counts has left.
  local limits = {}
  for _, c in ipairs(checks) do
    local name, limit, current, amount, window_ms, _, reset_fn = unpack(c)
    if charged then current = current + amount end
    limits[#limits + 1] = {name, limit, current, window_ms, reset_fn(charged)}
  end
  return limits
end

-- Every limit is checked before anything is changed.
for _, c in ipairs(checks) do
  local name, limit, current, amount, window_ms, wait_fn = unpack(c)
  if current + amount > limit then
    local answer = refuse({verdict = 'reject', limit_type = name, limit = limit,
      current = current, window_ms = window_ms, retry_after_ms = wait_fn(),
      limits = listing(false)}, mode, KEYS[7],
      name .. ':' .. math.floor(now / window_ms), name .. ':rejections')
    if mode ~= 'check' then redis.call('PEXPIRE', KEYS[7], 86400000) end
    for _, w in ipairs(windows) do  -- keep the buckets dropped on the way
      if w.moved then redis.call('HSET', w.hash, w.p .. 't', w.total, w.p .. 'f', w.from) end
    end
    return cjson.encode(answer)
  end
end

if mode == 'check' then
  for _, w in ipairs(windows) do
    if w.moved then redis.call('HSET', w.hash, w.p .. 't', w.total, w.p .. 'f', w.from) end
  end
  return cjson.encode({verdict = 'ok', limits = listing(false)})
end

redis.call('ZADD', KEYS[2], now, rid)
redis.call('PEXPIRE', KEYS[2], HOUR + 60000)
for _, w in ipairs(windows) do
  -- Even a zero charge marks its bucket as the newest, for a settle to add to.
  redis.call('HINCRBY', w.hash, w.p .. w.newest, w.amount)
  redis.call('HSET', w.hash, w.p .. 't', w.total + w.amount, w.p .. 'f', w.from,
    w.p .. 'l', w.newest)
  redis.call('PEXPIRE', w.hash, HOUR + 120000)
end
if mode == 'reserve' then
  local ttl = tonumber(ARGV[5])
  -- the amounts as given: Lua would write a big number as 1e+15
  redis.call('HSET', KEYS[5], rid, string.format('%d', now) .. ' ' .. ARGV[2] .. ' ' .. ARGV[3])
  redis.call('ZADD', KEYS[6], now + ttl, rid)
  redis.call('PEXPIRE', KEYS[5], ttl)
  redis.call('PEXPIRE', KEYS[6], ttl)
end
return cjson.encode({verdict = 'ok', limits = listing(true)})
