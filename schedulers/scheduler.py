"""The scheduler: the pure picker and policies joined to a budget backend.

``reserve`` = one snapshot of the group's budgets, :func:`schedulers.picker.choose`, then an
atomic reservation on the best candidate (the next one if another worker won the race). A
caller that gets :class:`Busy` waits (sync routes, up to their timeout) or defers (queued
work, through the broker); it never spins. ``release`` reports how the call went, which
corrects the token estimate, feeds cooldowns, AIMD and the upstream's own signals.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

from config.settings import DEFAULT_LEASE_MARGIN, Deployment, Settings
from schedulers.backend import Budgets
from schedulers.fallbacks import RoutingOptions, fallback_chain
from schedulers.picker import Wait, choose
from schedulers.retry import ErrorClass, RetryPolicy
from schedulers.state import CooldownPolicy, Grant, Priority, Report, Snapshot

MAX_RACES = 3
"""Candidates tried when other workers take the room first, before answering Busy."""
SNAPSHOT_TTL = 0.05
"""Seconds a group's budget snapshot is reused for ranking deployments."""


@dataclass(frozen=True, slots=True)
class Reservation:
    """Room reserved on a deployment: call it, then release."""

    deployment: Deployment
    grant: Grant
    headroom: dict[str, str]
    """The group's OpenAI-style ``x-ratelimit-*`` headers as of this reservation."""


@dataclass(frozen=True, slots=True)
class Busy:
    """No deployment of the group has room for ``delay`` seconds (``inf``: it never will)."""

    delay: float

    @property
    def never(self) -> bool:
        """True when the request can never fit (more tokens than any deployment's tpm)."""
        return math.isinf(self.delay)


def headroom(group: Sequence[Deployment], snapshot: Snapshot,
             grant: Grant | None = None) -> dict[str, str]:
    """``x-ratelimit-limit|remaining-requests|tokens`` summed over the group, for the limits
    every deployment of the group declares (the granted deployment's use as of its grant)."""
    def requests(d: Deployment) -> int:
        if grant is not None and grant.deployment_id == d.id:
            return grant.window_requests
        return snapshot.of(d.id).requests

    def tokens(d: Deployment) -> int:
        if grant is not None and grant.deployment_id == d.id:
            return grant.window_tokens
        return snapshot.of(d.id).tokens

    out: dict[str, str] = {}
    rpm = [d.rpm for d in group]
    tpm = [d.tpm for d in group]
    if all(limit is not None for limit in rpm):
        used = sum(min(d.rpm or 0, requests(d)) for d in group)
        total = sum(limit or 0 for limit in rpm)
        out["x-ratelimit-limit-requests"] = str(total)
        out["x-ratelimit-remaining-requests"] = str(max(0, total - used))
    if all(limit is not None for limit in tpm):
        used = sum(min(d.tpm or 0, tokens(d)) for d in group)
        total = sum(limit or 0 for limit in tpm)
        out["x-ratelimit-limit-tokens"] = str(total)
        out["x-ratelimit-remaining-tokens"] = str(max(0, total - used))
    return out


class Scheduler:
    """Reserves and releases room on deployments for one process; safe across threads."""

    def __init__(self, settings: Settings, budgets: Budgets,
                 rng: random.Random | None = None) -> None:
        self.settings = settings
        self.budgets = budgets
        self.rng = rng or random.Random()
        self._groups = settings.groups()
        router = settings.router
        self._cooldown = CooldownPolicy(
            allowed_fails=-1 if router.disable_cooldowns else router.allowed_fails,
            cooldown_time=router.cooldown_time)
        self._policies: dict[str, RetryPolicy] = {}
        self._snapshots: dict[str, tuple[Snapshot, float]] = {}

    def group(self, name: str) -> tuple[Deployment, ...]:
        """The deployments of a model group."""
        return self._groups[name]

    def lease(self, deployment: Deployment) -> float:
        """How long a reservation holds a parallel slot if it is never released."""
        return self.settings.timeout_for(deployment) + DEFAULT_LEASE_MARGIN

    def reserve(self, group: str, tokens: int, priority: Priority,
                avoid: Sequence[str] = ()) -> Reservation | Busy:
        """Room for one request of ``tokens`` on a deployment of ``group``, or how long until
        there might be."""
        deployments = self._groups[group]
        strategy = self.settings.router.routing_strategy
        snapshot, now = self._snapshot(group, fresh=False)
        choice = choose(deployments, snapshot, tokens, strategy, self.rng, avoid)
        if isinstance(choice, Wait):
            # A recent snapshot may be out of date exactly when room frees up: look again.
            snapshot, now = self._snapshot(group, fresh=True)
            choice = choose(deployments, snapshot, tokens, strategy, self.rng, avoid)
            if isinstance(choice, Wait):
                return Busy(max(0.0, choice.until - now))
        earliest = math.inf
        for deployment in choice[:MAX_RACES]:
            got = self.budgets.acquire(deployment, tokens, priority, self.lease(deployment))
            if isinstance(got, Grant):
                return Reservation(deployment, got, headroom(deployments, snapshot, got))
            earliest = min(earliest, got.until)
        return Busy(max(0.0, earliest - now))

    def _snapshot(self, group: str, *, fresh: bool) -> tuple[Snapshot, float]:
        """The group's budgets, at most :data:`SNAPSHOT_TTL` old unless ``fresh``, and the
        backend's clock now (the snapshot's, advanced by the time since it was taken).

        Ranking by a snapshot a few milliseconds old costs nothing in correctness (the
        reservation itself is atomic and checked against the real state) and saves a round
        trip and a parse of every bucket on most requests."""
        cached = self._snapshots.get(group)
        clock = time.monotonic()
        if cached is not None and not fresh and clock - cached[1] < SNAPSHOT_TTL:
            return cached[0], cached[0].now + (clock - cached[1])
        snapshot = self.budgets.snapshot(self._groups[group])
        self._snapshots[group] = (snapshot, time.monotonic())
        return snapshot, snapshot.now

    def release(self, reservation: Reservation, report: Report) -> None:
        """Give the room back, saying how the call went."""
        self.budgets.release(reservation.grant, report, reservation.deployment, self._cooldown)

    def retry_policy(self, group: str) -> RetryPolicy:
        """``num_retries`` / ``retry_policy`` / ``model_group_retry_policy`` for a group."""
        policy = self._policies.get(group)
        if policy is None:
            policy = self._policies[group] = RetryPolicy.of(self.settings.router, group)
        return policy

    def fallbacks(self, group: str, error: ErrorClass,
                  options: RoutingOptions) -> tuple[str, ...]:
        """The fallback groups to try, in order, after ``group`` failed with ``error``."""
        chain = fallback_chain(group, error, self.settings.router, options)
        return tuple(g for g in (self.settings.resolve_group(name) for name in chain)
                     if g is not None and g != group)

