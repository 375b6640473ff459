"""A request's id follows the work it causes into Celery, and worker log lines name their job.

Publishing copies the current request id (an API request's, or the task's that publishes:
a chunk feeding the job's next window) into a message header; a task binds that id, its job
id and its chunk for its log lines while it runs. Only ids travel: the header is as safe as
the task arguments.
"""

from __future__ import annotations

from typing import Any

from celery import signals

from workers import logcontext

HEADER = "batchgate_request_id"
JOB_TASKS = frozenset({"batchgate.run_chunk", "batchgate.ingest_batch",
                       "batchgate.finalize_batch", "batchgate.deliver_webhook"})
"""Tasks whose first argument is a job id."""
CHUNK_TASK = "batchgate.run_chunk"


def _on_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
    request_id = logcontext.REQUEST_ID.get()
    if request_id is not None and headers is not None:
        headers[HEADER] = request_id


def _on_prerun(task: Any = None, args: Any = None, **_: Any) -> None:
    name = getattr(task, "name", "")
    request_id = getattr(getattr(task, "request", None), HEADER, None)
    job_id = chunk = None
    if name in JOB_TASKS and args:
        job_id = str(args[0])
        if name == CHUNK_TASK and len(args) >= 3:
            chunk = f"{args[1]}:{args[2]}"
    logcontext.bind(request_id=request_id if isinstance(request_id, str) else None,
                    job_id=job_id, chunk=chunk)


def _on_postrun(**_: Any) -> None:
    # The gevent pool runs each task in a fresh greenlet (a fresh context); a solo or thread
    # pool reuses one, so the next task must not inherit this one's ids.
    logcontext.bind()


def install() -> None:
    """Connect the hooks (once per process, however many Celery apps are made)."""
    signals.before_task_publish.connect(_on_publish, weak=False,
                                        dispatch_uid="batchgate.request_id.publish")
    signals.task_prerun.connect(_on_prerun, weak=False, dispatch_uid="batchgate.context.prerun")
    signals.task_postrun.connect(_on_postrun, weak=False,
                                 dispatch_uid="batchgate.context.postrun")
