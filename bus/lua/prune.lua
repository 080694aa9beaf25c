-- Delete a group's consumers that hold nothing pending and have been idle long
-- enough (a consumer with pending entries is never deleted: that would drop them).
-- KEYS[1] stream; ARGV[1] group, ARGV[2] idle ms, ARGV[3] the caller (kept).
-- Returns the names deleted.
local removed = {}
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
  if info['name'] ~= ARGV[3] and tonumber(info['pending']) == 0
      and tonumber(info['idle']) >= tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    table.insert(removed, info['name'])
  end
end
return removed
