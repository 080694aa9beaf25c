-- An operator's hand on a breaker: "reset" closes it (and clears a rejected key),
-- "open" forces it open until the next reset.
-- KEYS[1] the breaker's state hash, KEYS[2] its window; ARGV[1] action, ARGV[2] reason
-- Returns the transition: "closed" | "opened"
redis.call('DEL', KEYS[2])
redis.call('HINCRBY', KEYS[1], 'version', 1)
if ARGV[1] == 'reset' then
  redis.call('HSET', KEYS[1], 'state', 'closed', 'key_invalid', 0, 'forced', 0, 'open_until', 0,
    'trials_left', 0, 'reason', ARGV[2])
  return 'closed'
end
redis.call('HSET', KEYS[1], 'state', 'open', 'forced', 1, 'open_until', 0, 'trials_left', 0,
  'reason', ARGV[2])
return 'opened'
