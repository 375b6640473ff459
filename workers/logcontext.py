"""What a log line is about: the request id, and the job (and chunk) a worker is running.

Kept in context variables, so each request (a gevent greenlet or a gthread thread) and each
Celery task (a greenlet of the gevent pool) sees only its own; the log formatter reads them
when it writes a line, and the Celery publish hook copies the request id into the messages a
request causes. Nothing here may hold a secret: every value ends up in log lines.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

REQUEST_ID: ContextVar[str | None] = ContextVar("batchgate_request_id", default=None)
JOB_ID: ContextVar[str | None] = ContextVar("batchgate_job_id", default=None)
CHUNK: ContextVar[str | None] = ContextVar("batchgate_chunk", default=None)
"""Item indexes ``start:stop`` (a slice) of the chunk a worker is running."""

_FIELDS = {"request_id": REQUEST_ID, "job_id": JOB_ID, "chunk": CHUNK}


def current() -> dict[str, str]:
    """The context fields that are set, for a log line."""
    out: dict[str, str] = {}
    for name, var in _FIELDS.items():
        value = var.get()
        if value is not None:
            out[name] = value
    return out


def bind(*, request_id: str | None = None, job_id: str | None = None,
         chunk: str | None = None) -> None:
    """Set the context of what this greenlet or thread runs now (None clears a field)."""
    REQUEST_ID.set(request_id)
    JOB_ID.set(job_id)
    CHUNK.set(chunk)


@contextlib.contextmanager
def bound(*, request_id: str | None = None, job_id: str | None = None,
          chunk: str | None = None) -> Iterator[None]:
    """:func:`bind` for the duration of a ``with`` block, then restore what was there."""
    tokens = [REQUEST_ID.set(request_id), JOB_ID.set(job_id), CHUNK.set(chunk)]
    try:
        yield
    finally:
        for var, token in zip((REQUEST_ID, JOB_ID, CHUNK), tokens, strict=True):
            var.reset(token)
