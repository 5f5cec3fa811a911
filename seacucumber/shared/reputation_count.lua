-- Count recipients in each scope's hourly hash and note the scope's name (a Lua fragment:
-- ``_COUNT`` and ``attempt.settle``'s script use it). KEYS from ``k``, in pairs: the hash,
-- the scope's names set. ARGV from ``a``: the field, the amount, seconds to keep, then one
-- name per pair.
local function count_reputation(k, a)
  local field, amount, keep, n = ARGV[a], ARGV[a + 1], ARGV[a + 2], a + 3
  for i = k, #KEYS, 2 do
    redis.call('HINCRBY', KEYS[i], field, amount)
    redis.call('EXPIRE', KEYS[i], keep)
    redis.call('SADD', KEYS[i + 1], ARGV[n])
    redis.call('EXPIRE', KEYS[i + 1], keep)
    n = n + 1
  end
end
