-- Whether an ask was added to a stream in time: an entry with this correlation id
-- whose id's time lies between two times (milliseconds, Redis's clock).
-- KEYS[1] stream; ARGV[1] from ms, ARGV[2] to ms (inclusive), ARGV[3] correlation id
-- Returns 1 if there is one, else 0.
local entries = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[2])
for _, entry in ipairs(entries) do
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'corr' and fields[i + 1] == ARGV[3] then
      return 1
    end
  end
end
return 0
