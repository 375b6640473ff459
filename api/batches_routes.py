"""OpenAI's Batch API, run by batchgate: create, retrieve, list, cancel; plus extensions.

Wire-compatible with OpenAI so ``client.batches.create/retrieve/list/cancel`` of the official
SDK work unchanged. A batch is a queue job (kind ``batch``) whose items come from its input
file: the file is read and checked by a worker (status ``validating``), then the job runs
with the scheduler like any other, and its output and error files are written before it
ends. What must fail fast fails here with a 400: an unknown or foreign input file, one that
is not ``purpose=batch``, an empty one, a bad endpoint or completion window.

Extensions (additive): ``progress`` on the batch object, ``webhook`` at create (fires
``batch.completed|failed|cancelled|expired``), ``GET /v1/batches/<id>/results`` (finished
lines while it runs), ``POST /v1/batches/<id>/retry`` (a child batch of what did not
succeed).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, jsonify, request
from marshmallow import ValidationError

from api.auth import caller_is_master, caller_owner
from api.errors import validation_error
from api.files_routes import files
from api.openai_routes import read_json_object
from api.params import limit_arg, position_arg
from api.queue_routes import cancel as cancel_job
from api.queue_routes import dispatcher, owned_job, runtime
from api.queue_schemas import BATCH_CREATE
from api.queue_submit import seal_webhook
from batchgate.errors import ConflictError, NotFoundError, RequestError
from config.durations import parse_duration
from workers.batch_lines import ENDPOINT_ALIASES
from workers.batch_output import PAGE
from workers.batch_records import BATCH_ID_PREFIX, batch_object, output_line
from workers.files import FilePurpose, FileRecord
from workers.jobs import (
    DEFAULT_PRIORITY,
    Job,
    JobKind,
    JobStatus,
    NewJob,
    Outcome,
    new_job_id,
)

bp = Blueprint("batches", __name__)

DEFAULT_LIST_LIMIT = 20
MAX_LIST_LIMIT = 100
DEFAULT_RESULTS_LIMIT = 100
MAX_RESULTS_LIMIT = 1000
MAX_COMPLETION_WINDOW = 30 * 24 * 3600.0


def owned_batch(batch_id: str) -> Job:
    """The batch, if it exists and the caller may see it; 404 otherwise."""
    try:
        job = owned_job(batch_id)
    except NotFoundError:
        job = None
    if job is None or job.get("files") != "1":
        raise NotFoundError(f"No batch found with id {batch_id[:64]!r}.", param="batch_id")
    return job


def _shown(job: Job) -> dict[str, Any]:
    return batch_object(job, time.time())


def _input_file(file_id: str) -> FileRecord:
    record = files().catalog.get(file_id)
    if record is None or (record.owner != caller_owner() and not caller_is_master()):
        raise RequestError(f"No such File object: {file_id[:64]!r}.", param="input_file_id",
                           code="invalid_input_file")
    if record.purpose is not FilePurpose.BATCH:
        raise RequestError(f"File {file_id!r} has purpose {record.purpose.value!r}: a batch "
                           "needs a file uploaded with purpose 'batch'.",
                           param="input_file_id", code="invalid_file_purpose")
    if record.bytes == 0:
        raise RequestError(f"File {file_id!r} is empty: it holds no requests.",
                           param="input_file_id", code="empty_file")
    return record


def _window(text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise RequestError(f"completion_window: {exc}", param="completion_window") from None
    if not 0 < seconds <= MAX_COMPLETION_WINDOW:
        raise RequestError("completion_window must be more than 0 and at most 30 days "
                           "(OpenAI accepts '24h').", param="completion_window")
    return seconds


def create_batch(spec: dict[str, Any], *, owner: str) -> Job:
    """Write a batch job for a checked ``spec`` and start reading its input file."""
    rt = runtime()
    record = _input_file(spec["input_file_id"])
    webhook = spec.get("webhook")
    sealed, _shown_secret = seal_webhook(rt, webhook) if webhook else (None, None)
    if webhook and "secret" not in webhook:
        raise RequestError("A batch webhook needs its 'secret' (it cannot be shown back in "
                           "the batch object).", param="webhook.secret")
    new = NewJob(
        id=new_job_id(BATCH_ID_PREFIX), kind=JobKind.BATCH,
        endpoint=ENDPOINT_ALIASES[spec["endpoint"]], items=[], owner=owner,
        created_at=int(time.time()), completion_window=_window(spec["completion_window"]),
        priority=DEFAULT_PRIORITY[JobKind.BATCH], metadata=spec.get("metadata") or {},
        webhook_url=webhook["url"] if webhook else None, webhook_secret_sealed=sealed,
        webhook_events=tuple(webhook.get("events", ())) if webhook else (),
        input_file_id=record.id, completion_window_text=spec["completion_window"])
    rt.store.create(new)
    job = rt.store.get(new.id)
    assert job is not None
    dispatcher().ingest(job)
    return job


@bp.post("/v1/batches")
@bp.post("/batches")
def create() -> Response:
    """Create a batch from an uploaded ``purpose=batch`` file."""
    try:
        spec = BATCH_CREATE.load(read_json_object())
    except ValidationError as exc:
        raise validation_error(exc) from None
    return jsonify(_shown(create_batch(spec, owner=caller_owner())))


@bp.get("/v1/batches/<batch_id>")
@bp.get("/batches/<batch_id>")
def retrieve(batch_id: str) -> Response:
    """One batch, with live ``request_counts`` and ``progress``."""
    return jsonify(_shown(owned_batch(batch_id)))


@bp.get("/v1/batches")
@bp.get("/batches")
def list_batches() -> Response:
    """The caller's batches, newest first: ``?after=<batch id>&limit=``."""
    limit = limit_arg(DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT)
    after = request.args.get("after")
    jobs = runtime().store.list_jobs(caller_owner(), after=after, limit=limit + 1,
                                     batches=True)
    if jobs is None:
        raise NotFoundError(f"No batch found with id {str(after)[:64]!r}.", param="after")
    data = [_shown(job) for job in jobs[:limit]]
    return jsonify({"object": "list", "data": data, "has_more": len(jobs) > limit,
                    "first_id": data[0]["id"] if data else None,
                    "last_id": data[-1]["id"] if data else None})


@bp.post("/v1/batches/<batch_id>/cancel")
@bp.post("/batches/<batch_id>/cancel")
def cancel(batch_id: str) -> Response:
    """Cancel: finished lines are kept and published in the output files."""
    job = owned_batch(batch_id)
    status, cancelling = cancel_job(job)
    if not cancelling:
        raise ConflictError(f"Batch {batch_id!r} cannot be cancelled: it is {status}.",
                            code="batch_not_cancellable")
    return jsonify(_shown(runtime().store.get(job.id) or job))


@bp.get("/v1/batches/<batch_id>/results")
@bp.get("/batches/<batch_id>/results")
def results(batch_id: str) -> Response:
    """Finished lines so far, in the order they finished, as output-file lines:
    ``?after=<position>&limit=``; ``next_after`` continues."""
    job = owned_batch(batch_id)
    after, limit = position_arg(), limit_arg(DEFAULT_RESULTS_LIMIT, MAX_RESULTS_LIMIT)
    found = runtime().store.results_in_completion_order(job.id, after + 1, limit)
    data = [output_line(job.id, result)[0] for result in found]
    finished = sum(job.number(k) for k in ("completed", "failed", "cancelled", "expired"))
    last = after + len(data)
    return jsonify({"object": "list", "data": data, "has_more": last + 1 < finished,
                    "next_after": last if data else None})


def _retry_lines(job: Job) -> Iterator[bytes]:
    """Input lines of the items of ``job`` that did not succeed, in input order."""
    store, total = runtime().store, job.number("total")
    url = f"/v1/{job['endpoint']}"
    for start in range(0, total, PAGE):
        indexes = range(start, min(total, start + PAGE))
        failed = [i for i, r in zip(indexes, store.results_by_index(job.id, indexes),
                                    strict=True)
                  if r is not None and r["status"] != Outcome.COMPLETED]
        lines = [json.dumps({"custom_id": item.custom_id, "method": "POST", "url": url,
                             "body": item.body}, ensure_ascii=False)
                 for item in store.items_at(job.id, failed)]
        if lines:
            yield ("\n".join(lines) + "\n").encode()


@bp.post("/v1/batches/<batch_id>/retry")
@bp.post("/batches/<batch_id>/retry")
def retry(batch_id: str) -> Response:
    """A child batch of the lines that failed, were cancelled or expired (``metadata``
    ``retry_of`` names the parent)."""
    job = owned_batch(batch_id)
    if not job.status.ended or job.status is JobStatus.FAILED:
        raise ConflictError(f"Batch {batch_id!r} is {job.status.value}: only a completed, "
                            "cancelled or expired batch can be retried.",
                            code="batch_not_retryable")
    unfinished = sum(job.number(k) for k in ("failed", "cancelled", "expired"))
    if unfinished == 0:
        raise ConflictError(f"Every request of batch {batch_id!r} succeeded: nothing to "
                            "retry.", code="nothing_to_retry")
    record = files().write(_retry_lines(job), filename=f"{job.id}_retry.jsonl",
                           purpose=FilePurpose.BATCH, owner=job["owner"])
    metadata = {**json.loads(job.get("metadata") or "{}"), "retry_of": job.id}
    if len(metadata) > 16:
        metadata = {"retry_of": job.id}
    child = create_batch({"input_file_id": record.id, "endpoint": f"/v1/{job['endpoint']}",
                          "completion_window": job.get("completion_window_text") or "24h",
                          "metadata": metadata}, owner=job["owner"])
    return jsonify(_shown(child))
