"""Budget semantics, on the in-process backend.

:class:`BudgetBehaviour` states each behaviour once against any :class:`Budgets`; this module
runs it on :class:`MemoryBudgets`, ``tests/integration/test_budgets.py`` on Redis (Lua).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest

from config.settings import Deployment, Provider
from schedulers.backend import DEFAULT_THROTTLE_PAUSE, INTERACTIVE_HOLD, Budgets
from schedulers.memory import MemoryBudgets
from schedulers.state import (
    CooldownPolicy,
    Denied,
    Grant,
    Outcome,
    Priority,
    Report,
    Signals,
)
from schedulers.window import DEFAULT_PARALLEL_WAIT, bucket_expiry, bucket_of

START = 1_000_000.0
NO_COOLDOWN = CooldownPolicy(allowed_fails=-1, cooldown_time=0)
BULK, INTERACTIVE = Priority.BULK, Priority.INTERACTIVE


@dataclass
class Clock:
    """A clock tests move by hand."""

    now: float = START

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def dep(id_: str = "d", **limits: Any) -> Deployment:
    return Deployment(id=id_, model_name="g", provider=Provider.OPENAI, model="m",
                      api_base="http://u/v1", **limits)


def granted(result: Grant | Denied) -> Grant:
    assert isinstance(result, Grant), result
    return result


def denied(result: Grant | Denied) -> Denied:
    assert isinstance(result, Denied), result
    return result


class BudgetBehaviour:
    """Every behaviour a budget backend must have; subclasses provide ``budgets``/``clock``."""

    def release(self, budgets: Budgets, grant: Grant, d: Deployment,
                outcome: Outcome = Outcome.OK, cooldown: CooldownPolicy = NO_COOLDOWN,
                **report: Any) -> None:
        budgets.release(grant, Report(outcome, **report), d, cooldown)

    def test_rpm_grants_the_limit_then_waits_for_the_oldest_bucket(
            self, budgets: Budgets, clock: Clock) -> None:
        d = dep(rpm=3)
        first = granted(budgets.acquire(d, 0, BULK, 30))
        assert first.bucket == bucket_of(START)
        assert first.granted_at == START
        for _ in range(2):
            clock.advance(0.3)
            granted(budgets.acquire(d, 0, BULK, 30))
        clock.advance(10)
        assert budgets.acquire(d, 0, BULK, 30) == Denied(bucket_expiry(first.bucket), "rpm")
        clock.now = bucket_expiry(first.bucket) - 0.001
        denied(budgets.acquire(d, 0, BULK, 30))
        clock.now = bucket_expiry(first.bucket)
        granted(budgets.acquire(d, 0, BULK, 30))
        assert denied(budgets.acquire(d, 0, BULK, 30)).until == bucket_expiry(first.bucket + 1)

    def test_tpm_counts_tokens_and_never_fits_a_request_larger_than_tpm(
            self, budgets: Budgets, clock: Clock) -> None:
        d = dep(tpm=100)
        first = granted(budgets.acquire(d, 60, BULK, 30))
        assert budgets.acquire(d, 50, BULK, 30) == Denied(bucket_expiry(first.bucket), "tpm")
        granted(budgets.acquire(d, 40, BULK, 30))
        assert budgets.acquire(d, 101, BULK, 30) == Denied(math.inf, "tpm")
        assert budgets.snapshot([d]).of("d").tokens == 100

    def test_max_parallel_bounds_grants_held_at_once(
            self, budgets: Budgets, clock: Clock) -> None:
        d = dep(max_parallel_requests=2)
        held = [granted(budgets.acquire(d, 1, BULK, 30)) for _ in range(2)]
        assert budgets.acquire(d, 1, BULK, 30) == Denied(START + DEFAULT_PARALLEL_WAIT,
                                                         "parallel")
        assert budgets.snapshot([d]).of("d").in_flight == 2
        self.release(budgets, held[0], d)
        granted(budgets.acquire(d, 1, BULK, 30))

    def test_a_lease_running_out_frees_the_slot_of_a_dead_worker(
            self, budgets: Budgets, clock: Clock) -> None:
        d = dep(max_parallel_requests=1)
        dead = granted(budgets.acquire(d, 1, BULK, 5))  # its worker never releases
        clock.advance(4.9)
        assert denied(budgets.acquire(d, 1, BULK, 5)).reason == "parallel"
        clock.advance(0.1)
        alive = granted(budgets.acquire(d, 1, BULK, 5))
        self.release(budgets, dead, d)  # the dead worker comes back: no slot of others freed
        assert budgets.snapshot([d]).of("d").in_flight == 1
        self.release(budgets, alive, d)
        assert budgets.snapshot([d]).of("d").in_flight == 0

    def test_an_unsent_request_is_refunded(self, budgets: Budgets, clock: Clock) -> None:
        d = dep(rpm=1, tpm=100)
        grant = granted(budgets.acquire(d, 80, BULK, 30))
        denied(budgets.acquire(d, 10, BULK, 30))
        self.release(budgets, grant, d, Outcome.UNSENT, tokens=999)
        state = budgets.snapshot([d]).of("d")
        assert (state.requests, state.tokens, state.in_flight) == (0, 0, 0)
        granted(budgets.acquire(d, 100, BULK, 30))

    def test_reported_tokens_correct_the_estimate_never_below_zero(
            self, budgets: Budgets, clock: Clock) -> None:
        d = dep(tpm=100)
        estimate = granted(budgets.acquire(d, 50, BULK, 30))
        self.release(budgets, estimate, d, tokens=10)
        assert budgets.snapshot([d]).of("d").tokens == 10
        granted(budgets.acquire(d, 90, BULK, 30))
        over = granted(budgets.acquire(d, 0, BULK, 30))
        self.release(budgets, over, d, Outcome.FAILED, tokens=-500)
        assert budgets.snapshot([d]).of("d").tokens == 0

    def test_a_correction_after_the_bucket_stopped_counting_changes_nothing(
            self, budgets: Budgets, clock: Clock) -> None:
        d = dep(tpm=100)
        old = granted(budgets.acquire(d, 50, BULK, 300))
        clock.now = bucket_expiry(old.bucket)
        fresh = granted(budgets.acquire(d, 20, BULK, 300))
        self.release(budgets, old, d, tokens=100)
        self.release(budgets, old, d, Outcome.UNSENT)
        state = budgets.snapshot([d]).of("d")
        assert (state.requests, state.tokens) == (1, fresh.tokens)

    def test_a_429_pauses_for_retry_after_or_the_default(
            self, budgets: Budgets, clock: Clock) -> None:
        d = dep(max_parallel_requests=5)
        self.release(budgets, granted(budgets.acquire(d, 1, BULK, 30)), d, Outcome.THROTTLED)
        pause = START + DEFAULT_THROTTLE_PAUSE
        assert budgets.acquire(d, 1, BULK, 30) == Denied(pause, "blocked")
        self.release(budgets, granted(budgets.acquire(dep("e"), 1, BULK, 30)), dep("e"),
                     Outcome.THROTTLED, signals=Signals(retry_after=7.5))
        assert budgets.acquire(dep("e"), 1, BULK, 30) == Denied(START + 7.5, "blocked")
        clock.now = pause
        granted(budgets.acquire(d, 1, BULK, 30))
        assert budgets.snapshot([d]).of("d").learned_parallel is None  # declared: no AIMD

    def test_failures_beyond_allowed_fails_within_the_window_cool_down(
            self, budgets: Budgets, clock: Clock) -> None:
        d, policy = dep(), CooldownPolicy(allowed_fails=2, cooldown_time=5, window=10)
        for _ in range(2):
            self.release(budgets, granted(budgets.acquire(d, 1, BULK, 30)), d,
                         Outcome.FAILED, policy)
        clock.advance(10)  # those two left the window
        for _ in range(2):
            self.release(budgets, granted(budgets.acquire(d, 1, BULK, 30)), d,
                         Outcome.FAILED, policy)
            clock.advance(1)
        grant = granted(budgets.acquire(d, 1, BULK, 30))
        self.release(budgets, grant, d, Outcome.FAILED, policy)
        assert budgets.acquire(d, 1, BULK, 30) == Denied(clock.now + 5, "blocked")
        clock.advance(5)
        for _ in range(2):  # the count started over
            self.release(budgets, granted(budgets.acquire(d, 1, BULK, 30)), d,
                         Outcome.FAILED, policy)
        granted(budgets.acquire(d, 1, BULK, 30))

    def test_a_disabled_cooldown_never_blocks(self, budgets: Budgets, clock: Clock) -> None:
        d = dep()
        for policy in (CooldownPolicy(-1, 5), CooldownPolicy(0, 0)):
            for _ in range(3):
                self.release(budgets, granted(budgets.acquire(d, 1, BULK, 30)), d,
                             Outcome.FAILED, policy)
        assert budgets.snapshot([d]).of("d").blocked_until == 0.0

    def test_aimd_halves_once_per_burst_of_429s_and_grows_by_one_over_the_limit(
            self, budgets: Budgets, clock: Clock) -> None:
        d, no_pause = dep(), Signals(retry_after=0)
        held = [granted(budgets.acquire(d, 1, BULK, 30)) for _ in range(8)]
        for grant in held[:3]:  # one overload: three 429s, one cut
            self.release(budgets, grant, d, Outcome.THROTTLED, signals=no_pause)
        assert budgets.snapshot([d]).of("d").learned_parallel == 4.0  # 8 in flight / 2
        clock.advance(0.9)
        self.release(budgets, held[3], d, Outcome.THROTTLED, signals=no_pause)
        assert budgets.snapshot([d]).of("d").learned_parallel == 4.0
        clock.advance(0.1)
        self.release(budgets, held[4], d, Outcome.THROTTLED, signals=no_pause)
        assert budgets.snapshot([d]).of("d").learned_parallel == 2.0  # min(4, 4 in flight)/2
        self.release(budgets, held[5], d, latency=0.5)
        assert budgets.snapshot([d]).of("d").learned_parallel == 2.5
        for grant in held[6:]:
            self.release(budgets, grant, d)
        state = budgets.snapshot([d]).of("d")
        assert state.learned_parallel == pytest.approx(2.5 + 1 / 2.5 + 1 / 2.9)
        assert budgets.inspect([d])["d"]["learned_parallel"] == state.learned_parallel

    def test_the_learned_limit_bounds_grants_and_never_falls_below_one(
            self, budgets: Budgets, clock: Clock) -> None:
        d = dep()
        self.release(budgets, granted(budgets.acquire(d, 1, BULK, 30)), d, Outcome.THROTTLED,
                     signals=Signals(retry_after=0))
        assert budgets.snapshot([d]).of("d").learned_parallel == 1.0
        granted(budgets.acquire(d, 1, BULK, 30))
        assert denied(budgets.acquire(d, 1, BULK, 30)).reason == "parallel"

    def test_the_latency_is_a_moving_average_of_successes(
            self, budgets: Budgets, clock: Clock) -> None:
        d = dep()
        for latency in (1.0, 2.0):
            self.release(budgets, granted(budgets.acquire(d, 1, BULK, 30)), d,
                         latency=latency)
        self.release(budgets, granted(budgets.acquire(d, 1, BULK, 30)), d, Outcome.FAILED,
                     latency=9.0)
        assert budgets.snapshot([d]).of("d").latency == pytest.approx(1.2)

    def test_remaining_requests_signal_holds_until_its_reset(
            self, budgets: Budgets, clock: Clock) -> None:
        d = dep()
        self.release(budgets, granted(budgets.acquire(d, 1, BULK, 30)), d,
                     signals=Signals(remaining_requests=1, reset_requests=10))
        assert budgets.snapshot([d]).of("d").signal_requests == 1
        granted(budgets.acquire(d, 1, BULK, 30))
        assert budgets.acquire(d, 1, BULK, 30) == Denied(START + 10, "signal_requests")
        clock.advance(10)
        granted(budgets.acquire(d, 1, BULK, 30))
        assert budgets.snapshot([d]).of("d").signal_requests is None

    def test_remaining_tokens_signal_holds_larger_requests_for_the_default_minute(
            self, budgets: Budgets, clock: Clock) -> None:
        d = dep()
        self.release(budgets, granted(budgets.acquire(d, 1, BULK, 30)), d,
                     Outcome.THROTTLED, signals=Signals(retry_after=0, remaining_tokens=100))
        grant = granted(budgets.acquire(d, 70, BULK, 30))
        assert budgets.acquire(d, 31, BULK, 30) == Denied(START + 60, "signal_tokens")
        self.release(budgets, grant, d, Outcome.UNSENT)  # never sent: the upstream's 70 back
        granted(budgets.acquire(d, 100, BULK, 30))

    def test_a_waiting_interactive_caller_keeps_bulk_off_the_freed_budget(
            self, budgets: Budgets, clock: Clock) -> None:
        d = dep(max_parallel_requests=1)
        bulk = granted(budgets.acquire(d, 1, BULK, 30))
        wait = denied(budgets.acquire(d, 1, INTERACTIVE, 30))
        assert wait == Denied(START + DEFAULT_PARALLEL_WAIT, "parallel")
        self.release(budgets, bulk, d)
        hold = wait.until + INTERACTIVE_HOLD
        assert budgets.acquire(d, 1, BULK, 30) == Denied(hold, "interactive")
        clock.now = wait.until
        assert budgets.acquire(d, 1, BULK, 30) == Denied(hold, "interactive")
        interactive = granted(budgets.acquire(d, 1, INTERACTIVE, 30))
        self.release(budgets, interactive, d)
        clock.now = hold
        granted(budgets.acquire(d, 1, BULK, 30))

    def test_bulk_leaves_a_share_free_while_interactive_callers_are_about(
            self, budgets: Budgets, clock: Clock) -> None:
        d = dep(rpm=20)
        granted(budgets.acquire(d, 1, INTERACTIVE, 30))
        for _ in range(17):  # 90 % of 20 = 18, one of them the interactive grant's
            granted(budgets.acquire(d, 1, BULK, 30))
        assert denied(budgets.acquire(d, 1, BULK, 30)).reason == "rpm"
        granted(budgets.acquire(d, 1, INTERACTIVE, 30))
        granted(budgets.acquire(d, 1, INTERACTIVE, 30))
        assert denied(budgets.acquire(d, 1, INTERACTIVE, 30)).reason == "rpm"
        other = dep("quiet", rpm=20)
        for _ in range(20):  # no interactive caller there: bulk may fill it all
            granted(budgets.acquire(other, 1, BULK, 30))

    def test_an_interactive_request_that_can_never_fit_holds_nothing(
            self, budgets: Budgets, clock: Clock) -> None:
        d = dep(tpm=10)
        assert budgets.acquire(d, 11, INTERACTIVE, 30) == Denied(math.inf, "tpm")
        granted(budgets.acquire(d, 10, BULK, 30))

    def test_a_snapshot_shows_each_deployment_and_forgets_expired_use(
            self, budgets: Budgets, clock: Clock) -> None:
        a, b = dep("a", rpm=10), dep("b")
        grant = granted(budgets.acquire(a, 7, BULK, 30))
        snap = budgets.snapshot([a, b])
        assert snap.now == START
        assert (snap.of("a").requests, snap.of("a").tokens, snap.of("a").in_flight) == (1, 7, 1)
        assert snap.of("b") == snap.of("unknown")
        clock.now = bucket_expiry(grant.bucket)
        later = budgets.snapshot([a, b])
        assert (later.of("a").requests, later.of("a").in_flight) == (0, 0)
        view = budgets.inspect([a])["a"]
        assert view["limits"] == {"rpm": 10, "tpm": None, "max_parallel": None}
        assert view["requests"] == 0


class TestMemoryBudgets(BudgetBehaviour):
    @pytest.fixture
    def clock(self) -> Clock:
        return Clock()

    @pytest.fixture
    def budgets(self, clock: Clock) -> MemoryBudgets:
        return MemoryBudgets(clock)


def test_threads_sharing_memory_budgets_never_exceed_max_parallel() -> None:
    budgets, d = MemoryBudgets(), dep(max_parallel_requests=3)
    held, peak, lock = [0], [0], threading.Lock()

    def work() -> None:
        for _ in range(300):
            result = budgets.acquire(d, 1, BULK, 30)
            if isinstance(result, Grant):
                with lock:
                    held[0] += 1
                    peak[0] = max(peak[0], held[0])
                time.sleep(0.0002)
                with lock:
                    held[0] -= 1
                budgets.release(result, Report(Outcome.OK), d, NO_COOLDOWN)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 1 <= peak[0] <= 3
    assert budgets.snapshot([d]).of("d").in_flight == 0


def test_memory_budgets_use_the_wall_clock_by_default() -> None:
    before = time.time()
    grant = granted(MemoryBudgets().acquire(dep(), 1, BULK, 30))
    assert before <= grant.granted_at <= time.time()
