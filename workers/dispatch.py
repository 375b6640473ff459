"""Putting work on the broker: job chunks in bounded windows, and due webhook deliveries.

Task messages carry ids and item index ranges only: never a request body, never a key.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from workers.jobs import INTERACTIVE_QUEUE, Job, JobKind
from workers.runtime import Runtime

RUN_CHUNK = "batchgate.run_chunk"
DELIVER_WEBHOOK = "batchgate.deliver_webhook"
INGEST_BATCH = "batchgate.ingest_batch"
FINALIZE_BATCH = "batchgate.finalize_batch"
FINALIZE_CLAIM_LIMIT = 100
FINALIZE_CLAIM_SECONDS = 600.0
"""A finalize task that has not ended its batch by then (its worker died) is sent again."""
WEBHOOK_CLAIM_LIMIT = 100
EMBEDDINGS = "embeddings"
FEED_CHUNKS = 4


class Sender(Protocol):
    """What we need of a Celery app: ``send_task``."""

    def send_task(self, name: str, args: Any = None, **options: Any) -> Any: ...


class Dispatcher:
    """Feeds jobs to the broker through the store's leases."""

    def __init__(self, runtime: Runtime, sender: Sender) -> None:
        self.runtime = runtime
        self.sender = sender

    def chunk_size(self, job: Job) -> int:
        """Batch items share a task (embeddings many, so they pack into full requests);
        single and compare items each get their own, so the models of a comparison run side
        by side."""
        queue = self.runtime.settings.queue
        if job.kind is not JobKind.BATCH:
            return 1
        return queue.embedding_chunk_size if job["endpoint"] == EMBEDDINGS else queue.chunk_size

    def feed(self, job: Job) -> int:
        """Hand out the job's next window of chunks; returns how many were sent."""
        settings = self.runtime.settings
        lease = settings.lease_seconds()
        size = self.chunk_size(job)
        # A chunk may wait on the broker before it starts: its first lease covers that wait
        # plus a whole chunk of calls (an embeddings chunk makes a few packed calls); once
        # running it is renewed as results come in. A window holds a few chunks at least, so
        # big embedding chunks still overlap.
        calls = min(size, settings.queue.chunk_size)
        window = max(settings.queue.feed_window, FEED_CHUNKS * size)
        chunks = self.runtime.store.feed(
            job.id, window=window, chunk=size,
            lease_deadline=time.time() + lease * (calls + 1))
        for start, stop in chunks:
            self.sender.send_task(RUN_CHUNK, args=[job.id, start, stop],
                                  queue=job.get("queue") or INTERACTIVE_QUEUE)
        return len(chunks)

    def resend(self, job: Job, start: int, stop: int, *, countdown: float = 0.0) -> None:
        """Send one chunk again: its lease ran out, or its items wait ``countdown`` seconds
        (for room in a budget, or before a retry)."""
        options: dict[str, Any] = {"queue": job.get("queue") or INTERACTIVE_QUEUE}
        if countdown > 0:
            options["countdown"] = countdown
        self.sender.send_task(RUN_CHUNK, args=[job.id, start, stop], **options)

    def ingest(self, job: Job) -> None:
        """Send the task that reads a new batch's input file."""
        self.sender.send_task(INGEST_BATCH, args=[job.id], queue=INTERACTIVE_QUEUE)

    def finalize(self) -> int:
        """Send a task for every batch whose output files are due (claimed atomically)."""
        now = time.time()
        job_ids = self.runtime.store.claim_finalizing(now, now + FINALIZE_CLAIM_SECONDS,
                                                      FINALIZE_CLAIM_LIMIT)
        for job_id in job_ids:
            self.sender.send_task(FINALIZE_BATCH, args=[job_id], queue=INTERACTIVE_QUEUE)
        return len(job_ids)

    def ended(self) -> None:
        """Something ended jobs: write due batch files, send due webhooks."""
        self.finalize()
        self.webhooks()

    def webhooks(self) -> int:
        """Send a delivery task for every job whose webhook is due (claimed atomically, so two
        scanners never send the same one)."""
        now = time.time()
        claim_until = now + self.runtime.settings.queue.webhook_timeout * 3
        job_ids = self.runtime.store.claim_due_webhooks(now, claim_until, WEBHOOK_CLAIM_LIMIT)
        for job_id in job_ids:
            self.sender.send_task(DELIVER_WEBHOOK, args=[job_id], queue=INTERACTIVE_QUEUE)
        return len(job_ids)
