-- attempt.begin: one send's first round trip (attempt.py explains the steps and the rate).
-- KEYS: send_log rate_tat slow_down quota_hold lane_share lane_waiters lane_hold outbox_task outbox_queue outbox_queued outbox_running outbox_holder holders
-- ARGV: flags claim_token claim_ms attempt_id published_prefix running_deadline rate burst cost horizon recovery min_share top_horizon max_wait held_prefix holder
-- flags: c claim, o mark the outbox record running, r reserve in the rate, l a lower lane.
-- A send log value 'cancelled:<reason>' (seacucumber.cancel) answers {'cancelled', reason}.
-- Returns {outcome, ...}: outcome is one of attempt.BeginOutcome's values.
pcall(redis.replicate_commands)
local flags = A.flags
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if string.find(flags, 'o', 1, true) and redis.call('HEXISTS', K.outbox_task, A.attempt_id) == 1 then
  local queue = redis.call('HGET', K.outbox_queue, A.attempt_id)
  if queue then redis.call('ZREM', A.published_prefix .. queue, A.attempt_id) end
  redis.call('ZREM', K.outbox_queued, A.attempt_id)
  redis.call('ZADD', K.outbox_running, A.running_deadline, A.attempt_id)
  if A.holder ~= '' then set_holder(K.outbox_holder, A.held_prefix, A.attempt_id, A.holder)
  else release_holder(K.outbox_holder, A.held_prefix, A.attempt_id) end
end
local claimed = false
if string.find(flags, 'c', 1, true) then
  if not redis.call('SET', K.send_log, A.claim_token, 'NX', 'PX', A.claim_ms) then
    local value = redis.call('GET', K.send_log)
    if string.sub(value, 1, 5) == 'sent:' then return {'sent', string.sub(value, 6)} end
    if string.sub(value, 1, 10) == 'cancelled:' then return {'cancelled', string.sub(value, 11)} end
    local busy = redis.call('PTTL', K.send_log) / 1000
    -- a claim that names its holder (holders.py): taken over once the holder is dead; while
    -- it lives, looked at again when its heartbeat would lapse
    local owner = string.match(value, '^claim:[^/]*/(.+)$')
    local alive = owner and tonumber(redis.call('ZSCORE', K.holders, owner))
    if alive and alive >= now then busy = math.min(busy, alive - now + 0.1) end
    if not alive or alive >= now then return {'busy', tostring(busy)} end
    redis.call('SET', K.send_log, A.claim_token, 'PX', A.claim_ms)
  end
  claimed = true
end
local function unclaim() if claimed then redis.call('DEL', K.send_log) end end
local lane_hold = redis.call('GET', K.lane_hold)
if lane_hold then unclaim() return {'lane_held', lane_hold} end
if not string.find(flags, 'r', 1, true) then return {'go', '0', '0'} end
local held = redis.call('PTTL', K.quota_hold)
if held > 0 then unclaim() return {'quota_held', tostring(held / 1000)} end
local rate = tonumber(A.rate)
local slow = redis.call('HMGET', K.slow_down, 'factor', 'at')
if slow[1] then
  local recovered = (now - tonumber(slow[2])) / tonumber(A.recovery)
  if recovered < 1 then rate = rate * (1 - (1 - tonumber(slow[1])) * (1 - recovered)) end
end
local cost = tonumber(A.cost)
local burst = tonumber(A.burst)
local tat = tonumber(redis.call('GET', K.rate_tat) or '0')
if tat < now then tat = now end
local new_tat = tat + cost / rate
local wait = new_tat - burst - now
local share = tonumber(A.min_share)
local booked = wait <= tonumber(A.horizon) or tat <= now
if not booked and share > 0 and wait <= tonumber(A.top_horizon) then
  local own = tonumber(redis.call('GET', K.lane_share) or '0')
  if own < now then own = now end
  if own - now <= burst then
    own = own + cost / (share * rate)
    redis.call('SET', K.lane_share, tostring(own), 'PX', math.ceil((own - now) * 1000) + 1000)
    booked = true
  end
end
if not booked then
  unclaim()
  local waiters = 0
  if string.find(flags, 'l', 1, true) then
    redis.call('ZREMRANGEBYSCORE', K.lane_waiters, '-inf', now)
    redis.call('ZADD', K.lane_waiters, now + 5, A.attempt_id)
    redis.call('PEXPIRE', K.lane_waiters, 5000)
    waiters = redis.call('ZCARD', K.lane_waiters)
  end
  return {'refused', tostring(wait), tostring(rate), tostring(waiters)}
end
redis.call('SET', K.rate_tat, tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
if string.find(flags, 'l', 1, true) then redis.call('ZREM', K.lane_waiters, A.attempt_id) end
if wait < 0 then wait = 0 end
if wait > tonumber(A.max_wait) then unclaim() end
return {'admitted', tostring(wait), tostring(rate)}
