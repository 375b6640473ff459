"""Celery entry: ``celery -A batchgate.worker worker -P gevent`` (BATCHGATE_CONFIG)."""

from celery import signals

from api.wsgi import app_from_env
from batchgate.logs import on_celery_setup_logging, setup_logging

# JSON from the first line (Celery warns before it sets up logging), then at the command's
# level: with a receiver connected, Celery leaves logging to us in the worker and in beat.
setup_logging()
signals.setup_logging.connect(on_celery_setup_logging, weak=False)
celery_app = app_from_env().extensions["celery"]
