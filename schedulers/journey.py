"""One request's way through retries and fallbacks: a pure state machine.

A :class:`Journey` records where a request stands: the group it is trying, the calls made,
the deployments that failed it, the fallback groups still to try. :func:`after_failure`
decides what the next step is after a failed call: the same group again after a delay (a
retry carries its delay, it never sleeps), the next fallback group, or give up. The caller
does the I/O; the queue persists the journey between deferred runs (:meth:`Journey.dump`).

Order, as in LiteLLM: ``num_retries`` (or ``retry_policy``) on the requested group, avoiding
a deployment that failed while another exists; then the fallback groups in order (the chain
is chosen by the first error that exhausts the retries: context-window and content-policy
errors have their own lists), each with its own retries.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from schedulers.retry import ErrorClass, RetryPolicy, backoff


@dataclass(frozen=True, slots=True)
class Journey:
    """Where one request stands."""

    requested: str
    """The model group the caller named."""
    group: str
    """The group being tried now (``requested``, or a fallback)."""
    attempts: int = 0
    """Upstream calls made so far, in every group."""
    group_attempts: int = 0
    """Calls made to :attr:`group`."""
    avoid: tuple[str, ...] = ()
    """Deployments of :attr:`group` that failed this request."""
    chain: tuple[str, ...] | None = None
    """Fallback groups still to try; ``None`` until the first fallback is chosen."""
    last_error: str | None = field(default=None)
    down_since: float | None = None
    """When (epoch seconds) a queued request first found no deployment left to try that could
    be reached; it waits for one to come back (see ``Gateway.run``)."""

    @classmethod
    def start(cls, group: str) -> Journey:
        """A fresh journey to ``group``."""
        return cls(requested=group, group=group)

    @property
    def fallback(self) -> str | None:
        """The fallback group answering, when it is not the requested one."""
        return self.group if self.group != self.requested else None

    def sent(self) -> Journey:
        """The journey after one more call was made."""
        return replace(self, attempts=self.attempts + 1, group_attempts=self.group_attempts + 1)

    def dump(self) -> str:
        """JSON for the queue's attempts record."""
        return json.dumps({"requested": self.requested, "group": self.group,
                           "attempts": self.attempts, "group_attempts": self.group_attempts,
                           "avoid": list(self.avoid),
                           "chain": None if self.chain is None else list(self.chain),
                           "last_error": self.last_error, "down_since": self.down_since},
                          separators=(",", ":"))

    @classmethod
    def load(cls, text: str) -> Journey:
        """The journey :meth:`dump` wrote."""
        raw: dict[str, Any] = json.loads(text)
        chain = raw.get("chain")
        return cls(requested=raw["requested"], group=raw["group"],
                   attempts=int(raw["attempts"]), group_attempts=int(raw["group_attempts"]),
                   avoid=tuple(raw.get("avoid") or ()),
                   chain=None if chain is None else tuple(chain),
                   last_error=raw.get("last_error"), down_since=raw.get("down_since"))


@dataclass(frozen=True, slots=True)
class Retry:
    """Call :attr:`Journey.group` again, not before ``delay`` seconds."""

    delay: float


@dataclass(frozen=True, slots=True)
class Fallback:
    """Move on to another group (its deployments have not been tried)."""

    group: str


@dataclass(frozen=True, slots=True)
class GiveUp:
    """No retry and no fallback left: the last failure is the answer."""


Step = Retry | Fallback | GiveUp
Chains = Callable[[str, ErrorClass], tuple[str, ...]]
"""(requested group, error) -> the fallback groups for it, in order."""


def after_failure(journey: Journey, error: ErrorClass, *, deployment_id: str | None,
                  retry_after: float | None, policy: Callable[[str], RetryPolicy],
                  chains: Chains, rng: random.Random) -> tuple[Journey, Step]:
    """What to do after a call of ``journey`` failed with ``error``."""
    avoid = journey.avoid
    if deployment_id is not None and deployment_id not in avoid:
        avoid = (*avoid, deployment_id)
    journey = replace(journey, avoid=avoid, last_error=error.value)
    retries = policy(journey.group).retries(error)
    if journey.group_attempts <= retries:
        return journey, Retry(backoff(journey.group_attempts - 1, retry_after, rng))
    chain = journey.chain
    if chain is None:
        chain = chains(journey.requested, error)
    if not chain:
        return replace(journey, chain=()), GiveUp()
    nxt, rest = chain[0], chain[1:]
    return (replace(journey, group=nxt, group_attempts=0, avoid=(), chain=rest),
            Fallback(nxt))
