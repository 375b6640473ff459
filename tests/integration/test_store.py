"""Each Lua script of the job store, against a real Redis on a throwaway key prefix."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

import pytest
import redis

from batchgate.errors import ConflictError
from config.keys import Keys
from tests.support.redis_scan import delete_under
from workers.jobs import Item, JobKind, JobStatus, NewJob, Outcome, item_result
from workers.store import JobStore

pytestmark = pytest.mark.integration


@pytest.fixture
def store() -> Iterator[JobStore]:
    url = os.environ.get("BATCHGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    client = redis.Redis.from_url(url, decode_responses=True)
    prefix = f"bgstore-{uuid.uuid4().hex[:10]}"
    yield JobStore(client, Keys(prefix), job_ttl=60)
    delete_under(client, prefix)
    client.close()


def new_job(store: JobStore, n: int, kind: JobKind = JobKind.BATCH, **extra: object) -> str:
    items = [Item(i, f"c{i}", "m", {"model": "m", "input": str(i)}) for i in range(n)]
    job = NewJob(id=f"job_{uuid.uuid4().hex[:8]}", kind=kind, endpoint="embeddings",
                 items=items, owner="o", created_at=int(time.time()), completion_window=60,
                 priority=0, **extra)  # type: ignore[arg-type]
    store.create(job)
    return job.id


def finish(store: JobStore, job_id: str, index: int, outcome: Outcome) -> tuple[bool, str]:
    item = store.items(job_id, index, index + 1)[0]
    result = item_result(item, outcome, status_code=200, body={"ok": index},
                         finished_at=time.time())
    return store.finish(job_id, index, outcome, result, time.time())


def test_finish_item_writes_once_and_ends_the_job_with_the_last(store: JobStore) -> None:
    job_id = new_job(store, 2)
    assert finish(store, job_id, 0, Outcome.COMPLETED) == (True, "queued")
    assert finish(store, job_id, 0, Outcome.FAILED) == (False, "queued")
    assert finish(store, job_id, 1, Outcome.FAILED) == (True, "completed")
    job = store.get(job_id)
    assert job is not None
    assert job.request_counts() == {"total": 2, "completed": 1, "failed": 1, "cancelled": 0,
                                    "expired": 0}
    assert store.redis.ttl(store.keys.results(job_id)) > 0
    assert store.redis.zscore(store.keys.active, job_id) is None
    assert store.results_by_index(job_id, [0])[0]["status"] == "completed"  # type: ignore[index]


def test_a_single_job_whose_only_item_failed_is_failed(store: JobStore) -> None:
    job_id = new_job(store, 1, kind=JobKind.SINGLE)
    assert finish(store, job_id, 0, Outcome.FAILED) == (True, "failed")


def test_feed_keeps_a_bounded_window_and_leases_each_chunk(store: JobStore) -> None:
    job_id = new_job(store, 25)
    chunks = store.feed(job_id, window=10, chunk=4, lease_deadline=time.time() + 30)
    assert chunks == [(0, 4), (4, 8), (8, 10)]
    assert store.feed(job_id, window=10, chunk=4, lease_deadline=time.time() + 30) == []
    for index in range(4):
        finish(store, job_id, index, Outcome.COMPLETED)
    assert store.feed(job_id, window=10, chunk=4, lease_deadline=time.time() + 30) == [
        (10, 14)]
    assert store.redis.zcard(store.keys.leases) == 4


def test_stop_ends_unfed_work_at_once_and_fed_work_when_reached(store: JobStore) -> None:
    job_id = new_job(store, 10)
    store.feed(job_id, window=4, chunk=2, lease_deadline=time.time() + 30)
    finish(store, job_id, 0, Outcome.COMPLETED)
    status, stopped = store.stop(job_id, Outcome.CANCELLED, time.time())
    assert (status, stopped) == ("cancelling", True)
    assert store.stop(job_id, Outcome.CANCELLED, time.time()) == ("cancelling", False)
    assert store.feed(job_id, window=4, chunk=2, lease_deadline=time.time() + 30) == []
    assert store.stopping(job_id) is Outcome.CANCELLED
    for index in (1, 2):
        finish(store, job_id, index, Outcome.COMPLETED)
    assert finish(store, job_id, 3, Outcome.CANCELLED) == (True, "cancelled")
    job = store.get(job_id)
    assert job is not None
    assert job.request_counts()["cancelled"] == 7
    assert job.status is JobStatus.CANCELLED


def test_stopping_a_job_with_nothing_outstanding_ends_it_now(store: JobStore) -> None:
    job_id = new_job(store, 3)
    assert store.stop(job_id, Outcome.EXPIRED, time.time()) == ("expired", True)


def test_start_moves_queued_to_in_progress_only_once(store: JobStore) -> None:
    job_id = new_job(store, 1)
    assert store.start(job_id, time.time()) == "in_progress"
    store.stop(job_id, Outcome.CANCELLED, time.time())
    assert store.start(job_id, time.time()) == "cancelled"
    assert store.start("job_missing", time.time()) == ""


def _claim(url: str, prefix: str) -> list[str]:
    client = redis.Redis.from_url(url, decode_responses=True)
    claimed = JobStore(client, Keys(prefix), job_ttl=60).claim_expired_leases(
        time.time(), time.time() + 60, 1000)
    client.close()
    return claimed


def test_concurrent_claimers_from_several_processes_never_share_a_lease(
        store: JobStore) -> None:
    store.redis.zadd(store.keys.leases, {f"job_x|{i}|{i + 1}": 1 for i in range(500)})
    redis_url = os.environ.get("BATCHGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    with ProcessPoolExecutor(max_workers=4) as pool:
        claims = list(pool.map(_claim, [redis_url] * 8, [store.keys.prefix] * 8))
    every = [member for claim in claims for member in claim]
    assert len(every) == len(set(every)) == 500


def test_idempotency_claim_replays_and_refuses(store: JobStore) -> None:
    job_id = new_job(store, 1)
    assert store.claim_idempotency("o", "k", job_id, "d1") is None
    assert store.claim_idempotency("o", "k", "job_other", "d1") == job_id
    with pytest.raises(ConflictError, match="different request body"):
        store.claim_idempotency("o", "k", "job_other", "d2")


def test_results_in_completion_order(store: JobStore) -> None:
    job_id = new_job(store, 3)
    for index in (2, 0, 1):
        finish(store, job_id, index, Outcome.COMPLETED)
    results = store.results_in_completion_order(job_id, 0, 10)
    assert [r["index"] for r in results] == [2, 0, 1]
    assert json.loads(json.dumps(results))[0]["response"] == {"ok": 2}
