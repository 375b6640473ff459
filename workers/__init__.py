"""Upstream clients and (later) Celery workers."""
