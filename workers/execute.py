"""Running one chunk of a job: each item's result recorded exactly once.

A chunk may run more than once (a worker died, a lease ran out, its items had to wait):
items that already have a result are skipped, and the store's write-once result makes a late
duplicate harmless. Items that must wait (no room in any deployment's budget, or a retry's
delay) go back to the broker as the same chunk with a countdown; their journeys are saved so
the retry and fallback counts carry over.
"""

from __future__ import annotations

import logging
import time

from schedulers.journey import Journey
from schedulers.state import Priority
from workers.credentialed_items import run_items
from workers.dispatch import Dispatcher
from workers.items import Finished, ItemRunner, stopped
from workers.jobs import ENDED, INTERACTIVE_QUEUE, JobStatus
from workers.store import lease_member

log = logging.getLogger(__name__)


def run_chunk(dispatcher: Dispatcher, job_id: str, start: int, stop: int) -> None:
    """Run items ``[start, stop)`` of a job, then feed the job's next window."""
    runtime = dispatcher.runtime
    store, lease = runtime.store, runtime.settings.lease_seconds()
    member = lease_member(job_id, start, stop)
    job = store.get(job_id)
    if job is None or job.status in ENDED:
        store.release_lease(member)
        return
    store.renew_lease(member, time.time() + lease)
    if job.status is JobStatus.QUEUED:
        store.start(job_id, time.time())
    items = store.items(job_id, start, stop)
    done = store.finished(job_id, [item.index for item in items])
    pending = [item for item in items if item.index not in done]
    ended = False

    vkey = runtime.key_store.by_owner(job["owner"])

    def record(results: list[Finished]) -> None:
        nonlocal ended
        _written, status, usage = store.finish_many(job_id, results, time.time())
        if vkey is not None:
            runtime.key_store.add_usage(vkey.owner, usage)
        ended = ended or status in ENDED or status == JobStatus.FINALIZING
        store.renew_lease(member, time.time() + lease)

    stop_outcome = store.stopping(job_id)
    if stop_outcome is not None:
        record([stopped(item, stop_outcome) for item in pending])
        pending = []
    saved = {i: Journey.load(text) for i, text in
             store.journeys(job_id, [item.index for item in pending]).items()}
    queue = job.get("queue") or INTERACTIVE_QUEUE
    priority = Priority.INTERACTIVE if queue == INTERACTIVE_QUEUE else Priority.BULK
    runner = ItemRunner(runtime.gateway, job["endpoint"], priority, record,
                        stopping=lambda: store.stopping(job_id),
                        principal=vkey.principal if vkey is not None else None)
    deferral = run_items(runtime, job, runner, pending, saved) if pending else None
    if deferral is not None and not ended:
        store.save_journeys(job_id, {i: j.dump() for i, j in deferral.journeys.items()})
        store.renew_lease(member, time.time() + deferral.delay + lease)
        dispatcher.resend(job, start, stop, countdown=deferral.delay)
        return
    store.release_lease(member)
    if ended:
        dispatcher.ended()
    else:
        dispatcher.feed(job)

