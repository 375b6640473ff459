"""The call path shared by the sync routes and the queue: model group -> scheduler ->
deployment -> upstream answer, with retries and fallbacks.

:meth:`Gateway.run` walks one request's :class:`~schedulers.journey.Journey`: reserve room
(the scheduler), call, release (reporting what happened), and on failure ask the journey what
next. A wait, for room or before a retry, is slept when the caller may wait that long (a sync
route, within its timeout; a queued item, for a moment) and otherwise handed back as
:class:`Deferred`, so queued work waits on the broker instead of in a worker slot.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from batchgate.errors import (
    BatchgateError,
    ModelNotFoundError,
    RateLimitedError,
    RequestError,
    UpstreamDownError,
    UpstreamError,
)
from config.settings import Deployment, Settings
from schedulers.fallbacks import RoutingOptions, pop_routing_options
from schedulers.journey import Fallback, GiveUp, Journey, Retry, after_failure
from schedulers.memory import MemoryBudgets
from schedulers.principal import Principal
from schedulers.retry import ErrorClass, backoff, classify
from schedulers.scheduler import Busy, Reservation, Scheduler
from schedulers.signals import parse_signals
from schedulers.state import NO_SIGNALS, Outcome, Priority, Report, Signals
from schedulers.tokens import estimate
from workers import metrics
from workers.answers import Answer, error_answer, interpret, split_models
from workers.upstream import UpstreamClient, UpstreamReply, UpstreamStream
from workers.usage import usage_tokens

_BUDGET_OUTCOMES = {ErrorClass.RATE_LIMIT: Outcome.THROTTLED, ErrorClass.TIMEOUT: Outcome.FAILED,
                    ErrorClass.SERVER: Outcome.FAILED}
"""Failures that say something about the deployment; any other answer is the deployment
working (the caller's own 4xx included)."""
OUTAGE_POLL_S = 1.0
"""Work waiting out an outage looks again after a growing backoff, capped at the group's
``cooldown_time`` (but never below this): recovery is noticed within seconds."""


@dataclass(frozen=True, slots=True)
class Deferred:
    """Not done yet: run ``journey`` again in ``delay`` seconds."""

    delay: float
    journey: Journey


@dataclass(frozen=True, slots=True)
class _Tried:
    """One call's result: a reply, or the gateway error the transport raised."""

    reservation: Reservation
    error: ErrorClass | None
    reply: UpstreamReply | None
    raised: UpstreamError | None
    signals: Signals
    stream: UpstreamStream | None = None


class Gateway:
    """Routes request bodies to model groups through the scheduler."""

    def __init__(self, settings: Settings, client: UpstreamClient,
                 scheduler: Scheduler | None = None, *, max_parallel: int = 32) -> None:
        self.settings = settings
        self.scheduler = scheduler or Scheduler(settings, MemoryBudgets())
        self._client = client
        self._pool = ThreadPoolExecutor(max_workers=max_parallel,
                                        thread_name_prefix="batchgate-compare")

    def with_client(self, wrap: Callable[[UpstreamClient], UpstreamClient]) -> Gateway:
        """This gateway (same settings, scheduler and threads) calling upstreams through
        ``wrap(client)``: one request's own credentials (``workers/credentialed_client``).
        Never ``close()`` the copy: what it holds belongs to this one."""
        other = copy.copy(self)
        other._client = wrap(self._client)
        return other

    def resolve(self, model: str) -> list[str]:
        """The model groups named by ``model`` (comma-separated), in request order."""
        return [self._group(name) for name in split_models(model)]

    def _group(self, name: str) -> str:
        group = self.settings.resolve_group(name)
        if group is None:
            raise ModelNotFoundError(f"The model {name!r} does not exist", param="model")
        return group

    def options(self, body: dict[str, Any]) -> tuple[dict[str, Any], RoutingOptions]:
        """The body to send (per-request routing keys removed) and those routing options;
        per-request fallback models must exist."""
        body = dict(body)
        options = pop_routing_options(body)
        for name in options.fallbacks or ():
            if self.settings.resolve_group(name) is None:
                raise ModelNotFoundError(f"The fallback model {name!r} does not exist",
                                         param="fallbacks")
        return body, options

    def payload(self, deployment: Deployment, body: dict[str, Any]) -> bytes:
        """The JSON sent upstream: the caller's body, its ``model`` set to the deployment's."""
        out = {**deployment.default_params, **body, "model": deployment.model}
        return json.dumps(out, separators=(",", ":"), ensure_ascii=False).encode()

    def call(self, deployment: Deployment, endpoint: str, body: dict[str, Any]) -> Answer:
        """One call to ``deployment``, outside the scheduler (health probes)."""
        return interpret(self._client.send(deployment, endpoint, self.payload(deployment, body)))

    def patience(self, group: str, timeout: float | None = None) -> float:
        """How long a sync caller of ``group`` waits for room: the group's upstream timeout,
        or the caller's ``timeout`` when shorter."""
        longest = max(self.settings.timeout_for(d) for d in self.scheduler.group(group))
        return longest if timeout is None else min(timeout, longest)

    def complete(self, group: str, endpoint: str, body: dict[str, Any],
                 timeout: float | None = None, principal: Principal | None = None) -> Answer:
        """A sync call to ``group``: waits for room and retries within the group's timeout
        (or the caller's, when shorter)."""
        body, options = self.options(body)
        result = self.run(Journey.start(group), endpoint, body, options,
                          priority=Priority.INTERACTIVE,
                          patience=self.patience(group, timeout), principal=principal)
        assert isinstance(result, Answer)  # run() defers only when asked to
        return result

    def complete_many(self, groups: Sequence[str], endpoint: str, body: dict[str, Any],
                      timeout: float | None = None,
                      principal: Principal | None = None) -> list[Answer]:
        """The same call to every group in parallel; each failure stays in its own slot."""
        def one(group: str) -> Answer:
            try:
                return self.complete(group, endpoint, body, timeout, principal)
            except BatchgateError as exc:
                return error_answer(group, exc)

        return list(self._pool.map(one, groups))

    def run(self, journey: Journey, endpoint: str, body: dict[str, Any],
            options: RoutingOptions, *, priority: Priority, patience: float,
            defer: bool = False, tokens: int | None = None,
            stream: bool = False,
            principal: Principal | None = None) -> Answer | Deferred | UpstreamStream:
        """Walk ``journey`` until an answer, sleeping waits that fit in ``patience`` seconds;
        a longer wait ends in :class:`Deferred` when ``defer``, else in the last failure (or a
        429 with an honest ``Retry-After`` when no deployment has room). ``principal``'s own
        limits hold first; a sync caller over them hears 429 at once, as from LiteLLM."""
        tokens = estimate(endpoint, body) if tokens is None else tokens
        deadline = time.monotonic() + patience
        while True:
            got = self.scheduler.reserve(journey.group, tokens, priority, journey.avoid,
                                         principal)
            if isinstance(got, Busy):
                if got.caller:
                    _over_own_limit(got, tokens, defer)
                    return Deferred(got.delay, journey)
                if got.never:
                    raise RequestError(
                        f"This request needs about {tokens} tokens, more than any deployment "
                        f"of {journey.group!r} may use per minute (tpm).",
                        code="request_too_large")
                if time.monotonic() + got.delay <= deadline:
                    time.sleep(got.delay)
                    continue
                if defer:
                    return Deferred(got.delay, journey)
                if self._cooling(journey.group):
                    raise UpstreamDownError(
                        f"Every deployment of {journey.group!r} is cooling down after failing "
                        f"(down or erroring); it is tried again in {got.delay:.1f}s.",
                        code="upstream_unavailable", retry_after=got.delay)
                raise RateLimitedError(
                    f"Every deployment of {journey.group!r} is at its rate limit; "
                    f"room frees up in {got.delay:.1f}s.", retry_after=math.ceil(got.delay))
            journey = journey.sent()
            tried = self._try(got, endpoint, body, stream)
            if tried.error is None:
                return self._done(tried, journey)
            journey, step = after_failure(
                journey, tried.error, deployment_id=got.deployment.id,
                retry_after=self._retry_floor(tried.signals.retry_after),
                policy=self.scheduler.retry_policy,
                chains=lambda group, error: self.scheduler.fallbacks(group, error, options),
                rng=self.scheduler.rng)
            if isinstance(step, GiveUp):
                waiting = self._wait_for_outage(tried, journey) if defer else None
                if waiting is not None:
                    return waiting
                return self._done(tried, journey)
            if isinstance(step, Fallback):
                continue
            assert isinstance(step, Retry)  # the Step union is closed
            if time.monotonic() + step.delay > deadline:
                return Deferred(step.delay, journey) if defer else self._done(tried, journey)
            time.sleep(step.delay)

    def _cooling(self, group: str) -> bool:
        """Whether every deployment of ``group`` is cooling down after failures: a caller who
        cannot wait hears 503 (it is down), not 429 (it is busy)."""
        deployments = self.scheduler.group(group)
        snapshot = self.scheduler.budgets.snapshot(deployments)
        return all(snapshot.of(d.id).cooling_until > snapshot.now for d in deployments)

    def _wait_for_outage(self, tried: _Tried, journey: Journey) -> Deferred | None:
        """A queued request whose last hope could not even be connected to waits for it to come
        back (``outage_wait``, by default its job's whole completion window) instead of failing:
        an outage costs time, not results. Its retries and fallbacks were spent as usual."""
        if not isinstance(tried.raised, UpstreamDownError):
            return None
        now = time.time()
        since = journey.down_since if journey.down_since is not None else now
        limit = self.settings.queue.outage_wait
        if limit is not None and now - since >= limit:
            return None
        delay = min(backoff(journey.group_attempts - 1, None, self.scheduler.rng),
                    max(OUTAGE_POLL_S, self.settings.router.cooldown_time))
        return Deferred(delay, replace(journey, down_since=since))

    def _retry_floor(self, asked: float | None) -> float | None:
        """The least a retry waits: what the upstream asked, and ``router_settings.retry_after``
        (LiteLLM's minimum time between retries)."""
        floor = self.settings.router.retry_after
        if floor <= 0:
            return asked
        return floor if asked is None else max(asked, floor)

    def _try(self, reservation: Reservation, endpoint: str, body: dict[str, Any],
             stream: bool) -> _Tried:
        d = reservation.deployment
        payload = self.payload(d, body)
        try:
            if stream:
                opened = self._client.open_stream(d, endpoint, payload)
                if 200 <= opened.status < 300:
                    metrics.upstream_call(d, opened.status, opened.elapsed)
                    opened.on_close(lambda: self.scheduler.release(
                        reservation, Report(Outcome.OK, latency=opened.elapsed)))
                    return _Tried(reservation, None, None, None, NO_SIGNALS, opened)
                reply = UpstreamReply(d, opened.status, opened.headers, opened.read(),
                                      opened.elapsed)
            else:
                reply = self._client.send(d, endpoint, payload)
        except UpstreamError as exc:
            kind = ErrorClass.TIMEOUT if exc.status == 504 else ErrorClass.SERVER
            if isinstance(exc, UpstreamDownError):
                # Come back once the deployment's cooldown is over, when it is tried again.
                exc.retry_after = max(exc.retry_after, self.settings.router.cooldown_time)
            metrics.upstream_call(d, "timeout" if kind is ErrorClass.TIMEOUT else "error", None)
            self.scheduler.release(reservation, Report(Outcome.FAILED))
            return _Tried(reservation, kind, None, exc, NO_SIGNALS)
        metrics.upstream_call(d, reply.status, reply.elapsed)
        signals = parse_signals(reply.headers, time.time())
        error = classify(reply.status, reply.body)
        outcome = _BUDGET_OUTCOMES.get(error, Outcome.OK) if error else Outcome.OK
        self.scheduler.release(reservation, Report(
            outcome, tokens=usage_tokens(reply.body) if error is None else None,
            signals=signals, latency=reply.elapsed if error is None else None))
        return _Tried(reservation, error, reply, None, signals)

    def _done(self, tried: _Tried, journey: Journey) -> Answer | UpstreamStream:
        if tried.stream is not None:
            tried.stream.routing_headers = routing_headers(tried.reservation, journey)
            return tried.stream
        group = tried.reservation.deployment.model_name
        try:
            if tried.raised is not None:
                raise tried.raised
            assert tried.reply is not None  # a try has a reply or an error
            answer = interpret(tried.reply)
        except BatchgateError as exc:
            answer = replace(error_answer(group, exc), deployment=tried.reservation.deployment)
        return replace(answer, attempts=journey.attempts, fallback=journey.fallback,
                       routing_headers=routing_headers(tried.reservation, journey))

    def open_stream(self, group: str, endpoint: str, body: dict[str, Any],
                    timeout: float | None = None,
                    principal: Principal | None = None) -> UpstreamStream | Answer:
        """A streaming call: the open stream on 2xx (room released when it closes), else the
        answer for the failure, after the same retries and fallbacks as any call."""
        body, options = self.options(body)
        result = self.run(Journey.start(group), endpoint, body, options,
                          priority=Priority.INTERACTIVE,
                          patience=self.patience(group, timeout), stream=True,
                          principal=principal)
        assert not isinstance(result, Deferred)  # run() defers only when asked to
        return result

    def close(self) -> None:
        """Release the upstream connections and the compare threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()


def _over_own_limit(busy: Busy, tokens: int, defer: bool) -> None:
    """Raise what a caller over its key's own limits hears; return when it may wait."""
    if busy.never:
        raise RequestError(f"This request needs about {tokens} tokens, more than your key "
                           "may use per minute (tpm_limit).", code="request_too_large")
    if not defer:
        raise RateLimitedError(
            f"Your key is at its rate limit; room frees up in {busy.delay:.1f}s.",
            code="key_rate_limited", retry_after=math.ceil(busy.delay))


def routing_headers(reservation: Reservation, journey: Journey) -> dict[str, str]:
    """What a sync caller is told about routing: attempts, fallback, the group's headroom."""
    headers = {"x-batchgate-attempts": str(journey.attempts), **reservation.headroom}
    if journey.fallback is not None:
        headers["x-batchgate-fallback"] = journey.fallback
    return headers

