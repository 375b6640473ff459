"""Calling a deployment with a caller's own credentials, re-checked at every call.

The gateway routes as usual (same groups, budgets, retries, fallbacks); only the client it
calls through changes: :class:`CredentialedClient` swaps the caller's key, base URL and API
version into whichever deployment was picked, right before the request is sent. Just
before that it checks the caller's ``api_base`` again against the allow-list, resolving the
host now, so a name that resolved to a public address at submit time and to a private one
since (DNS rebinding, or a job that waited hours) is refused at the call.

A refused call becomes the upstream answer a caller's own mistake would be, a 400 with
``code: invalid_api_base``: the scheduler then releases its room as for any 4xx, the
deployment's health is untouched, and no retry is made.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from batchgate.errors import RequestError
from config.settings import ClientCredentialsSettings, Deployment
from workers.api_base_policy import admit, check_api_base
from workers.client_credentials import ClientCredentials, take
from workers.gateway import Gateway
from workers.upstream import UpstreamClient, UpstreamReply, UpstreamStream
from workers.webhooks.urls import Resolver, system_resolver

_JSON = {"content-type": "application/json"}


def verify(credentials: ClientCredentials, settings: ClientCredentialsSettings,
           resolve: Resolver | None = None) -> str | None:
    """The base URL to call for ``credentials`` (None: the deployment's own), checked now
    against ``settings`` and what its host resolves to; raises the 400 when refused."""
    if not settings.enabled:
        # Switched off since the job was submitted: its credentials are not used any more.
        raise RequestError("client-side credentials have been turned off on this server",
                           param="api_key", code="client_side_credentials_disabled")
    if credentials.api_base is None:
        return None
    checked = check_api_base(credentials.api_base, settings.allowed_api_bases)
    if checked.needs_resolving:
        try:
            found = (resolve or system_resolver)(checked.url.host, checked.url.port)
        except (OSError, UnicodeError):
            found = []
        admit(checked, found)
    return checked.url.text()


class _Refusal:
    """A :class:`~workers.transports.RawResponse` holding the 400 of a refused call."""

    def __init__(self, body: bytes) -> None:
        self.status = 400
        self.headers: Mapping[str, str] = _JSON
        self._body = body

    def read(self) -> bytes:
        return self._body

    def iter_bytes(self) -> Iterator[bytes]:
        yield self._body

    def close(self) -> None:
        pass


class CredentialedClient(UpstreamClient):
    """An :class:`UpstreamClient` that calls through ``inner`` with a caller's credentials.

    It owns nothing: closing it leaves the shared pooled client open.
    """

    def __init__(self, inner: UpstreamClient, credentials: ClientCredentials,
                 settings: ClientCredentialsSettings, resolve: Resolver | None = None) -> None:
        # No super().__init__(): every call goes to ``inner`` and its pooled transport.
        self._inner = inner
        self._credentials = credentials
        self._policy = settings
        self._resolve = resolve

    def _deployment(self, deployment: Deployment) -> Deployment | bytes:
        """The deployment to call, or the error body when the caller's base is refused."""
        try:
            base = verify(self._credentials, self._policy, self._resolve)
        except RequestError as exc:
            return json.dumps(exc.envelope()).encode()
        return self._credentials.apply(deployment, base)

    def send(self, deployment: Deployment, endpoint: str, payload: bytes) -> UpstreamReply:
        """POST with the caller's credentials; a refused base answers 400 without a call."""
        target = self._deployment(deployment)
        if isinstance(target, bytes):
            return UpstreamReply(deployment, 400, dict(_JSON), target, 0.0)
        return self._inner.send(target, endpoint, payload)

    def open_stream(self, deployment: Deployment, endpoint: str,
                    payload: bytes) -> UpstreamStream:
        """As :meth:`send`, for ``stream: true``."""
        target = self._deployment(deployment)
        if isinstance(target, bytes):
            return UpstreamStream(deployment, 400, dict(_JSON), 0.0, _Refusal(target))
        return self._inner.open_stream(target, endpoint, payload)

    def close(self) -> None:
        """Nothing to release: the inner client is shared."""


def with_credentials(gateway: Gateway, credentials: ClientCredentials | None,
                     resolve: Resolver | None = None) -> Gateway:
    """``gateway`` calling with ``credentials`` (itself when there are none)."""
    if credentials is None:
        return gateway
    policy = gateway.settings.general.client_side_credentials
    return gateway.with_client(
        lambda inner: CredentialedClient(inner, credentials, policy, resolve))


def from_body(gateway: Gateway, body: dict[str, Any], resolve: Resolver | None = None
              ) -> Gateway:
    """``gateway`` calling with the credentials ``body`` carries (taken out of it in place,
    so they are never forwarded as JSON), checked now: the 400 when refused."""
    policy = gateway.settings.general.client_side_credentials
    credentials = take(body, policy)
    if credentials is not None:
        verify(credentials, policy, resolve)
    return with_credentials(gateway, credentials, resolve)
