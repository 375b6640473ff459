"""Celery tasks: thin shells over ``workers.execute``, ``maintenance`` and ``deliver``.

Arguments are ids and index ranges only; each worker reads config and bodies itself.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from workers import batch_ingest, batch_output, deliver, execute, maintenance
from workers.celery_app import runtime_of
from workers.dispatch import Dispatcher


def _dispatcher(task: Any) -> Dispatcher:
    return Dispatcher(runtime_of(task.app), task.app)


@shared_task(bind=True, name="batchgate.run_chunk")
def run_chunk(self: Any, job_id: str, start: int, stop: int) -> None:
    """Run items ``[start, stop)`` of a job."""
    execute.run_chunk(_dispatcher(self), job_id, start, stop)


@shared_task(bind=True, name="batchgate.ingest_batch")
def ingest_batch(self: Any, job_id: str) -> str:
    """Read and check a /v1/batches input file into its job."""
    return batch_ingest.ingest(_dispatcher(self), job_id)


@shared_task(bind=True, name="batchgate.finalize_batch")
def finalize_batch(self: Any, job_id: str) -> str:
    """Write a finished batch's output and error files, then end it."""
    return batch_output.finalize(_dispatcher(self), job_id)


@shared_task(bind=True, name="batchgate.scan_finalizing")
def scan_finalizing(self: Any) -> int:
    """Send the batch finalizations that are due (their first task was lost)."""
    return _dispatcher(self).finalize()


@shared_task(bind=True, name="batchgate.deliver_webhook")
def deliver_webhook(self: Any, job_id: str) -> None:
    """One delivery attempt of a job's webhook."""
    deliver.deliver(_dispatcher(self), job_id)


@shared_task(bind=True, name="batchgate.recover")
def recover(self: Any) -> int:
    """Re-queue chunks whose lease ran out."""
    return maintenance.recover_leases(_dispatcher(self))


@shared_task(bind=True, name="batchgate.expire")
def expire(self: Any) -> int:
    """Expire jobs past their completion window."""
    return maintenance.expire_overdue(_dispatcher(self))


@shared_task(bind=True, name="batchgate.scan_webhooks")
def scan_webhooks(self: Any) -> int:
    """Send the webhook deliveries that are due."""
    return _dispatcher(self).webhooks()


@shared_task(bind=True, name="batchgate.expire_files")
def expire_files(self: Any) -> int:
    """Delete files past their expires_at."""
    return maintenance.expire_files(_dispatcher(self))
