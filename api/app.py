"""The Flask app factory."""

from __future__ import annotations

import logging
import time

from flask import Flask

from api import health, openai_routes
from api.auth import install_auth
from api.errors import register_error_handlers
from config.settings import Settings
from workers.gateway import Gateway
from workers.upstream import UpstreamClient


def create_app(settings: Settings, *, client: UpstreamClient | None = None) -> Flask:
    """A batchgate WSGI app serving ``settings``; ``client`` is injectable for tests."""
    app = Flask("batchgate")
    app.config["MAX_CONTENT_LENGTH"] = settings.server.max_request_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["batchgate.settings"] = settings
    app.extensions["batchgate.gateway"] = Gateway(settings, client or UpstreamClient(settings))
    app.extensions["batchgate.started_at"] = int(time.time())
    register_error_handlers(app)
    install_auth(app, settings.general.master_key)
    app.register_blueprint(openai_routes.bp)
    app.register_blueprint(health.bp)
    logging.getLogger("batchgate").debug("app ready: %d deployments", len(settings.deployments))
    return app
