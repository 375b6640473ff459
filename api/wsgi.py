"""WSGI entry for an external server: ``gunicorn 'api.wsgi:app'`` (config from BATCHGATE_CONFIG)."""

from __future__ import annotations

import os

from api.app import create_app
from config.loader import load_settings

app = create_app(load_settings(os.environ.get("BATCHGATE_CONFIG")))
