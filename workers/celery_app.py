"""The Celery app: Redis broker under batchgate's key prefix, late acks, two queues.

``interactive`` (single and compare jobs, or a high ``priority``) is listed first and the
Redis transport polls queues in that order (``queue_order_strategy: priority``), so a worker
takes interactive work before bulk batch chunks whenever both wait.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from celery import Celery
from kombu import Queue  # type: ignore[attr-defined]

from workers.broker_guard import guard_closed_connection
from workers.jobs import BULK_QUEUE, INTERACTIVE_QUEUE
from workers.runtime import Runtime, redis_connections
from workers.task_context import install as install_task_context

RECOVERY_INTERVAL = 2.0
EXPIRY_INTERVAL = 5.0
WEBHOOK_SCAN_INTERVAL = 1.0
FILE_EXPIRY_INTERVAL = 60.0
VISIBILITY_MARGIN = 300.0


def make_celery(runtime: Runtime) -> Celery:
    """The Celery app for a runtime; its tasks find the runtime at ``app.batchgate``."""
    guard_closed_connection()
    app = Celery("batchgate", set_as_current=False)
    settings = runtime.settings
    # A message unacked this long is handed out again by the broker itself; it must outlast
    # the longest a chunk can legitimately run, or a slow chunk would run twice.
    visibility = settings.lease_seconds() * (settings.queue.chunk_size + 1) + VISIBILITY_MARGIN
    app.conf.update(
        broker_url=settings.server.redis_url or "redis://127.0.0.1:6379/0",
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": visibility,
            "global_keyprefix": runtime.keys.celery,
            "queue_order_strategy": "priority",
            # kombu's default is 10 connections; under the gevent pool every in-flight task
            # acks on its own, and an exhausted pool drops the consumer's broker connection
            # (measured: bench/queue_latency.py at c=32 stalled until this was sized).
            "max_connections": redis_connections(settings),
        },
        task_queues=[Queue(INTERACTIVE_QUEUE), Queue(BULK_QUEUE)],  # type: ignore[no-untyped-call]
        task_default_queue=BULK_QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        # 2 x concurrency reserved: with 1, one-item tasks ran stop-and-go (the consumer
        # fetched only after its slots drained): bench/inflight.py --singles, 124 -> 208
        # sustained in flight. Reserved-but-unstarted chunks of a dead worker come back
        # through their leases.
        worker_prefetch_multiplier=2,
        worker_concurrency=settings.queue.worker_concurrency,
        worker_hijack_root_logger=False,
        beat_schedule={
            "recover-leases": {"task": "batchgate.recover", "schedule": RECOVERY_INTERVAL,
                               "options": {"queue": INTERACTIVE_QUEUE, "expires": 30}},
            "expire-jobs": {"task": "batchgate.expire", "schedule": EXPIRY_INTERVAL,
                            "options": {"queue": INTERACTIVE_QUEUE, "expires": 30}},
            "scan-webhooks": {"task": "batchgate.scan_webhooks",
                              "schedule": WEBHOOK_SCAN_INTERVAL,
                              "options": {"queue": INTERACTIVE_QUEUE, "expires": 30}},
            "scan-finalizing": {"task": "batchgate.scan_finalizing",
                                "schedule": WEBHOOK_SCAN_INTERVAL,
                                "options": {"queue": INTERACTIVE_QUEUE, "expires": 30}},
            "expire-files": {"task": "batchgate.expire_files", "schedule": FILE_EXPIRY_INTERVAL,
                             "options": {"queue": INTERACTIVE_QUEUE, "expires": 30}},
        },
        beat_schedule_filename=str(Path(tempfile.gettempdir()) / "batchgate-beat-schedule"),
    )
    app.batchgate = runtime
    install_task_context()  # request ids into messages, job ids into worker log lines
    import workers.tasks  # noqa: F401  (registers the shared tasks with every app)

    return app


def runtime_of(app: Any) -> Runtime:
    """The runtime a Celery app was made with."""
    runtime: Runtime = app.batchgate
    return runtime
