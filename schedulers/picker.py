"""Which deployment of a model group serves the next request: a pure decision.

The picker sees a snapshot (the group's deployments, and the ones to avoid) and a source of
randomness; it never talks to Redis or the network, so it is tested in microseconds. The rate
limit aware scheduler replaces the strategy behind the same :class:`Picker` protocol.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from typing import Protocol

from config.settings import Deployment


class Picker(Protocol):
    """Chooses one deployment of a group."""

    def pick(self, group: Sequence[Deployment], avoid: Collection[str] = ()) -> Deployment:
        """A deployment of ``group``, preferring ones whose id is not in ``avoid``."""
        ...


def lowest_order_tier(group: Sequence[Deployment]) -> list[Deployment]:
    """The deployments sharing the smallest ``order`` (unset counts as last), LiteLLM-style."""
    def rank(d: Deployment) -> int:
        return d.order if d.order is not None else 1 << 30

    best = min(rank(d) for d in group)
    return [d for d in group if rank(d) == best]


class WeightedShuffle:
    """LiteLLM's ``simple-shuffle``: a random pick weighted by ``weight``, within the best tier.

    Deployments in ``avoid`` (e.g. one that just failed) are skipped while others remain.
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def pick(self, group: Sequence[Deployment], avoid: Collection[str] = ()) -> Deployment:
        """A weighted random deployment of ``group``; raises ``ValueError`` when it is empty."""
        if not group:
            raise ValueError("cannot pick from an empty model group")
        candidates = [d for d in group if d.id not in avoid] or list(group)
        tier = lowest_order_tier(candidates)
        if len(tier) == 1:
            return tier[0]
        return self._rng.choices(tier, weights=[d.weight for d in tier], k=1)[0]
