"""Master-key authentication: ``Authorization: Bearer <key>`` (or Azure's ``api-key``)."""

from __future__ import annotations

import hmac

from flask import Flask, current_app, request

from batchgate.errors import AuthenticationError
from config.settings import Secret

PUBLIC_PATHS = frozenset({"/health/liveliness", "/health/liveness"})
"""Paths a load balancer probes without a key."""


def presented_key() -> str | None:
    """The key the caller sent, if any."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("api-key") or None


def install_auth(app: Flask, master_key: Secret | None) -> None:
    """Require the master key on every route but :data:`PUBLIC_PATHS`, when one is set."""
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
        if not hmac.compare_digest(key.encode(), expected):
            raise AuthenticationError("Incorrect API key provided.")


def caller_is_master() -> bool:
    """True when the request carries the master key (which sees every job)."""
    key = current_app.extensions["batchgate.settings"].general.master_key
    return key is not None and presented_key() is not None


def caller_owner() -> str:
    """Who owns what this request creates: ``master`` with the master key, ``anonymous``
    when auth is off. Virtual keys (one owner each) build on this."""
    return "master" if caller_is_master() else "anonymous"
