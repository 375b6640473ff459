"""A caller's own upstream credentials in a request body: taken out, checked, applied. Pure.

LiteLLM lets a caller send ``api_key``, ``api_base`` (or ``base_url``) and ``api_version`` in
the body to call a deployment with their own credentials, and ``user_config`` with a whole
``model_list`` of their own. batchgate takes those fields out of every body before anything
else looks at it, so they are never forwarded upstream as JSON and never stored with a job:

- off (the default): a body carrying any of them is a 400;
- on: ``api_key``/``api_version`` replace the deployment's for that request, ``api_base``
  must pass the allow-list (``workers/api_base_policy.py``); ``user_config`` is a 400 (a
  caller's own deployments would bypass the operator's budgets and routing).

When a caller gives ``api_base``, the deployment's own key is never sent there: the caller's
``api_key`` is, or none.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from batchgate.errors import RequestError
from config.settings import (
    ApiBasePattern,
    ClientCredentialsSettings,
    Deployment,
    Provider,
    Secret,
)
from workers.api_base_policy import CheckedBase, check_api_base

CREDENTIAL_FIELDS = ("api_key", "api_base", "base_url", "api_version")
UNSUPPORTED_FIELDS = ("user_config",)
CALLER_FIELDS = (*CREDENTIAL_FIELDS, *UNSUPPORTED_FIELDS)
"""Body keys that are never sent upstream nor stored as they are."""
MAX_KEY_LENGTH = 4096
_VERSION_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
DISABLED_CODE = "client_side_credentials_disabled"
INVALID_CODE = "invalid_client_credentials"


@dataclass(frozen=True)
class ClientCredentials:
    """What a caller brought; ``api_base`` is the checked, normalised URL."""

    api_key: Secret | None = None
    api_base: str | None = None
    api_version: str | None = None

    def to_json(self) -> str:
        """The clear form, for encryption only (``workers/credentials_store.py``)."""
        return json.dumps({"api_key": self.api_key.reveal() if self.api_key else None,
                           "api_base": self.api_base, "api_version": self.api_version},
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ClientCredentials:
        """Read :meth:`to_json` back."""
        data = json.loads(text)
        key = data.get("api_key")
        return cls(Secret(key) if key else None, data.get("api_base"), data.get("api_version"))

    def apply(self, deployment: Deployment, api_base: str | None = None) -> Deployment:
        """``deployment`` as this caller calls it; ``api_base``: the base just re-checked
        (defaults to the stored one). A caller's base never gets the deployment's key."""
        base = api_base or self.api_base
        if base is None:
            return replace(deployment, api_key=self.api_key or deployment.api_key,
                           api_version=self.api_version or deployment.api_version)
        if deployment.provider is Provider.OLLAMA and not base.endswith("/v1"):
            base += "/v1"  # as the config loader does for an ollama/ api_base
        return replace(deployment, api_base=base, api_key=self.api_key,
                       api_version=self.api_version or deployment.api_version)


@dataclass(frozen=True)
class JobCredentials:
    """The credentials of a queued submission: the body's own, and each inline batch
    request's (which replace the body's for that request)."""

    default: ClientCredentials | None = None
    by_request: Mapping[int, ClientCredentials] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.default is not None or bool(self.by_request)

    def all(self) -> list[ClientCredentials]:
        """Every distinct set, in first-seen order."""
        found = [self.default] if self.default else []
        return list(dict.fromkeys([*found, *self.by_request.values()]))

    def for_items(self, origins: Sequence[int | None]) -> dict[int, ClientCredentials]:
        """Item index -> its credentials; ``origins[i]`` is the batch request line item
        ``i`` came from (None for a single or compare job). Items without any are left out."""
        out: dict[int, ClientCredentials] = {}
        for index, line in enumerate(origins):
            own = self.by_request.get(line) if line is not None else None
            chosen = own or self.default
            if chosen is not None:
                out[index] = chosen
        return out


def carries(body: Mapping[str, Any]) -> bool:
    """Whether ``body`` holds any caller credential field (null counts as absent)."""
    return any(body.get(name) is not None for name in CALLER_FIELDS)


def _error(message: str, where: str, name: str, code: str = INVALID_CODE) -> RequestError:
    param = f"{where}.{name}" if where else name
    prefix = f"{where}: " if where else ""
    return RequestError(prefix + message, param=param, code=code)


def _api_key(value: Any, where: str) -> Secret | None:
    if value is None:
        return None
    # Never echo the value: it is a credential, however malformed.
    if not isinstance(value, str) or not 0 < len(value) <= MAX_KEY_LENGTH \
            or not value.isascii() or not value.isprintable() or " " in value:
        raise _error(f"api_key must be a string of 1 to {MAX_KEY_LENGTH} printable ASCII "
                     "characters without spaces", where, "api_key")
    return Secret(value)


def _api_version(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _VERSION_RE.fullmatch(value):
        raise _error("api_version must be 1 to 64 letters, digits, '.', '_' or '-'", where,
                     "api_version")
    return value


def _api_base(body: Mapping[str, Any], patterns: Sequence[ApiBasePattern],
              where: str) -> CheckedBase | None:
    base, alias = body.get("api_base"), body.get("base_url")
    if base is not None and alias is not None and base != alias:
        raise _error("api_base and base_url disagree; give only one", where, "api_base")
    text = base if base is not None else alias
    if text is None:
        return None
    try:
        return check_api_base(text, patterns)
    except RequestError as exc:
        raise _error(exc.message, where, "api_base", code=exc.code or INVALID_CODE) from None


def take(body: dict[str, Any], settings: ClientCredentialsSettings,
         where: str = "") -> ClientCredentials | None:
    """Remove the caller credential fields from ``body`` (in place) and return what they
    say, None when there are none; raises the 400 when the feature is off or a field is
    refused. ``where`` prefixes messages and params (``requests[3].body``). Only the
    allow-list is checked here: resolving the host is the caller's I/O."""
    given = {name: body.pop(name) for name in CALLER_FIELDS if name in body}
    present = [name for name, value in given.items() if value is not None]
    if not present:
        return None
    if not settings.enabled:
        raise _error(f"{present[0]} in the request body (client-side credentials) is turned "
                     "off on this server; the operator can enable "
                     "general_settings.client_side_credentials", where, present[0],
                     code=DISABLED_CODE)
    if given.get("user_config") is not None:
        raise _error("user_config is not supported: name one of this server's models and "
                     "give api_key/api_base to use your own credentials", where,
                     "user_config")
    checked = _api_base(given, settings.allowed_api_bases, where)
    return ClientCredentials(_api_key(given.get("api_key"), where),
                             checked.url.text() if checked else None,
                             _api_version(given.get("api_version"), where))


def take_job(body: dict[str, Any], settings: ClientCredentialsSettings) -> JobCredentials:
    """:func:`take` over a ``POST /queue/requests`` body: its own fields, and those of
    every inline batch request's ``body`` (all removed in place)."""
    default = take(body, settings)
    by_request: dict[int, ClientCredentials] = {}
    requests = body.get("requests")
    for line, raw in enumerate(requests if isinstance(requests, list) else []):
        inner = raw.get("body") if isinstance(raw, dict) else None
        if isinstance(inner, dict):
            own = take(inner, settings, f"requests[{line}].body")
            if own is not None:
                by_request[line] = own
    return JobCredentials(default, by_request)
