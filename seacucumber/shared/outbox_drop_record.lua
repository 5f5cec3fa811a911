-- Drop one outbox record (a Lua fragment: outbox's ``_SETTLED`` and attempt_settle.lua call
-- it): ``task``, ``queue``, ``queued``, ``running`` are the outbox's keys, ``prefix`` is
-- published:<queue>'s, ``id`` the task id.
local function drop_record(task, queue, queued, running, prefix, id)
  local name = redis.call('HGET', queue, id)
  if name then redis.call('ZREM', prefix .. name, id) end
  redis.call('HDEL', task, id)
  redis.call('HDEL', queue, id)
  redis.call('ZREM', queued, id)
  redis.call('ZREM', running, id)
end
