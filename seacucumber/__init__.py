"""Sea Cucumber: a Django email backend that sends through Amazon SES from Celery workers."""

__version__ = "2.0.0.dev0"
