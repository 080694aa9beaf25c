-- Keep a provider's latest finding and return the one before it, at once (so that of
-- two processes writing, each sees the other's and no move is alerted twice).
-- KEYS[1] the findings (hash: provider -> JSON), ARGV[1] provider, ARGV[2] finding
local before = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return before
