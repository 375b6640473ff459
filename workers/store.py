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
from config.keys import CREDENTIALS_TTL_MARGIN, IDEMPOTENCY_TTL, Keys
from workers.jobs import Item, Job, NewJob, Outcome
from workers.usage import Usage, result_usage

ITEMS_PER_HSET = 1000
"""Items written per HSET while storing a batch: bounded pipeline commands."""


def _script_text(name: str) -> str:
    folder = resources.files("workers") / "lua"
    text = (folder / f"{name}.lua").read_text()
    if name in ("finish_item", "stop_job", "validated", "finalized"):
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
        self._add_items = client.register_script(_script_text("add_items"))
        self._validated = client.register_script(_script_text("validated"))
        self._finalized = client.register_script(_script_text("finalized"))

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
        now = time.time()
        pipe.zadd(self.keys.owner_jobs(job.owner), {job.id: now})
        if job.input_file_id is not None:
            pipe.zadd(self.keys.owner_batches(job.owner), {job.id: now})
        pipe.zadd(self.keys.active, {job.id: job.created_at + job.completion_window})
        if job.credentials_sealed:
            # Deleted by the script that ends the job; the TTL is only a backstop.
            key = self.keys.credentials(job.id)
            pipe.hset(key, mapping=_fields(dict(job.credentials_sealed)))
            pipe.expire(key, int(job.completion_window) + CREDENTIALS_TTL_MARGIN)
        pipe.execute()

    # -- reading ------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        """The job, or None when unknown or expired."""
        fields = cast(dict[str, str], self.redis.hgetall(self.keys.job(job_id)))
        return Job(fields) if fields else None

    def items(self, job_id: str, start: int, stop: int) -> list[Item]:
        """Items ``[start, stop)`` that still exist."""
        return self.items_at(job_id, range(start, stop))

    def items_at(self, job_id: str, indexes: Sequence[int]) -> list[Item]:
        """Items at ``indexes`` that still exist, in that order."""
        if not indexes:
            return []
        values = cast(list[str | None], self.redis.hmget(self.keys.items(job_id),
                                                          [str(i) for i in indexes]))
        return [Item.from_json(i, v) for i, v in zip(indexes, values, strict=True) if v]

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

    def list_jobs(self, owner: str, *, after: str | None, limit: int,
                  batches: bool = False) -> list[Job] | None:
        """The owner's jobs (or only their ``/v1/batches`` jobs), newest first, after job
        ``after`` (None when ``after`` is not one of theirs); prunes entries whose job has
        expired."""
        key = self.keys.owner_batches(owner) if batches else self.keys.owner_jobs(owner)
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
                k.webhooks_due, k.finalizing, k.attempts(job_id), k.credentials(job_id)]

    def finish(self, job_id: str, index: int, outcome: Outcome, result: str,
               now: float) -> tuple[bool, str]:
        """Record one item's outcome; ``(written now, job status after)``."""
        written, status, _usage = self.finish_many(job_id, [(index, outcome, result)], now)
        return written == 1, status

    def finish_many(self, job_id: str, outcomes: Sequence[tuple[int, Outcome, str]],
                    now: float) -> tuple[int, str, Usage]:
        """Record several items' outcomes at once; ``(results written now, status after,
        the usage those results added to the job's)``."""
        args: list[str | int] = [int(now), self._ttl, self.keys.events(job_id), job_id]
        for index, outcome, result in outcomes:
            args.extend((index, result, outcome.value, result_usage(result)))
        reply = cast(list[Any], self._finish(keys=self._job_keys(job_id), args=args))
        return int(reply[0]), str(reply[1]), Usage(*(int(v) for v in reply[2:6]))

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

    # -- batch input files and output files ------------------------------------------

    def clear_items(self, job_id: str) -> None:
        """Drop what an earlier, interrupted validation of the job's input file wrote."""
        self.redis.delete(self.keys.items(job_id), self.keys.ids(job_id))

    def add_items(self, job_id: str, lines: Sequence[tuple[int, str]],
                  items: Mapping[int, str]) -> list[tuple[int, int]]:
        """Write a page of items read from an input file; ``lines`` are its requests'
        ``(line number, custom_id)``. Returns ``(line, earlier line)`` for each custom_id
        already used."""
        args: list[str | int] = [len(lines)]
        args += [custom_id for _, custom_id in lines]
        args += [line for line, _ in lines]
        for index, text in items.items():
            args += (index, text)
        flat = cast(list[int], self._add_items(
            keys=[self.keys.items(job_id), self.keys.ids(job_id)], args=args))
        return [(int(flat[i]), int(flat[i + 1])) for i in range(0, len(flat), 2)]

    def validated(self, job_id: str, now: float, *, total: int | None = None,
                  errors: str | None = None) -> str:
        """End validation: queued with ``total`` items, or failed with ``errors`` (JSON).
        Returns the status after; anything else means the batch was stopped meanwhile."""
        ok = errors is None
        return cast(str, self._validated(
            keys=[*self._job_keys(job_id), self.keys.ids(job_id)],
            args=["ok" if ok else "failed", int(now), self._ttl, self.keys.events(job_id),
                  job_id, total or 0, errors or ""]))

    def claim_finalizing(self, now: float, new_deadline: float, limit: int) -> list[str]:
        """Batch jobs whose output files are due to be written."""
        return cast(list[str], self._claim(keys=[self.keys.finalizing],
                                           args=[now, new_deadline, limit]))

    def finalized(self, job_id: str, now: float, *, output_file_id: str | None,
                  error_file_id: str | None) -> tuple[str, bool]:
        """The output files are written: the job takes its final status. ``(status after,
        ended by this call)``."""
        status, ended = cast(list[Any], self._finalized(
            keys=self._job_keys(job_id),
            args=[int(now), self._ttl, self.keys.events(job_id), job_id, output_file_id or "",
                  error_file_id or ""]))
        return str(status), bool(ended)

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
