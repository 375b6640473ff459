"""Who is calling: the master key, a virtual key, or anyone when no master key is set.

``Authorization: Bearer <key>`` (or Azure's ``api-key`` header). With a master key set,
every route but :data:`PUBLIC_PATHS` needs the master key or a live virtual key; the
caller is kept on ``flask.g`` for the request. Virtual keys need the master key (as in
LiteLLM's proxy): without one, auth is off and everything belongs to ``anonymous``.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterable
from dataclasses import dataclass

from flask import Flask, current_app, g, request

from batchgate.errors import AuthenticationError, PermissionDeniedError
from config.settings import Secret
from schedulers.principal import Principal
from workers.runtime import Runtime
from workers.virtual_keys import VirtualKey, hash_key

PUBLIC_PATHS = frozenset({"/health/liveliness", "/health/liveness", "/openapi.json", "/docs"})
"""Paths served without a key: what a load balancer probes, and the API's own description
(public as LiteLLM's are: it shows no model, deployment or key)."""
MASTER_OWNER = "master"
ANONYMOUS_OWNER = "anonymous"


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated caller of this request."""

    owner: str
    master: bool = False
    key: VirtualKey | None = None


ANONYMOUS = Caller(ANONYMOUS_OWNER)
MASTER = Caller(MASTER_OWNER, master=True)


def presented_key() -> str | None:
    """The key the caller sent, if any."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("api-key") or None


def _virtual_key(presented: str) -> VirtualKey:
    runtime: Runtime = current_app.extensions["batchgate.runtime"]
    if not runtime.settings.server.redis_url:
        raise AuthenticationError("Incorrect API key provided.")
    # By the hash of what was presented only: a token (the hash itself) is not a key.
    vkey = runtime.key_store.get(hash_key(presented))
    if vkey is None:
        raise AuthenticationError("Incorrect API key provided.")
    if vkey.expired(time.time()):
        raise AuthenticationError("This key has expired.", code="expired_key")
    return vkey


def install_auth(app: Flask, master_key: Secret | None) -> None:
    """Require the master key or a virtual key on every route but :data:`PUBLIC_PATHS`,
    when a master key is set."""
    if master_key is None:
        return
    expected = master_key.reveal().encode()

    @app.before_request
    def _check() -> None:
        if request.path in PUBLIC_PATHS:
            return
        key = presented_key()
        if key is None:
            raise AuthenticationError(
                "Missing API key: send it as 'Authorization: Bearer <key>'.")
        if hmac.compare_digest(key.encode(), expected):
            g.batchgate_caller = MASTER
            return
        vkey = _virtual_key(key)
        g.batchgate_caller = Caller(vkey.owner, key=vkey)


def caller() -> Caller:
    """This request's caller (anonymous when auth is off)."""
    found: Caller = g.get("batchgate_caller", ANONYMOUS)
    return found


def caller_is_master() -> bool:
    """True when the request carries the master key (which sees every job)."""
    return caller().master


def caller_owner() -> str:
    """Who owns what this request creates: ``master``, ``key:<token>`` for a virtual key,
    ``anonymous`` when auth is off."""
    return caller().owner


def caller_principal() -> Principal | None:
    """The caller's own limits, for the scheduler (None for master and anonymous)."""
    key = caller().key
    return key.principal if key is not None else None


def check_models(groups: Iterable[str]) -> None:
    """Raise when the caller's key may not use one of ``groups``."""
    key = caller().key
    if key is not None:
        key.check_models(groups)


def require_master() -> None:
    """Admin routes: the master key only (and a master key must be set)."""
    settings = current_app.extensions["batchgate.settings"]
    if settings.general.master_key is None:
        raise PermissionDeniedError(
            "Virtual keys need a master key: set general_settings.master_key "
            "(or BATCHGATE_MASTER_KEY).", code="master_key_not_set")
    if not caller_is_master():
        raise PermissionDeniedError("Only the master key may manage keys.")
