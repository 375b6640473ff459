"""The budget backend contract, and the policy constants both backends apply.

:class:`Budgets` has two implementations with the same semantics: :class:`~schedulers.budget.
RedisBudgets` (shared by every worker, one Lua script per operation) and :class:`~schedulers.
memory.MemoryBudgets` (one process; the readable reference of what the scripts do).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from config.settings import Deployment
from schedulers.state import (
    CooldownPolicy,
    Denied,
    DeploymentState,
    Grant,
    Limits,
    Priority,
    Report,
    Snapshot,
)

INTERACTIVE_HOLD = 0.5
"""Seconds past an interactive caller's ready time during which bulk grants are refused, so
the budget that frees up then goes to the interactive caller."""
INTERACTIVE_SHARE = 0.1
"""Share of a deployment's rpm and tpm that bulk work leaves free while interactive callers
have used the deployment within the last window, so they rarely wait behind a full window."""
DEFAULT_THROTTLE_PAUSE = 1.0
"""Seconds a deployment pauses after a 429 that did not say how long (no ``Retry-After``)."""
DEFAULT_SIGNAL_RESET = 60.0
"""Seconds an ``x-ratelimit-remaining-*`` stays in force when no ``x-ratelimit-reset-*``."""
LATENCY_ALPHA = 0.2
"""Weight of the newest sample in the latency moving average."""
MIN_CUT_INTERVAL = 1.0
"""At most one AIMD cut per this many seconds (or per latency, when longer): a burst of 429s
from one overload cuts the learned limit once."""


class Budgets(Protocol):
    """Where deployments' rate-limit budgets live; every method is one atomic step per
    deployment on the backend's clock."""

    def snapshot(self, deployments: Sequence[Deployment]) -> Snapshot:
        """The budget state of ``deployments`` now (keyed by ``Deployment.id``)."""
        ...

    def acquire(self, deployment: Deployment, tokens: int, priority: Priority,
                lease: float) -> Grant | Denied:
        """Reserve one request of ``tokens`` held for at most ``lease`` seconds, or say when
        to try again."""
        ...

    def release(self, grant: Grant, report: Report, deployment: Deployment,
                cooldown: CooldownPolicy) -> None:
        """End ``grant``: correct its tokens and learn from how the call ended."""
        ...

    def inspect(self, deployments: Sequence[Deployment]) -> dict[str, dict[str, Any]]:
        """A JSON-able view of each deployment's budget (for ``/health``)."""
        ...


def describe(limits: Limits, state: DeploymentState, now: float) -> dict[str, Any]:
    """One deployment's budget as plain JSON values: its limits, use and learned values."""
    def until(t: float) -> float | None:
        return t if t > now else None

    return {
        "limits": {"rpm": limits.rpm, "tpm": limits.tpm, "max_parallel": limits.max_parallel},
        "requests": state.requests,
        "tokens": state.tokens,
        "in_flight": state.in_flight,
        "blocked_until": until(state.blocked_until),
        "learned_parallel": state.learned_parallel,
        "latency": state.latency,
        "signal_requests": state.signal_requests,
        "signal_requests_reset": until(state.signal_requests_reset),
        "signal_tokens": state.signal_tokens,
        "signal_tokens_reset": until(state.signal_tokens_reset),
        "interactive_until": until(state.interactive_until),
        "now": now,
    }


def inspect_snapshot(snapshot: Snapshot,
                     deployments: Sequence[Deployment]) -> dict[str, dict[str, Any]]:
    """:func:`describe` for each of ``deployments`` in ``snapshot``."""
    return {d.id: describe(Limits.of(d), snapshot.of(d.id), snapshot.now) for d in deployments}
