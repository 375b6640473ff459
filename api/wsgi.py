"""WSGI entry for an external server: ``gunicorn 'api.wsgi:app_from_env()'``.

The config file comes from ``BATCHGATE_CONFIG``, read when gunicorn calls the factory.
"""

from __future__ import annotations

import os

from flask import Flask

from api.app import create_app
from config.loader import load_settings


def app_from_env() -> Flask:
    """The app for the config named by ``BATCHGATE_CONFIG`` (and ``BATCHGATE_*`` overrides)."""
    return create_app(load_settings(os.environ.get("BATCHGATE_CONFIG")))
