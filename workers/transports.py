"""How bytes reach an upstream: one small interface, two implementations.

:class:`Urllib3Transport` is what batchgate runs: measured on this project's benchmark
(``bench/overhead.py``) a urllib3 pool costs less than half the CPU per request of
``httpx.Client`` (0.2 vs 0.5 ms in-process) and does not serialise threads on a pool lock.
:class:`HttpxTransport` wraps an ``httpx.Client``, so unit tests drive the whole gateway with
``httpx.MockTransport``. Each transport translates its library's errors into ours, once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

import httpx
import urllib3
import urllib3.exceptions

from batchgate.errors import UpstreamDownError, UpstreamTimeoutError, UpstreamUnavailableError

DEFAULT_MAX_CONNECTIONS = 512
_CHUNK = 16 * 1024


@dataclass(frozen=True)
class Timeouts:
    """Seconds to connect, and to wait for each read of the answer."""

    connect: float
    read: float


class RawResponse(Protocol):
    """An upstream response whose body has not been read yet."""

    status: int
    headers: Mapping[str, str]

    def read(self) -> bytes:
        """The whole body; releases the connection."""
        ...

    def iter_bytes(self) -> Iterator[bytes]:
        """The body as it arrives; releases the connection when done."""
        ...

    def close(self) -> None:
        """Drop the rest of the body and release the connection."""
        ...


class Transport(Protocol):
    """Sends one POST; raises :class:`UpstreamTimeoutError` / :class:`UpstreamUnavailableError`
    (with ``where`` in the message) when no HTTP answer arrives."""

    def post(self, url: str, headers: Mapping[str, str], body: bytes, timeouts: Timeouts,
             where: str) -> RawResponse:
        """Send the request and return once the response headers are in."""
        ...

    def close(self) -> None:
        """Close pooled connections."""
        ...


def _timeout(where: str, exc: Exception) -> UpstreamTimeoutError:
    return UpstreamTimeoutError(f"{where} did not answer in time ({type(exc).__name__})")


def _unavailable(where: str, exc: Exception) -> UpstreamUnavailableError:
    return UpstreamUnavailableError(f"{where} could not be reached ({type(exc).__name__})")


def _down(where: str, exc: Exception) -> UpstreamDownError:
    return UpstreamDownError(f"{where} could not be reached ({type(exc).__name__})")


def _translate_urllib3(exc: urllib3.exceptions.HTTPError, where: str) -> Exception:
    # Refused, unresolvable or no connection in time (NewConnectionError subclasses
    # ConnectTimeoutError): the request never left, so it is safe to send again later.
    if isinstance(exc, urllib3.exceptions.ConnectTimeoutError):
        return _down(where, exc)
    if isinstance(exc, urllib3.exceptions.TimeoutError):
        return _timeout(where, exc)
    return _unavailable(where, exc)


class _Urllib3Response:
    def __init__(self, response: urllib3.BaseHTTPResponse, where: str) -> None:
        self._response = response
        self._where = where
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers

    def read(self) -> bytes:
        try:
            return self._response.read()
        except urllib3.exceptions.HTTPError as exc:
            raise _translate_urllib3(exc, self._where) from None
        finally:
            self._response.release_conn()

    def iter_bytes(self) -> Iterator[bytes]:
        try:
            yield from self._response.stream(_CHUNK)
        except urllib3.exceptions.HTTPError as exc:
            raise _translate_urllib3(exc, self._where) from None
        finally:
            self._response.release_conn()

    def close(self) -> None:
        # A half-read body cannot be reused: drop the connection rather than drain it.
        self._response.close()
        self._response.release_conn()


class Urllib3Transport:
    """A thread-safe urllib3 pool: no retries, no redirects (an OpenAI API never redirects
    a POST on purpose), gzip answers decoded."""

    def __init__(self, max_connections: int = DEFAULT_MAX_CONNECTIONS) -> None:
        self._pool = urllib3.PoolManager(num_pools=64, maxsize=max_connections, block=False,
                                         retries=False)

    def post(self, url: str, headers: Mapping[str, str], body: bytes, timeouts: Timeouts,
             where: str) -> RawResponse:
        try:
            response = self._pool.urlopen(
                "POST", url, body=body, headers=dict(headers), redirect=False,
                preload_content=False, decode_content=True,
                timeout=urllib3.Timeout(connect=timeouts.connect, read=timeouts.read))
        except urllib3.exceptions.HTTPError as exc:
            raise _translate_urllib3(exc, where) from None
        return _Urllib3Response(response, where)

    def close(self) -> None:
        self._pool.clear()


def _translate_httpx(exc: httpx.HTTPError, where: str) -> Exception:
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return _down(where, exc)
    if isinstance(exc, httpx.TimeoutException):
        return _timeout(where, exc)
    return _unavailable(where, exc)


class _HttpxResponse:
    def __init__(self, response: httpx.Response, where: str) -> None:
        self._response = response
        self._where = where
        self.status = response.status_code
        self.headers: Mapping[str, str] = response.headers

    def read(self) -> bytes:
        try:
            return self._response.read()
        except httpx.HTTPError as exc:
            raise _translate_httpx(exc, self._where) from None
        finally:
            self._response.close()

    def iter_bytes(self) -> Iterator[bytes]:
        try:
            yield from self._response.iter_bytes()
        except httpx.HTTPError as exc:
            raise _translate_httpx(exc, self._where) from None
        finally:
            self._response.close()

    def close(self) -> None:
        self._response.close()


class HttpxTransport:
    """An ``httpx.Client`` as a transport (tests pass one built on ``httpx.MockTransport``)."""

    def __init__(self, client: httpx.Client) -> None:
        self._client = client

    def post(self, url: str, headers: Mapping[str, str], body: bytes, timeouts: Timeouts,
             where: str) -> RawResponse:
        request = self._client.build_request(
            "POST", url, content=body, headers=dict(headers),
            timeout=httpx.Timeout(timeouts.read, connect=timeouts.connect))
        try:
            return _HttpxResponse(self._client.send(request, stream=True), where)
        except httpx.HTTPError as exc:
            raise _translate_httpx(exc, where) from None

    def close(self) -> None:
        self._client.close()
