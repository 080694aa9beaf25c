-- Take or keep the lease of probing one provider (one prober per provider at a time).
-- KEYS[1] the lease (string: the holder's process name)
-- ARGV[1] this process's name, ARGV[2] the lease's length in ms
-- Returns 1 when this process holds the lease now, 0 when another does.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
