-- Keep a consumer's in-flight entries from being taken over: reset their idle
-- time, without counting a delivery, but only for entries it still owns (one that
-- another consumer has already claimed is left to that consumer).
-- KEYS[1] stream; ARGV[1] group, ARGV[2] consumer, ARGV[3..] entry ids
-- Returns the ids another consumer now owns (an id no longer pending was just acked).
local lost = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  elseif p[1] then
    table.insert(lost, ARGV[i])
  end
end
return lost
