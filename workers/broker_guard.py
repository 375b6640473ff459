"""A guard for a race in kombu's Redis transport (5.7) when the broker connection is lost.

On a lost connection the Celery consumer first ``collect()``s the connection (which drops the
transport's client) and then ``close()``s it, closing the default channel a second time. That
close tries to re-queue unacked messages through a new Redis client built from the client that
is gone: an ``AttributeError``, which the cleanup does not ignore, so the worker stops with
"Unrecoverable error" instead of reconnecting (found by the Redis restart drill,
``tests/integration/test_drills.py``). Raising the connection error the cleanup expects lets
it carry on and reconnect; the unacked messages are re-queued by the broker's visibility
timeout, and their chunks sooner by batchgate's own leases.
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.transport import redis as kombu_redis

_GUARDED = "_batchgate_guarded"


def guard_closed_connection() -> None:
    """Patch ``kombu.transport.redis.Channel._connparams`` once (idempotent)."""
    original: Any = kombu_redis.Channel._connparams
    if getattr(original, _GUARDED, False):
        return

    def _connparams(self: Any, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:
            raise redis.ConnectionError("the broker connection was already closed")
        params: dict[str, Any] = original(self, asynchronous)
        return params

    setattr(_connparams, _GUARDED, True)
    setattr(kombu_redis.Channel, "_connparams", _connparams)  # noqa: B010
