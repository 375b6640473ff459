"""WSGI entry for an external server: ``gunicorn 'api.wsgi:app'`` (config from BATCHGATE_CONFIG)."""

from __future__ import annotations

import os

from config.loader import load_settings

from api.app import create_app

app = create_app(load_settings(os.environ.get("BATCHGATE_CONFIG")))
