"""Calls to upstream deployments over one pooled transport per process.

Error messages name the deployment by id and group, never by URL (an ``api_base`` may carry
credentials in its userinfo) and never by key.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from config.settings import Deployment, Settings
from workers.transports import RawResponse, Timeouts, Transport, Urllib3Transport

PASSTHROUGH_HEADERS = ("content-type", "retry-after", "retry-after-ms", "x-request-id",
                       "openai-processing-ms")
"""Upstream response headers a caller may see (plus every ``x-ratelimit-*``)."""

_REQUEST_HEADERS = {"content-type": "application/json", "accept": "application/json"}


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
    _response: RawResponse = field(repr=False)
    routing_headers: dict[str, str] = field(default_factory=dict)
    """``x-batchgate-*`` and ``x-ratelimit-*`` headers the gateway adds for the caller."""
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def on_close(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once when the stream is closed (the scheduler's release)."""
        self._closers.append(callback)

    def iter_bytes(self) -> Iterator[bytes]:
        """The body chunks as they arrive; the connection is released when done."""
        return self._response.iter_bytes()

    def read(self) -> bytes:
        """The whole body (used when the upstream answered an error instead of a stream)."""
        return self._response.read()

    def close(self) -> None:
        """Release the connection without reading the rest of the body."""
        self._response.close()
        closers, self._closers = self._closers, []
        for callback in closers:
            callback()


def where(deployment: Deployment) -> str:
    """How errors name a deployment: by id and group, never by URL or key."""
    return f"deployment {deployment.id!r} of model group {deployment.model_name!r}"


class UpstreamClient:
    """Sends request bodies to deployments; one per process, shared by every thread."""

    def __init__(self, settings: Settings, transport: Transport | None = None) -> None:
        self._settings = settings
        self._transport = transport or Urllib3Transport()

    def _post(self, deployment: Deployment, endpoint: str, payload: bytes) -> RawResponse:
        read = self._settings.timeout_for(deployment)
        timeouts = Timeouts(connect=min(read, self._settings.server.connect_timeout), read=read)
        headers = {**_REQUEST_HEADERS, **deployment.auth_headers()}
        return self._transport.post(deployment.url(endpoint), headers, payload, timeouts,
                                    where(deployment))

    def send(self, deployment: Deployment, endpoint: str, payload: bytes) -> UpstreamReply:
        """POST ``payload`` (JSON bytes) to ``endpoint`` of ``deployment``; read the answer."""
        start = time.perf_counter()
        response = self._post(deployment, endpoint, payload)
        body = response.read()
        return UpstreamReply(deployment, response.status, passthrough_headers(response.headers),
                             body, time.perf_counter() - start)

    def open_stream(self, deployment: Deployment, endpoint: str, payload: bytes) -> UpstreamStream:
        """POST ``payload`` and return as soon as the response headers arrive."""
        start = time.perf_counter()
        response = self._post(deployment, endpoint, payload)
        return UpstreamStream(deployment, response.status, passthrough_headers(response.headers),
                              time.perf_counter() - start, response)

    def close(self) -> None:
        """Close every pooled connection."""
        self._transport.close()
