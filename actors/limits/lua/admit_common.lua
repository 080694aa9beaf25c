-- Shared by limiter_admit.lua and quota_admit.lua (included, never run alone).

-- The limits that apply, by name: the user's override in the hash at config_key,
-- else the default ARGV[first_default + i]; unlimited ("" or "null") is left out.
local function limits_from(config_key, names, first_default)
  local limits = {}
  local overrides = redis.call('HMGET', config_key, unpack(names))
  for i, name in ipairs(names) do
    local v = overrides[i]
    if v == false then v = ARGV[first_default + i] end
    if v ~= '' and v ~= 'null' then limits[name] = tonumber(v) end
  end
  return limits
end

-- A refusal, counted unless only checking: answer.first is 1 for the first refusal
-- on this limit in its window or period (flag, a field of the hash at key), and
-- answer.rejections the refusals so far (counter, another field).
local function refuse(answer, mode, key, flag, counter)
  answer.first, answer.rejections = 0, 0
  if mode ~= 'check' then
    answer.first = redis.call('HSETNX', key, flag, 1)
    answer.rejections = redis.call('HINCRBY', key, counter, 1)
  end
  return answer
end
