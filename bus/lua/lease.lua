-- Renew a process's lease on its name, or take it back if it lapsed (Redis lost it).
-- KEYS[1] lease key; ARGV[1] token, ARGV[2] ttl ms.
-- Returns 1 renewed, 2 taken back, 0 held by another process.
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0
