"""Calls to upstream deployments over one pooled HTTP client per process.

httpx errors are translated here, once, into :mod:`batchgate.errors`; nothing above this module
sees an httpx exception. Error messages name the deployment by id and group, never by URL
(an ``api_base`` may carry credentials in its userinfo) and never by key.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import httpx

from batchgate.errors import UpstreamTimeoutError, UpstreamUnavailableError
from config.settings import Deployment, Settings

DEFAULT_MAX_CONNECTIONS = 512
DEFAULT_KEEPALIVE_EXPIRY = 30.0

PASSTHROUGH_HEADERS = ("content-type", "retry-after", "retry-after-ms", "x-request-id",
                       "openai-processing-ms")
"""Upstream response headers a caller may see (plus every ``x-ratelimit-*``)."""


def passthrough_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The upstream headers worth handing to the caller: content type, rate-limit signals."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower in PASSTHROUGH_HEADERS or lower.startswith("x-ratelimit-"):
            out[lower] = value
    return out


@dataclass
class UpstreamReply:
    """A complete upstream answer, whatever its status."""

    deployment: Deployment
    status: int
    headers: dict[str, str]
    body: bytes
    elapsed: float
    """Seconds from sending the request to the last byte of the body."""


@dataclass
class UpstreamStream:
    """An upstream answer whose body is read as it arrives (``stream: true``)."""

    deployment: Deployment
    status: int
    headers: dict[str, str]
    elapsed: float
    """Seconds from sending the request to the response headers."""
    _response: httpx.Response = field(repr=False)

    def iter_bytes(self) -> Iterator[bytes]:
        """The body chunks as they arrive; the connection is released when done or closed."""
        try:
            yield from self._response.iter_bytes()
        except httpx.HTTPError as exc:
            raise _translate(exc, self.deployment) from None
        finally:
            self._response.close()

    def read(self) -> bytes:
        """The whole body (used when the upstream answered an error instead of a stream)."""
        try:
            return self._response.read()
        except httpx.HTTPError as exc:
            raise _translate(exc, self.deployment) from None
        finally:
            self._response.close()

    def close(self) -> None:
        """Release the connection without reading the rest of the body."""
        self._response.close()


def _translate(exc: httpx.HTTPError, deployment: Deployment) -> Exception:
    where = f"deployment {deployment.id!r} of model group {deployment.model_name!r}"
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeoutError(f"{where} did not answer in time ({type(exc).__name__})")
    return UpstreamUnavailableError(f"{where} could not be reached ({type(exc).__name__})")


class UpstreamClient:
    """One pooled ``httpx.Client`` shared by every request of this process."""

    def __init__(self, settings: Settings, *, transport: httpx.BaseTransport | None = None,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS) -> None:
        self._settings = settings
        self._client = httpx.Client(
            transport=transport,
            limits=httpx.Limits(max_connections=max_connections,
                                max_keepalive_connections=max_connections,
                                keepalive_expiry=DEFAULT_KEEPALIVE_EXPIRY),
            # Redirects are not followed: an OpenAI API never redirects a POST on purpose.
            follow_redirects=False,
            trust_env=False,
        )

    def _request(self, deployment: Deployment, endpoint: str, payload: bytes) -> httpx.Request:
        headers = {"content-type": "application/json", "accept": "application/json"}
        headers.update(deployment.auth_headers())
        read = self._settings.timeout_for(deployment)
        timeout = httpx.Timeout(read, connect=min(read, self._settings.server.connect_timeout))
        return self._client.build_request("POST", deployment.url(endpoint), content=payload,
                                          headers=headers, timeout=timeout)

    def send(self, deployment: Deployment, endpoint: str, payload: bytes) -> UpstreamReply:
        """POST ``payload`` (JSON bytes) to ``endpoint`` of ``deployment``; read the answer."""
        start = time.perf_counter()
        try:
            response = self._client.send(self._request(deployment, endpoint, payload))
        except httpx.HTTPError as exc:
            raise _translate(exc, deployment) from None
        return UpstreamReply(deployment, response.status_code,
                             passthrough_headers(response.headers), response.content,
                             time.perf_counter() - start)

    def open_stream(self, deployment: Deployment, endpoint: str, payload: bytes) -> UpstreamStream:
        """POST ``payload`` and return as soon as the response headers arrive."""
        start = time.perf_counter()
        try:
            response = self._client.send(self._request(deployment, endpoint, payload),
                                         stream=True)
        except httpx.HTTPError as exc:
            raise _translate(exc, deployment) from None
        return UpstreamStream(deployment, response.status_code,
                              passthrough_headers(response.headers),
                              time.perf_counter() - start, response)

    def close(self) -> None:
        """Close every pooled connection."""
        self._client.close()
