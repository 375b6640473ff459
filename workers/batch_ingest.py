"""Reading a ``/v1/batches`` input file into a job: streamed, checked line by line, written
to Redis a page at a time, so a million-line file never sits in memory.

Every line must be a JSON object ``{custom_id, method: POST, url: <endpoint>, body}`` whose
body suits the endpoint and names models that exist; ``custom_id`` is unique in the file
(checked in Redis, page by page, not in a set here). Blank lines are skipped. The first
errors (up to :data:`MAX_ERRORS`) are kept with their line numbers, as OpenAI reports them:
the batch then fails and its items are removed. A re-run (the worker died) starts over.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from batchgate.errors import RequestError
from workers import json_text
from workers.batch_lines import check_request
from workers.dispatch import Dispatcher
from workers.filestore import BlobMissingError, LineTooLongError
from workers.jobs import Item, Job, JobStatus
from workers.runtime import Runtime

log = logging.getLogger(__name__)

PAGE_ITEMS = 1000
"""Items written per Redis call while reading a file."""
MAX_ERRORS = 100
"""Validation stops after this many errors; the batch reports them all."""
MAX_LINE_BYTES = 4 * 1024 * 1024


@dataclass
class Reading:
    """What reading a file has found so far."""

    limit: int
    items: int = 0
    requests: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    page_ids: list[tuple[int, str]] = field(default_factory=list)
    page_items: dict[int, str] = field(default_factory=dict)

    def fault(self, code: str, line: int | None, message: str,
              param: str | None = None) -> None:
        """Record an error (OpenAI's ``{code, line, message, param}``)."""
        if len(self.errors) < MAX_ERRORS:
            self.errors.append({"code": code, "line": line, "message": message,
                                "param": param})

    @property
    def full(self) -> bool:
        """No point reading on: the error list is full."""
        return len(self.errors) >= MAX_ERRORS


def _requests(lines: Iterator[bytes], reading: Reading) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed JSON)`` of each non-blank line; faults for the others."""
    number = 0
    try:
        for number, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            try:
                yield number, json_text.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                reading.fault("invalid_encoding", number, f"Line {number} is not valid UTF-8.")
            except ValueError as exc:
                reading.fault("invalid_json_line", number,
                              f"Line {number} is not valid JSON: {exc}.")
            if reading.full:
                return
    except LineTooLongError as exc:
        reading.fault("line_too_long", exc.line, exc.message)
    except BlobMissingError as exc:
        reading.fault("file_missing", None, exc.message)


def read_file(dispatcher: Dispatcher, job: Job) -> Reading:
    """Check every line of the job's input file, writing its items while it stays valid."""
    runtime = dispatcher.runtime
    store, endpoint = runtime.store, job["endpoint"]
    reading = Reading(limit=runtime.settings.files.max_batch_lines)

    def flush() -> None:
        if reading.page_ids and not reading.errors:
            for line, earlier in store.add_items(job.id, reading.page_ids, reading.page_items):
                reading.fault("duplicate_custom_id", line,
                              f"Line {line}: this custom_id is already used on line "
                              f"{earlier}; each request needs its own.", "custom_id")
        reading.page_ids, reading.page_items = [], {}

    resolve = _resolver(runtime, job)
    lines = runtime.files.store.lines(job["input_file_id"], max_line_bytes=MAX_LINE_BYTES)
    for number, raw in _requests(lines, reading):
        reading.requests += 1
        if reading.requests > reading.limit:
            reading.fault("too_many_requests", number, f"A batch may hold at most "
                          f"{reading.limit} requests.")
            break
        try:
            request = check_request(raw, endpoint, resolve)
        except RequestError as exc:
            reading.fault(exc.code or "invalid_request", number, f"Line {number}: {exc.message}",
                          exc.param)
            if reading.full:
                break
            continue
        if reading.errors:
            continue  # nothing more is written, the rest is only checked
        reading.page_ids.append((number, request.custom_id))
        for custom_id, group, body in request.items():
            reading.page_items[reading.items] = Item(reading.items, custom_id, group,
                                                     body).to_json()
            reading.items += 1
        if len(reading.page_items) >= PAGE_ITEMS:
            flush()
    flush()
    if reading.requests == 0 and not reading.errors:
        reading.fault("empty_file", None, "The input file holds no requests.")
    return reading


def ingest(dispatcher: Dispatcher, job_id: str) -> str:
    """Validate a batch's input file and queue its items (or fail the batch); returns the
    batch's status after."""
    store = dispatcher.runtime.store
    job = store.get(job_id)
    if job is None or job.status is not JobStatus.VALIDATING:
        return job.status.value if job else ""
    store.clear_items(job_id)  # a previous run of this task may have died halfway
    began = time.monotonic()
    reading = read_file(dispatcher, job)
    if reading.errors:
        status = store.validated(job_id, time.time(), errors=json.dumps(
            {"object": "list", "data": reading.errors}))
    else:
        status = store.validated(job_id, time.time(), total=reading.items)
    log.info("batch %s: %d requests, %d items read in %.1f s: %s", job_id, reading.requests,
             reading.items, time.monotonic() - began, status)
    if status == JobStatus.QUEUED:
        queued = store.get(job_id)
        if queued is not None:
            dispatcher.feed(queued)
    elif status == JobStatus.FAILED:
        dispatcher.webhooks()
    else:
        store.clear_items(job_id)  # stopped while it was read: keep nothing of it
        dispatcher.finalize()
    return status


def _resolver(runtime: Runtime, job: Job) -> Callable[[str], list[str]]:
    """Model name -> groups, refusing groups the owner's virtual key may not use."""
    vkey = runtime.key_store.by_owner(job["owner"])
    if vkey is None or not vkey.models:
        return runtime.gateway.resolve

    def resolve(model: str) -> list[str]:
        groups = runtime.gateway.resolve(model)
        vkey.check_models(groups)
        return groups

    return resolve
