"""The queue's keys of ``batchgate_settings`` and their ``BATCHGATE_*`` overrides."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from config._fields import Scope, Section, to_float, to_int, to_list, to_str_list
from config.durations import parse_duration
from config.settings import QueueSettings, Secret

QUEUE_KEYS = ("secret_key", "completion_window", "max_batch_requests", "job_ttl",
              "feed_window", "chunk_size", "embedding_chunk_size", "worker_concurrency",
              "max_wait", "item_lease", "outage_wait",
              "webhook_allowed_hosts", "webhook_timeout", "webhook_schedule")


def _duration(scope: Scope, path: str, value: Any) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise scope.error(str(exc), path) from None


def parse_queue(server: Section) -> QueueSettings:
    """The queue settings of ``batchgate_settings`` (its keys are checked by the caller)."""
    scope = server.scope
    out: dict[str, Any] = {}
    if (key := server.get_secret("secret_key")) is not None:
        out["secret_key"] = key
    for name in ("completion_window", "job_ttl", "max_wait", "item_lease", "outage_wait",
                 "webhook_timeout"):
        if (seconds := _duration(scope, server.path(name), server.get(name))) is not None:
            out[name] = seconds
    for name in ("max_batch_requests", "feed_window", "chunk_size", "embedding_chunk_size",
                 "worker_concurrency"):
        if (number := server.get_int(name, minimum=1)) is not None:
            out[name] = number
    if (hosts := server.get("webhook_allowed_hosts")) is not None:
        out["webhook_allowed_hosts"] = tuple(to_str_list(scope, "webhook_allowed_hosts", hosts))
    if (schedule := server.get("webhook_schedule")) is not None:
        out["webhook_schedule"] = tuple(
            _step(scope, f"webhook_schedule[{i}]", step)
            for i, step in enumerate(to_list(scope, "webhook_schedule", schedule)))
    return replace(QueueSettings(), **out)


def _step(scope: Scope, path: str, value: Any) -> float:
    # The first delivery attempt of the spec's schedule is immediate: 0 is allowed here.
    if value in (0, "0", "0s"):
        return 0.0
    return _duration(scope, path, value) or 0.0


def queue_env_overrides(queue: QueueSettings, env: Mapping[str, str], scope: Scope
                        ) -> QueueSettings:
    """``BATCHGATE_SECRET_KEY``, ``BATCHGATE_WEBHOOK_ALLOWED_HOSTS`` (comma-separated),
    ``BATCHGATE_WORKER_CONCURRENCY`` and ``BATCHGATE_ITEM_LEASE`` over the file."""
    out: dict[str, Any] = {}
    if value := env.get("BATCHGATE_SECRET_KEY"):
        out["secret_key"] = Secret(value)
    if value := env.get("BATCHGATE_WEBHOOK_ALLOWED_HOSTS"):
        out["webhook_allowed_hosts"] = tuple(h.strip() for h in value.split(",") if h.strip())
    if value := env.get("BATCHGATE_WORKER_CONCURRENCY"):
        out["worker_concurrency"] = to_int(scope, "BATCHGATE_WORKER_CONCURRENCY", value,
                                           minimum=1)
    if value := env.get("BATCHGATE_ITEM_LEASE"):
        out["item_lease"] = to_float(scope, "BATCHGATE_ITEM_LEASE", value, positive=True)
    return replace(queue, **out)
