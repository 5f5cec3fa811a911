"""Talking to Amazon SES: boto3 clients (``clients``), the send call (``send``), the one
reader of SES errors (``errors``), and identities for ``manage.py ses_address``."""
