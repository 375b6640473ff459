"""One webhook delivery attempt over HTTP, and the payload and id it carries.

:func:`deliver_once` never raises for anything the receiver or the network does: every
result is an :class:`~workers.webhooks.policy.Outcome` for :func:`~workers.webhooks.policy.decide`.
It never logs, and nothing it returns holds the secret or more of the URL than scheme+host.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import Any

import urllib3
import urllib3.exceptions

from batchgate.errors import RequestError
from workers.webhooks.policy import Outcome
from workers.webhooks.signing import webhook_headers
from workers.webhooks.urls import Resolver, Target, resolve_target

# Receivers should answer with an empty body; read a little so the connection can be reused.
MAX_ANSWER_BYTES = 64 * 1024
_CHUNK = 16 * 1024
_TRANSPORT_ERRORS = (urllib3.exceptions.HTTPError, OSError)


def message_id(job_id: str, event_type: str) -> str:
    """A ``webhook-id`` stable per job and event: a re-delivered task reuses it, and
    receivers deduplicate on it."""
    digest = hashlib.sha256(f"{job_id}\x00{event_type}".encode()).hexdigest()
    return "msg_" + digest[:24]


def event_payload(event_type: str, job_id: str, status: str,
                  request_counts: Mapping[str, int], now: float) -> dict[str, Any]:
    """The Standard Webhooks envelope for one job event."""
    stamp = datetime.fromtimestamp(now, tz=UTC).isoformat(timespec="microseconds")
    return {
        "type": event_type,
        "timestamp": stamp.replace("+00:00", "Z"),
        "data": {"id": job_id, "status": status, "request_counts": dict(request_counts)},
    }


def encode_payload(payload: Mapping[str, Any]) -> bytes:
    """Compact JSON; NaN and infinities are refused (ValueError) since JSON has none."""
    return json.dumps(payload, separators=(",", ":"), allow_nan=False,
                      ensure_ascii=False).encode()


@functools.cache
def _default_pool() -> urllib3.PoolManager:
    # Created on first use, so a forking worker builds it in the child, not the parent.
    return urllib3.PoolManager(num_pools=64, maxsize=4, block=False, retries=False)


def _post(pool: urllib3.PoolManager, target: Target, address: str, headers: dict[str, str],
          body: bytes, remaining: float) -> urllib3.BaseHTTPResponse:
    # Connect to the address that was checked; the name goes in Host and TLS SNI, and the
    # certificate is verified against it. urllib3 drops server_hostname for plain http.
    connections = pool.connection_from_host(
        address, port=target.port, scheme=target.scheme,
        pool_kwargs={"server_hostname": target.host})
    return connections.urlopen(
        "POST", target.path, body=body, headers=headers, retries=False, redirect=False,
        assert_same_host=False, preload_content=False, decode_content=False,
        timeout=urllib3.Timeout(total=remaining))


def _discard_answer(response: urllib3.BaseHTTPResponse, deadline: float) -> None:
    """Read and drop up to 64 KiB; keep the connection only if the answer ended in time."""
    seen = 0
    try:
        # read1 makes at most one socket read per call, so the deadline is checked often.
        while seen < MAX_ANSWER_BYTES and time.monotonic() < deadline:
            chunk = response.read1(min(_CHUNK, MAX_ANSWER_BYTES - seen))
            if not chunk:
                response.release_conn()
                return
            seen += len(chunk)
    except _TRANSPORT_ERRORS:
        pass
    # A half-read answer cannot be reused: drop the connection rather than drain it.
    response.close()
    response.release_conn()


def deliver_once(url: str, secret: str, payload: Mapping[str, Any], *, msg_id: str,
                 timeout: float, allowed: Collection[str],
                 pool: urllib3.PoolManager | None = None,
                 now: Callable[[], float] = time.time,
                 resolve: Resolver | None = None) -> Outcome:
    """POST ``payload`` signed with ``secret`` to ``url`` once, within about ``timeout`` s.

    The URL is checked again (DNS may have changed since submission) and the request goes
    to the addresses that check approved; redirects are never followed.
    """
    try:
        target = resolve_target(url, allowed, resolve)
        body = encode_payload(payload)
        headers = webhook_headers(secret, msg_id, int(now()), body)
    except RequestError as exc:
        return Outcome(None, None, f"refused: {exc.message}")
    headers["host"] = target.host_header
    deadline = time.monotonic() + timeout
    error = "TimeoutError"
    for address in target.addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            response = _post(pool or _default_pool(), target, address, headers, body, remaining)
        except urllib3.exceptions.ConnectTimeoutError as exc:
            # Nothing was sent (refused or unreachable; NewConnectionError is a subclass),
            # so the host's next address may be tried without risking a duplicate.
            error = type(exc).__name__
            continue
        except _TRANSPORT_ERRORS as exc:
            return Outcome(None, None, type(exc).__name__)
        _discard_answer(response, deadline)
        return Outcome(response.status, response.headers.get("retry-after"), None)
    return Outcome(None, None, error)
