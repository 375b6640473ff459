"""The checks behind ``batchgate healthcheck``, one per kind of process in docker-compose.yml.

Each returns a one-line report when healthy and raises :class:`Unhealthy` otherwise:

- :func:`check_api`: the gateway's ``/health/readiness`` (config loaded, Redis answering);
- :func:`check_worker`: a Celery worker answers a ping sent through the broker;
- :func:`check_beat`: Celery beat wrote its schedule file recently;
- :func:`check_redis`: the configured Redis answers ``PING``.

The CLI imports this module for its defaults, so network modules (which import ``ssl``) are
imported inside the checks: ``batchgate up`` must import them only after gevent patches.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from batchgate.errors import BatchgateError
from config.settings import Settings

READINESS_PATH = "/health/readiness"
BEAT_SCHEDULE_SUFFIXES = ("", ".db", ".dat", ".bak", ".dir")
"""The files :mod:`shelve` may write for beat's schedule (Celery's ``known_suffixes``)."""
DEFAULT_BEAT_MAX_AGE = 600.0
"""Celery beat writes its schedule at start and then at least every 3 minutes while it sends
tasks (ours are due every second or more often): 10 minutes without a write means it is stuck."""


class Unhealthy(BatchgateError):
    """The process checked is not healthy; the message says why (never a secret)."""


def default_worker_node() -> str:
    """The node name ``batchgate worker`` takes on this host: Celery's ``celery@<hostname>``
    (in a container, the hostname is the container's, so this is the worker beside us)."""
    import socket

    return f"celery@{socket.gethostname()}"


def check_api(url: str, timeout: float, path: str = READINESS_PATH,
              master_key: str | None = None) -> str:
    """GET ``url + path`` (with the master key, when given); healthy on a 2xx answer."""
    import urllib.error
    import urllib.request

    if not url.startswith(("http://", "https://")):
        raise Unhealthy(f"{url!r} is not an http:// or https:// URL")
    request = urllib.request.Request(url.rstrip("/") + path)  # noqa: S310
    if master_key:
        request.add_header("Authorization", f"Bearer {master_key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            body: bytes = response.read()
    except (urllib.error.URLError, OSError) as exc:
        raise Unhealthy(f"{url.rstrip('/') + path}: {exc}") from None
    try:
        return json.dumps(json.loads(body))
    except ValueError:
        # Not our readiness route (e.g. flower's /healthcheck answers a bare "OK").
        return body.decode("utf-8", "replace").strip()


def check_worker(settings: Settings, node: str, timeout: float) -> str:
    """Ping ``node`` through the broker with Celery's remote control."""
    import redis
    from kombu.exceptions import OperationalError

    from workers.celery_app import make_celery
    from workers.runtime import Runtime

    app = make_celery(Runtime(settings))
    try:
        replies = app.control.ping(destination=[node], timeout=timeout)
    except (OSError, redis.RedisError, OperationalError) as exc:
        raise Unhealthy(f"broker: {exc}") from None
    finally:
        app.close()
    if not any(node in reply for reply in replies or []):
        raise Unhealthy(f"no answer from {node} within {timeout:g}s")
    return f"{node}: pong"


def beat_schedule_file(settings: Settings) -> str:
    """Where ``batchgate beat`` keeps its schedule (the Celery app's ``beat_schedule_filename``)."""
    from workers.celery_app import make_celery
    from workers.runtime import Runtime

    app = make_celery(Runtime(settings))
    try:
        return str(app.conf.beat_schedule_filename)
    finally:
        app.close()


def check_beat(schedule: str, max_age: float, now: float | None = None) -> str:
    """Healthy when beat wrote its schedule file within ``max_age`` seconds."""
    times = [os.stat(schedule + suffix).st_mtime for suffix in BEAT_SCHEDULE_SUFFIXES
             if Path(schedule + suffix).exists()]
    if not times:
        raise Unhealthy(f"no beat schedule file at {schedule}: beat has not started")
    age = (time.time() if now is None else now) - max(times)
    if age > max_age:
        raise Unhealthy(f"beat last wrote its schedule {age:.0f}s ago (more than {max_age:g}s)")
    return f"beat wrote its schedule {age:.0f}s ago"


def check_redis(settings: Settings, timeout: float) -> str:
    """``PING`` the configured Redis; the report never shows the URL (it may hold a password)."""
    import redis

    url = settings.server.redis_url
    if not url:
        raise Unhealthy("no Redis configured (redis_url / BATCHGATE_REDIS_URL)")
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        client.ping()
    except redis.RedisError as exc:
        # redis-py names host and port, never the password.
        raise Unhealthy(f"redis: {exc}") from None
    finally:
        client.close()
    return "redis: connected"
