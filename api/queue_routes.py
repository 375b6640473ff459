"""The queue: submit jobs, read their results (polled, long-polled, streamed), list, cancel.

``/queue/request`` (singular) is also LiteLLM's old ``--use_queue`` path: its answer adds
``eta`` and a ``url`` that answers in LiteLLM's shape (``?format=litellm``), so scripts
written for it keep working.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from api.auth import caller_is_master, caller_owner, check_models
from api.openai_routes import read_json_object
from api.params import limit_arg, position_arg
from api.queue_submit import build_job
from batchgate.errors import ConflictError, NotFoundError, RequestError
from workers.dispatch import Dispatcher
from workers.jobs import Job, JobKind, JobStatus, Outcome
from workers.runtime import Runtime

bp = Blueprint("queue", __name__)

LEGACY_ETA = 5
DEFAULT_PAGE = 100
MAX_PAGE = 1000
SSE_KEEPALIVE = 15.0
MAX_IDEMPOTENCY_KEY = 255


def runtime() -> Runtime:
    """This app's runtime."""
    rt: Runtime = current_app.extensions["batchgate.runtime"]
    return rt


def dispatcher() -> Dispatcher:
    """Sends work to the broker through this app's Celery app."""
    return Dispatcher(runtime(), current_app.extensions["celery"])


def owned_job(job_id: str) -> Job:
    """The job, if it exists and the caller may see it; 404 otherwise (never 403)."""
    job = runtime().store.get(job_id) if len(job_id) <= 64 else None
    if job is None or (job.get("owner") != caller_owner() and not caller_is_master()):
        raise NotFoundError(f"No job found with id {job_id!r}.", param="id")
    return job


def _idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise RequestError(f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable "
                           "characters.", param="Idempotency-Key")
    return hashlib.sha256(key.encode()).hexdigest()


def _accepted(job: Job, legacy: bool, *, secret: str | None = None,
              replayed: bool = False) -> tuple[Response, int]:
    body = job.public()
    if secret:
        body["webhook"]["secret"] = secret  # shown once, never stored in clear
    if legacy:
        body["eta"] = LEGACY_ETA
        body["url"] = f"/queue/response/{job.id}?format=litellm"
    response = jsonify(body)
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response, 202


def submit(legacy: bool) -> tuple[Response, int]:
    """Validate, write, feed; answer 202 with the job."""
    rt = runtime()
    body = read_json_object()
    owner = caller_owner()
    new, secret = build_job(rt, body, owner)
    check_models({item.model for item in new.items})
    idem = _idempotency_key()
    if idem is not None:
        existing = rt.store.claim_idempotency(owner, idem, new.id, new.digest)
        if existing is not None:
            job = rt.store.get(existing)
            if job is not None:
                return _accepted(job, legacy, replayed=True)
    rt.store.create(new)
    job = rt.store.get(new.id)
    assert job is not None
    dispatcher().feed(job)
    return _accepted(job, legacy, secret=secret)


@bp.post("/queue/requests")
def submit_request() -> tuple[Response, int]:
    """Queue a request, a comparison or an inline batch."""
    return submit(legacy=False)


@bp.post("/queue/request")
def submit_request_legacy() -> tuple[Response, int]:
    """LiteLLM's old queue path: same job, plus ``eta`` and a LiteLLM-shaped ``url``."""
    return submit(legacy=True)


def _wait_seconds() -> float:
    raw = request.args.get("wait")
    if raw is None:
        return 0.0
    try:
        wait = float(raw)
    except ValueError:
        raise RequestError("wait must be a number of seconds", param="wait") from None
    if not 0 <= wait < float("inf"):
        raise RequestError("wait must be a number of seconds, 0 or more", param="wait")
    return min(wait, runtime().settings.queue.max_wait)


def wait_for_end(job: Job, seconds: float) -> Job:
    """Block up to ``seconds`` until the job ends; the job as it is then."""
    rt = runtime()
    if seconds <= 0 or job.status.ended:
        return job
    pubsub = rt.redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    try:
        pubsub.subscribe(rt.keys.events(job.id))
        deadline = time.monotonic() + seconds
        current = rt.store.get(job.id) or job  # it may have ended before we subscribed
        while not current.status.ended and (left := deadline - time.monotonic()) > 0:
            message = pubsub.get_message(timeout=left)
            if message and str(json.loads(message["data"]).get("type", "")).startswith("job."):
                current = rt.store.get(job.id) or current
    finally:
        pubsub.close()
    return current


def _page_args() -> tuple[int, int]:
    return position_arg(), limit_arg(DEFAULT_PAGE, MAX_PAGE)


def _slot(result: dict[str, Any] | None) -> dict[str, Any] | None:
    """A compare slot: the response object, or ``{model, status_code, error}``."""
    if result is None or result["status"] == Outcome.COMPLETED:
        return result["response"] if result else None
    return {"model": result["model"], "status_code": result["status_code"],
            "error": result["error"]}


def _with_results(job: Job) -> dict[str, Any]:
    store = runtime().store
    out = job.public()
    total = job.number("total")
    if job.kind is JobKind.SINGLE:
        result = store.results_by_index(job.id, [0])[0]
        out["result"] = result["response"] if result else None
        out["error"] = result["error"] if result else None
        out["status_code"] = result["status_code"] if result else None
        return out
    if job.kind is JobKind.COMPARE:
        out["results"] = [_slot(r) for r in store.results_by_index(job.id, range(total))]
        return out
    after, limit = _page_args()
    if request.args.get("order") == "input":
        indexes = list(range(after + 1, min(total, after + 1 + limit)))
        results = store.results_by_index(job.id, indexes)
        data = [r or {"index": i, "status": "pending"} for i, r in zip(indexes, results,
                                                                     strict=True)]
        last = indexes[-1] if indexes else after
        has_more = last + 1 < total
    else:
        data = store.results_in_completion_order(job.id, after + 1, limit)
        last = after + len(data)
        finished = sum(job.number(k) for k in ("completed", "failed", "cancelled", "expired"))
        has_more = last + 1 < finished
    out.update({"data": data, "has_more": has_more, "next_after": last if data else None})
    return out


def _legacy(job: Job) -> dict[str, Any]:
    """LiteLLM's old shape: ``queued`` until ``finished`` with the result (or the error)."""
    if not job.status.ended:
        return {"status": "queued"}
    full = _with_results(job)
    if job.kind is JobKind.SINGLE:
        result = full["result"] if full["result"] is not None else {"error": full["error"]}
    else:
        result = full.get("results", full.get("data"))
    return {"status": "finished", "result": result}


@bp.get("/queue/response/<job_id>")
def job_response(job_id: str) -> Response:
    """The job with its result(s); ``?wait=N`` long-polls until it ends (bounded)."""
    job = wait_for_end(owned_job(job_id), _wait_seconds())
    if request.args.get("format") == "litellm":
        return jsonify(_legacy(job))
    return jsonify(_with_results(job))


@bp.get("/queue/jobs")
def list_jobs() -> Response:
    """The caller's jobs, newest first: ``?limit=``, ``?after=<job id>``, ``?status=``."""
    store = runtime().store
    limit = limit_arg(20, 100)
    status = request.args.get("status")
    if status is not None and status not in JobStatus.__members__.values():
        raise RequestError(f"unknown status {status!r}", param="status")
    after = request.args.get("after")
    data: list[dict[str, Any]] = []
    # Scan a bounded number of pages so a filter that matches nothing cannot spin forever.
    for _ in range(20):
        jobs = store.list_jobs(caller_owner(), after=after, limit=limit + 1)
        if jobs is None:
            raise NotFoundError(f"No job found with id {after!r}.", param="after")
        data += [j.public() for j in jobs if status is None or j.status == status]
        if len(jobs) <= limit or len(data) > limit:
            break
        after = jobs[-1].id
    has_more = len(data) > limit
    data = data[:limit]
    return jsonify({"object": "list", "data": data, "has_more": has_more,
                    "first_id": data[0]["id"] if data else None,
                    "last_id": data[-1]["id"] if data else None})


def cancel(job: Job) -> tuple[str, bool]:
    """Cancel a job (or batch): ``(status after, whether it is being cancelled)``; False
    once it has ended or is finalizing. Sends what the cancel made due at once (a batch's
    files, webhooks)."""
    status, stopped = runtime().store.stop(job.id, Outcome.CANCELLED, time.time())
    if not stopped and status != JobStatus.CANCELLING:
        return status, False
    if status in (JobStatus.CANCELLED, JobStatus.FINALIZING):
        dispatcher().ended()
    return status, True


@bp.post("/queue/jobs/<job_id>/cancel")
def cancel_job(job_id: str) -> Response:
    """Cancel: finished items are kept, unstarted ones end ``cancelled``."""
    job = owned_job(job_id)
    status, cancelling = cancel(job)
    if not cancelling:
        raise ConflictError(f"Job {job_id!r} has already ended ({status}).",
                            code="job_not_cancellable")
    return jsonify((runtime().store.get(job.id) or job).public())


@bp.get("/queue/jobs/<job_id>/events")
def job_events(job_id: str) -> Response:
    """Server-sent events: a ``job`` snapshot, then each item and job event until it ends."""
    job = owned_job(job_id)
    rt = runtime()

    def stream() -> Iterator[str]:
        pubsub = rt.redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        try:
            pubsub.subscribe(rt.keys.events(job.id))
            current = rt.store.get(job.id) or job
            yield f"event: job\ndata: {json.dumps(current.public())}\n\n"
            while not current.status.ended:
                message = pubsub.get_message(timeout=SSE_KEEPALIVE)
                if message is None:
                    yield ": keep-alive\n\n"
                    current = rt.store.get(job.id) or current
                    continue
                event = json.loads(message["data"])
                yield f"event: {event.get('type', 'message')}\ndata: {message['data']}\n\n"
                if str(event.get("type", "")).startswith("job."):
                    current = rt.store.get(job.id) or current
        finally:
            pubsub.close()

    return Response(stream(), content_type="text/event-stream",
                    headers={"cache-control": "no-cache", "x-accel-buffering": "no"})
