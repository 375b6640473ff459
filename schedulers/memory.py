"""Budgets kept in one process: used when no Redis is configured, and in unit tests.

This is the readable reference of the semantics ``schedulers/lua/*.lua`` implement on Redis
(a parity test drives both through the same sequences): every method takes the lock, so each
is one atomic step, as each script is.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from config.settings import Deployment
from schedulers.backend import (
    DEFAULT_SIGNAL_RESET,
    DEFAULT_THROTTLE_PAUSE,
    INTERACTIVE_HOLD,
    INTERACTIVE_SHARE,
    LATENCY_ALPHA,
    MIN_CUT_INTERVAL,
    inspect_snapshot,
)
from schedulers.state import (
    WINDOW_SECONDS,
    Bucket,
    CooldownPolicy,
    Denied,
    DeploymentState,
    Grant,
    Limits,
    Outcome,
    Priority,
    Report,
    Signals,
    Snapshot,
)
from schedulers.window import bucket_expiry, bucket_of, bulk_limits, holding


@dataclass
class _Budget:
    """One deployment's budget: what the Redis backend keeps in its window, inflight and
    state keys."""

    window: dict[int, list[int]] = field(default_factory=dict)
    """Bucket -> [requests, tokens]."""
    in_flight: dict[str, float] = field(default_factory=dict)
    """Reservation -> lease deadline."""
    blocked_until: float = 0.0
    fails: list[float] = field(default_factory=list)
    """When the failures still inside the cooldown window happened."""
    learned: float | None = None
    cut_at: float | None = None
    latency: float | None = None
    signal_requests: int | None = None
    signal_requests_reset: float = 0.0
    signal_tokens: int | None = None
    signal_tokens_reset: float = 0.0
    interactive_until: float = 0.0
    interactive_seen: float = -math.inf
    cooling_until: float = 0.0

    def prune(self, now: float) -> None:
        """Forget buckets that stopped counting and leases that ran out (dead workers)."""
        for bucket in [b for b in self.window if bucket_expiry(b) <= now]:
            del self.window[bucket]
        for reservation in [r for r, deadline in self.in_flight.items() if deadline <= now]:
            del self.in_flight[reservation]

    def state(self, now: float) -> DeploymentState:
        """The budget as the scheduler sees it at ``now`` (after :meth:`prune`)."""
        buckets = tuple(Bucket(bucket_expiry(b), r, t)
                        for b, (r, t) in sorted(self.window.items()))
        requests_on = now < self.signal_requests_reset
        tokens_on = now < self.signal_tokens_reset
        return DeploymentState(
            buckets=buckets, in_flight=len(self.in_flight), blocked_until=self.blocked_until,
            learned_parallel=self.learned, latency=self.latency,
            signal_requests=self.signal_requests if requests_on else None,
            signal_requests_reset=self.signal_requests_reset if requests_on else 0.0,
            signal_tokens=self.signal_tokens if tokens_on else None,
            signal_tokens_reset=self.signal_tokens_reset if tokens_on else 0.0,
            interactive_until=self.interactive_until, cooling_until=self.cooling_until)


class MemoryBudgets:
    """:class:`~schedulers.backend.Budgets` in one process, on ``clock`` (``time.time``)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._budgets: dict[str, _Budget] = {}
        self._reservations = 0

    def _budget(self, deployment_id: str, now: float) -> _Budget:
        budget = self._budgets.setdefault(deployment_id, _Budget())
        budget.prune(now)
        return budget

    def snapshot(self, deployments: Sequence[Deployment]) -> Snapshot:
        """The budget state of ``deployments`` now."""
        with self._lock:
            now = self._clock()
            return Snapshot(now, {d.id: self._budget(d.id, now).state(now)
                                  for d in deployments})

    def inspect(self, deployments: Sequence[Deployment]) -> dict[str, dict[str, Any]]:
        """A JSON-able view of each deployment's budget."""
        return inspect_snapshot(self.snapshot(deployments), deployments)

    def acquire(self, deployment: Deployment, tokens: int, priority: Priority,
                lease: float) -> Grant | Denied:
        """Reserve one request of ``tokens`` for ``lease`` seconds, or say when to retry."""
        with self._lock:
            now = self._clock()
            budget = self._budget(deployment.id, now)
            if priority is Priority.BULK and budget.interactive_until > now:
                return Denied(budget.interactive_until, "interactive")
            limits = Limits.of(deployment)
            if priority is Priority.BULK and budget.interactive_seen > now - WINDOW_SECONDS:
                limits = bulk_limits(limits, tokens, INTERACTIVE_SHARE)
            until, reason = holding(limits, budget.state(now), tokens, now)
            if until > now:
                if priority is Priority.INTERACTIVE and math.isfinite(until):
                    budget.interactive_until = max(budget.interactive_until,
                                                   until + INTERACTIVE_HOLD)
                return Denied(until, reason)
            if priority is Priority.INTERACTIVE:
                budget.interactive_seen = now
            bucket = bucket_of(now)
            counts = budget.window.setdefault(bucket, [0, 0])
            counts[0] += 1
            counts[1] += tokens
            self._reservations += 1
            reservation = f"m{self._reservations}"
            budget.in_flight[reservation] = now + lease
            if budget.signal_requests is not None and now < budget.signal_requests_reset:
                budget.signal_requests -= 1
            if budget.signal_tokens is not None and now < budget.signal_tokens_reset:
                budget.signal_tokens -= tokens
            counted = budget.state(now)
            return Grant(deployment.id, reservation, bucket, tokens, now, counted.requests,
                         counted.tokens)

    def release(self, grant: Grant, report: Report, deployment: Deployment,
                cooldown: CooldownPolicy) -> None:
        """End ``grant``: correct its tokens and learn from how the call ended."""
        with self._lock:
            now = self._clock()
            budget = self._budget(grant.deployment_id, now)
            budget.in_flight.pop(grant.reservation, None)
            # The call being released was in flight, even when its lease already ran out.
            in_flight_before = max(len(budget.in_flight) + 1, report.in_flight or 0)
            counts = budget.window.get(grant.bucket)  # absent once it stopped counting
            if report.outcome is Outcome.UNSENT:
                _refund(budget, grant, counts, now)
            elif report.tokens is not None and counts is not None:
                counts[1] = max(0, counts[1] + report.tokens - grant.tokens)
            if report.outcome is Outcome.OK:
                _succeeded(budget, report, deployment)
            elif report.outcome is Outcome.THROTTLED:
                _throttled(budget, report.signals, deployment, in_flight_before, now)
            elif report.outcome is Outcome.FAILED:
                _failed(budget, cooldown, now)
            _apply_signals(budget, report.signals, now)


def _refund(budget: _Budget, grant: Grant, counts: list[int] | None, now: float) -> None:
    """The request never left: it counts against nothing."""
    if counts is not None:
        counts[0] = max(0, counts[0] - 1)
        counts[1] = max(0, counts[1] - grant.tokens)
        if counts == [0, 0]:
            del budget.window[grant.bucket]
    if budget.signal_requests is not None and now < budget.signal_requests_reset:
        budget.signal_requests += 1
    if budget.signal_tokens is not None and now < budget.signal_tokens_reset:
        budget.signal_tokens += grant.tokens


def _succeeded(budget: _Budget, report: Report, deployment: Deployment) -> None:
    """Latency moving average; additive increase of a learned concurrency limit."""
    if report.latency is not None:
        budget.latency = (report.latency if budget.latency is None else
                          budget.latency + LATENCY_ALPHA * (report.latency - budget.latency))
    if budget.learned is not None and deployment.max_parallel_requests is None:
        budget.learned += 1 / budget.learned


def _throttled(budget: _Budget, signals: Signals, deployment: Deployment,
               in_flight_before: int, now: float) -> None:
    """A 429: pause, and halve the learned concurrency (once per overload)."""
    pause = signals.retry_after if signals.retry_after is not None else DEFAULT_THROTTLE_PAUSE
    budget.blocked_until = max(budget.blocked_until, now + pause)
    if deployment.max_parallel_requests is not None:
        return
    interval = max(budget.latency or 0.0, MIN_CUT_INTERVAL)
    if budget.cut_at is not None and now < budget.cut_at + interval:
        return
    learned = budget.learned if budget.learned is not None else math.inf
    budget.learned = max(1.0, min(learned, in_flight_before) / 2)
    budget.cut_at = now


def _failed(budget: _Budget, cooldown: CooldownPolicy, now: float) -> None:
    """Count a failure; more than ``allowed_fails`` within the window cools down."""
    if cooldown.allowed_fails < 0 or cooldown.cooldown_time <= 0:
        return
    budget.fails = [t for t in budget.fails if t > now - cooldown.window] + [now]
    if len(budget.fails) > cooldown.allowed_fails:
        budget.blocked_until = max(budget.blocked_until, now + cooldown.cooldown_time)
        budget.cooling_until = now + cooldown.cooldown_time
        budget.fails = []


def _apply_signals(budget: _Budget, signals: Signals, now: float) -> None:
    """``x-ratelimit-remaining-*`` holds until its ``x-ratelimit-reset-*``."""
    if signals.remaining_requests is not None:
        budget.signal_requests = signals.remaining_requests
        reset = signals.reset_requests
        budget.signal_requests_reset = now + (reset if reset is not None
                                              else DEFAULT_SIGNAL_RESET)
    if signals.remaining_tokens is not None:
        budget.signal_tokens = signals.remaining_tokens
        reset = signals.reset_tokens
        budget.signal_tokens_reset = now + (reset if reset is not None else DEFAULT_SIGNAL_RESET)
