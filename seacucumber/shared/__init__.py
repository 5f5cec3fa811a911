"""State shared by every worker process and host, in one Redis (``store``): the account's
send rate (``ratelimit``, learned by ``quota``), the send log that stops a second send
(``sendlog``), the outbox that queues again a task the broker lost (``outbox``, swept by
``sweeper``), the usage report that reads it all beside SES's numbers (``usage``), SES's
daily statistics kept in the database (``statistics``) and the Prometheus metrics: counters
added up in Redis, gauges read when scraped (``metrics``)."""
