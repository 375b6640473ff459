"""Budgets in Redis, shared by every worker on every host: one Lua script per operation.

``acquire.lua`` and ``release.lua`` are each one atomic step on one deployment's three keys
(window, inflight, state; see :mod:`config.keys`), on Redis's clock (``TIME``), so workers
whose clocks disagree still share one window. :class:`~schedulers.memory.MemoryBudgets` is the
readable reference of what the scripts do; a parity test holds them to it.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any, cast

import redis

from config.keys import DEPLOYMENT_STATE_TTL, Keys
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
    BUCKET_SECONDS,
    WINDOW_MARGIN,
    WINDOW_SECONDS,
    Bucket,
    CooldownPolicy,
    Denied,
    DeploymentState,
    Grant,
    Priority,
    Report,
    Snapshot,
)
from schedulers.window import DEFAULT_PARALLEL_WAIT, MIN_PARALLEL_WAIT, bucket_expiry

WINDOW_TTL = math.ceil(WINDOW_SECONDS + WINDOW_MARGIN + BUCKET_SECONDS) + 1
"""Seconds a window hash outlives its last write: by then every bucket in it stopped counting."""


def _constants() -> str:
    """The Python constants the scripts share, as Lua locals (one source of truth)."""
    values: dict[str, float] = {
        "BUCKET_SECONDS": BUCKET_SECONDS, "WINDOW_SECONDS": WINDOW_SECONDS,
        "WINDOW_MARGIN": WINDOW_MARGIN, "WINDOW_TTL": WINDOW_TTL,
        "STATE_TTL": DEPLOYMENT_STATE_TTL,
        "DEFAULT_PARALLEL_WAIT": DEFAULT_PARALLEL_WAIT, "MIN_PARALLEL_WAIT": MIN_PARALLEL_WAIT,
        "INTERACTIVE_HOLD": INTERACTIVE_HOLD, "INTERACTIVE_SHARE": INTERACTIVE_SHARE,
        "DEFAULT_THROTTLE_PAUSE": DEFAULT_THROTTLE_PAUSE,
        "DEFAULT_SIGNAL_RESET": DEFAULT_SIGNAL_RESET, "LATENCY_ALPHA": LATENCY_ALPHA,
        "MIN_CUT_INTERVAL": MIN_CUT_INTERVAL,
    }
    return "".join(f"local {name} = {value!r}\n" for name, value in values.items())


def script_text(name: str) -> str:
    """``schedulers/lua/<name>.lua`` behind the shared constants and helpers."""
    folder = resources.files("schedulers") / "lua"
    helpers = (folder / "_window.lua").read_text()
    return _constants() + helpers + "\n" + (folder / f"{name}.lua").read_text()


def _arg(value: float | None) -> float | str:
    """An optional number as a script argument (``''`` = not given)."""
    return "" if value is None else value


def _fields(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _float(fields: dict[str, str], name: str) -> float | None:
    value = fields.get(name)
    return float(value) if value else None


def _buckets(window: str, now: float) -> tuple[Bucket, ...]:
    """The still-counting buckets, oldest first, of a window hash sent as one
    newline-separated string (its ``requests``/``tokens``/``low`` totals are skipped)."""
    flat = window.split("\n") if window else []
    found = sorted((int(name), value) for name, value in _fields(flat).items()
                   if name.isdigit())
    buckets = []
    for bucket, value in found:
        expires_at = bucket_expiry(bucket)
        if expires_at > now:
            requests, tokens = value.split()
            buckets.append(Bucket(expires_at, int(requests), int(tokens)))
    return tuple(buckets)


def parse_state(window: str, in_flight: int, state_flat: list[str],
                now: float) -> DeploymentState:
    """A :class:`DeploymentState` from what ``snapshot.lua`` read, as seen at ``now``."""
    st = _fields(state_flat)

    def signal(name: str) -> tuple[int | None, float]:
        reset = _float(st, f"{name}_reset") or 0.0
        return (int(st[name]), reset) if now < reset and st.get(name) else (None, 0.0)

    signal_requests, signal_requests_reset = signal("sig_req")
    signal_tokens, signal_tokens_reset = signal("sig_tok")
    return DeploymentState(
        buckets=_buckets(window, now), in_flight=in_flight,
        blocked_until=_float(st, "blocked_until") or 0.0,
        learned_parallel=_float(st, "learned"), latency=_float(st, "latency"),
        signal_requests=signal_requests, signal_requests_reset=signal_requests_reset,
        signal_tokens=signal_tokens, signal_tokens_reset=signal_tokens_reset,
        interactive_until=_float(st, "interactive_until") or 0.0,
        cooling_until=_float(st, "cooling_until") or 0.0)


class RedisBudgets:
    """:class:`~schedulers.backend.Budgets` in Redis; ``redis`` must decode responses.

    ``clock`` is for tests only: it replaces Redis ``TIME`` to control time.
    """

    def __init__(self, redis: redis.Redis, keys: Keys,
                 clock: Callable[[], float] | None = None) -> None:
        self.redis = redis
        self.keys = keys
        self._clock = clock
        self._acquire = redis.register_script(script_text("acquire"))
        self._release = redis.register_script(script_text("release"))
        self._snapshot = redis.register_script(script_text("snapshot"))

    def _now(self) -> float | str:
        return "" if self._clock is None else self._clock()

    def _keys(self, deployment_id: str) -> list[str]:
        return [self.keys.deployment_window(deployment_id),
                self.keys.deployment_inflight(deployment_id),
                self.keys.deployment_state(deployment_id)]

    def snapshot(self, deployments: Sequence[Deployment]) -> Snapshot:
        """The budget state of ``deployments`` now, in one round trip (read-only)."""
        if not deployments:
            now = self._clock() if self._clock else _redis_time(self.redis)
            return Snapshot(now)
        pipe = self.redis.pipeline(transaction=False)
        for d in deployments:
            self._snapshot(keys=self._keys(d.id), args=[self._now()], client=pipe)
        replies = cast(list[list[Any]], pipe.execute())
        # Each script read its own clock; the latest one is the snapshot's moment.
        now = max(float(reply[0]) for reply in replies)
        return Snapshot(now, {d.id: parse_state(reply[1], int(reply[2]), reply[3], now)
                              for d, reply in zip(deployments, replies, strict=True)})

    def inspect(self, deployments: Sequence[Deployment]) -> dict[str, dict[str, Any]]:
        """A JSON-able view of each deployment's budget."""
        return inspect_snapshot(self.snapshot(deployments), deployments)

    def acquire(self, deployment: Deployment, tokens: int, priority: Priority,
                lease: float) -> Grant | Denied:
        """Reserve one request of ``tokens`` for ``lease`` seconds, or say when to retry."""
        reservation = uuid.uuid4().hex
        reply = cast(list[str], self._acquire(keys=self._keys(deployment.id), args=[
            self._now(), tokens, str(priority), lease, reservation, _arg(deployment.rpm),
            _arg(deployment.tpm), _arg(deployment.max_parallel_requests)]))
        if int(reply[0]) == 1:
            return Grant(deployment.id, reservation, int(reply[1]), tokens, float(reply[2]),
                         int(reply[3]), int(reply[4]))
        return Denied(float(reply[1]), reply[2])

    def release(self, grant: Grant, report: Report, deployment: Deployment,
                cooldown: CooldownPolicy) -> None:
        """End ``grant``: correct its tokens and learn from how the call ended."""
        s = report.signals
        self._release(keys=self._keys(grant.deployment_id), args=[
            self._now(), grant.reservation, grant.bucket, grant.tokens, str(report.outcome),
            _arg(report.tokens), _arg(report.latency), _arg(s.retry_after),
            _arg(s.remaining_requests), _arg(s.reset_requests), _arg(s.remaining_tokens),
            _arg(s.reset_tokens), _arg(deployment.max_parallel_requests),
            cooldown.allowed_fails, cooldown.cooldown_time, cooldown.window,
            _arg(report.in_flight)])


def _redis_time(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1_000_000
