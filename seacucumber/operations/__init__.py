"""What operators read and run: the account's usage (``usage``, what ``ses_usage`` prints),
the daily statistics kept (``statistics``), the metrics (``metrics``: counters in the shared
Redis, gauges, the Prometheus view) and the whole path checked from a host (``doctor``).
Built on the shared state (``seacucumber.shared``) and SES (``seacucumber.ses``)."""
