"""The SES event webhook: SNS posts in, verified, applied (status, suppression, signals)."""
