"""Health routes: liveliness (no auth), readiness (config and Redis), deployment probes."""

from __future__ import annotations

from typing import Any

import redis
from flask import Blueprint, Response, current_app, jsonify

from api.openai_routes import gateway
from config.settings import Settings
from workers.health import probe_all

bp = Blueprint("health", __name__)

READINESS_REDIS_TIMEOUT = 1.0


@bp.get("/health/liveliness")
@bp.get("/health/liveness")
def liveliness() -> Response:
    """The process is up and serving (no auth: load balancers probe it)."""
    return jsonify({"status": "alive"})


def redis_status(url: str | None) -> str:
    """``not configured``, ``connected``, or why Redis cannot be reached (no URL in it)."""
    if not url:
        return "not configured"
    try:
        client = redis.Redis.from_url(url, socket_timeout=READINESS_REDIS_TIMEOUT,
                                      socket_connect_timeout=READINESS_REDIS_TIMEOUT)
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, ValueError) as exc:
        return f"error: {type(exc).__name__}"
    return "connected"


@bp.get("/health/readiness")
def readiness() -> tuple[Response, int]:
    """Ready when the config is loaded and Redis (where configured) answers."""
    settings: Settings = current_app.extensions["batchgate.settings"]
    redis_state = redis_status(settings.server.redis_url)
    ready = redis_state in ("connected", "not configured")
    body: dict[str, Any] = {
        "status": "healthy" if ready else "unhealthy",
        "config": settings.source,
        "model_groups": len(settings.groups()),
        "deployments": len(settings.deployments),
        "redis": redis_state,
    }
    return jsonify(body), 200 if ready else 503


@bp.get("/health")
def health() -> Response:
    """Probe every deployment with a small real call (LiteLLM's ``/health`` shape)."""
    gw = gateway()
    return jsonify(probe_all(gw, gw.settings.deployments))


@bp.get("/health/budgets")
def budgets() -> Response:
    """Each deployment's rate-limit budget as the scheduler sees it: declared limits, use in
    the sliding window, in flight, cooldown, the concurrency learned from 429s (AIMD), the
    upstream's own reported limits, and latency."""
    gw = gateway()
    view = gw.scheduler.budgets.inspect(gw.settings.deployments)
    groups: dict[str, dict[str, Any]] = {}
    for d in gw.settings.deployments:
        groups.setdefault(d.model_name, {})[d.id] = view.get(d.id, {})
    return jsonify({"object": "budgets", "model_groups": groups})
