"""Control routes for tests and benchmarks, beside the OpenAI surface (never counted in stats).

- ``GET /_health``: 200 ``{"status": "ok"}``.
- ``GET /_stats``: :meth:`Stats.snapshot`; ``?log=0`` leaves the log out.
- ``GET /_config``: the configuration as given (``defaults``, ``models``, ``log_size``, ``seed``),
  every ``api_key`` shown as ``***``.
- ``POST /_config``: apply a configuration with :meth:`FakeSettings.updated` semantics: a given
  ``defaults`` block replaces the old one, each given model block replaces that model's block
  (``null`` removes it), models not named are kept. Answers the new ``GET /_config``; an
  invalid body is a 400 and changes nothing.
- ``POST /_reset``: clear counters, rate windows and the log; with body ``{"config": true}``
  (or ``?config=1``) also go back to the configuration the server started with.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from batchgate.errors import ConfigError
from batchgate.fake_upstream import payloads
from batchgate.fake_upstream.state import STATE

PATHS = frozenset({"/_health", "/_stats", "/_config", "/_reset"})


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=payloads.dumps(obj), status=status,
                        content_type="application/json")


def _bad(message: str) -> web.Response:
    return _json({"error": {"message": message, "type": "invalid_request_error",
                            "param": None, "code": None}}, 400)


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    return json.loads(raw) if raw.strip() else {}


async def health(request: web.Request) -> web.Response:
    """Liveness for process supervisors and the test helper."""
    return _json({"status": "ok"})


async def stats(request: web.Request) -> web.Response:
    """Counters and the request log."""
    include_log = request.query.get("log", "1").lower() not in ("0", "false", "no")
    return _json(request.app[STATE].stats.snapshot(include_log=include_log))


async def get_config(request: web.Request) -> web.Response:
    """The current configuration."""
    return _json(request.app[STATE].settings.to_dict(redact_keys=True))


async def post_config(request: web.Request) -> web.Response:
    """Change the configuration at run time."""
    state = request.app[STATE]
    try:
        data = await _body(request)
        settings = state.settings.updated(data)
    except ValueError as exc:
        return _bad(f"invalid JSON: {exc}")
    except ConfigError as exc:
        return _bad(exc.message)
    state.configure(settings, reseed=isinstance(data, dict) and "seed" in data)
    return _json(settings.to_dict(redact_keys=True))


async def reset(request: web.Request) -> web.Response:
    """Forget what was seen; optionally restore the startup configuration."""
    try:
        data = await _body(request)
    except ValueError as exc:
        return _bad(f"invalid JSON: {exc}")
    restore = request.query.get("config", "0").lower() in ("1", "true", "yes") or (
        isinstance(data, dict) and data.get("config") is True)
    state = request.app[STATE]
    state.reset(restore_config=restore)
    return _json({"status": "reset", "config_restored": restore})


def add_routes(app: web.Application) -> None:
    """Register the control routes on ``app``."""
    app.router.add_get("/_health", health)
    app.router.add_get("/_stats", stats)
    app.router.add_get("/_config", get_config)
    app.router.add_post("/_config", post_config)
    app.router.add_post("/_reset", reset)
