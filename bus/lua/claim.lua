-- Take over entries that have been pending longer than the claim idle time
-- (their consumer died or failed them), with their delivery counts, in one call.
-- KEYS[1] stream
-- ARGV[1] group, ARGV[2] consumer, ARGV[3] min idle ms, ARGV[4] start id, ARGV[5] count,
-- ARGV[6] run by (ms on this server's clock)
-- Returns {next start id, {{id, {field, value, ...}, deliveries}, ...}, {ids of deleted entries}}
-- A call that runs after ARGV[6] waited out a stall (Redis paused, the call queued in
-- its socket): every entry's idle time then counts the stall, in which no owner could
-- reach Redis to keep its entries; it claims nothing.
local t = redis.call('TIME')
if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > tonumber(ARGV[6]) then
  return {ARGV[4], {}, {}}
end
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
local claimed, gone = {}, {}
for _, e in ipairs(r[2]) do
  if type(e) == 'table' and type(e[2]) == 'table' then
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1)
    table.insert(claimed, {e[1], e[2], p[1][4]})
  elseif type(e) == 'table' then
    -- Redis 6.2 reports an entry trimmed while pending as {id, nil}.
    table.insert(gone, e[1])
  end
end
if r[3] then
  for _, id in ipairs(r[3]) do table.insert(gone, id) end
end
return {r[1], claimed, gone}
