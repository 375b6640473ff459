"""What ``/v1/batches`` shows: OpenAI's batch object and output-file lines, made from a job
and its results. Pure: no Redis here.

Statuses map one to one, except a job waiting for capacity (``queued`` on ``/queue/*``),
which a batch shows as ``validating``, as OpenAI does before work starts.
``request_counts.failed`` counts every request that did not succeed, cancelled and expired
ones included (they go to the error file); ``progress`` (an extension) breaks them down.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from workers.jobs import Job, JobStatus, Outcome

BATCH_ID_PREFIX = "batch"
TIMESTAMPS = ("in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at",
              "cancelling_at", "cancelled_at")


def batch_status(job: Job) -> str:
    """The OpenAI status of a batch job."""
    return "validating" if job.status is JobStatus.QUEUED else job.status.value


def request_counts(job: Job) -> dict[str, int]:
    """OpenAI's ``{total, completed, failed}``, live while the batch runs."""
    return {"total": job.number("total"), "completed": job.number("completed"),
            "failed": sum(job.number(k) for k in ("failed", "cancelled", "expired"))}


def progress(job: Job, now: float) -> dict[str, Any]:
    """``{percent, eta_seconds, items_per_second, counts}``: how far the batch is and, from
    its rate since it started, when it should end (None until that can be told)."""
    total = job.number("total")
    counts = job.request_counts()
    finished = sum(counts[k] for k in ("completed", "failed", "cancelled", "expired"))
    started = job.number("in_progress_at")
    ended = job.number("finished_at") or job.number("finalizing_at")
    elapsed = (ended or now) - started if started else 0.0
    rate = finished / elapsed if elapsed > 0 and finished else None
    eta = None
    if rate and not job.status.ended and job.status is not JobStatus.FINALIZING:
        eta = round((total - finished) / rate, 1)
    return {"percent": round(100.0 * finished / total, 2) if total else 0.0,
            "eta_seconds": eta, "items_per_second": round(rate, 1) if rate else None,
            "counts": counts}


def batch_object(job: Job, now: float) -> dict[str, Any]:
    """The batch exactly as OpenAI's API shows it, plus ``progress``."""
    errors = job.get("errors")
    metadata = json.loads(job.get("metadata") or "{}")
    out: dict[str, Any] = {
        "id": job.id, "object": "batch", "endpoint": f"/v1/{job['endpoint']}",
        "errors": json.loads(errors) if errors else None,
        "input_file_id": job["input_file_id"],
        "completion_window": job.get("completion_window_text") or "24h",
        "status": batch_status(job),
        "output_file_id": job.get("output_file_id") or None,
        "error_file_id": job.get("error_file_id") or None,
        "created_at": job.number("created_at"), "expires_at": job.number("expires_at"),
    }
    for name in TIMESTAMPS:
        out[name] = job.number(name) or None
    usage = job.usage()
    out.update({"request_counts": request_counts(job), "metadata": metadata or None,
                "usage": {"input_tokens": usage.prompt_tokens,
                          "input_tokens_details": {"cached_tokens": 0},
                          "output_tokens": usage.completion_tokens,
                          "output_tokens_details": {"reasoning_tokens": 0},
                          "total_tokens": usage.total_tokens},
                "progress": progress(job, now)})
    return out


def _digest(job_id: str, index: int) -> str:
    return hashlib.sha256(f"{job_id}\x00{index}".encode()).hexdigest()[:24]


def output_line(job_id: str, result: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """An output-file line for one stored item result, and whether it belongs in the error
    file. Ids are derived from the job and item, so writing the files twice gives the same
    lines."""
    digest = _digest(job_id, int(result["index"]))
    line: dict[str, Any] = {"id": f"batch_req_{digest}", "custom_id": result["custom_id"],
                            "response": None, "error": None}
    outcome = Outcome(result["status"])
    status_code = result.get("status_code")
    if outcome is Outcome.COMPLETED:
        line["response"] = {"status_code": status_code or 200, "request_id": f"req_{digest}",
                            "body": result["response"]}
        return line, False
    error = result.get("error") or {}
    if outcome is Outcome.FAILED and status_code:
        line["response"] = {"status_code": status_code, "request_id": f"req_{digest}",
                            "body": {"error": error}}
    else:
        line["error"] = {"code": error.get("code") or outcome.value,
                         "message": error.get("message") or f"The request {outcome.value}."}
    return line, True
