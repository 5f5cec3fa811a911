"""Coming over from django-anymail: its message attributes read by name (``attributes``,
below ``payload``, which calls it) and ``message.anymail_status`` as anymail fills it
(``status``). anymail is no dependency. Its tracking events are ``events/tracking.py``'s."""
