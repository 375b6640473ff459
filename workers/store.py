"""Job, item and result storage in Redis: the only module that touches job keys.

Every multi-step change is one Lua script (``workers/lua/``), so a worker dying between two
commands can never leave a count that disagrees with the results: an item's result is written
with HSETNX and its job's counter moves in the same script, which is what makes results
exactly-once under at-least-once execution.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any, cast

import redis

from batchgate.errors import ConflictError
from config.keys import IDEMPOTENCY_TTL, Keys
from workers.jobs import Item, Job, NewJob, Outcome

ITEMS_PER_HSET = 1000
"""Items written per HSET while storing a batch: bounded pipeline commands."""


def _script_text(name: str) -> str:
    folder = resources.files("workers") / "lua"
    text = (folder / f"{name}.lua").read_text()
    if name in ("finish_item", "stop_job"):
        text = (folder / "_end_job.lua").read_text() + "\n" + text
    return text


def _fields(mapping: Mapping[str, str | int]) -> Any:
    """redis-py's stubs want an invariant key type; ours are plain ``str``."""
    return mapping


def lease_member(job_id: str, start: int, stop: int) -> str:
    """The leases-zset member of one chunk."""
    return f"{job_id}|{start}|{stop}"


def parse_lease(member: str) -> tuple[str, int, int]:
    """``(job id, start, stop)`` of a leases-zset member."""
    job_id, start, stop = member.rsplit("|", 2)
    return job_id, int(start), int(stop)


class JobStore:
    """Reads and writes jobs; ``client`` must decode responses to ``str``."""

    def __init__(self, client: redis.Redis, keys: Keys, *, job_ttl: float) -> None:
        self.redis = client
        self.keys = keys
        self._ttl = int(job_ttl)
        self._finish = client.register_script(_script_text("finish_item"))
        self._stop = client.register_script(_script_text("stop_job"))
        self._feed = client.register_script(_script_text("feed"))
        self._claim = client.register_script(_script_text("claim_due"))
        self._start = client.register_script(_script_text("start_job"))

    # -- submission ---------------------------------------------------------------------

    def claim_idempotency(self, owner: str, key_digest: str, job_id: str,
                          body_digest: str) -> str | None:
        """Claim an Idempotency-Key for ``job_id``. Returns the job it already names (same
        body), None when claimed now; raises 409 when it named a different body."""
        key = self.keys.idempotency(owner, key_digest)
        value = f"{job_id}|{body_digest}"
        if self.redis.set(key, value, nx=True, ex=IDEMPOTENCY_TTL):
            return None
        existing = cast(str | None, self.redis.get(key)) or ""
        known_id, _, known_digest = existing.partition("|")
        if known_digest != body_digest:
            raise ConflictError("This Idempotency-Key was already used with a different "
                                "request body.", code="idempotency_key_reused")
        if self.get(known_id) is None:
            # The first submission died before writing its job: this one takes the key over.
            self.redis.set(key, value, ex=IDEMPOTENCY_TTL)
            return None
        return known_id

    def create(self, job: NewJob) -> None:
        """Write the job, its items and its index entries in one transaction."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.keys.job(job.id), mapping=_fields(job.record()))
        batch: dict[str, str] = {}
        for item in job.items:
            batch[str(item.index)] = item.to_json()
            if len(batch) >= ITEMS_PER_HSET:
                pipe.hset(self.keys.items(job.id), mapping=_fields(batch))
                batch = {}
        if batch:
            pipe.hset(self.keys.items(job.id), mapping=_fields(batch))
        # Microsecond scores: jobs created in the same second still list in creation order.
        pipe.zadd(self.keys.owner_jobs(job.owner), {job.id: time.time()})
        pipe.zadd(self.keys.active, {job.id: job.created_at + job.completion_window})
        pipe.execute()

    # -- reading ------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        """The job, or None when unknown or expired."""
        fields = cast(dict[str, str], self.redis.hgetall(self.keys.job(job_id)))
        return Job(fields) if fields else None

    def items(self, job_id: str, start: int, stop: int) -> list[Item]:
        """Items ``[start, stop)`` that still exist."""
        indexes = [str(i) for i in range(start, stop)]
        values = cast(list[str | None], self.redis.hmget(self.keys.items(job_id), indexes))
        return [Item.from_json(int(i), v) for i, v in zip(indexes, values, strict=True) if v]

    def finished(self, job_id: str, indexes: Sequence[int]) -> set[int]:
        """Which of ``indexes`` already have a result."""
        if not indexes:
            return set()
        values = self.redis.hmget(self.keys.results(job_id), [str(i) for i in indexes])
        return {i for i, v in zip(indexes, cast(list[Any], values), strict=True) if v}

    def results_by_index(self, job_id: str, indexes: Sequence[int]) -> list[dict[str, Any] | None]:
        """Results of ``indexes`` in that order (None where an item has not ended)."""
        if not indexes:
            return []
        values = cast(list[str | None],
                      self.redis.hmget(self.keys.results(job_id), [str(i) for i in indexes]))
        return [json.loads(v) if v else None for v in values]

    def results_in_completion_order(self, job_id: str, offset: int,
                                    limit: int) -> list[dict[str, Any]]:
        """Finished results from position ``offset`` of the completion order."""
        order = cast(list[str], self.redis.lrange(self.keys.done(job_id), offset,
                                                  offset + limit - 1))
        results = self.results_by_index(job_id, [int(i) for i in order])
        return [r for r in results if r is not None]

    def list_jobs(self, owner: str, *, after: str | None, limit: int) -> list[Job] | None:
        """The owner's jobs, newest first, after job ``after`` (None when ``after`` is not
        one of theirs); prunes entries whose job has expired."""
        key = self.keys.owner_jobs(owner)
        start = 0
        if after is not None:
            rank = cast(int | None, self.redis.zrevrank(key, after))
            if rank is None:
                return None
            start = rank + 1
        ids = cast(list[str], self.redis.zrevrange(key, start, start + limit - 1))
        jobs, gone = [], []
        for job_id in ids:
            job = self.get(job_id)
            if job is None:
                gone.append(job_id)
            else:
                jobs.append(job)
        if gone:
            self.redis.zrem(key, *gone)
        return jobs

    # -- running ------------------------------------------------------------------------

    def start(self, job_id: str, now: float) -> str:
        """Mark a queued job in progress; returns its status ('' when gone)."""
        return cast(str, self._start(keys=[self.keys.job(job_id)],
                                     args=[int(now), self.keys.events(job_id), job_id]))

    def feed(self, job_id: str, *, window: int, chunk: int,
             lease_deadline: float) -> list[tuple[int, int]]:
        """The next chunks to hand out (each now leased until ``lease_deadline``)."""
        flat = cast(list[int], self._feed(keys=[self.keys.job(job_id), self.keys.leases],
                                          args=[window, chunk, lease_deadline, job_id]))
        return [(int(flat[i]), int(flat[i + 1])) for i in range(0, len(flat), 2)]

    def _job_keys(self, job_id: str) -> list[str]:
        k = self.keys
        return [k.job(job_id), k.results(job_id), k.items(job_id), k.done(job_id), k.active,
                k.webhooks_due]

    def finish(self, job_id: str, index: int, outcome: Outcome, result: str,
               now: float) -> tuple[bool, str]:
        """Record one item's outcome; ``(written now, job status after)``."""
        written, status = self.finish_many(job_id, [(index, outcome, result)], now)
        return written == 1, status

    def finish_many(self, job_id: str, outcomes: Sequence[tuple[int, Outcome, str]],
                    now: float) -> tuple[int, str]:
        """Record several items' outcomes at once; ``(results written now, status after)``."""
        args: list[str | int] = [int(now), self._ttl, self.keys.events(job_id), job_id]
        for index, outcome, result in outcomes:
            args.extend((index, result, outcome.value))
        written, status = cast(list[Any], self._finish(keys=self._job_keys(job_id), args=args))
        return int(written), str(status)

    def journeys(self, job_id: str, indexes: Sequence[int]) -> dict[int, str]:
        """The saved routing state (journey JSON) of items that were deferred or retried."""
        if not indexes:
            return {}
        values = cast(list[str | None], self.redis.hmget(self.keys.attempts(job_id),
                                                          [str(i) for i in indexes]))
        return {i: v for i, v in zip(indexes, values, strict=True) if v is not None}

    def save_journeys(self, job_id: str, journeys: Mapping[int, str]) -> None:
        """Keep items' routing state until they run again (expires with the job's TTL)."""
        if not journeys:
            return
        key = self.keys.attempts(job_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(key, mapping=_fields({str(i): v for i, v in journeys.items()}))
        pipe.expire(key, self._ttl)
        pipe.execute()

    def stop(self, job_id: str, outcome: Outcome, now: float) -> tuple[str, bool]:
        """Cancel or expire a job; ``(status after, stopped by this call)``."""
        status, stopped = cast(list[Any], self._stop(
            keys=self._job_keys(job_id),
            args=[outcome.value, int(now), self._ttl, self.keys.events(job_id), job_id]))
        return str(status), bool(stopped)

    def stopping(self, job_id: str) -> Outcome | None:
        """The outcome unstarted items get, once the job was cancelled or expired."""
        stop = cast(str | None, self.redis.hget(self.keys.job(job_id), "stop"))
        return Outcome(stop) if stop else None

    def forget_active(self, job_id: str) -> None:
        """Drop a job that no longer exists from the active set."""
        self.redis.zrem(self.keys.active, job_id)

    def renew_lease(self, member: str, deadline: float) -> None:
        """Push a chunk's lease out while it is being worked on."""
        self.redis.zadd(self.keys.leases, {member: deadline}, xx=True)

    def release_lease(self, member: str) -> None:
        """The chunk is done: nobody needs to hand it out again."""
        self.redis.zrem(self.keys.leases, member)

    def claim_expired_leases(self, now: float, new_deadline: float, limit: int) -> list[str]:
        """Chunks whose lease ran out (their worker died or their message was lost)."""
        return cast(list[str], self._claim(keys=[self.keys.leases],
                                           args=[now, new_deadline, limit]))

    def overdue_jobs(self, now: float, limit: int) -> list[str]:
        """Running jobs past their completion window."""
        return cast(list[str], self.redis.zrangebyscore(self.keys.active, "-inf", now,
                                                        start=0, num=limit))

    # -- webhooks -----------------------------------------------------------------------

    def claim_due_webhooks(self, now: float, new_deadline: float, limit: int) -> list[str]:
        """Jobs whose webhook delivery is due."""
        return cast(list[str], self._claim(keys=[self.keys.webhooks_due],
                                           args=[now, new_deadline, limit]))

    def schedule_webhook(self, job_id: str, when: float) -> None:
        """(Re)schedule a job's next delivery attempt."""
        self.redis.zadd(self.keys.webhooks_due, {job_id: when})

    def update_webhook(self, job_id: str, fields: dict[str, str | int],
                       *, done: bool = False) -> None:
        """Record a delivery attempt; when deliveries end, drop the secret and the schedule."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.keys.job(job_id), mapping=_fields(fields))
        if done:
            pipe.hdel(self.keys.job(job_id), "webhook_secret")
            pipe.zrem(self.keys.webhooks_due, job_id)
        pipe.execute()
