-- Trim a stream to its retention without dropping anything a group still needs:
-- the cut is the older of (now - retention) and, per group, its oldest pending
-- entry or, with nothing pending, the entry after the last one it read.
-- KEYS[1] stream; ARGV[1] retention ms. Returns the number of entries removed.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local t = redis.call('TIME')
local cut_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[1])
local cut_seq = 0
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local info = {}
  for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
  local ms, seq
  if tonumber(info['pending']) > 0 then
    ms, seq = parse(redis.call('XPENDING', KEYS[1], info['name'])[2])
  else
    ms, seq = parse(info['last-delivered-id'])
    seq = seq + 1
  end
  if ms < cut_ms or (ms == cut_ms and seq < cut_seq) then
    cut_ms, cut_seq = ms, seq
  end
end
if cut_ms <= 0 then return 0 end
return redis.call('XTRIM', KEYS[1], 'MINID', '~', string.format('%.0f-%.0f', cut_ms, cut_seq))
