"""Running one chunk of a job: each item once, its result recorded exactly once.

A chunk may run more than once (a worker died, a lease ran out): items that already have a
result are skipped, and the store's write-once result makes a late duplicate harmless.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from batchgate.errors import BatchgateError
from workers.dispatch import Dispatcher
from workers.gateway import Gateway
from workers.jobs import ENDED, Item, JobStatus, Outcome, item_result, stopped_error
from workers.store import lease_member

log = logging.getLogger(__name__)


def execute_item(gateway: Gateway, endpoint: str, item: Item) -> tuple[Outcome, str]:
    """Call the upstream for one item; the outcome and the result to store."""
    try:
        answer = gateway.complete(item.model, endpoint, item.body)
    except BatchgateError as exc:
        return Outcome.FAILED, item_result(item, Outcome.FAILED, status_code=exc.status,
                                           error=exc.envelope()["error"],
                                           finished_at=time.time())
    deployment = answer.deployment.id if answer.deployment else None
    try:
        body: Any = json.loads(answer.body)
    except ValueError:
        body = {"error": {"message": answer.body[:500].decode("utf-8", "replace"),
                          "type": "upstream_error", "param": None, "code": None}}
    if answer.ok:
        return Outcome.COMPLETED, item_result(item, Outcome.COMPLETED, status_code=answer.status,
                                              body=body, deployment=deployment,
                                              finished_at=time.time())
    error = body.get("error") if isinstance(body, dict) else None
    return Outcome.FAILED, item_result(item, Outcome.FAILED, status_code=answer.status,
                                       error=error or {"message": str(body)},
                                       deployment=deployment, finished_at=time.time())


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
    ended = False
    for item in items:
        if item.index in done:
            continue
        stop_outcome = store.stopping(job_id)
        if stop_outcome is not None:
            outcome, result = stop_outcome, item_result(
                item, stop_outcome, status_code=None, error=stopped_error(stop_outcome),
                finished_at=time.time())
        else:
            outcome, result = execute_item(runtime.gateway, job["endpoint"], item)
        _written, status = store.finish(job_id, item.index, outcome, result, time.time())
        ended = ended or status in ENDED
        store.renew_lease(member, time.time() + lease)
    store.release_lease(member)
    if ended:
        dispatcher.webhooks()
    else:
        dispatcher.feed(job)
