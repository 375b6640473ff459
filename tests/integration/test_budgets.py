"""The budget Lua scripts against a real Redis, each test on a throwaway key prefix.

Every behaviour of :class:`BudgetBehaviour` runs here on :class:`RedisBudgets`; a parity test
drives the scripts and :class:`MemoryBudgets` through the same random sequences; several OS
processes sharing one deployment never get more than its budget.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
import random
import statistics
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import cast

import pytest
import redis

from config.keys import DEPLOYMENT_STATE_TTL, Keys
from config.settings import Deployment
from schedulers.budget import WINDOW_TTL, RedisBudgets
from schedulers.memory import MemoryBudgets
from schedulers.state import CooldownPolicy, Denied, Grant, Outcome, Priority, Report, Signals
from schedulers.window import REASONS, bucket_expiry, bucket_of
from tests.support.redis_scan import delete_under, keys_under
from tests.unit.test_memory_budgets import (
    BULK,
    NO_COOLDOWN,
    START,
    BudgetBehaviour,
    Clock,
    dep,
    granted,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def prefix(redis_client: redis.Redis) -> Iterator[str]:
    name = f"bgbudget-{uuid.uuid4().hex[:10]}"
    yield name
    delete_under(redis_client, name)


class TestRedisBudgets(BudgetBehaviour):
    @pytest.fixture
    def clock(self) -> Clock:
        return Clock()

    @pytest.fixture
    def budgets(self, redis_client: redis.Redis, prefix: str, clock: Clock) -> RedisBudgets:
        return RedisBudgets(redis_client, Keys(prefix), clock)


def test_a_deployments_keys_share_one_slot_and_expire(redis_client: redis.Redis,
                                                      prefix: str) -> None:
    budgets, d = RedisBudgets(redis_client, Keys(prefix)), dep("d-1")
    grant = granted(budgets.acquire(d, 5, BULK, 40))
    budgets.release(grant, Report(Outcome.THROTTLED, signals=Signals(retry_after=0)), d,
                    NO_COOLDOWN)
    granted(budgets.acquire(dep("d-1", max_parallel_requests=9), 5, BULK, 40))
    keys = budgets.keys
    assert keys_under(redis_client, prefix) == sorted([
        keys.deployment_inflight("d-1"), keys.deployment_state("d-1"),
        keys.deployment_window("d-1")])
    assert all("{d-1}" in key for key in keys_under(redis_client, prefix))
    assert 0 < redis_client.ttl(keys.deployment_window("d-1")) <= WINDOW_TTL
    assert 40_000 < redis_client.pttl(keys.deployment_inflight("d-1")) <= 41_000
    assert redis_client.ttl(keys.deployment_state("d-1")) > DEPLOYMENT_STATE_TTL - 5


def test_redis_time_is_the_clock_when_none_is_injected(redis_client: redis.Redis,
                                                       prefix: str) -> None:
    def redis_now() -> float:
        seconds, micros = redis_client.time()
        return float(seconds + micros / 1_000_000)

    budgets = RedisBudgets(redis_client, Keys(prefix))
    before = redis_now()
    grant = granted(budgets.acquire(dep(), 1, BULK, 30))
    assert before <= grant.granted_at <= redis_now()
    assert before <= budgets.snapshot([dep()]).now <= redis_now()
    assert budgets.snapshot([]).now >= before


def oldest_counting(t: float) -> int:
    """The oldest bucket still counting at ``t``."""
    return next(b for b in itertools.count(bucket_of(t) - 250) if bucket_expiry(b) > t)


def test_acquire_deletes_buckets_that_stopped_counting_and_keeps_totals(
        redis_client: redis.Redis, prefix: str) -> None:
    clock = Clock()
    budgets, d = RedisBudgets(redis_client, Keys(prefix), clock), dep(rpm=100)
    window = budgets.keys.deployment_window("d")

    def stored() -> dict[str, str]:
        return cast(dict[str, str], redis_client.hgetall(window))

    first = granted(budgets.acquire(d, 3, BULK, 300))
    clock.advance(30)
    second = granted(budgets.acquire(d, 4, BULK, 300))
    assert stored() == {str(first.bucket): "1 3", str(second.bucket): "1 4",
                        "requests": "2", "tokens": "7", "low": str(oldest_counting(clock.now))}
    clock.now = bucket_expiry(first.bucket)
    third = granted(budgets.acquire(d, 5, BULK, 300))
    assert stored() == {str(second.bucket): "1 4", str(third.bucket): "1 5",
                        "requests": "2", "tokens": "9", "low": str(first.bucket + 1)}
    assert oldest_counting(clock.now) == first.bucket + 1
    clock.advance(3600)  # idle far longer than the window: recounted, not walked
    granted(budgets.acquire(d, 6, BULK, 300))
    assert {k: v for k, v in stored().items() if not k.isdigit()} == {
        "requests": "1", "tokens": "6", "low": str(oldest_counting(clock.now))}


# -- parity: the scripts do what MemoryBudgets (the reference) does -----------------------

PARITY_DEPLOYMENTS = (dep("rate", rpm=4, tpm=900), dep("par", max_parallel_requests=2),
                      dep("aimd"), dep("all", rpm=8, tpm=600, max_parallel_requests=3))
PARITY_COOLDOWN = CooldownPolicy(allowed_fails=2, cooldown_time=3.0, window=10.0)


def random_report(rng: random.Random) -> Report:
    def some(value: float) -> float | None:
        return value if rng.random() < 0.4 else None

    def some_int(low: int, high: int) -> int | None:
        return rng.randint(low, high) if rng.random() < 0.4 else None

    signals = Signals(retry_after=some(rng.choice([0.0, 0.5, 2.0])),
                      remaining_requests=some_int(0, 4), reset_requests=some(rng.uniform(0.1, 20)),
                      remaining_tokens=some_int(0, 300), reset_tokens=some(rng.uniform(0.1, 20)))
    return Report(rng.choice([Outcome.OK, Outcome.OK, Outcome.OK, *Outcome]),
                  tokens=some_int(0, 200), signals=signals if rng.random() < 0.2 else Signals(),
                  latency=some(rng.uniform(0.001, 3.0)))


def drive_alike(memory: MemoryBudgets, lua: RedisBudgets, clock: Clock,
                rng: random.Random) -> set[str]:
    """Random acquires, releases and clock moves on both backends, asserting they agree;
    returns the decisions seen ("granted" and the reasons of denials)."""
    held: list[tuple[Deployment, Grant, Grant]] = []
    seen: set[str] = set()
    for _ in range(400):
        roll = rng.random()
        if roll < 0.2:
            clock.advance(rng.choice([0.01, 0.1, 0.25, 0.5, 1.0, 3.0, 15.0, 40.0]))
        elif roll < 0.65 or not held:
            d = rng.choice(PARITY_DEPLOYMENTS)
            tokens = rng.randint(0, 160)
            priority = Priority.INTERACTIVE if rng.random() < 0.15 else Priority.BULK
            lease = rng.choice([10.0, 30.0, 120.0])
            for _attempt in range(3):
                mine, theirs = (b.acquire(d, tokens, priority, lease) for b in (memory, lua))
                seen.add(mine.reason if isinstance(mine, Denied) else "granted")
                if isinstance(mine, Grant) and isinstance(theirs, Grant):
                    assert (mine.bucket, mine.tokens, mine.granted_at) == (
                        theirs.bucket, theirs.tokens, theirs.granted_at)
                    held.append((d, mine, theirs))
                    break
                assert mine == theirs
                if not (isinstance(mine, Denied) and mine.until < math.inf
                        and rng.random() < 0.7):
                    break
                clock.now = mine.until  # a caller retries exactly when told: boundaries
        else:
            d, mine_grant, their_grant = held.pop(rng.randrange(len(held)))
            report = random_report(rng)
            memory.release(mine_grant, report, d, PARITY_COOLDOWN)
            lua.release(their_grant, report, d, PARITY_COOLDOWN)
        if rng.random() < 0.1:
            assert memory.snapshot(PARITY_DEPLOYMENTS) == lua.snapshot(PARITY_DEPLOYMENTS)
    assert memory.inspect(PARITY_DEPLOYMENTS) == lua.inspect(PARITY_DEPLOYMENTS)
    return seen


def test_lua_and_memory_budgets_decide_alike(redis_client: redis.Redis, prefix: str) -> None:
    seen: set[str] = set()
    for seed in range(8):
        clock = Clock()
        lua = RedisBudgets(redis_client, Keys(f"{prefix}:{seed}"), clock)
        seen |= drive_alike(MemoryBudgets(clock), lua, clock, random.Random(seed))
    assert seen == {"granted", "interactive", *REASONS}  # every path was compared


# -- several OS processes share one budget ------------------------------------------------

RPM_DEPLOYMENT = dep("rpm40", rpm=40)
PARALLEL_DEPLOYMENT = dep("par3", max_parallel_requests=3)
HAMMER_SECONDS = 1.5


def hammer(url: str, prefix: str, start_at: float, seed: int) -> tuple[int, int, int]:
    """Acquire on both deployments until the time is up: (rpm grants, parallel grants, the
    most parallel grants seen held at once)."""
    client = redis.Redis.from_url(url, decode_responses=True)
    budgets, rng = RedisBudgets(client, Keys(prefix)), random.Random(seed)
    held_key = f"{prefix}:test:held"  # a test-owned counter, deleted with the prefix
    rpm_grants = parallel_grants = peak = 0
    time.sleep(max(0.0, start_at - time.time()))
    while time.time() < start_at + HAMMER_SECONDS:
        result = budgets.acquire(RPM_DEPLOYMENT, 1, Priority.BULK, 30)
        if isinstance(result, Grant):
            rpm_grants += 1
            budgets.release(result, Report(Outcome.OK), RPM_DEPLOYMENT, NO_COOLDOWN)
        result = budgets.acquire(PARALLEL_DEPLOYMENT, 1, Priority.BULK, 30)
        if isinstance(result, Grant):
            parallel_grants += 1
            peak = max(peak, int(client.incr(held_key)))
            time.sleep(rng.uniform(0.0, 0.02))
            client.decr(held_key)
            budgets.release(result, Report(Outcome.OK), PARALLEL_DEPLOYMENT, NO_COOLDOWN)
        else:
            time.sleep(0.001)
    client.close()
    return rpm_grants, parallel_grants, peak


@pytest.mark.slow
def test_processes_sharing_a_deployment_never_exceed_its_budget(
        redis_client: redis.Redis, redis_url: str, prefix: str) -> None:
    processes = 4
    start_at = time.time() + 1.5  # spawned interpreters need a moment to import
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(hammer, [redis_url] * processes, [prefix] * processes,
                                [start_at] * processes, range(processes)))
    assert sum(r[0] for r in results) == 40
    assert max(r[2] for r in results) == 3  # contended, never over
    assert sum(r[1] for r in results) > 100
    budgets = RedisBudgets(redis_client, Keys(prefix))
    snapshot = budgets.snapshot([RPM_DEPLOYMENT, PARALLEL_DEPLOYMENT])
    assert snapshot.of("rpm40").requests == 40
    assert snapshot.of("par3").in_flight == 0


def test_an_acquire_and_release_round_trip_is_cheap(redis_client: redis.Redis,
                                                    prefix: str) -> None:
    budgets, d = RedisBudgets(redis_client, Keys(prefix)), dep(rpm=10**6, tpm=10**9,
                                                               max_parallel_requests=50)
    samples = []
    for _ in range(300):
        began = time.perf_counter()
        grant = budgets.acquire(d, 100, BULK, 30)
        assert isinstance(grant, Grant)
        budgets.release(grant, Report(Outcome.OK, tokens=90, latency=0.2), d, NO_COOLDOWN)
        samples.append(time.perf_counter() - began)
    # Generous: about 0.2 ms on a local Redis; this only catches an accidental O(n) blowup.
    assert statistics.median(samples) < 0.005
    assert not isinstance(budgets.acquire(d, 1, BULK, 30), Denied)
    assert START  # the shared start time is for clocks tests control, not this one
