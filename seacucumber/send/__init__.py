"""The outbound pipeline, in the order a send takes it: ``publish`` (the web side puts send
tasks on the broker by name), ``screen`` (the staging allowlist and the suppression lists),
``attempt`` (claim, rate, settle: the shared state), ``deliver`` (DKIM, the SES call, its
error classified), and ``outcome`` (how a send ends: bookkeeping, then user signals).
``seacucumber.tasks`` is the Celery glue over these steps."""
