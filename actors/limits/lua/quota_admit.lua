-- The quota keeper's admission for one user, all-or-nothing, on Redis time.
-- Quotas on requests, tokens and cost per calendar month, per calendar day and per
-- session (the caller names the period keys: it knows the time zone). A request
-- reserves 1 request, its estimated tokens and its worst-case cost in every period
-- at once; request.completed settles the reservation to the real usage; one never
-- settled is released (its tokens and cost refunded) when it expires.
-- KEYS[1] config (hash of per-user overrides; "null" = unlimited)
-- KEYS[2] this month's usage, KEYS[3] today's, KEYS[4] this session's (hashes:
--   requests, tokens, cost (nano-dollars), warned:<quota>, alerted:<quota>, rejections)
-- KEYS[5] reservations (hash: request id -> "month day session tokens cost open|settled")
-- KEYS[6] their expiry times (zset), KEYS[7] the user's sessions (set, for resets)
-- ARGV[1] request id, ARGV[2] tokens, ARGV[3] cost (nano), ARGV[4] mode "reserve" |
--   "record" (charged for good: its reservation is kept as settled, for redeliveries) |
--   "check"
-- ARGV[5] session id ("" = none), ARGV[6] reservation ttl ms, ARGV[7] month key ttl ms,
-- ARGV[8] day key ttl ms, ARGV[9] session ttl ms, ARGV[10] warning share (0..1)
-- ARGV[11..19] defaults: monthly, daily, per-session request, token and cost limits
--   ("" = unlimited)
-- Returns JSON {"verdict": "ok" | "dup" | "reject", "quotas": [[name, limit, used]...],
--   "warnings": [[name, limit, used]...], on "reject": "quota_type", "limit",
--   "current", "period", "first" (1: first rejection on it this period), "rejections"}
--#include admit_common
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rid, tokens, cost, mode = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local session = ARGV[5]

-- Release reservations whose request never completed (a few at a time).
for _, old in ipairs(redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', now, 'LIMIT', 0, 32)) do
  local held = redis.call('HGET', KEYS[5], old)
  if held then
    local m, d, s, tok, cst, state = string.match(held, '^(%S+) (%S+) (%S+) (%S+) (%S+) (%a+)$')
    if state == 'open' then
      for _, key in ipairs({m, d, s}) do
        if key ~= '-' and redis.call('EXISTS', key) == 1 then
          redis.call('HINCRBY', key, 'tokens', 0 - tonumber(tok))  -- never "-0"
          redis.call('HINCRBY', key, 'cost', 0 - tonumber(cst))
        end
      end
    end
    redis.call('HDEL', KEYS[5], old)
  end
  redis.call('ZREM', KEYS[6], old)
end

if mode ~= 'check' and redis.call('HEXISTS', KEYS[5], rid) == 1 then
  return cjson.encode({verdict = 'dup'})  -- a redelivered request: charged once
end

local periods = {{'monthly', KEYS[2]}, {'daily', KEYS[3]}}
if session ~= '' then periods[3] = {'per_session', KEYS[4]} end
local dims = {{'request', 'requests', 1}, {'token', 'tokens', tokens}, {'cost', 'cost', cost}}
local names = {}
for _, p in ipairs({'monthly', 'daily', 'per_session'}) do
  for _, d in ipairs(dims) do names[#names + 1] = p .. '_' .. d[1] .. '_limit' end
end
local limit_of = limits_from(KEYS[1], names, 10)
local short = {monthly = 'monthly', daily = 'daily', per_session = 'session'}
local plural = {request = 'requests', token = 'tokens', cost = 'cost'}

local checks = {}
for _, p in ipairs(periods) do
  local period, key = p[1], p[2]
  local used = redis.call('HMGET', key, 'requests', 'tokens', 'cost')
  for i, d in ipairs(dims) do
    local limit = limit_of[period .. '_' .. d[1] .. '_limit']
    if limit ~= nil then
      checks[#checks + 1] = {short[period] .. '_' .. plural[d[1]], limit,
        tonumber(used[i] or '0'), d[3], period, key, d[2]}
    end
  end
end

local function listing(charged)
  local quotas = {}
  for _, c in ipairs(checks) do
    quotas[#quotas + 1] = {c[1], c[2], c[3] + (charged and c[4] or 0)}
  end
  return quotas
end

-- Every quota is checked before anything is changed.
for _, c in ipairs(checks) do
  local name, limit, used, amount, period, key = unpack(c)
  if used + amount > limit then
    return cjson.encode(refuse({verdict = 'reject', quota_type = name, limit = limit,
      current = used, period = period, quotas = listing(false)}, mode, key,
      'alerted:' .. name, 'rejections:' .. name))
  end
end
if mode == 'check' then return cjson.encode({verdict = 'ok', quotas = listing(false)}) end

local ttl = {monthly = ARGV[7], daily = ARGV[8], per_session = ARGV[9]}
for _, p in ipairs(periods) do
  redis.call('HINCRBY', p[2], 'requests', 1)
  redis.call('HINCRBY', p[2], 'tokens', tokens)
  redis.call('HINCRBY', p[2], 'cost', cost)
  redis.call('PEXPIRE', p[2], tonumber(ttl[p[1]]))
end
if session ~= '' then
  redis.call('SADD', KEYS[7], session)
  redis.call('PEXPIRE', KEYS[7], tonumber(ARGV[9]))
end
local warnings = {}
local share = tonumber(ARGV[10])
for _, c in ipairs(checks) do
  local name, limit, used, amount, period, key = unpack(c)
  if share > 0 and used + amount >= share * limit
      and redis.call('HSETNX', key, 'warned:' .. name, 1) == 1 then
    warnings[#warnings + 1] = {name, limit, used + amount}
  end
end
local session_key = session ~= '' and KEYS[4] or '-'
local state = mode == 'record' and ' settled' or ' open'
redis.call('HSET', KEYS[5], rid,
  KEYS[2] .. ' ' .. KEYS[3] .. ' ' .. session_key .. ' ' .. ARGV[2] .. ' ' .. ARGV[3] .. state)
redis.call('ZADD', KEYS[6], now + tonumber(ARGV[6]), rid)
redis.call('PEXPIRE', KEYS[5], tonumber(ARGV[7]))
redis.call('PEXPIRE', KEYS[6], tonumber(ARGV[7]))
return cjson.encode({verdict = 'ok', quotas = listing(true), warnings = warnings})
