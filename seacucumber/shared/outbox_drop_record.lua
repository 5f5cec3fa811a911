-- Outbox record steps other scripts include (a Lua fragment: outbox's scripts, the sweeper's,
-- attempt_begin.lua and attempt_settle.lua call them). ``task``, ``queue``, ``queued``,
-- ``running``, ``holder`` are the outbox's keys, ``prefix`` is published:<queue>'s,
-- ``held_prefix`` held:<holder>'s, ``id`` the task id.

-- Forget which worker process holds the send (holders.py): its record is queued again,
-- started elsewhere, or gone.
local function release_holder(holder, held_prefix, id)
  local name = redis.call('HGET', holder, id)
  if name then
    redis.call('SREM', held_prefix .. name, id)
    redis.call('HDEL', holder, id)
  end
end

-- Name ``name`` as the worker process that holds the send.
local function set_holder(holder, held_prefix, id, name)
  release_holder(holder, held_prefix, id)
  redis.call('HSET', holder, id, name)
  redis.call('SADD', held_prefix .. name, id)
end

-- Drop one outbox record.
local function drop_record(task, queue, queued, running, holder, prefix, held_prefix, id)
  local name = redis.call('HGET', queue, id)
  if name then redis.call('ZREM', prefix .. name, id) end
  release_holder(holder, held_prefix, id)
  redis.call('HDEL', task, id)
  redis.call('HDEL', queue, id)
  redis.call('ZREM', queued, id)
  redis.call('ZREM', running, id)
end
