"""What the fake upstream has seen: counters, concurrency, and a capped per-request log.

``GET /_stats`` answers :meth:`Stats.snapshot`::

    {"requests": 12, "by_model": {"gpt-a": 12}, "by_endpoint": {"chat/completions": 12},
     "by_status": {"200": 10, "429": 2}, "in_flight": 0, "max_in_flight": 4,
     "log": [{"t": 1767000000.123, "model": "gpt-a", "endpoint": "chat/completions",
              "status": 200, "inputs": 1, "extra_keys": ["metadata"], "auth": "9f86d081884c"}]}

Only API requests count (not /_stats, /_config, /_reset, /_health). A request is counted and
logged when it ends; ``t`` is its arrival time. A request whose client went away before the
answer (e.g. during an injected hang) is logged with status 499. Credentials are never stored:
``auth`` is the first 12 hex digits of the credential's SHA-256, enough to tell keys apart.
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

CLIENT_CLOSED = 499
"""Status logged when the client disconnected before an answer (nginx's convention)."""


@lru_cache(maxsize=1024)
def credential_hash(credential: str) -> str:
    """The credential's fingerprint as logged: sha256 hex, first 12 digits (cached: few keys)."""
    return hashlib.sha256(credential.encode()).hexdigest()[:12]


@dataclass(slots=True)
class Call:
    """One API request, filled in while it is handled, logged when it ends."""

    t: float
    endpoint: str
    auth: str | None
    model: str | None = None
    status: int = 0
    inputs: int = 0
    extra_keys: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The log entry's JSON shape."""
        return {"t": self.t, "model": self.model, "endpoint": self.endpoint,
                "status": self.status, "inputs": self.inputs,
                "extra_keys": list(self.extra_keys), "auth": self.auth}


class Stats:
    """Counters and the request log; single-threaded (one event loop), so no locks."""

    def __init__(self, log_size: int) -> None:
        self.log: deque[Call] = deque(maxlen=log_size)
        self.requests = 0
        self.by_model: dict[str, int] = {}
        self.by_endpoint: dict[str, int] = {}
        self.by_status: dict[int, int] = {}
        self.in_flight = 0
        self.max_in_flight = 0

    def reset(self) -> None:
        """Forget everything except requests still in flight (they will end and be counted)."""
        self.requests = 0
        self.by_model.clear()
        self.by_endpoint.clear()
        self.by_status.clear()
        self.max_in_flight = self.in_flight
        self.log.clear()

    def resize(self, log_size: int) -> None:
        """Keep at most ``log_size`` entries from now on (the newest survive)."""
        if log_size != self.log.maxlen:
            self.log = deque(self.log, maxlen=log_size)

    def begin(self, t: float, endpoint: str, credential: str | None) -> Call:
        """A request arrived at ``t`` (unix time)."""
        self.in_flight += 1
        if self.in_flight > self.max_in_flight:
            self.max_in_flight = self.in_flight
        return Call(t, endpoint, credential_hash(credential) if credential else None)

    def end(self, call: Call) -> None:
        """The request ended with ``call.status``."""
        self.in_flight -= 1
        self.requests += 1
        if call.model is not None:
            self.by_model[call.model] = self.by_model.get(call.model, 0) + 1
        self.by_endpoint[call.endpoint] = self.by_endpoint.get(call.endpoint, 0) + 1
        self.by_status[call.status] = self.by_status.get(call.status, 0) + 1
        self.log.append(call)

    def snapshot(self, *, include_log: bool = True) -> dict[str, Any]:
        """The ``GET /_stats`` body (``?log=0`` leaves out the log, which can be large)."""
        return {
            "requests": self.requests,
            "by_model": dict(self.by_model),
            "by_endpoint": dict(self.by_endpoint),
            "by_status": {str(status): n for status, n in sorted(self.by_status.items())},
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "log": [call.as_dict() for call in self.log] if include_log else [],
        }
