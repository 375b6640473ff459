"""The pure window arithmetic: when one more request fits a deployment's budget."""

from __future__ import annotations

import math
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from schedulers.state import Bucket, DeploymentState, Limits
from schedulers.window import (
    DEFAULT_PARALLEL_WAIT,
    MIN_PARALLEL_WAIT,
    bucket_expiry,
    bucket_of,
    holding,
    parallel_cap,
    ready_at,
    waits,
)

NOW = 1000.0  # bucket 4000, which stops counting at 1060.5


def buckets(*counts: tuple[float, int, int]) -> tuple[Bucket, ...]:
    """Buckets from (time granted, requests, tokens), oldest first."""
    return tuple(Bucket(bucket_expiry(bucket_of(t)), r, tk) for t, r, tk in counts)


def test_a_bucket_counts_until_its_end_plus_the_window_and_margin() -> None:
    assert bucket_of(1000.0) == bucket_of(1000.24) == 4000
    assert bucket_of(1000.25) == 4001
    assert bucket_expiry(4000) == 1060.5


def test_an_empty_unlimited_deployment_is_ready_now() -> None:
    assert ready_at(Limits(), DeploymentState(), 10**9, NOW) == NOW
    assert holding(Limits(), DeploymentState(), 1, NOW) == (NOW, "")


def test_rpm_waits_for_the_oldest_bucket_to_expire() -> None:
    state = DeploymentState(buckets=buckets((950.0, 1, 0), (990.0, 2, 0)))
    assert ready_at(Limits(rpm=4), state, 0, NOW) == NOW
    assert holding(Limits(rpm=3), state, 0, NOW) == (bucket_expiry(bucket_of(950.0)), "rpm")
    assert ready_at(Limits(rpm=2), state, 0, NOW) == bucket_expiry(bucket_of(990.0))
    assert ready_at(Limits(rpm=1), state, 0, NOW) == bucket_expiry(bucket_of(990.0))
    assert ready_at(Limits(rpm=0), state, 0, NOW) == math.inf


def test_tpm_waits_until_enough_tokens_expire_and_never_fits_a_larger_request() -> None:
    state = DeploymentState(buckets=buckets((950.0, 1, 60), (990.0, 1, 30)))
    assert ready_at(Limits(tpm=100), state, 10, NOW) == NOW
    assert holding(Limits(tpm=100), state, 11, NOW) == (bucket_expiry(bucket_of(950.0)), "tpm")
    assert ready_at(Limits(tpm=100), state, 71, NOW) == bucket_expiry(bucket_of(990.0))
    assert holding(Limits(tpm=100), state, 101, NOW) == (math.inf, "tpm")


def test_a_block_holds_until_it_ends() -> None:
    assert holding(Limits(), DeploymentState(blocked_until=NOW + 5), 0, NOW) == (
        NOW + 5, "blocked")
    assert ready_at(Limits(), DeploymentState(blocked_until=NOW), 0, NOW) == NOW


def test_upstream_signals_hold_only_while_in_force() -> None:
    out = DeploymentState(signal_requests=0, signal_requests_reset=NOW + 7)
    assert holding(Limits(), out, 0, NOW) == (NOW + 7, "signal_requests")
    assert ready_at(Limits(), replace(out, signal_requests=1), 0, NOW) == NOW
    assert ready_at(Limits(), out, 0, NOW + 7) == NOW + 7
    few = DeploymentState(signal_tokens=50, signal_tokens_reset=NOW + 3)
    assert ready_at(Limits(), few, 50, NOW) == NOW
    assert holding(Limits(), few, 51, NOW) == (NOW + 3, "signal_tokens")


def test_parallel_cap_is_declared_else_learned_else_none() -> None:
    assert parallel_cap(Limits(max_parallel=4), DeploymentState(learned_parallel=9.0)) == 4
    assert parallel_cap(Limits(), DeploymentState(learned_parallel=2.9)) == 2
    assert parallel_cap(Limits(), DeploymentState(learned_parallel=0.5)) == 1
    assert parallel_cap(Limits(), DeploymentState()) is None


def test_a_full_parallel_cap_waits_about_one_latency() -> None:
    full = DeploymentState(in_flight=2)
    assert ready_at(Limits(max_parallel=3), full, 0, NOW) == NOW
    assert holding(Limits(max_parallel=2), full, 0, NOW) == (
        NOW + DEFAULT_PARALLEL_WAIT, "parallel")
    assert ready_at(Limits(max_parallel=2), replace(full, latency=1.5), 0, NOW) == NOW + 1.5
    assert ready_at(Limits(max_parallel=2), replace(full, latency=0.001), 0, NOW) == (
        NOW + MIN_PARALLEL_WAIT)
    assert ready_at(Limits(), replace(full, learned_parallel=2.0), 0, NOW) == (
        NOW + DEFAULT_PARALLEL_WAIT)


def test_the_limit_that_lets_go_last_is_the_reason() -> None:
    state = DeploymentState(buckets=buckets((990.0, 1, 100)), blocked_until=NOW + 1)
    assert holding(Limits(rpm=1, tpm=100), state, 1, NOW) == (
        bucket_expiry(bucket_of(990.0)), "rpm")
    assert set(waits(Limits(rpm=1, tpm=100), state, 1, NOW)) == {"blocked", "rpm", "tpm"}


# -- properties ---------------------------------------------------------------------------

optional_small = st.none() | st.integers(0, 30)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Limits, DeploymentState, int, float]:
    now = draw(st.floats(1000.0, 1100.0, allow_nan=False))
    current = bucket_of(now)
    # Only still-counting buckets: the oldest that counts is current - 241 or so.
    indexes = draw(st.lists(st.integers(current - 245, current), unique=True, max_size=12))
    live = sorted(b for b in indexes if bucket_expiry(b) > now)
    counts = draw(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 60)),
                           min_size=len(live), max_size=len(live)))
    state = DeploymentState(
        buckets=tuple(Bucket(bucket_expiry(b), r, t) for b, (r, t) in zip(live, counts,
                                                                           strict=True)),
        in_flight=draw(st.integers(0, 6)),
        blocked_until=draw(st.sampled_from([0.0, now - 1, now + 2.5])),
        learned_parallel=draw(st.none() | st.floats(0.5, 6.0)),
        latency=draw(st.none() | st.floats(0.0, 3.0)),
        signal_requests=draw(st.none() | st.integers(-1, 3)),
        signal_requests_reset=now + draw(st.floats(-5.0, 30.0)),
        signal_tokens=draw(st.none() | st.integers(-10, 100)),
        signal_tokens_reset=now + draw(st.floats(-5.0, 30.0)))
    limits = Limits(rpm=draw(optional_small), tpm=draw(st.none() | st.integers(0, 300)),
                    max_parallel=draw(st.none() | st.integers(1, 5)))
    return limits, state, draw(st.integers(0, 120)), now


def fits_every_limit(limits: Limits, state: DeploymentState, tokens: int, now: float) -> bool:
    """Granting one more request of ``tokens`` now keeps every declared limit."""
    cap = parallel_cap(limits, state)
    signals_ok = ((state.signal_requests is None or now >= state.signal_requests_reset
                   or state.signal_requests >= 1)
                  and (state.signal_tokens is None or now >= state.signal_tokens_reset
                       or state.signal_tokens >= tokens))
    return (state.blocked_until <= now and signals_ok
            and (limits.rpm is None or state.requests + 1 <= limits.rpm)
            and (limits.tpm is None or state.tokens + tokens <= limits.tpm)
            and (cap is None or state.in_flight + 1 <= cap))


def at(state: DeploymentState, t: float) -> DeploymentState:
    """``state`` at ``t``: expired buckets dropped; in-flight calls ended (they end at times
    nobody knows, so the parallel wait is an estimate, not a promise)."""
    return replace(state, buckets=tuple(b for b in state.buckets if b.expires_at > t),
                   in_flight=0)


@given(scenarios())
def test_ready_now_means_granting_keeps_every_limit(
        scenario: tuple[Limits, DeploymentState, int, float]) -> None:
    limits, state, tokens, now = scenario
    t = ready_at(limits, state, tokens, now)
    assert t >= now
    assert (t == now) == fits_every_limit(limits, state, tokens, now)


@given(scenarios())
def test_at_the_ready_time_the_request_fits(
        scenario: tuple[Limits, DeploymentState, int, float]) -> None:
    limits, state, tokens, now = scenario
    t = ready_at(limits, state, tokens, now)
    if math.isinf(t):
        assert (limits.tpm is not None and tokens > limits.tpm) or limits.rpm == 0
        return
    assert fits_every_limit(limits, at(state, t), tokens, t)
    assert ready_at(limits, at(state, t), tokens, t) == t


@given(scenarios())
def test_the_ready_time_is_the_earliest_the_window_allows(
        scenario: tuple[Limits, DeploymentState, int, float]) -> None:
    limits, state, tokens, now = scenario
    t = ready_at(limits, state, tokens, now)
    _, reason = holding(limits, state, tokens, now)
    if reason not in ("rpm", "tpm") or math.isinf(t):
        return
    window_only = Limits(limits.rpm, limits.tpm)
    earlier = [now] + [b.expires_at for b in state.buckets if b.expires_at < t]
    assert all(not fits_every_limit(window_only, at(state, e), tokens, e) for e in earlier)
