"""Periodic upkeep (Celery beat): stuck chunks re-queued, overdue jobs expired, webhooks sent,
expired files deleted."""

from __future__ import annotations

import logging
import time

from workers.dispatch import Dispatcher
from workers.jobs import ENDED, Outcome
from workers.store import parse_lease

log = logging.getLogger(__name__)

SCAN_LIMIT = 500


def recover_leases(dispatcher: Dispatcher) -> int:
    """Send again every chunk whose lease ran out; returns how many."""
    runtime = dispatcher.runtime
    now = time.time()
    lease = runtime.settings.lease_seconds()
    members = runtime.store.claim_expired_leases(now, now + lease * 2, SCAN_LIMIT)
    sent = 0
    for member in members:
        job_id, start, stop = parse_lease(member)
        job = runtime.store.get(job_id)
        if job is None or job.status in ENDED:
            runtime.store.release_lease(member)
            continue
        log.info("re-queueing items %d-%d of %s: lease ran out", start, stop - 1, job_id)
        dispatcher.resend(job, start, stop)
        sent += 1
    return sent


def expire_overdue(dispatcher: Dispatcher) -> int:
    """End jobs past their completion window as ``expired``; finished work is kept."""
    runtime = dispatcher.runtime
    now = time.time()
    expired = 0
    for job_id in runtime.store.overdue_jobs(now, SCAN_LIMIT):
        status, stopped = runtime.store.stop(job_id, Outcome.EXPIRED, now)
        if not status:
            runtime.store.forget_active(job_id)
        expired += stopped
    if expired:
        dispatcher.ended()
    return expired


def expire_files(dispatcher: Dispatcher) -> int:
    """Delete files past their ``expires_at`` (record and body); reads already treat them
    as gone, this frees the space."""
    return dispatcher.runtime.files.expire_due()
