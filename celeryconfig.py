"""Celery worker configuration for Sea Cucumber: copy it, or load it with
``app.config_from_object("celeryconfig")``.

The demo and docker-compose workers use it. Every value can be overridden from the
environment where noted. In Django settings the same keys take the ``CELERY_`` prefix in
upper case (``CELERY_TASK_ACKS_LATE = True``, ...).
"""

import os

#: The broker: Redis or RabbitMQ (``amqp://guest:guest@localhost:5672//``).
broker_url = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
#: Results are optional; the SES MessageId is each send task's result.
result_backend = os.environ.get("CELERY_RESULT_BACKEND") or None
result_expires = 24 * 3600

# JSON only: a worker that accepts pickle runs whatever anyone who can write to the
# broker sends it.
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]

# At-least-once: acknowledge a task only once the send is settled, and hand a task back
# to the broker when its worker process dies. The send task sets both too.
task_acks_late = True
task_reject_on_worker_lost = True
# Tasks whose worker lost its broker connection go back to the queue rather than running on.
worker_cancel_long_running_tasks_on_connection_loss = True
# One task reserved per pool slot: a worker consuming every lane's queue then takes a
# password reset as soon as a slot frees, rather than after the newsletter sends it had
# already reserved (docs/rate.rst, "Lanes"), and a crash hands little back. Sends wait on
# SES, not on the broker, so this costs no throughput on Redis or RabbitMQ.
worker_prefetch_multiplier = int(os.environ.get("CELERY_WORKER_PREFETCH_MULTIPLIER", "1"))

# Redis broker: an unacknowledged task goes back on the queue after visibility_timeout.
# It must outlast the longest retry countdown (SEACUCUMBER_RETRY_MAX_DELAY, 300 s by
# default) and the longest send, or tasks run twice. Socket timeouts keep enqueueing from
# hanging on a broker that does not answer (kombu sets none by default).
broker_transport_options = {
    "visibility_timeout": 2 * 3600,
    "socket_connect_timeout": 5,
    # longer than a worker's blocking read of the queue (1 s), short enough that a web
    # request never waits minutes on a broker that stopped answering
    "socket_timeout": 10,
}
broker_connection_timeout = 5
broker_connection_retry_on_startup = True

# Mail has a queue of its own, so a mail backlog never holds up other tasks (and the
# reverse). A worker started without -Q consumes it and every lane's queue (the bulk lane's
# is seacucumber-bulk) besides the default queue; one given -Q should name them all
# (-Q mail,seacucumber-bulk), or it logs a warning for each lane it leaves out.
task_routes = {"seacucumber.send_email": {"queue": os.environ.get("SEACUCUMBER_QUEUE", "mail")}}
