"""A finished ``/v1/batches`` job's output and error files, assembled from its results.

Results are read from Redis a page at a time, in input order, and streamed into two file
bodies: successes to the output file, everything else (upstream errors, gateway errors,
``batch_cancelled`` / ``batch_expired``) to the error file. A file with no line is not made
(its id stays null, as OpenAI's). Output files are in input order: OpenAI promises no order,
batchgate does. Only then does the job take its final status; if two runs race, the loser
removes the files it made.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

from workers.batch_records import output_line
from workers.dispatch import Dispatcher
from workers.file_service import FileService
from workers.files import FilePurpose, FileRecord, new_file_id
from workers.filestore import BlobWriter, FileStore
from workers.items import stopped
from workers.jobs import Job, JobStatus
from workers.store import JobStore

log = logging.getLogger(__name__)

PAGE = 1000
"""Results read per Redis call."""


def results_in_input_order(store: JobStore, job: Job) -> Iterator[dict[str, Any]]:
    """Every result of the job, in item order, read a page at a time. Items a cancel or an
    expiry stopped before they were handed out have no stored result: they get one here."""
    total, stop = job.number("total"), job.stopping
    for start in range(0, total, PAGE):
        indexes = range(start, min(total, start + PAGE))
        found = store.results_by_index(job.id, indexes)
        missing = [i for i, result in zip(indexes, found, strict=True) if result is None]
        made = {}
        if missing and stop is not None:
            made = {item.index: json.loads(stopped(item, stop)[2])
                    for item in store.items_at(job.id, missing)}
        for index, result in zip(indexes, found, strict=True):
            if result is None:
                result = made.get(index)
            if result is not None:
                yield result


class _Body:
    """One output body being written, opened on its first line."""

    def __init__(self, stack: ExitStack, store: FileStore) -> None:
        self.stack, self.store = stack, store
        self.writer: BlobWriter | None = None
        self.file_id = ""
        self.buffer: list[bytes] = []

    def add(self, line: dict[str, Any]) -> None:
        self.buffer.append(json.dumps(line, separators=(",", ":"), ensure_ascii=False)
                           .encode() + b"\n")
        if len(self.buffer) >= PAGE:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        if self.writer is None:
            self.file_id = new_file_id()
            self.writer = self.stack.enter_context(self.store.create(self.file_id))
        self.writer.write(b"".join(self.buffer))
        self.buffer = []

    def commit(self) -> tuple[str, int] | None:
        """Store the body; ``(file id, size)``, or None when it has no line."""
        self.flush()
        if self.writer is None:
            return None
        self.writer.commit()
        return self.file_id, self.writer.size


def write_outputs(files: FileService, store: JobStore,
                  job: Job) -> tuple[FileRecord | None, FileRecord | None]:
    """The job's output file and error file (None for one that would be empty)."""
    with ExitStack() as stack:
        output, errors = _Body(stack, files.store), _Body(stack, files.store)
        for result in results_in_input_order(store, job):
            line, failed = output_line(job.id, result)
            (errors if failed else output).add(line)
        bodies = {"output": output.commit(), "error": errors.commit()}
    records = {kind: files.register(body[0], size=body[1], filename=f"{job.id}_{kind}.jsonl",
                                    purpose=FilePurpose.BATCH_OUTPUT, owner=job["owner"])
               if body else None for kind, body in bodies.items()}
    return records["output"], records["error"]


def finalize(dispatcher: Dispatcher, job_id: str) -> str:
    """Write a finalizing batch's files and end it; returns its status after."""
    runtime = dispatcher.runtime
    store = runtime.store
    job = store.get(job_id)
    if job is None or job.status is not JobStatus.FINALIZING:
        return job.status.value if job else ""
    began = time.monotonic()
    output, errors = write_outputs(runtime.files, store, job)
    status, ended = store.finalized(job_id, time.time(),
                                    output_file_id=output.id if output else None,
                                    error_file_id=errors.id if errors else None)
    if not ended:
        for record in (output, errors):
            if record is not None:
                runtime.files.delete(record)
        return status
    log.info("batch %s %s: files written in %.1f s", job_id, status, time.monotonic() - began)
    dispatcher.webhooks()
    return status
