"""Window arithmetic: when one more request fits a deployment's budget. Pure functions.

Both budget backends (:mod:`schedulers.memory` calls these; ``schedulers/lua/acquire.lua``
makes the same decisions in Lua, held to them by a parity test) and the picker decide with
these, so a deployment the picker thinks is ready is one the backend grants.
"""

from __future__ import annotations

import math

from schedulers.state import (
    BUCKET_SECONDS,
    WINDOW_MARGIN,
    WINDOW_SECONDS,
    Bucket,
    DeploymentState,
    Limits,
)

DEFAULT_PARALLEL_WAIT = 0.1
"""Seconds to wait for a free parallel slot when no latency has been measured yet."""
MIN_PARALLEL_WAIT = 0.02
"""The shortest wait for a parallel slot: a retry sooner than this only burns a round trip."""

REASONS = ("blocked", "rpm", "tpm", "signal_requests", "signal_tokens", "parallel")
"""Every limit that can hold a request back, in the order ties are reported."""


def bucket_of(t: float) -> int:
    """The bucket holding time ``t``."""
    return math.floor(t / BUCKET_SECONDS)


def bucket_expiry(bucket: int) -> float:
    """When ``bucket`` stops counting: its end plus the window plus the margin."""
    return (bucket + 1) * BUCKET_SECONDS + WINDOW_SECONDS + WINDOW_MARGIN


def parallel_cap(limits: Limits, state: DeploymentState) -> int | None:
    """The in-flight bound: declared ``max_parallel``, else the learned limit, else None."""
    if limits.max_parallel is not None:
        return limits.max_parallel
    if state.learned_parallel is not None:
        return max(1, math.floor(state.learned_parallel))
    return None


def _drain_time(buckets: tuple[Bucket, ...], amounts: list[int], need: int, limit: int,
                now: float) -> float:
    """When enough of the oldest buckets expire that ``sum(amounts) + need <= limit``."""
    total = sum(amounts)
    if total + need <= limit:
        return now
    if need > limit:
        return math.inf
    for bucket, amount in zip(buckets, amounts, strict=True):
        total -= amount
        if total + need <= limit:
            return max(now, bucket.expires_at)
    return math.inf  # unreachable: an empty window always fits need <= limit


def waits(limits: Limits, state: DeploymentState, tokens: int, now: float) -> dict[str, float]:
    """Each limit that holds one more request of ``tokens`` past ``now``, with the time it
    lets go (``math.inf``: never). Empty when the request fits now.

    ``state.buckets`` must be oldest first and only those with ``expires_at > now``.
    """
    found: dict[str, float] = {}
    if state.blocked_until > now:
        found["blocked"] = state.blocked_until
    buckets = state.buckets
    if limits.rpm is not None:
        t = _drain_time(buckets, [b.requests for b in buckets], 1, limits.rpm, now)
        if t > now:
            found["rpm"] = t
    if limits.tpm is not None:
        t = _drain_time(buckets, [b.tokens for b in buckets], tokens, limits.tpm, now)
        if t > now:
            found["tpm"] = t
    if (state.signal_requests is not None and state.signal_requests <= 0
            and now < state.signal_requests_reset):
        found["signal_requests"] = state.signal_requests_reset
    if (state.signal_tokens is not None and state.signal_tokens < tokens
            and now < state.signal_tokens_reset):
        found["signal_tokens"] = state.signal_tokens_reset
    cap = parallel_cap(limits, state)
    if cap is not None and state.in_flight >= cap:
        # An estimate: in-flight calls end at times nobody knows; about one call's latency.
        latency = state.latency if state.latency is not None else DEFAULT_PARALLEL_WAIT
        found["parallel"] = now + max(latency, MIN_PARALLEL_WAIT)
    return found


def ready_at(limits: Limits, state: DeploymentState, tokens: int, now: float) -> float:
    """The earliest time ``>= now`` at which one more request of ``tokens`` fits
    (``math.inf`` when it never can, e.g. more tokens than ``tpm``)."""
    return max(waits(limits, state, tokens, now).values(), default=now)


def holding(limits: Limits, state: DeploymentState, tokens: int,
            now: float) -> tuple[float, str]:
    """``(ready_at, the limit that lets go last)``; the reason is ``""`` when it fits now.

    Ties go to the first in :data:`REASONS` (the Lua twin reports the same one).
    """
    until, reason = now, ""
    for name, t in waits(limits, state, tokens, now).items():
        if t > until:
            until, reason = t, name
    return until, reason


def bulk_limits(limits: Limits, tokens: int, share: float) -> Limits:
    """The rpm and tpm bulk work may fill when ``share`` of them is kept for interactive
    callers; never so small that a request of ``tokens`` could no longer fit at all."""
    rpm = limits.rpm
    if rpm is not None:
        rpm = max(1, math.floor(rpm * (1 - share)))
    tpm = limits.tpm
    if tpm is not None and tokens <= math.floor(tpm * (1 - share)):
        tpm = math.floor(tpm * (1 - share))
    return Limits(rpm, tpm, limits.max_parallel)
