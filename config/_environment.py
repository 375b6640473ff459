"""The environment's part in configuration: ``environment_variables`` and ``BATCHGATE_*``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, NoReturn

from config._fields import Scope, resolve_env, to_float, to_int, to_mapping
from config._files import files_env_overrides
from config._queue import queue_env_overrides
from config._sections import redis_url
from config.settings import Secret, Settings

ENV_SOURCE = "environment"
"""The ``source`` of a ConfigError about a bad ``BATCHGATE_*`` value."""


def merged_env(scope: Scope, section: Any, env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with the config's ``environment_variables`` laid over it, as LiteLLM does by
    setting them in ``os.environ`` (which batchgate itself never mutates)."""
    merged = dict(env)
    for name, value in to_mapping(scope, "environment_variables", section).items():
        path = f"environment_variables.{name}"
        value = resolve_env(scope, path, value, env)
        if isinstance(value, bool):
            merged[name] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            merged[name] = str(value)
        else:
            # Do not echo it: environment_variables often hold keys.
            raise scope.error(f"expected a string or number, got {type(value).__name__}", path)
    return merged


def apply_env_overrides(settings: Settings, env: Mapping[str, str]) -> Settings:
    """``settings`` with the ``BATCHGATE_*`` variables of ``env`` applied over the file.

    An empty variable counts as unset (``BATCHGATE_PORT=`` in a compose file means "default").
    """
    scope = Scope(ENV_SOURCE)

    def var(name: str) -> str | None:
        return env.get(name) or None

    server: dict[str, Any] = {}
    redis_name = "BATCHGATE_REDIS_URL" if var("BATCHGATE_REDIS_URL") else "REDIS_URL"
    if var(redis_name) is not None:
        server["redis_url"] = redis_url(scope, redis_name, var(redis_name))
    if (value := var("BATCHGATE_KEY_PREFIX")) is not None:
        server["key_prefix"] = value.strip() or _empty(scope, "BATCHGATE_KEY_PREFIX")
    if (value := var("BATCHGATE_MAX_REQUEST_BYTES")) is not None:
        server["max_request_bytes"] = to_int(scope, "BATCHGATE_MAX_REQUEST_BYTES", value,
                                             minimum=1)
    if (value := var("BATCHGATE_CONNECT_TIMEOUT")) is not None:
        server["connect_timeout"] = to_float(scope, "BATCHGATE_CONNECT_TIMEOUT", value,
                                             positive=True)
    if (value := var("BATCHGATE_HOST")) is not None:
        server["host"] = value.strip() or _empty(scope, "BATCHGATE_HOST")
    if (value := var("BATCHGATE_PORT")) is not None:
        server["port"] = to_int(scope, "BATCHGATE_PORT", value, maximum=65535)
    general, litellm, router = settings.general, settings.litellm, settings.router
    if (value := var("BATCHGATE_MASTER_KEY")) is not None:
        # Taken literally: a stray "None" here must not switch authentication off.
        general = replace(general, master_key=Secret(value))
    if (value := var("BATCHGATE_REQUEST_TIMEOUT")) is not None:
        litellm = replace(litellm, request_timeout=to_float(
            scope, "BATCHGATE_REQUEST_TIMEOUT", value, positive=True))
    if (value := var("BATCHGATE_NUM_RETRIES")) is not None:
        router = replace(router, num_retries=to_int(scope, "BATCHGATE_NUM_RETRIES", value))
    return replace(settings, server=replace(settings.server, **server), general=general,
                   litellm=litellm, router=router,
                   queue=queue_env_overrides(settings.queue, env, scope),
                   files=files_env_overrides(settings.files, env, scope))


def _empty(scope: Scope, name: str) -> NoReturn:
    raise scope.error("must not be blank", name)
