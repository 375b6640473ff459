"""Celery entry: ``celery -A batchgate.worker worker -P gevent`` (BATCHGATE_CONFIG)."""

from api.wsgi import app_from_env

celery_app = app_from_env().extensions["celery"]
