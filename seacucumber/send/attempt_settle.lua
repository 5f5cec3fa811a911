-- attempt.settle: one send's second and last round trip, after SES accepted it.
-- KEYS: send_log counters outbox_task outbox_queue outbox_queued outbox_running outbox_holder
-- ARGV: drop_outbox sent_mark keep_seconds counter_field published_prefix held_prefix task_id recipients_field recipients latency_bucket_field latency_sum_field latency
-- Then the reputation guard's keys (pairs) and arguments (reputation_count.lua).
-- drop_outbox: 'o' to drop the task's outbox record, else '-'. The counters: the sent
-- send, its recipients, and its send_messages -> SES latency (the histogram's bucket, sum).
-- Run again after a lost answer (attempt.settle retries through a Redis restart), it finds
-- its own mark and counts nothing twice.
if redis.call('GET', K.send_log) == A.sent_mark then return 0 end
redis.call('SET', K.send_log, A.sent_mark, 'EX', A.keep_seconds)
redis.call('HINCRBY', K.counters, A.counter_field, 1)
redis.call('HINCRBY', K.counters, A.recipients_field, A.recipients)
redis.call('HINCRBY', K.counters, A.latency_bucket_field, 1)
redis.call('HINCRBYFLOAT', K.counters, A.latency_sum_field, A.latency)
if A.drop_outbox == 'o' then
  drop_record(K.outbox_task, K.outbox_queue, K.outbox_queued, K.outbox_running,
              K.outbox_holder, A.published_prefix, A.held_prefix, A.task_id)
end
count_reputation(FIRST_EXTRA_KEY, FIRST_EXTRA_ARG)
return 1
