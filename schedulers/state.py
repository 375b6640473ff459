"""The values the scheduler's parts exchange: limits, a budget snapshot, grants and reports.

These are the contract between the pure decisions (:mod:`schedulers.picker`,
:mod:`schedulers.journey`) and the budget backends (:mod:`schedulers.budget` on Redis,
:mod:`schedulers.memory` in one process). Times are absolute seconds on the backend's clock
(Redis ``TIME`` for the Redis backend), so every worker on every host agrees on them.

Window semantics (both backends, and :func:`schedulers.window.ready_at`):

- rpm and tpm are counted on a sliding 60 s window of small buckets
  (:data:`BUCKET_SECONDS`). A bucket stops counting only when its *end* plus the window plus
  :data:`WINDOW_MARGIN` has passed, so the count is never below what any upstream sliding
  window could see, even for a request that reaches the upstream a little after it was
  granted.
- ``max_parallel_requests`` (or the limit learned from 429s) bounds in-flight grants; each
  in-flight grant holds a lease and is forgotten when the lease runs out (a dead worker).
- A bulk request is refused while an interactive one waits for the same deployment
  (``interactive_until``), so interactive work gets the budget as it frees up.
- A deployment is *blocked* until ``blocked_until``: cooling down after ``allowed_fails``,
  paused by an upstream ``Retry-After``, or out of what ``x-ratelimit-remaining-*`` allowed
  until ``x-ratelimit-reset-*``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from config.settings import Deployment

WINDOW_SECONDS = 60.0
BUCKET_SECONDS = 0.25
WINDOW_MARGIN = 0.25
"""Extra seconds a grant keeps counting: covers the time from grant to the upstream's clock."""


@dataclass(frozen=True, slots=True)
class Limits:
    """What a deployment declares (LiteLLM's keys); ``None`` means not limited."""

    rpm: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None

    @classmethod
    def of(cls, deployment: Deployment) -> Limits:
        """The limits declared on ``deployment``."""
        return cls(deployment.rpm, deployment.tpm, deployment.max_parallel_requests)

    @property
    def declared(self) -> bool:
        """True when any limit is declared."""
        return self.rpm is not None or self.tpm is not None or self.max_parallel is not None


@dataclass(frozen=True, slots=True)
class Bucket:
    """Requests and tokens granted in one bucket, and when they stop counting."""

    expires_at: float
    requests: int
    tokens: int


@dataclass(frozen=True, slots=True)
class DeploymentState:
    """One deployment's use of its budget, as the backend saw it at ``Snapshot.now``."""

    buckets: tuple[Bucket, ...] = ()
    """Still-counting buckets, oldest first."""
    in_flight: int = 0
    blocked_until: float = 0.0
    """Cooling down, paused by ``Retry-After``, or out of the upstream's reported remaining."""
    learned_parallel: float | None = None
    """The concurrency learned from 429s (AIMD) where no ``max_parallel_requests`` is declared."""
    latency: float | None = None
    """Moving average of seconds per successful call (latency-based routing)."""
    signal_requests: int | None = None
    """Requests the upstream said remain (``x-ratelimit-remaining-requests``, less what was
    granted since), until ``signal_requests_reset``; ``None`` when no such signal is in force."""
    signal_requests_reset: float = 0.0
    signal_tokens: int | None = None
    signal_tokens_reset: float = 0.0
    interactive_until: float = 0.0
    """Bulk grants are refused until then: an interactive caller is waiting for this budget."""
    cooling_until: float = 0.0
    """Cooling down after ``allowed_fails`` failures until then (it is also blocked): the
    deployment is failing, not busy."""

    @property
    def requests(self) -> int:
        """Requests counted in the window."""
        return sum(b.requests for b in self.buckets)

    @property
    def tokens(self) -> int:
        """Tokens counted in the window."""
        return sum(b.tokens for b in self.buckets)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The budget state of some deployments at one moment of the backend's clock."""

    now: float
    states: Mapping[str, DeploymentState] = field(default_factory=dict)

    def of(self, deployment_id: str) -> DeploymentState:
        """The state of one deployment (empty when the backend has none)."""
        return self.states.get(deployment_id, EMPTY)


EMPTY = DeploymentState()


class Priority(enum.StrEnum):
    """Who is asking: interactive callers are served before bulk batch items."""

    INTERACTIVE = "interactive"
    BULK = "bulk"


@dataclass(frozen=True, slots=True)
class Grant:
    """A reservation of one request (and ``tokens``) on a deployment, held until released."""

    deployment_id: str
    reservation: str
    bucket: int
    """The bucket the grant was counted in (where a token correction goes)."""
    tokens: int
    granted_at: float
    window_requests: int = 0
    """Requests counted in the deployment's window, this one included."""
    window_tokens: int = 0
    """Tokens counted in the deployment's window, this grant's included."""


@dataclass(frozen=True, slots=True)
class Denied:
    """No room now: try again at ``until`` (backend clock)."""

    until: float
    reason: str


class Outcome(enum.StrEnum):
    """How a granted call ended, as far as the budget is concerned."""

    OK = "ok"
    """The upstream answered (2xx, or the caller's own 4xx)."""
    THROTTLED = "throttled"
    """The upstream said 429."""
    FAILED = "failed"
    """5xx, timeout, unreachable: counts toward ``allowed_fails``."""
    UNSENT = "unsent"
    """The request never left (nothing to count against the deployment)."""


@dataclass(frozen=True, slots=True)
class Signals:
    """What an upstream's response headers say about its limits."""

    retry_after: float | None = None
    """Seconds the upstream asked us to wait (``retry-after-ms`` or ``Retry-After``)."""
    remaining_requests: int | None = None
    remaining_tokens: int | None = None
    reset_requests: float | None = None
    """Seconds until ``remaining_requests`` is replenished."""
    reset_tokens: float | None = None


NO_SIGNALS = Signals()


@dataclass(frozen=True, slots=True)
class Report:
    """What the caller of the upstream tells the backend when it releases a grant."""

    outcome: Outcome
    tokens: int | None = None
    """The tokens the upstream charged (``usage.total_tokens``), to correct the estimate."""
    signals: Signals = NO_SIGNALS
    latency: float | None = None
    in_flight: int | None = None
    """The caller's own count of calls in flight to the deployment, this one included: what
    an AIMD cut starts from when the backend did not track the call (an untracked grant)."""


@dataclass(frozen=True, slots=True)
class CooldownPolicy:
    """LiteLLM's ``allowed_fails`` (failures within :attr:`window`) -> ``cooldown_time``."""

    allowed_fails: int
    cooldown_time: float
    window: float = WINDOW_SECONDS
