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
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from config.settings import DEFAULT_LEASE_MARGIN, Deployment, Settings
from schedulers.backend import Budgets
from schedulers.fallbacks import RoutingOptions, fallback_chain
from schedulers.picker import Strategy, Wait, choose
from schedulers.principal import NO_COOLDOWN, Principal, budget_subject, principal_report
from schedulers.retry import ErrorClass, RetryPolicy
from schedulers.state import (
    NO_SIGNALS,
    CooldownPolicy,
    Grant,
    Outcome,
    Priority,
    Report,
    Snapshot,
)

MAX_RACES = 3
"""Candidates tried when other workers take the room first, before answering Busy."""
UNTRACKED_STRATEGIES = frozenset({Strategy.SIMPLE_SHUFFLE, Strategy.COST_BASED})
"""Strategies that rank without shared counts (so unlimited deployments need no reservation)."""
UNTRACKED = ""
UNTRACKED_BUCKET = -1
SNAPSHOT_TTL = 0.05
"""Seconds a group's budget snapshot is reused for ranking deployments."""


@dataclass(frozen=True, slots=True)
class Reservation:
    """Room reserved on a deployment: call it, then release."""

    deployment: Deployment
    grant: Grant
    headroom: dict[str, str]
    """The group's OpenAI-style ``x-ratelimit-*`` headers as of this reservation."""
    tracked: bool = True
    """False when nothing needed reserving (see :meth:`Scheduler.reserve`)."""
    principal: tuple[Principal, Grant] | None = field(default=None, compare=False)
    """The caller's own budget reserved with it, released with it."""


@dataclass(frozen=True, slots=True)
class Busy:
    """No deployment of the group has room for ``delay`` seconds (``inf``: it never will)."""

    delay: float
    caller: bool = False
    """True when the caller's own limit (its key's) is what holds it, not the deployments'."""

    @property
    def never(self) -> bool:
        """True when the request can never fit (more tokens than any deployment's tpm)."""
        return math.isinf(self.delay)


def headroom(group: Sequence[Deployment], snapshot: Snapshot,
             grant: Grant | None = None) -> dict[str, str]:
    """``x-ratelimit-limit|remaining-requests|tokens`` summed over the group, for the limits
    every deployment of the group declares (the granted deployment's use as of its grant)."""
    def used(d: Deployment, kind: str) -> int:
        if grant is not None and grant.deployment_id == d.id:
            return grant.window_requests if kind == "requests" else grant.window_tokens
        state = snapshot.of(d.id)
        return state.requests if kind == "requests" else state.tokens

    out: dict[str, str] = {}
    for kind, limits in (("requests", [d.rpm for d in group]),
                         ("tokens", [d.tpm for d in group])):
        if any(limit is None for limit in limits):
            continue
        declared = [limit or 0 for limit in limits]
        spent = sum(min(limit, used(d, kind)) for d, limit in zip(group, declared, strict=True))
        out[f"x-ratelimit-limit-{kind}"] = str(sum(declared))
        out[f"x-ratelimit-remaining-{kind}"] = str(max(0, sum(declared) - spent))
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
        self._local: Counter[str] = Counter()
        """Untracked calls in flight in this process, by deployment."""
        self._lock = threading.Lock()

    def group(self, name: str) -> tuple[Deployment, ...]:
        """The deployments of a model group."""
        return self._groups[name]

    def lease(self, deployment: Deployment) -> float:
        """How long a reservation holds a parallel slot if it is never released."""
        return self.settings.timeout_for(deployment) + DEFAULT_LEASE_MARGIN

    def reserve(self, group: str, tokens: int, priority: Priority,
                avoid: Sequence[str] = (), principal: Principal | None = None,
                ) -> Reservation | Busy:
        """Room for one request of ``tokens`` on a deployment of ``group``, or how long until
        there might be; within ``principal``'s own limits first, when it declares any."""
        if principal is None or not principal.limited:
            return self._reserve(group, tokens, priority, avoid)
        lease = max(self.lease(d) for d in self._groups[group])
        own = self.budgets.acquire(budget_subject(principal), tokens, priority, lease)
        if not isinstance(own, Grant):
            now = self._snapshot(group, fresh=False)[1]
            return Busy(max(0.0, own.until - now), caller=True)
        got = self._reserve(group, tokens, priority, avoid)
        if isinstance(got, Busy):
            self.budgets.release(own, Report(Outcome.UNSENT), budget_subject(principal),
                                 NO_COOLDOWN)
            return got
        return replace(got, principal=(principal, own))

    def _reserve(self, group: str, tokens: int, priority: Priority,
                 avoid: Sequence[str]) -> Reservation | Busy:
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
        if self._untracked(choice[0], snapshot):
            return self._untracked_reservation(choice[0], tokens, now)
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

    def _untracked(self, deployment: Deployment, snapshot: Snapshot) -> bool:
        """Whether a call needs no reservation: the deployment declares no limit, has learned
        none and has no upstream limit in force, and the strategy ranks without shared
        counts. Its calls then cost no Redis round trip while all goes well; a failure or a
        rate-limit signal is still reported, and from the first 429 on (a learned limit) every
        call is reserved and counted."""
        if deployment.rpm or deployment.tpm or deployment.max_parallel_requests:
            return False
        if self.settings.router.routing_strategy not in UNTRACKED_STRATEGIES:
            return False
        state = snapshot.of(deployment.id)
        return (state.learned_parallel is None and state.signal_requests is None
                and state.signal_tokens is None)

    def _untracked_reservation(self, deployment: Deployment, tokens: int,
                               now: float) -> Reservation:
        with self._lock:
            self._local[deployment.id] += 1
        grant = Grant(deployment.id, UNTRACKED, UNTRACKED_BUCKET, tokens, now)
        return Reservation(deployment, grant, {}, tracked=False)

    def release(self, reservation: Reservation, report: Report) -> None:
        """Give the room back, saying how the call went."""
        if reservation.principal is not None:
            principal, grant = reservation.principal
            self.budgets.release(grant, principal_report(report), budget_subject(principal),
                                 NO_COOLDOWN)
        if not reservation.tracked:
            with self._lock:
                in_flight = self._local[reservation.deployment.id]
                self._local[reservation.deployment.id] -= 1
            if report.outcome in (Outcome.OK, Outcome.UNSENT) and report.signals == NO_SIGNALS:
                return
            report = replace(report, in_flight=in_flight)
        self.budgets.release(reservation.grant, report, reservation.deployment, self._cooldown)
        if report.outcome is not Outcome.OK:
            # It may be cooling or paused now: rank on fresh state next time.
            self._snapshots.pop(reservation.deployment.model_name, None)

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

