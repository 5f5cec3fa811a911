"""The SES event webhook: SNS posts in, verified, applied (status, suppression, signals); and
the one-click unsubscribe links of topic mail (``unsubscribe``)."""
