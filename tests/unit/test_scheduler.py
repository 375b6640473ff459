"""The scheduler facade over the in-process backend: reservations, untracked calls, AIMD."""

from __future__ import annotations

from dataclasses import replace

from config.settings import RouterSettings, Settings
from schedulers.memory import MemoryBudgets
from schedulers.scheduler import Busy, Reservation, Scheduler
from schedulers.state import Outcome, Priority, Report, Signals
from tests.unit.conftest import deployment


def scheduler(*deployments: object, strategy: str = "simple-shuffle") -> Scheduler:
    settings = Settings(source="<test>", deployments=deployments,  # type: ignore[arg-type]
                        router=RouterSettings(routing_strategy=strategy))
    return Scheduler(settings, MemoryBudgets())


def reserve(s: Scheduler) -> Reservation:
    got = s.reserve("g", 10, Priority.INTERACTIVE)
    assert isinstance(got, Reservation)
    return got


def test_an_unlimited_deployment_costs_no_reservation_while_all_goes_well() -> None:
    s = scheduler(deployment("g", "a"))
    first = reserve(s)
    assert not first.tracked
    s.release(first, Report(Outcome.OK, tokens=12))
    assert s.budgets.snapshot(s.group("g")).of("a").requests == 0


def test_the_first_429_starts_aimd_from_the_calls_in_flight_then_every_call_is_counted() -> None:
    s = scheduler(deployment("g", "a"))
    calls = [reserve(s) for _ in range(8)]
    s.release(calls[0], Report(Outcome.THROTTLED, signals=Signals(retry_after=0.0)))
    state = s.budgets.snapshot(s.group("g")).of("a")
    assert state.learned_parallel == 4  # 8 in flight, halved
    later = s.reserve("g", 10, Priority.INTERACTIVE)
    assert isinstance(later, Reservation)
    assert later.tracked


def test_declared_limits_and_shared_strategies_always_reserve() -> None:
    limited = scheduler(replace(deployment("g", "a"), rpm=5))
    assert reserve(limited).tracked
    busy = scheduler(deployment("g", "a"), strategy="least-busy")
    assert reserve(busy).tracked


def test_out_of_room_is_busy_with_the_time_until_room() -> None:
    s = scheduler(replace(deployment("g", "a"), rpm=1))
    reserve(s)
    got = s.reserve("g", 10, Priority.INTERACTIVE)
    assert isinstance(got, Busy)
    assert 59 < got.delay < 62
