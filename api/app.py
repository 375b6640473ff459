"""The Flask app factory."""

from __future__ import annotations

import time

from flask import Flask

from api import (
    batches_routes,
    files_routes,
    health,
    keys_routes,
    openai_routes,
    openapi,
    queue_routes,
)
from api.auth import install_auth
from api.errors import register_error_handlers
from api.observe import install_observability
from config.settings import Settings
from workers.celery_app import make_celery
from workers.runtime import Runtime
from workers.upstream import UpstreamClient


def create_app(settings: Settings, *, client: UpstreamClient | None = None) -> Flask:
    """A batchgate WSGI app serving ``settings``; ``client`` is injectable for tests.

    Celery is initialised here, as in Flask's Celery example: ``app.extensions["celery"]``.
    """
    app = Flask("batchgate", static_folder=None)  # no /static route: nothing to serve
    app.config["MAX_CONTENT_LENGTH"] = settings.server.max_request_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    runtime = Runtime(settings, client=client)
    app.extensions["batchgate.settings"] = settings
    app.extensions["batchgate.runtime"] = runtime
    app.extensions["batchgate.gateway"] = runtime.gateway
    app.extensions["batchgate.started_at"] = int(time.time())
    app.extensions["celery"] = make_celery(runtime)
    register_error_handlers(app)
    install_observability(app)  # before auth: a refused request is counted, has its id
    install_auth(app, settings.general.master_key)
    app.register_blueprint(openai_routes.bp)
    app.register_blueprint(queue_routes.bp)
    app.register_blueprint(files_routes.bp)
    app.register_blueprint(batches_routes.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(keys_routes.bp)
    app.register_blueprint(openapi.bp)
    return app
