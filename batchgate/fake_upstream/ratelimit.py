"""Per-model rpm/tpm limits on sliding 60 s windows, and the OpenAI headers that report them.

Pure: callers pass ``now`` (a monotonic clock), nothing here reads a clock or does I/O.

Decisions written down:
- Only admitted requests are counted. A request refused with 429 does not use up the window,
  as with OpenAI, so a client that obeys ``Retry-After`` gets in when it is told to.
- A request charges ``tokens`` = its prompt tokens + its completion tokens (both known before
  answering, since replies are deterministic), i.e. exactly the ``usage.total_tokens`` it reports.
- ``x-ratelimit-reset-*`` is the time until the oldest counted entry leaves the window (the
  earliest moment ``remaining`` grows), ``0s`` when the window is empty. ``Retry-After`` on a
  429 is the time until this request would fit; a request bigger than ``tpm`` never fits and is
  told to come back after a whole window.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

WINDOW_S = 60.0


class SlidingWindow:
    """Amounts spent within the last ``span`` seconds."""

    __slots__ = ("_events", "_total", "span")

    def __init__(self, span: float = WINDOW_S) -> None:
        self.span = span
        self._events: deque[tuple[float, int]] = deque()
        self._total = 0

    def _prune(self, now: float) -> None:
        cutoff = now - self.span
        events = self._events
        while events and events[0][0] <= cutoff:
            self._total -= events.popleft()[1]

    def used(self, now: float) -> int:
        """The total spent within the window ending at ``now``."""
        self._prune(now)
        return self._total

    def add(self, amount: int, now: float) -> None:
        """Spend ``amount`` at ``now``."""
        self._events.append((now, amount))
        self._total += amount

    def reset_in(self, now: float) -> float:
        """Seconds until the oldest entry leaves the window; 0 when it is empty."""
        self._prune(now)
        if not self._events:
            return 0.0
        return self._events[0][0] + self.span - now

    def wait_for(self, amount: int, limit: int, now: float) -> float:
        """Seconds until ``amount`` more fits under ``limit``: 0 if it fits now, inf if never."""
        if amount > limit:
            return math.inf
        excess = self.used(now) + amount - limit
        if excess <= 0:
            return 0.0
        # Walk the oldest entries until enough of them will have expired.
        for t, spent in self._events:
            excess -= spent
            if excess <= 0:
                return t + self.span - now
        return self.span  # unreachable while amount <= limit; kept as a safe bound


@dataclass(frozen=True, slots=True)
class LimitState:
    """One dimension (requests or tokens) as the x-ratelimit-* headers report it."""

    limit: int
    remaining: int
    reset_s: float


@dataclass(frozen=True, slots=True)
class Admission:
    """The rate limiter's verdict on one request."""

    admitted: bool
    retry_after_s: float = 0.0
    exceeded: str | None = None
    """``"requests"`` or ``"tokens"`` when refused."""
    used: int = 0
    """Amount already spent in the exceeded dimension, for the error message."""
    requests: LimitState | None = None
    tokens: LimitState | None = None


ADMITTED_UNLIMITED = Admission(admitted=True)


def admit(
    requests: SlidingWindow, tokens: SlidingWindow,
    rpm: int | None, tpm: int | None, amount: int, now: float,
) -> Admission:
    """Admit one request charging ``amount`` tokens, or say why not and for how long."""
    if rpm is None and tpm is None:
        return ADMITTED_UNLIMITED
    wait_r = requests.wait_for(1, rpm, now) if rpm is not None else 0.0
    wait_t = tokens.wait_for(amount, tpm, now) if tpm is not None else 0.0
    if wait_r > 0 or wait_t > 0:
        exceeded = "requests" if wait_r >= wait_t else "tokens"
        used = requests.used(now) if exceeded == "requests" else tokens.used(now)
        retry = max(wait_r, wait_t)
        return Admission(
            admitted=False, retry_after_s=WINDOW_S if math.isinf(retry) else retry,
            exceeded=exceeded, used=used,
            requests=_state(requests, rpm, now), tokens=_state(tokens, tpm, now),
        )
    if rpm is not None:
        requests.add(1, now)
    if tpm is not None:
        tokens.add(amount, now)
    return Admission(admitted=True, requests=_state(requests, rpm, now),
                     tokens=_state(tokens, tpm, now))


def _state(window: SlidingWindow, limit: int | None, now: float) -> LimitState | None:
    if limit is None:
        return None
    return LimitState(limit, max(0, limit - window.used(now)), window.reset_in(now))


def format_duration(seconds: float) -> str:
    """OpenAI's duration format for x-ratelimit-reset-*: ``20ms``, ``1s``, ``1.5s``, ``1m3s``.

    Rounded up to the millisecond, so a client never comes back too early.
    """
    ms = max(0, math.ceil(seconds * 1000 - 1e-6))  # 1e-6 absorbs float noise such as 0.02*1000
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = str(rest // 1000) if rest % 1000 == 0 else f"{rest / 1000:.3f}".rstrip("0")
    out = f"{hours}h" if hours else ""
    if hours or minutes:
        out += f"{minutes}m"
    return f"{out}{secs}s"


def retry_headers(seconds: float) -> dict[str, str]:
    """``Retry-After`` (whole seconds, at least 1) and ``retry-after-ms`` for a 429."""
    return {
        "Retry-After": str(max(1, math.ceil(seconds))),
        "retry-after-ms": str(max(1, math.ceil(seconds * 1000))),
    }


def ratelimit_headers(admission: Admission) -> dict[str, str]:
    """The x-ratelimit-* headers for the dimensions that have a limit (none when unlimited)."""
    headers: dict[str, str] = {}
    for kind, state in (("requests", admission.requests), ("tokens", admission.tokens)):
        if state is not None:
            headers[f"x-ratelimit-limit-{kind}"] = str(state.limit)
            headers[f"x-ratelimit-remaining-{kind}"] = str(state.remaining)
            headers[f"x-ratelimit-reset-{kind}"] = format_duration(state.reset_s)
    if not admission.admitted:
        headers.update(retry_headers(admission.retry_after_s))
    return headers
