"""Which deployment of a model group serves the next request: a pure decision.

:func:`choose` sees a budget snapshot, the request's token estimate and the backend's ``now``,
and returns the deployments that can take the request right now, best first, or when the
earliest one frees up. It never talks to Redis or the network, so it is tested in
microseconds; the budget backend then reserves atomically, and only that reservation counts.

Order of preference (LiteLLM's): deployments with room now; among them the lowest ``order``
tier; within the tier, the routing strategy's ranking. A deployment in ``avoid`` (it just
failed this request) is used only when nothing else has room.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from config.settings import Deployment
from schedulers.state import DeploymentState, Limits, Snapshot
from schedulers.window import ready_at

UNSET_ORDER = 1 << 30


class Strategy(enum.StrEnum):
    """LiteLLM's ``routing_strategy`` names."""

    SIMPLE_SHUFFLE = "simple-shuffle"
    LEAST_BUSY = "least-busy"
    USAGE_BASED = "usage-based-routing"
    USAGE_BASED_V2 = "usage-based-routing-v2"
    LATENCY_BASED = "latency-based-routing"
    COST_BASED = "cost-based-routing"


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing has room: the earliest moment (backend clock) one might; ``inf`` if never."""

    until: float


def order_of(deployment: Deployment) -> int:
    """A deployment's ``order`` tier (unset counts as last)."""
    return deployment.order if deployment.order is not None else UNSET_ORDER


def lowest_order_tier(group: Sequence[Deployment]) -> list[Deployment]:
    """The deployments sharing the smallest ``order``."""
    best = min(order_of(d) for d in group)
    return [d for d in group if order_of(d) == best]


def choose(group: Sequence[Deployment], snapshot: Snapshot, tokens: int,
           strategy: str = Strategy.SIMPLE_SHUFFLE, rng: random.Random | None = None,
           avoid: Collection[str] = ()) -> list[Deployment] | Wait:
    """The deployments of ``group`` with room for a request of ``tokens`` now, best first;
    or :class:`Wait` until the earliest one has room."""
    if not group:
        raise ValueError("cannot pick from an empty model group")
    now = snapshot.now
    ready = {d.id: ready_at(Limits.of(d), snapshot.of(d.id), tokens, now) for d in group}
    open_now = [d for d in group if ready[d.id] <= now]
    if not open_now:
        return Wait(min(ready.values()))
    preferred = [d for d in open_now if d.id not in avoid] or open_now
    rank = RANKERS.get(strategy, rank_shuffle)
    out: list[Deployment] = []
    remaining = preferred
    while remaining:
        tier = lowest_order_tier(remaining)
        out.extend(rank(tier, snapshot, rng or random.Random()))
        remaining = [d for d in remaining if d not in tier]
    out.extend(d for d in open_now if d not in out)
    return out


Ranker = Callable[[Sequence[Deployment], Snapshot, random.Random], list[Deployment]]


def shuffle_weights(tier: Sequence[Deployment]) -> list[float]:
    """LiteLLM's simple-shuffle weights: ``weight`` if any is set, else ``rpm``, else ``tpm``
    when every deployment declares it, else equal."""
    if any(d.weight != 1.0 for d in tier):
        return [d.weight for d in tier]
    if all(d.rpm for d in tier):
        return [float(d.rpm or 0) for d in tier]
    if all(d.tpm for d in tier):
        return [float(d.tpm or 0) for d in tier]
    return [1.0] * len(tier)


def rank_shuffle(tier: Sequence[Deployment], _snapshot: Snapshot,
                 rng: random.Random) -> list[Deployment]:
    """A weighted random order (Efraimidis-Spirakis: sort by u ** (1 / w))."""
    weights = shuffle_weights(tier)
    keyed = [(rng.random() ** (1.0 / w) if w > 0 else 0.0, i) for i, w in enumerate(weights)]
    keyed.sort(reverse=True)
    return [tier[i] for _, i in keyed]


def _rank_by(key: Callable[[Deployment, DeploymentState], float]) -> Ranker:
    def rank(tier: Sequence[Deployment], snapshot: Snapshot,
             rng: random.Random) -> list[Deployment]:
        # Ties are broken at random so equal deployments share the load.
        return sorted(tier, key=lambda d: (key(d, snapshot.of(d.id)), rng.random()))
    return rank


def utilisation(deployment: Deployment, state: DeploymentState) -> float:
    """How much of its declared rpm/tpm a deployment has used (0..1); raw tokens when it
    declares neither."""
    shares = []
    if deployment.rpm:
        shares.append(state.requests / deployment.rpm)
    if deployment.tpm:
        shares.append(state.tokens / deployment.tpm)
    return max(shares) if shares else float(state.tokens)


def _latency(_d: Deployment, state: DeploymentState) -> float:
    # An unmeasured deployment goes first, so every one gets measured.
    return state.latency if state.latency is not None else -math.inf


RANKERS: dict[str, Ranker] = {
    Strategy.SIMPLE_SHUFFLE: rank_shuffle,
    Strategy.COST_BASED: rank_shuffle,
    Strategy.LEAST_BUSY: _rank_by(lambda _d, s: float(s.in_flight)),
    Strategy.USAGE_BASED: _rank_by(utilisation),
    Strategy.USAGE_BASED_V2: _rank_by(utilisation),
    Strategy.LATENCY_BASED: _rank_by(_latency),
}
